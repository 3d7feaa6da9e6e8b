// Version 1 of the CUDA-core attention kernel, kept beside version 2 (simt_kernel.cu) as
// llm.c keeps its numbered kernels: the first, simplest one, selectable at run time with
// RPA_CUDA_SIMT_KERNEL=v1 so that a failing version 2 can be told apart from everything else
// on the GPU machine.
//
// One CTA per work item: (sequence, KV head, rows, KV range). Decode items hold all query
// heads of the group as rows, so each K/V row is loaded once per group. The 4 warps take
// 32-position blocks of the range in turn; within a warp, lanes split the head dimension
// (dims lane, lane + 32, ...) for the q.k dots (reduced by shuffles) and the p.v sums, and
// lane p holds position p's score for the online softmax. Rows are taken 8 at a time; the
// warps' states are combined in warp order at the end, so results are deterministic.
//
// Prefill/mixed items of f32, int8 and fp8 caches run here too (16 rows per CTA), in f32
// throughout: the same accuracy as the CPU kernels.
#include "rpa_cuda/device_common.cuh"

namespace rpa::cuda::detail {
namespace {

constexpr int kWarps = 4;
constexpr int kRowChunk = 8;  // rows (query heads x tokens) sharing each K/V load

// Element i of a cache row as f32: the bytes load_row reads, dequantised the same way.
template <int kDType>
__device__ __forceinline__ float load_elem(const void* pool, int64_t i, float scale) {
  if constexpr (kDType == static_cast<int>(KvDType::kF32)) {
    return static_cast<const float*>(pool)[i];
  } else if constexpr (kDType == static_cast<int>(KvDType::kBF16)) {
    return kdr::portable::bf16_to_f32(static_cast<const uint16_t*>(pool)[i]);
  } else if constexpr (kDType == static_cast<int>(KvDType::kF16)) {
    return kdr::portable::f16_to_f32(static_cast<const uint16_t*>(pool)[i]);
  } else if constexpr (kDType == static_cast<int>(KvDType::kInt8)) {
    return static_cast<float>(static_cast<const int8_t*>(pool)[i]) * scale;
  } else {
    return kdr::portable::fp8e4m3_to_f32(static_cast<const uint8_t*>(pool)[i]) * scale;
  }
}

// The scale a row of the pool is read with: the int8 row scale, the fp8 tensor scale.
template <int kDType>
__device__ __forceinline__ float row_scale(const StepArgs& a, bool is_v, int64_t row) {
  if constexpr (kDType == static_cast<int>(KvDType::kInt8)) {
    return (is_v ? a.v_row_scales : a.k_row_scales)[row];
  } else {
    return is_v ? a.v_scale : a.k_scale;
  }
}

// kDimsPerLane: ceil(head_dim / 32) rounded up to 2, 4 or 8.
template <int kDType, int kDimsPerLane>
__global__ void __launch_bounds__(kWarp* kWarps) simt_attention(StepArgs a, const GpuItem* items) {
  extern __shared__ float smem[];
  const GpuItem it = items[blockIdx.x];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int d = a.head_dim, g = a.group;
  float* q_s = smem;                        // [kRowChunk][d]
  float* m_s = q_s + kRowChunk * d;         // [kWarps][kRowChunk]
  float* l_s = m_s + kWarps * kRowChunk;    // [kWarps][kRowChunk]
  float* acc_s = l_s + kWarps * kRowChunk;  // [kWarps][kRowChunk][d]

  const int32_t tok0 = a.cu_q_lens[it.seq];
  const int32_t q_len = a.cu_q_lens[it.seq + 1] - tok0;
  const int32_t kv_len = a.kv_lens[it.seq];
  const int32_t first_new = kv_len - q_len;
  const int32_t* pages = page_row(a, it.seq);

  for (int32_t r0 = it.row_begin; r0 < it.row_end; r0 += kRowChunk) {
    const int nr = min(kRowChunk, it.row_end - r0);
    __syncthreads();  // the previous chunk's shared memory is consumed
    for (int i = threadIdx.x; i < kRowChunk * d; i += blockDim.x) {
      const int r = i / d, x = i % d;
      float val = 0.0f;
      if (r < nr) {
        const int32_t row = r0 + r, j = row / g, qh = it.kv_head * g + row % g;
        val = a.q[(static_cast<int64_t>(tok0 + j) * a.num_q_heads + qh) * d + x];
      }
      q_s[i] = val;
    }
    __syncthreads();

    float qv[kRowChunk][kDimsPerLane];
    int32_t lo[kRowChunk], hi[kRowChunk];  // visible positions [lo, hi) of each row
    int32_t chunk_lo = INT32_MAX, chunk_hi = 0;
#pragma unroll
    for (int r = 0; r < kRowChunk; ++r) {
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int x = lane + i * kWarp;
        qv[r][i] = x < d ? q_s[r * d + x] : 0.0f;
      }
      lo[r] = 0;
      hi[r] = 0;
      if (r < nr) {
        const int32_t pos = first_new + (r0 + r) / g;
        hi[r] = min(it.kv_end, a.causal ? pos + 1 : kv_len);
        lo[r] = max(it.kv_begin, a.sliding_window > 0 ? pos - a.sliding_window + 1 : 0);
        if (lo[r] < hi[r]) {
          chunk_lo = min(chunk_lo, lo[r]);
          chunk_hi = max(chunk_hi, hi[r]);
        }
      }
    }

    if (chunk_lo > chunk_hi) chunk_lo = chunk_hi;  // no row sees anything

    float m[kRowChunk], l[kRowChunk], acc[kRowChunk][kDimsPerLane];
#pragma unroll
    for (int r = 0; r < kRowChunk; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.0f;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] = 0.0f;
    }

