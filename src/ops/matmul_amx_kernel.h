// The bf16 tile kernel of the AMX matmul, a template over the tile ISA (tile_isa.h):
// instantiated with tile::EmulatedTiles in matmul_amx.cc and with the real instructions in
// tile_amx.cc. Private to src/ops.
//
// Tiles: C 0..3 (2 x 2 blocks of 16 X rows x 16 weight rows, f32), A 4..5 (16 X rows x 32 k
// as bf16), B 6..7 (16 weight rows x 32 k in the VNNI pair layout). Each C element starts at
// zero and takes the K chunks in increasing order, one TDPBF16PS each, whatever the block
// shape around it: a row's result depends only on its own X row and the weights.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ops/tile_isa.h"

namespace kdr::ops::amx {

inline constexpr int kTileRows = 16;     // rows of every tile; X rows and weight rows per block
inline constexpr int kTileK = 32;        // k per A row and per B tile (64 bytes of bf16)
inline constexpr int kBTileElems = 512;  // bf16 values in one B tile (16 pair rows x 32)

// One task's operands in the layouts the tiles load (all bf16 as uint16_t bits).
struct Bf16Panel {
  // X rounded to bf16: x_rows rows (a multiple of 16) of k32 values (K padded with zeros to a
  // multiple of 32), row-major.
  const uint16_t* x = nullptr;
  int64_t x_rows = 0;
  int64_t k32 = 0;
  // Staged weights: w_blocks blocks of 16 weight rows; block j is k32 / 32 B tiles in K order,
  // tile (j, kc) holding w[p][2c + e] = W[16 j + c][32 kc + 2 p + e] (p < 16 k pairs, c < 16
  // weight rows, e < 2), zeros beyond K and beyond the last weight row.
  const uint16_t* w = nullptr;
  int64_t w_blocks = 0;
  // Y[r][c] for r < m, c < n (the task's weight rows), y_stride floats between rows.
  float* y = nullptr;
  int64_t y_stride = 0;
  int64_t m = 0;
  int64_t n = 0;
};

// Rows [i0, i0 + 16 MA) x weight blocks [j0, j0 + NB).
template <class Tiles, int MA, int NB>
inline void bf16_block(const Bf16Panel& p, int64_t i0, int64_t j0) {
  static_assert(MA >= 1 && MA <= 2 && NB >= 1 && NB <= 2);
  const int64_t nk = p.k32 / kTileK;
  const size_t a_stride = static_cast<size_t>(p.k32) * 2;
  Tiles::template zero<0>();
  if constexpr (NB > 1) Tiles::template zero<1>();
  if constexpr (MA > 1) Tiles::template zero<2>();
  if constexpr (MA > 1 && NB > 1) Tiles::template zero<3>();
  const uint16_t* a = p.x + i0 * p.k32;
  const uint16_t* b = p.w + j0 * nk * kBTileElems;
  for (int64_t kc = 0; kc < nk; ++kc) {
    Tiles::template load<4>(a + kc * kTileK, a_stride);
    if constexpr (MA > 1) Tiles::template load<5>(a + kTileRows * p.k32 + kc * kTileK, a_stride);
    Tiles::template load<6>(b + kc * kBTileElems, 64);
    if constexpr (NB > 1) Tiles::template load<7>(b + (nk + kc) * kBTileElems, 64);
    Tiles::template dpbf16ps<0, 4, 6>();
    if constexpr (NB > 1) Tiles::template dpbf16ps<1, 4, 7>();
    if constexpr (MA > 1) Tiles::template dpbf16ps<2, 5, 6>();
    if constexpr (MA > 1 && NB > 1) Tiles::template dpbf16ps<3, 5, 7>();
  }
  // Out through a 16 x 16 scratch: only the valid rows and columns reach Y.
  alignas(64) float out[kTileRows][kTileRows];
  auto write = [&](int ii, int jj) {
    const int64_t r0 = i0 + kTileRows * ii, c0 = (j0 + jj) * kTileRows;
    const int64_t rows = std::min<int64_t>(kTileRows, p.m - r0);
    const int64_t cols = std::min<int64_t>(kTileRows, p.n - c0);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(p.y + (r0 + r) * p.y_stride + c0, out[r], static_cast<size_t>(cols) * 4);
    }
  };
  Tiles::template store<0>(out, 64);
  write(0, 0);
  if constexpr (NB > 1) {
    Tiles::template store<1>(out, 64);
    write(0, 1);
  }
  if constexpr (MA > 1) {
    Tiles::template store<2>(out, 64);
    write(1, 0);
  }
  if constexpr (MA > 1 && NB > 1) {
    Tiles::template store<3>(out, 64);
    write(1, 1);
  }
}

// Y = X W^T over the panel: configures the tiles on this thread, releases them at the end.
template <class Tiles>
void bf16_panel(const Bf16Panel& p) {
  Tiles::configure(tile::full_config());
  for (int64_t i = 0; i < p.x_rows; i += 2 * kTileRows) {
    const bool two_a = i + kTileRows < p.x_rows && i + kTileRows < p.m;
    for (int64_t j = 0; j < p.w_blocks; j += 2) {
      const bool two_b = j + 1 < p.w_blocks;
      if (two_a && two_b) {
        bf16_block<Tiles, 2, 2>(p, i, j);
      } else if (two_a) {
        bf16_block<Tiles, 2, 1>(p, i, j);
      } else if (two_b) {
        bf16_block<Tiles, 1, 2>(p, i, j);
      } else {
        bf16_block<Tiles, 1, 1>(p, i, j);
      }
    }
  }
  Tiles::release();
}

}  // namespace kdr::ops::amx
