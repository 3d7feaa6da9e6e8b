// The bf16 kernels on the real instructions (bf16_isa_x86.h): AVX-512 BF16 and AMX.
//
// Only the region between the pragmas below is compiled for those units, and everything in it
// lives in rpa::bf16::x86 (templates instantiated with X86Isa): the standard and project
// headers are included first, so no inline function they define is emitted with AVX-512 code
// that another translation unit could end up calling on a CPU without it. Nothing here runs
// unless kdr::cpu::active_path() chose avx512bf16 or amx (bf16_attention.cc, route()).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/dtype.h"
#include "rpa/bf16_attention.h"
#include "rpa/internal.h"
#include "rpa/variants.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define RPA_BF16_X86 1
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")
// GCC 12 reports the _mm512_undefined_* pass-through operands of the masked builtins behind
// the unmasked intrinsics as (maybe-)uninitialized (a false positive; Highway silences it too).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "rpa/bf16_isa_x86.h"
#define RPA_BF16_NS x86
#include "rpa/bf16_attention-inl.h"
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

namespace rpa::bf16 {

const Kernels* x86_kernels() {
#ifdef RPA_BF16_X86
  return &x86::kernels<X86Isa>();
#else
  return nullptr;
#endif
}

}  // namespace rpa::bf16
