// Fenced: AMX tile intrinsics, compiled with -mamx-tile -mamx-bf16 -mamx-int8
// (src/cli/CMakeLists.txt). See ceilings_kernels.h; call only where the amx path runs, which
// includes cpu::amx_permitted() (Linux's arch_prctl permission for the tile data state).
//
// Register-resident: A and B tiles are loaded once, then every round issues four independent
// tile products into four accumulator tiles (C0 += A0 B0, C1 += A0 B1, C2 += A1 B0,
// C3 += A1 B1), the way a GEMM micro-kernel keeps the unit busy. Palette 1: 8 tiles of at most
// 16 rows x 64 bytes.
#include <immintrin.h>

#include <cstdint>

#include "cli/ceilings_kernels.h"

namespace kdr::cli::ceilings {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of each tile
  uint8_t rows[16] = {};
};

// All eight tiles at 16 rows x 64 bytes: C (f32 or int32 16x16), A (16 x 32 bf16 or 16 x 64
// int8), B (the pair/quad-interleaved 16 x 16 layout the products take).
void configure_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

// Rounds of four tile products (the macros take tile numbers as literals).
template <class Round>
void run_rounds(int64_t iterations, float* sink, Round&& round) {
  alignas(64) uint8_t operand[16 * 64];
  alignas(64) int32_t out[16 * 16];
  for (int i = 0; i < 16 * 64; ++i) operand[i] = static_cast<uint8_t>(i % 3);  // small, finite
  configure_tiles();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, operand, 64);
  _tile_loadd(5, operand, 64);
  _tile_loadd(6, operand, 64);
  _tile_loadd(7, operand, 64);
  for (int64_t i = 0; i < iterations; ++i) round();
  _tile_stored(0, out, 64);
  _tile_release();
  *sink += static_cast<float>(out[0] & 0xff);
}

}  // namespace

// tdpbf16ps: 16 x 16 f32 outputs, each a 32-term bf16 dot product: 16384 FLOP a product.
double amx_bf16_tiles(int64_t iterations, float* sink) {
  run_rounds(iterations, sink, [] {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  });
  return 4.0 * 16 * 16 * 32 * 2 * static_cast<double>(iterations);
}

// tdpbssd: 16 x 16 int32 outputs, each a 64-term s8 x s8 dot product: 32768 ops a product.
double amx_int8_tiles(int64_t iterations, float* sink) {
  run_rounds(iterations, sink, [] {
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  });
  return 4.0 * 16 * 16 * 64 * 2 * static_cast<double>(iterations);
}

}  // namespace kdr::cli::ceilings
