// Private to src/rpa: attention on the CPU's bf16 units for bf16 KV caches.
//
//   path amx         prefill and mixed work items on AMX tiles (S^T = K Q^T, O^T += V^T P^T),
//                    decode items on bf16 dot products (vdpbf16ps)
//   path avx512bf16  decode items on bf16 dot products; prefill and mixed on the f32 kernels
//   other paths, other cache dtypes: the f32 kernels of cpu_attention.cc only
//
// The kernels are one template over a small ISA layer (bf16_isa_emulated.h, bf16_isa_x86.h):
// the real intrinsics (bf16_x86.cc, compiled for AVX-512 BF16 + AMX) and an exact scalar
// emulation of the same operations (bf16_emulated.cc), which the tests select through
// set_emulation() to run the kernel logic on any CPU. See docs/rpa.md, "bf16 units".
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/cpu_features.h"
#include "rpa/internal.h"
#include "rpa/variants.h"

namespace kdr {
class ThreadPool;
}

namespace rpa::bf16 {

// Test hook: run a bf16 path's kernels through the scalar emulation of its instructions,
// whatever the CPU and kdr::cpu::active_path() say. kOff (the default) routes by the active
// path and runs the real instructions.
enum class Emulation : int8_t { kOff = 0, kAvx512Bf16, kAmx };
void set_emulation(Emulation e);
Emulation emulation();

// Which kernels run which work items of a plan.
struct Route {
  ItemSet f32 = ItemSet::kAll;    // the Highway f32 kernels (cpu_attention.cc)
  ItemSet bf16 = ItemSet::kNone;  // the kernels of this header
  bool tiles = false;             // bf16 prefill/mixed items on tiles (else not in `bf16`)
  bool emulated = false;
};
Route route(KvDType dtype, kdr::cpu::Path path, Emulation e);

// Runs the work items of route.bf16 and, when they include the decodes, merges the split
// decodes' partials. pool may be null.
void run(const Plan::Impl& plan, const float* q, const float* k, const float* v, KvCache& cache,
         float* out, kdr::ThreadPool* pool, const Route& route);

// Per-thread buffers, sized by the driver for the plan (bf16_attention.cc, Scratch::ensure).
// Element counts in the comments; qpad = query rows rounded up to 16, kpad = the KV block
// rounded up to 32, d16 / d32 = head_dim rounded up to 16 / 32.
struct Buffers {
  uint16_t* q;             // tiles: Q in VNNI pairs [d32 / 2][qpad][2]; decode: Q rows [rows][d32]
  float* s;                // tiles: S^T [kpad][qpad]; decode: S [rows][kpad]
  uint16_t* p;             // tiles: P^T in VNNI pairs [kpad / 2][qpad][2]
  uint16_t* k;             // tiles: gathered K rows [kpad][d32]
  uint16_t* vt;            // tiles: V^T [d16][kpad]
  float* o;                // tiles: O^T [d16][qpad]; decode: O [rows][d16]
  float* m;                // [qpad]
  float* l;                // [qpad]
  float* alpha;            // [qpad]
  VisibleRange* vis;       // [qpad]
  const uint16_t** krows;  // decode: [kpad] row pointers
  const uint16_t** vrows;
  uint16_t* new_rows;  // decode: the new token's K and V rows in bf16 [2][d32]
  uint16_t* zeros;     // [d32] of bf16 zero
};

// The two kernels of one instantiation of bf16_attention-inl.h.
struct Kernels {
  void (*decode_item)(const ItemArgs&, const WorkItem&, const Buffers&);
  void (*tile_item)(const ItemArgs&, const WorkItem&, const Buffers&);
};
const Kernels& emulated_kernels();
// The real instructions; null where this build could not compile them.
const Kernels* x86_kernels();

}  // namespace rpa::bf16
