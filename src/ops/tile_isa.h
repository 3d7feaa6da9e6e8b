// The tile ISA the AMX matmul kernels are written against (Intel AMX, palette 1: 8 tile
// registers of up to 16 rows x 64 bytes), with two implementations of one interface:
//   AmxTiles       the instructions themselves (tile_amx.cc, compiled with -mamx-*; called
//                  only where cpu::active_path() is amx, which implies cpu::amx_permitted());
//   EmulatedTiles  an exact scalar emulation (tile_emu.cc): per-thread tile registers, the
//                  ldtilecfg limits and each instruction's shape checks (a violation aborts
//                  with the reason), TDPBF16PS as the SDM's pseudocode writes it.
// A kernel is a template over the implementation, so the code that runs on a Xeon is the
// code the tests run here through the emulation. Tile numbers are template arguments because
// the instructions encode them (the intrinsics take literal numbers only). Private to src/ops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kdr::ops::tile {

inline constexpr int kTiles = 8;
inline constexpr int kMaxRows = 16;
inline constexpr int kMaxRowBytes = 64;

// ldtilecfg's 64-byte operand for palette 1 (SDM vol. 1, 3.2: the tile configuration).
struct alignas(64) Config {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of tiles 0..7; 8..15 must stay 0
  uint8_t rows[16] = {};    // rows of tiles 0..7; 8..15 must stay 0
};
static_assert(sizeof(Config) == 64);

// Every tile 16 rows x 64 bytes: the shape of all the bf16 kernels' A, B and C tiles.
Config full_config();

// Empty when `c` is a palette-1 configuration ldtilecfg accepts, else the reason.
std::string check_config(const Config& c);

// The emulation. State is per thread, like the registers: configure() on the thread that
// uses the tiles, release() when done.
struct EmulatedTiles {
  static void configure(const Config& c);
  static void release();
  template <int T>
  static void zero() {
    zero_tile(T);
  }
  // Rows x colsb bytes from p + r * stride (TILELOADD); the rest of the register is zeroed.
  template <int T>
  static void load(const void* p, size_t stride) {
    load_tile(T, p, stride);
  }
  template <int T>
  static void store(void* p, size_t stride) {
    store_tile(T, p, stride);
  }
  // C[m][n] += A[m][2k] * B[k][2n] + A[m][2k + 1] * B[k][2n + 1] over k, in f32: each product
  // exact, each of the two adds rounded to nearest even, bf16 denormals read as zero and f32
  // denormal results flushed to zero (TDPBF16PS).
  template <int C, int A, int B>
  static void dpbf16ps() {
    dpbf16ps_tiles(C, A, B);
  }
  // C[m][n] += sum of the 4 products A[m][4k + i] * B[k][4n + i] (int8 x int8 -> int32,
  // wrapping), TDPBSSD.
  template <int C, int A, int B>
  static void dpbssd() {
    dpbssd_tiles(C, A, B);
  }

 private:
  static void zero_tile(int t);
  static void load_tile(int t, const void* p, size_t stride);
  static void store_tile(int t, void* p, size_t stride);
  static void dpbf16ps_tiles(int c, int a, int b);
  static void dpbssd_tiles(int c, int a, int b);
};

}  // namespace kdr::ops::tile
