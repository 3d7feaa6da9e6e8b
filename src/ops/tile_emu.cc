// Exact scalar emulation of the AMX tile instructions the kernels use (tile_isa.h). Compiled
// with -ffp-contract=off: TDPBF16PS rounds each add, so no multiply-add may be fused.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "ops/tile_isa.h"

namespace kdr::ops::tile {

Config full_config() {
  Config c;
  for (int t = 0; t < kTiles; ++t) {
    c.rows[t] = kMaxRows;
    c.colsb[t] = kMaxRowBytes;
  }
  return c;
}

std::string check_config(const Config& c) {
  if (c.palette != 1) return "palette " + std::to_string(c.palette) + " (only 1 is emulated)";
  if (c.start_row != 0) return "start_row " + std::to_string(c.start_row) + " is not 0";
  for (uint8_t b : c.reserved)
    if (b != 0) return "reserved bytes 2..15 are not 0";
  for (int t = 0; t < 16; ++t) {
    const int rows = c.rows[t], colsb = c.colsb[t];
    if (t >= kTiles) {
      if (rows != 0 || colsb != 0) return "tile " + std::to_string(t) + " does not exist";
      continue;
    }
    if (rows > kMaxRows)
      return "tile " + std::to_string(t) + " has " + std::to_string(rows) + " rows";
    if (colsb > kMaxRowBytes)
      return "tile " + std::to_string(t) + " has " + std::to_string(colsb) + " bytes a row";
    if ((rows == 0) != (colsb == 0))
      return "tile " + std::to_string(t) + " has rows or bytes but not both";
  }
  return "";
}

namespace {

struct State {
  bool configured = false;
  Config cfg;
  alignas(64) uint8_t reg[kTiles][kMaxRows][kMaxRowBytes];
};
thread_local State g_state;

[[noreturn]] void fault(const char* op, const std::string& why) {
  std::fprintf(stderr, "emulated AMX: %s: %s\n", op, why.c_str());
  std::abort();
}

State& configured(const char* op) {
  if (!g_state.configured) fault(op, "tiles used without ldtilecfg on this thread");
  return g_state;
}

void need_tile(const State& s, const char* op, int t) {
  if (t < 0 || t >= kTiles) fault(op, "no tile " + std::to_string(t));
  if (s.cfg.rows[t] == 0) fault(op, "tile " + std::to_string(t) + " is not configured");
}

// bf16 as f32 with denormals read as zero (the instruction's DAZ).
float bf16_daz(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  if ((h & 0x7f80u) == 0) h &= 0x8000u;
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// f32 denormal results flushed to (signed) zero.
float ftz(float x) {
  return std::fabs(x) < std::numeric_limits<float>::min() ? std::copysign(0.0f, x) : x;
}

// The shape checks of TDPBF16PS / TDPBSSD (SDM: #UD when they fail).
void check_dp(const State& s, const char* op, int c, int a, int b) {
  need_tile(s, op, c);
  need_tile(s, op, a);
  need_tile(s, op, b);
  if (c == a || c == b || a == b) fault(op, "operands must be three different tiles");
  const Config& g = s.cfg;
  if (g.colsb[a] % 4 != 0) fault(op, "A's bytes a row are not a multiple of 4");
  if (g.colsb[a] / 4 != g.rows[b]) fault(op, "A's dword columns differ from B's rows");
  if (g.colsb[c] != g.colsb[b]) fault(op, "C's bytes a row differ from B's");
  if (g.rows[c] != g.rows[a]) fault(op, "C's rows differ from A's");
  if (g.colsb[c] % 4 != 0) fault(op, "C's bytes a row are not a multiple of 4");
}

// The instructions zero the destination's rows beyond its configured rows.
void zero_upper_rows(State& s, int t) {
  for (int r = s.cfg.rows[t]; r < kMaxRows; ++r) std::memset(s.reg[t][r], 0, kMaxRowBytes);
}

}  // namespace

void EmulatedTiles::configure(const Config& c) {
  if (const std::string why = check_config(c); !why.empty()) fault("ldtilecfg", why);
  g_state.cfg = c;
  g_state.configured = true;
  std::memset(g_state.reg, 0, sizeof(g_state.reg));
}

void EmulatedTiles::release() {
  g_state.configured = false;
  std::memset(g_state.reg, 0, sizeof(g_state.reg));
}

void EmulatedTiles::zero_tile(int t) {
  State& s = configured("tilezero");
  need_tile(s, "tilezero", t);
  std::memset(s.reg[t], 0, sizeof(s.reg[t]));
}

void EmulatedTiles::load_tile(int t, const void* p, size_t stride) {
  State& s = configured("tileloadd");
  need_tile(s, "tileloadd", t);
  std::memset(s.reg[t], 0, sizeof(s.reg[t]));
  const auto* src = static_cast<const uint8_t*>(p);
  for (int r = 0; r < s.cfg.rows[t]; ++r)
    std::memcpy(s.reg[t][r], src + r * stride, s.cfg.colsb[t]);
}

void EmulatedTiles::store_tile(int t, void* p, size_t stride) {
  State& s = configured("tilestored");
  need_tile(s, "tilestored", t);
  auto* dst = static_cast<uint8_t*>(p);
  for (int r = 0; r < s.cfg.rows[t]; ++r)
    std::memcpy(dst + r * stride, s.reg[t][r], s.cfg.colsb[t]);
}

void EmulatedTiles::dpbf16ps_tiles(int c, int a, int b) {
  State& s = configured("tdpbf16ps");
  check_dp(s, "tdpbf16ps", c, a, b);
  const int rows = s.cfg.rows[c], pairs = s.cfg.colsb[a] / 4, cols = s.cfg.colsb[c] / 4;
  // B as floats once per instruction: bf[k][2n + e].
  float bf[kMaxRows][2 * kMaxRowBytes / 4];
  for (int k = 0; k < pairs; ++k) {
    for (int j = 0; j < 2 * cols; ++j) bf[k][j] = bf16_daz(s.reg[b][k] + 2 * j);
  }
  for (int m = 0; m < rows; ++m) {
    float acc[kMaxRowBytes / 4];
    std::memcpy(acc, s.reg[c][m], 4 * cols);
    for (int k = 0; k < pairs; ++k) {
      const float a0 = bf16_daz(s.reg[a][m] + 4 * k), a1 = bf16_daz(s.reg[a][m] + 4 * k + 2);
      for (int n = 0; n < cols; ++n) {
        acc[n] = ftz(acc[n] + a0 * bf[k][2 * n]);
        acc[n] = ftz(acc[n] + a1 * bf[k][2 * n + 1]);
      }
    }
    std::memcpy(s.reg[c][m], acc, 4 * cols);
    std::memset(s.reg[c][m] + 4 * cols, 0, kMaxRowBytes - 4 * cols);
  }
  zero_upper_rows(s, c);
}

void EmulatedTiles::dpbssd_tiles(int c, int a, int b) {
  State& s = configured("tdpbssd");
  check_dp(s, "tdpbssd", c, a, b);
  const int rows = s.cfg.rows[c], quads = s.cfg.colsb[a] / 4, cols = s.cfg.colsb[c] / 4;
  for (int m = 0; m < rows; ++m) {
    for (int n = 0; n < cols; ++n) {
      uint32_t acc;  // wrapping int32 arithmetic, as the instruction's
      std::memcpy(&acc, s.reg[c][m] + 4 * n, 4);
      for (int k = 0; k < quads; ++k) {
        for (int i = 0; i < 4; ++i) {
          const auto x = static_cast<int8_t>(s.reg[a][m][4 * k + i]);
          const auto w = static_cast<int8_t>(s.reg[b][k][4 * n + i]);
          acc += static_cast<uint32_t>(static_cast<int32_t>(x) * static_cast<int32_t>(w));
        }
      }
      std::memcpy(s.reg[c][m] + 4 * n, &acc, 4);
    }
    std::memset(s.reg[c][m] + 4 * cols, 0, kMaxRowBytes - 4 * cols);
  }
  zero_upper_rows(s, c);
}

}  // namespace kdr::ops::tile
