// ---- AMX instructions: this file only. Compiled with -mamx-tile -mamx-bf16 -mamx-int8
// (src/ops/CMakeLists.txt) and nothing wider, so the plain C++ in it compiles as everywhere
// else; its functions run only where cpu::active_path() is amx (cpu::amx_permitted() true).
//
// AmxTiles is tile_isa.h's interface over the intrinsics. The intrinsics take tile numbers
// as literals (GCC pastes them into the instruction text), so each operation the kernels use
// is an explicit specialization with its numbers written out; a combination no kernel uses
// has no definition and fails to link.
//
// GCC's tileloadd asm names no memory input: the compiler could move a store to a tile's
// source past the load. The panels' operands are written before bf16_panel_amx() is called,
// from another translation unit, so no such store is in reach; keep it that way.
#include <immintrin.h>

#include "ops/matmul_amx.h"
#include "ops/matmul_amx_kernel.h"
#include "ops/tile_isa.h"

#if !defined(__AMX_TILE__) || !defined(__AMX_BF16__) || !defined(__AMX_INT8__)
#error "tile_amx.cc must be compiled with -mamx-tile -mamx-bf16 -mamx-int8"
#endif

namespace kdr::ops {
namespace {

struct AmxTiles {
  static void configure(const tile::Config& c) { _tile_loadconfig(&c); }
  static void release() { _tile_release(); }
  template <int T>
  static void zero();
  template <int T>
  static void load(const void* p, size_t stride);
  template <int T>
  static void store(void* p, size_t stride);
  template <int C, int A, int B>
  static void dpbf16ps();
  template <int C, int A, int B>
  static void dpbssd();
};

#define KDR_AMX_TILE_OPS(t)                                     \
  template <>                                                   \
  inline void AmxTiles::zero<t>() {                             \
    _tile_zero(t);                                              \
  }                                                             \
  template <>                                                   \
  inline void AmxTiles::load<t>(const void* p, size_t stride) { \
    _tile_loadd(t, p, static_cast<long>(stride));               \
  }                                                             \
  template <>                                                   \
  inline void AmxTiles::store<t>(void* p, size_t stride) {      \
    _tile_stored(t, p, static_cast<long>(stride));              \
  }
KDR_AMX_TILE_OPS(0)
KDR_AMX_TILE_OPS(1)
KDR_AMX_TILE_OPS(2)
KDR_AMX_TILE_OPS(3)
KDR_AMX_TILE_OPS(4)
KDR_AMX_TILE_OPS(5)
KDR_AMX_TILE_OPS(6)
KDR_AMX_TILE_OPS(7)
#undef KDR_AMX_TILE_OPS

// The 2 x 2 blocking of matmul_amx_kernel.h: C 2 i + j from A 4 + i and B 6 + j.
#define KDR_AMX_DP(c, a, b)                   \
  template <>                                 \
  inline void AmxTiles::dpbf16ps<c, a, b>() { \
    _tile_dpbf16ps(c, a, b);                  \
  }                                           \
  template <>                                 \
  inline void AmxTiles::dpbssd<c, a, b>() {   \
    _tile_dpbssd(c, a, b);                    \
  }
KDR_AMX_DP(0, 4, 6)
KDR_AMX_DP(1, 4, 7)
KDR_AMX_DP(2, 5, 6)
KDR_AMX_DP(3, 5, 7)
#undef KDR_AMX_DP

}  // namespace

namespace amx {
void bf16_panel_amx(const Bf16Panel& p) { bf16_panel<AmxTiles>(p); }
}  // namespace amx

}  // namespace kdr::ops
