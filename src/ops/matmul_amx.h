// The model's matmul on the AMX tile unit (bf16 tiles), behind ops::matmul and
// ops::matmul_same_x. Private to src/ops (and its tests).
//
// Every row goes through the tiles, one row too, so a row's bits never depend on M, its
// position in X or the thread count:
//   X rows are rounded to bf16 (nearest even) once per call, into 16-row A tiles, K padded
//     with zeros to a multiple of 32;
//   each task owns up to kMaxTaskRows weight rows and all M rows: it dequantizes its weights
//     (the scalar reference decoders, then bf16 nearest even, f16/bf16/f32 weights too) once
//     into a thread-local buffer in the B operand's VNNI pair layout and shares them with
//     every X row of the call;
//   C tiles are f32, each element summing its K chunks in increasing order (one TDPBF16PS a
//     chunk), with 2 x 2 C + 2 A + 2 B tiles (matmul_amx_kernel.h).
// The error against the exact product is bounded by |e| <= 1.01 (2^-7 + K 2^-24) sum_k |x_k w_k|
// per element (matmul_amx_test.cc derives it), against f32 rounding on the other paths.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/thread_pool.h"
#include "ops/matmul_args.h"

namespace kdr::ops::amx {

struct Bf16Panel;  // matmul_amx_kernel.h

// Which tile implementation the matmul uses.
enum class TileMode {
  kOff,       // the f32 kernels of matmul-inl.h
  kAmx,       // the instructions (path amx)
  kEmulated,  // tile_isa.h's scalar emulation: tests and accuracy runs, any CPU
};

// A test's choice (set_tile_mode_for_testing), else KDR_MATMUL_TILES when set ("emulate":
// the emulation on any CPU, for whole-model accuracy runs; "off": the f32 kernels even on the
// amx path, to compare the two in one build), else kAmx where cpu::active_path() is amx and
// kOff elsewhere.
TileMode tile_mode();
// Test hook: forces a mode for this process (kAmx only where the amx path can run), or
// restores the default with reset_tile_mode_for_testing().
void set_tile_mode_for_testing(TileMode mode);
void reset_tile_mode_for_testing();

// One validated product (matmul.cc's split): args and its N (weight rows).
struct TileProduct {
  detail::MatmulArgs a;
  int64_t n = 0;
};

// Y_i = X W_i^T for `count` products sharing X (products[0].a.x, x_stride) and M, on the
// tiles of `mode` (kAmx or kEmulated).
void tile_matmul(ThreadPool& pool, TileMode mode, int64_t m, const TileProduct* products,
                 size_t count);

// Upper bound on weight rows per task (a multiple of 32): a task stages
// kMaxTaskRows x K bf16 weights (K = 2048: 512 KiB, within a Xeon core's L2).
inline constexpr int64_t kMaxTaskRows = 128;

// The panel kernel with the instructions (tile_amx.cc); only where the amx path runs.
void bf16_panel_amx(const Bf16Panel& p);
// The same kernel on the emulation (matmul_amx.cc).
void bf16_panel_emulated(const Bf16Panel& p);

}  // namespace kdr::ops::amx
