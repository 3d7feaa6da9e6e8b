// Private to src/rpa_cuda: device helpers shared by the kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "base/dtype_portable.h"
#include "rpa_cuda/kernels.cuh"

namespace rpa::cuda::detail {

constexpr int kWarp = 32;

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Element offset of (page, head, slot) row in a pool, in 64 bits: pools may hold more than
// 2^31 elements (the int32 products of vLLM #50427 and FlashInfer #3136 overflow there).
__device__ __forceinline__ int64_t row_index(const StepArgs& a, int32_t page, int32_t head,
                                             int32_t slot) {
  return (static_cast<int64_t>(page) * a.num_kv_heads + head) * a.page_size + slot;
}

// The page-table row of sequence `seq`.
__device__ __forceinline__ const int32_t* page_row(const StepArgs& a, int32_t seq) {
  return a.page_indices + static_cast<int64_t>(seq) * a.pages_per_seq;
}

// The score of a logit as the reference forms it: scaled, then soft-capped.
__device__ __forceinline__ float logit(const StepArgs& a, float dot) {
  float s = dot * a.sm_scale;
  if (a.soft_cap > 0.0f) s = a.soft_cap * tanhf(s / a.soft_cap);
  return s;
}

// exp(x - m) for the online softmax, 0 for a masked (-inf) x; m is finite.
__device__ __forceinline__ float softmax_weight(float x, float m) {
  return x == -INFINITY ? 0.0f : expf(x - m);
}

// exp(old - new) rescaling an accumulated state: 1 while nothing is visible yet (both -inf).
__device__ __forceinline__ float rescale(float m_old, float m_new) {
  return m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
}

// Finishes one output row from its unnormalised state (m, l) with the sink of the query
// head: returns the factor acc is multiplied by (0 when nothing was attended, as the
// reference's denom > 0 test).
__device__ __forceinline__ float finish_factor(float m, float l, const float* sinks, int qh) {
  if (sinks) {
    const float sink = sinks[qh];
    const float m2 = fmaxf(m, sink);
    const float keep = m == -INFINITY ? 0.0f : expf(m - m2);
    const float denom = l * keep + (sink == -INFINITY ? 0.0f : expf(sink - m2));
    return denom > 0.0f ? keep / denom : 0.0f;
  }
  return l > 0.0f ? 1.0f / l : 0.0f;
}

}  // namespace rpa::cuda::detail