    for (int32_t base = chunk_lo + warp * kWarp; base < chunk_hi; base += kWarps * kWarp) {
      const int n = min(kWarp, chunk_hi - base);
      float s_mine[kRowChunk];
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) s_mine[r] = -INFINITY;
      for (int p = 0; p < n; ++p) {
        const int32_t t = base + p;
        bool any = false;
#pragma unroll
        for (int r = 0; r < kRowChunk; ++r) any |= (t >= lo[r] && t < hi[r]);
        if (!any) continue;  // warp-uniform: every lane holds the same limits
        const int64_t row = row_index(a, pages[t / a.page_size], it.kv_head, t % a.page_size);
        const float sc = row_scale<kDType>(a, false, row);
        float kv[kDimsPerLane];
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
          const int x = lane + i * kWarp;
          kv[i] = x < d ? load_elem<kDType>(a.k_pool, row * d + x, sc) : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < kRowChunk; ++r) {
          if (r >= nr) break;
          float dot = 0.0f;
#pragma unroll
          for (int i = 0; i < kDimsPerLane; ++i) dot += qv[r][i] * kv[i];
          dot = warp_sum(dot);
          const float s = (t >= lo[r] && t < hi[r]) ? logit(a, dot) : -INFINITY;
          if (lane == p) s_mine[r] = s;
        }
      }
      float p_mine[kRowChunk];
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) {
        p_mine[r] = 0.0f;
        if (r >= nr) continue;
        const float m_new = fmaxf(m[r], warp_max(s_mine[r]));
        const float corr = rescale(m[r], m_new);
        p_mine[r] = m_new == -INFINITY ? 0.0f : softmax_weight(s_mine[r], m_new);
        l[r] = l[r] * corr + warp_sum(p_mine[r]);
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] *= corr;
        m[r] = m_new;
      }
      for (int p = 0; p < n; ++p) {
        const int32_t t = base + p;
        bool any = false;
#pragma unroll
        for (int r = 0; r < kRowChunk; ++r) any |= (t >= lo[r] && t < hi[r]);
        if (!any) continue;
        const int64_t row = row_index(a, pages[t / a.page_size], it.kv_head, t % a.page_size);
        const float sc = row_scale<kDType>(a, true, row);
        float vv[kDimsPerLane];
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
          const int x = lane + i * kWarp;
          vv[i] = x < d ? load_elem<kDType>(a.v_pool, row * d + x, sc) : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < kRowChunk; ++r) {
          if (r >= nr) break;
          const float w = __shfl_sync(0xffffffffu, p_mine[r], p);
          // A masked position has weight 0 and is skipped, never multiplied (its row may
          // hold NaN only outside [0, kv_len), which is never read, but stay strict).
          if (w != 0.0f) {
#pragma unroll
            for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] += w * vv[i];
          }
        }
      }
    }

    // Combine the warps' states in warp order.
