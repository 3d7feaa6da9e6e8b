// The register-resident loops behind the compute ceilings of `kdr bench` (machine_ceilings.cc
// times them). Each lives in its own ceilings_<unit>.cc, compiled with that unit's target
// flags (src/cli/CMakeLists.txt), and may only be called once cpu::hardware_reason() says
// its path runs here. Each runs `iterations` rounds of independent accumulator chains on the
// calling thread and returns the operations it performed (a multiply-add counts two; the int8
// units count integer operations the same way), folding the accumulators into `*sink` so the
// compiler cannot drop the loop.
//
// These files include nothing but <immintrin.h> and <cstdint>: an inline function from a
// standard header emitted in a TU compiled for AVX-512 could be the copy the linker keeps for
// every other TU, and then fault on a CPU without it.
#pragma once

#include <cstdint>

namespace kdr::cli::ceilings {

double f32_sse_mul_add(int64_t iterations, float* sink);   // 128-bit mul + add (the scalar path)
double f32_avx2_fma(int64_t iterations, float* sink);      // vfmadd on ymm
double f32_avx512_fma(int64_t iterations, float* sink);    // vfmadd on zmm
double bf16_avx512_dot(int64_t iterations, float* sink);   // vdpbf16ps on zmm
double int8_avx512_vnni(int64_t iterations, float* sink);  // vpdpbusd on zmm
// AMX: the tile configuration is loaded and released inside; the caller must have
// cpu::amx_permitted() (the arch_prctl permission) first.
double amx_bf16_tiles(int64_t iterations, float* sink);  // tdpbf16ps, 4 accumulator tiles
double amx_int8_tiles(int64_t iterations, float* sink);  // tdpbssd, 4 accumulator tiles

}  // namespace kdr::cli::ceilings
