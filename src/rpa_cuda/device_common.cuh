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

// One warp stores new token `tok`'s K (is_v false) or V row of KV head `head` into its page
// slot as the cache dtype, with exactly the roundings of rpa::store_row
// (base/dtype_portable.h; no fast-math, no conversion intrinsic): the bytes the CPU writes,
// NaN encodings included. Every lane of the warp must call it.
__device__ __forceinline__ void store_new_row(const StepArgs& a, int32_t tok, int32_t head,
                                              bool is_v, int lane) {
  const int32_t seq = a.token_seq[tok];
  const int32_t q_len = a.cu_q_lens[seq + 1] - a.cu_q_lens[seq];
  const int32_t pos = a.kv_lens[seq] - q_len + (tok - a.cu_q_lens[seq]);
  const int32_t page = page_row(a, seq)[pos / a.page_size];
  const int64_t dst_row = row_index(a, page, head, pos % a.page_size);
  const int d = a.head_dim;
  const float* src = (is_v ? a.v : a.k) + (static_cast<int64_t>(tok) * a.num_kv_heads + head) * d;
  void* pool = is_v ? a.v_pool : a.k_pool;
  const int64_t base = dst_row * d;
  switch (static_cast<KvDType>(a.dtype)) {
    case KvDType::kF32:
      for (int x = lane; x < d; x += kWarp) static_cast<float*>(pool)[base + x] = src[x];
      break;
    case KvDType::kBF16:
      for (int x = lane; x < d; x += kWarp)
        static_cast<uint16_t*>(pool)[base + x] = kdr::portable::f32_to_bf16(src[x]);
      break;
    case KvDType::kF16:
      for (int x = lane; x < d; x += kWarp)
        static_cast<uint16_t*>(pool)[base + x] = kdr::portable::f32_to_f16(src[x]);
      break;
    case KvDType::kInt8: {
      // amax = fmax over |x| from 0 (NaN ignored): independent of the order, as on the CPU.
      float amax = 0.0f;
      for (int x = lane; x < d; x += kWarp) amax = fmaxf(amax, fabsf(src[x]));
      amax = warp_max(amax);
      int8_t* dst = static_cast<int8_t*>(pool) + base;
      float* scales = is_v ? a.v_row_scales : a.k_row_scales;
      if (amax == 0.0f) {
        for (int x = lane; x < d; x += kWarp) dst[x] = 0;
        if (lane == 0) scales[dst_row] = 0.0f;
      } else {
        const float inv = kdr::portable::int8_row_inverse_scale(amax);
        for (int x = lane; x < d; x += kWarp) dst[x] = kdr::portable::quantize_int8(src[x], inv);
        if (lane == 0) scales[dst_row] = kdr::portable::int8_row_scale(amax);
      }
      break;
    }
    case KvDType::kFp8E4M3: {
      const float scale = is_v ? a.v_scale : a.k_scale;
      for (int x = lane; x < d; x += kWarp)
        static_cast<uint8_t*>(pool)[base + x] = kdr::portable::f32_to_fp8e4m3(src[x] / scale);
      break;
    }
  }
}

}  // namespace rpa::cuda::detail