#pragma unroll
    for (int r = 0; r < kRowChunk; ++r) {
      if (lane == 0) {
        m_s[warp * kRowChunk + r] = m[r];
        l_s[warp * kRowChunk + r] = l[r];
      }
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int x = lane + i * kWarp;
        if (x < d) acc_s[(warp * kRowChunk + r) * d + x] = acc[r][i];
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nr * d; i += blockDim.x) {
      const int r = i / d, x = i % d;
      float mm = -INFINITY;
      for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, m_s[w * kRowChunk + r]);
      float ll = 0.0f, o = 0.0f;
      for (int w = 0; w < kWarps; ++w) {
        const float mw = m_s[w * kRowChunk + r];
        if (mw == -INFINITY) continue;
        const float f = expf(mw - mm);
        ll += l_s[w * kRowChunk + r] * f;
        o += acc_s[(w * kRowChunk + r) * d + x] * f;
      }
      const int32_t row = r0 + r, j = row / g, qh = it.kv_head * g + row % g;
      if (it.partial >= 0) {
        float* slot = a.partials + (static_cast<int64_t>(it.partial) * g + row) * (d + 2);
        if (x == 0) {
          slot[0] = mm;
          slot[1] = ll;
        }
        slot[2 + x] = o;
      } else {
        a.out[(static_cast<int64_t>(tok0 + j) * a.num_q_heads + qh) * d + x] =
            o * finish_factor(mm, ll, a.sinks, qh);
      }
    }
  }
}

template <int kDType>
void launch_for_dtype(const StepArgs& a, const GpuItem* items, int32_t n, cudaStream_t stream) {
  const size_t smem = sizeof(float) * (static_cast<size_t>(kRowChunk) * a.head_dim * (1 + kWarps) +
                                       2 * kWarps * kRowChunk);
  const dim3 grid(static_cast<unsigned>(n)), block(kWarp * kWarps);
  if (a.head_dim <= 64) {
    simt_attention<kDType, 2><<<grid, block, smem, stream>>>(a, items);
  } else if (a.head_dim <= 128) {
    simt_attention<kDType, 4><<<grid, block, smem, stream>>>(a, items);
  } else {
    // 8 x 256 x 5 floats = 40 KiB: under the 48 KiB a launch may use without opting in.
    simt_attention<kDType, 8><<<grid, block, smem, stream>>>(a, items);
  }
}

}  // namespace

void launch_simt_v1(const StepArgs& a, const GpuItem* items, int32_t num_items,
                    cudaStream_t stream) {
  if (num_items == 0) return;
  switch (static_cast<KvDType>(a.dtype)) {
    case KvDType::kF32:
      return launch_for_dtype<static_cast<int>(KvDType::kF32)>(a, items, num_items, stream);
    case KvDType::kBF16:
      return launch_for_dtype<static_cast<int>(KvDType::kBF16)>(a, items, num_items, stream);
    case KvDType::kF16:
      return launch_for_dtype<static_cast<int>(KvDType::kF16)>(a, items, num_items, stream);
    case KvDType::kInt8:
      return launch_for_dtype<static_cast<int>(KvDType::kInt8)>(a, items, num_items, stream);
    case KvDType::kFp8E4M3:
      return launch_for_dtype<static_cast<int>(KvDType::kFp8E4M3)>(a, items, num_items, stream);
  }
}

}  // namespace rpa::cuda::detail
