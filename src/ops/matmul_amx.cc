// The AMX matmul's driver (matmul_amx.h): X to bf16 A tiles, the work split, the weight
// staging into B tiles, and the emulated instance of the panel kernel.
#include "ops/matmul_amx.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/dtype.h"
#include "ops/matmul_amx_kernel.h"
#include "ops/quant.h"
#include "ops/tile_isa.h"

namespace kdr::ops::amx {

void bf16_panel_emulated(const Bf16Panel& p) { bf16_panel<tile::EmulatedTiles>(p); }

namespace {

std::atomic<int> g_forced{-1};  // a TileMode set by a test, or -1

// KDR_MATMUL_TILES: unset (the path decides), "off" or "emulate"; nullopt when unset.
std::optional<TileMode> env_mode() {
  static const std::optional<TileMode> mode = []() -> std::optional<TileMode> {
    const char* env = std::getenv("KDR_MATMUL_TILES");
    if (env == nullptr || *env == '\0') return std::nullopt;
    if (std::string(env) == "emulate") return TileMode::kEmulated;
    if (std::string(env) == "off") return TileMode::kOff;
    throw std::runtime_error(std::string("KDR_MATMUL_TILES=") + env +
                             ": unknown value (off or emulate)");
  }();
  return mode;
}

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// 64-byte aligned bf16 storage that only grows (one per thread, reused by every call).
struct Bf16Buffer {
  struct Free {
    void operator()(uint16_t* p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  std::unique_ptr<uint16_t[], Free> data;
  size_t size = 0;
  uint16_t* get(size_t n) {
    if (n > size) {
      data.reset(static_cast<uint16_t*>(::operator new[](n * 2, std::align_val_t(64))));
      size = n;
    }
    return data.get();
  }
};

// X rows [0, m) as bf16 rows of k32 values, rows padded with zeros to a multiple of 16.
void stage_x(const float* x, int64_t x_stride, int64_t m, int64_t k, int64_t k32, uint16_t* out) {
  const int64_t rows = round_up(m, kTileRows);
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t* o = out + r * k32;
    int64_t t = 0;
    if (r < m) {
      const float* xr = x + r * x_stride;
      for (; t < k; ++t) o[t] = f32_to_bf16(xr[t]);
    }
    std::memset(o + t, 0, static_cast<size_t>(k32 - t) * 2);
  }
}

// Weight rows [n0, n1) of `a` dequantized (the reference decoders), rounded to bf16 and laid
// out as B tiles (matmul_amx_kernel.h, Bf16Panel::w): weight row c of a block puts its pair
// (k, k + 1) = (32 kc + 2 p, 32 kc + 2 p + 1) in the 32-bit word c of row p of tile kc.
void stage_weights(const detail::MatmulArgs& a, int64_t n0, int64_t n1, int64_t k32,
                   uint16_t* out) {
  thread_local std::vector<float> row;
  row.assign(static_cast<size_t>(k32), 0.0f);  // zeros beyond K stay zeros
  float* const rw = row.data();
  const int64_t nk = k32 / kTileK;
  const int64_t rows = n1 - n0, blocks = (rows + kTileRows - 1) / kTileRows;
  if (rows % kTileRows != 0) {  // the last block's missing weight rows are zeros
    std::memset(out + (blocks - 1) * nk * kBTileElems, 0,
                static_cast<size_t>(nk) * kBTileElems * 2);
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (a.k > 0) dequantize_row(a.type, a.w + static_cast<size_t>(n0 + r) * a.w_stride, rw, a.k);
    uint16_t* tiles = out + (r / kTileRows) * nk * kBTileElems + 2 * (r % kTileRows);
    for (int64_t kc = 0; kc < nk; ++kc) {
      const float* src = rw + kc * kTileK;
      uint16_t* dst = tiles + kc * kBTileElems;
      for (int p = 0; p < kTileK / 2; ++p) {
        dst[p * kTileK] = f32_to_bf16(src[2 * p]);
        dst[p * kTileK + 1] = f32_to_bf16(src[2 * p + 1]);
      }
    }
  }
}

}  // namespace

TileMode tile_mode() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<TileMode>(forced);
  if (const std::optional<TileMode> env = env_mode()) return *env;
  return cpu::active_path() == cpu::Path::kAmx ? TileMode::kAmx : TileMode::kOff;
}

void set_tile_mode_for_testing(TileMode mode) {
  if (mode == TileMode::kAmx && !cpu::path_available(cpu::Path::kAmx)) {
    throw std::runtime_error("matmul tiles: amx cannot run here: " +
                             cpu::unavailable_reason(cpu::Path::kAmx));
  }
  g_forced.store(static_cast<int>(mode), std::memory_order_relaxed);
}

void reset_tile_mode_for_testing() { g_forced.store(-1, std::memory_order_relaxed); }

void tile_matmul(ThreadPool& pool, TileMode mode, int64_t m, const TileProduct* products,
                 size_t count) {
  if (m <= 0 || count == 0) return;
  void (*panel)(const Bf16Panel&) = mode == TileMode::kAmx ? bf16_panel_amx : bf16_panel_emulated;
  const int64_t k = products[0].a.k, k32 = round_up(std::max<int64_t>(k, 1), kTileK);
  const int64_t x_rows = round_up(m, kTileRows);
  thread_local Bf16Buffer x_buf;
  uint16_t* x = x_buf.get(static_cast<size_t>(x_rows * k32));
  stage_x(products[0].a.x, products[0].a.x_stride, m, k, k32, x);

  // Tasks: chunks of weight rows (multiples of 32, so each task fills 2 B tiles), enough of
  // them to give every thread several; the split changes who computes a row, never how.
  constexpr size_t kMax = 4;
  if (count > kMax) throw std::invalid_argument("tile_matmul: more than 4 products");
  int64_t chunk[kMax], first[kMax + 1] = {0};
  for (size_t i = 0; i < count; ++i) {
    const int64_t n = products[i].n;
    const int64_t want = 8 * pool.num_threads();
    chunk[i] = std::clamp<int64_t>(round_up((n + want - 1) / want, 2 * kTileRows), 2 * kTileRows,
                                   kMaxTaskRows);
    first[i + 1] = first[i] + (n + chunk[i] - 1) / chunk[i];
  }
  pool.parallel_for(first[count], [&](int64_t task, int) {
    size_t i = 0;
    while (task >= first[i + 1]) ++i;
    const detail::MatmulArgs& a = products[i].a;
    const int64_t n0 = (task - first[i]) * chunk[i];
    const int64_t n1 = std::min(products[i].n, n0 + chunk[i]);
    thread_local Bf16Buffer w_buf;
    const int64_t blocks = (n1 - n0 + kTileRows - 1) / kTileRows;
    uint16_t* w = w_buf.get(static_cast<size_t>(blocks * k32 * kTileRows));
    stage_weights(a, n0, n1, k32, w);
    Bf16Panel p;
    p.x = x;
    p.x_rows = x_rows;
    p.k32 = k32;
    p.w = w;
    p.w_blocks = blocks;
    p.y = a.y + n0;
    p.y_stride = a.y_stride;
    p.m = m;
    p.n = n1 - n0;
    panel(p);
  });
}

}  // namespace kdr::ops::amx
