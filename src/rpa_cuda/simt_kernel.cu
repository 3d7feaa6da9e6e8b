// The CUDA-core attention kernel and the split-KV merge.
//
// One CTA per work item: (sequence, KV head, rows, KV range). Decode items hold all query
// heads of the group as rows, so each K/V row is loaded once per group. The 4 warps take
// 32-position blocks of the range in turn. Scores: lane p owns position p of the block and
// computes its q.k for every row over the whole head dimension with 8-element (up to
// 16-byte) loads of its K row, Q read from shared memory (a broadcast); no shuffles. One
// online-softmax update per row and block (warp max and sum). P V: lanes own 4 consecutive
// dims (and 4 more 128 dims on, for D > 128) and walk the block's positions, the weight
// broadcast by a shuffle, V loaded 4 elements a lane. Rows are taken 8 at a time; the
// warps' states are combined in warp order at the end, so results are deterministic.
//
// Prefill/mixed items of f32, int8 and fp8 caches run here too (16 rows per CTA), in f32
// throughout: the same accuracy as the CPU kernels. A decode's new K/V rows are written by
// the CTA that attends over them (the fused update), the other new rows by the write kernel.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "rpa_cuda/device_common.cuh"

namespace rpa::cuda::detail {
namespace {

constexpr int kWarps = 4;
constexpr int kRowChunk = 8;  // rows (query heads x tokens) sharing each K/V load

constexpr int kF32 = static_cast<int>(KvDType::kF32);
constexpr int kBF16 = static_cast<int>(KvDType::kBF16);
constexpr int kF16 = static_cast<int>(KvDType::kF16);
constexpr int kInt8 = static_cast<int>(KvDType::kInt8);

// Stored element -> f32, exactly (every bf16, f16 and e4m3 value is an f32 value; the
// hardware conversions below are exact for all of them), times the row's scale for the
// quantised dtypes: the value load_row returns.
__device__ __forceinline__ float bf16_bits(uint32_t h) { return __uint_as_float(h << 16); }
__device__ __forceinline__ float f16_bits(uint32_t h) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
}
__device__ __forceinline__ float fp8_bits(uint32_t v) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(v), __NV_E4M3);
  return __half2float(__half(h));
}
__device__ __forceinline__ float int8_bits(uint32_t v) {
  return static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>(v)));
}

// Elements [i, i + N) of a pool (N = 4 or 8; i a multiple of N, so the load is aligned).
template <int kDType, int N>
__device__ __forceinline__ void load_elems(const void* pool, int64_t i, float scale, float* out) {
  if constexpr (kDType == kF32) {
    const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(pool) + i);
#pragma unroll
    for (int j = 0; j < N / 4; ++j) {
      const float4 v = p[j];
      out[4 * j] = v.x;
      out[4 * j + 1] = v.y;
      out[4 * j + 2] = v.z;
      out[4 * j + 3] = v.w;
    }
  } else if constexpr (kDType == kBF16 || kDType == kF16) {
    const uint16_t* base = static_cast<const uint16_t*>(pool) + i;
    uint32_t w[N / 2];
    if constexpr (N == 8) {
      const uint4 v = *reinterpret_cast<const uint4*>(base);
      w[0] = v.x;
      w[1] = v.y;
      w[2] = v.z;
      w[3] = v.w;
    } else {
      const uint2 v = *reinterpret_cast<const uint2*>(base);
      w[0] = v.x;
      w[1] = v.y;
    }
#pragma unroll
    for (int j = 0; j < N / 2; ++j) {
      out[2 * j] = kDType == kBF16 ? bf16_bits(w[j] & 0xffffu) : f16_bits(w[j] & 0xffffu);
      out[2 * j + 1] = kDType == kBF16 ? bf16_bits(w[j] >> 16) : f16_bits(w[j] >> 16);
    }
  } else {  // int8, fp8: one byte an element
    const uint8_t* base = static_cast<const uint8_t*>(pool) + i;
    uint32_t w[N / 4];
    if constexpr (N == 8) {
      const uint2 v = *reinterpret_cast<const uint2*>(base);
      w[0] = v.x;
      w[1] = v.y;
    } else {
      w[0] = *reinterpret_cast<const uint32_t*>(base);
    }
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const uint32_t byte = (w[j / 4] >> (8 * (j % 4))) & 0xffu;
      out[j] = (kDType == kInt8 ? int8_bits(byte) : fp8_bits(byte)) * scale;
    }
  }
}

// The scale a row of the pool is read with: the int8 row scale, the fp8 tensor scale.
template <int kDType>
__device__ __forceinline__ float row_scale(const StepArgs& a, bool is_v, int64_t row) {
  if constexpr (kDType == kInt8) {
    return (is_v ? a.v_row_scales : a.k_row_scales)[row];
  } else {
    return is_v ? a.v_scale : a.k_scale;
  }
}

// kDimsPerLane: 4 for head_dim <= 128, 8 up to 256 (lane l owns dims 4l..4l+3, + 128).
template <int kDType, int kDimsPerLane>
__global__ void __launch_bounds__(kWarp* kWarps) simt_attention(StepArgs a, const GpuItem* items) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
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

  // The fused KV update of a decode: the CTA whose range holds the new token stores its K
  // and V rows (warps 0 and 1), and the barrier makes the stores visible to the CTA's reads
  // below. No other CTA reads these slots (host_plan.h, kWritesNewRow).
  if (it.flags & kWritesNewRow) {
    if (warp < 2) store_new_row(a, tok0, it.kv_head, warp == 1, lane);
    __syncthreads();
  }

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

    int32_t lo[kRowChunk], hi[kRowChunk];  // visible positions [lo, hi) of each row
    int32_t chunk_lo = INT32_MAX, chunk_hi = 0;
#pragma unroll
    for (int r = 0; r < kRowChunk; ++r) {
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
      // Scores: lane p, position base + p, every row.
      float s_mine[kRowChunk];
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) s_mine[r] = -INFINITY;
      const int32_t t_mine = base + lane;
      bool seen = false;
#pragma unroll
      for (int r = 0; r < kRowChunk; ++r) seen |= (t_mine >= lo[r] && t_mine < hi[r]);
      if (lane < n && seen) {
        const int64_t row =
            row_index(a, pages[t_mine / a.page_size], it.kv_head, t_mine % a.page_size);
        const float sc = row_scale<kDType>(a, false, row);
        float dot[kRowChunk];
#pragma unroll
        for (int r = 0; r < kRowChunk; ++r) dot[r] = 0.0f;
#pragma unroll 4
        for (int c = 0; c < d; c += 8) {
          float kx[8];
          load_elems<kDType, 8>(a.k_pool, row * d + c, sc, kx);
#pragma unroll
          for (int r = 0; r < kRowChunk; ++r) {
            if (r >= nr) break;
            const float4 q0 = *reinterpret_cast<const float4*>(q_s + r * d + c);
            const float4 q1 = *reinterpret_cast<const float4*>(q_s + r * d + c + 4);
            dot[r] += q0.x * kx[0] + q0.y * kx[1] + q0.z * kx[2] + q0.w * kx[3] + q1.x * kx[4] +
                      q1.y * kx[5] + q1.z * kx[6] + q1.w * kx[7];
          }
        }
#pragma unroll
        for (int r = 0; r < kRowChunk; ++r)
          if (r < nr && t_mine >= lo[r] && t_mine < hi[r]) s_mine[r] = logit(a, dot[r]);
      }
      // One online-softmax update per row for the block.
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
      // P V: lanes over dims, positions in order. Every position of [chunk_lo, chunk_hi) lies
      // in [0, kv_len), so its row is loaded unconditionally (written data; the loads of
      // several positions can be in flight) and a row that does not see it has weight 0.
#pragma unroll 4
      for (int p = 0; p < n; ++p) {
        const int32_t t = base + p;
        const int64_t row = row_index(a, pages[t / a.page_size], it.kv_head, t % a.page_size);
        const float sc = row_scale<kDType>(a, true, row);
        float vv[kDimsPerLane];
#pragma unroll
        for (int i = 0; i < kDimsPerLane / 4; ++i) {
          const int x = 4 * lane + 128 * i;
          if (x < d) {
            load_elems<kDType, 4>(a.v_pool, row * d + x, sc, vv + 4 * i);
          } else {
#pragma unroll
            for (int j = 0; j < 4; ++j) vv[4 * i + j] = 0.0f;
          }
        }
#pragma unroll
        for (int r = 0; r < kRowChunk; ++r) {
          if (r >= nr) break;
          const float w = __shfl_sync(0xffffffffu, p_mine[r], p);
          // A masked position has weight exactly 0 and is skipped, never multiplied.
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
        const int x = 4 * lane + 128 * (i / 4) + i % 4;
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
// One CTA per split decode (sequence, KV head): combines the pieces in split order.
__global__ void merge_splits(StepArgs a, const GpuSplit* splits) {
  const GpuSplit sp = splits[blockIdx.x];
  const int d = a.head_dim, g = a.group;
  const int32_t tok = a.cu_q_lens[sp.seq];  // a decode: one token
  for (int i = threadIdx.x; i < g * d; i += blockDim.x) {
    const int r = i / d, x = i % d;
    float mm = -INFINITY;
    for (int s = 0; s < sp.num_splits; ++s)
      mm = fmaxf(mm, a.partials[(static_cast<int64_t>(sp.first_partial + s) * g + r) * (d + 2)]);
    float ll = 0.0f, o = 0.0f;
    for (int s = 0; s < sp.num_splits; ++s) {
      const float* slot =
          a.partials + (static_cast<int64_t>(sp.first_partial + s) * g + r) * (d + 2);
      if (slot[0] == -INFINITY) continue;
      const float f = expf(slot[0] - mm);
      ll += slot[1] * f;
      o += slot[2 + x] * f;
    }
    const int qh = sp.kv_head * g + r;
    a.out[(static_cast<int64_t>(tok) * a.num_q_heads + qh) * d + x] =
        o * finish_factor(mm, ll, a.sinks, qh);
  }
}

template <int kDType>
void launch_for_dtype(const StepArgs& a, const GpuItem* items, int32_t n, cudaStream_t stream) {
  const size_t smem = sizeof(float) * (static_cast<size_t>(kRowChunk) * a.head_dim * (1 + kWarps) +
                                       2 * kWarps * kRowChunk);
  const dim3 grid(static_cast<unsigned>(n)), block(kWarp * kWarps);
  if (a.head_dim <= 128) {
    simt_attention<kDType, 4><<<grid, block, smem, stream>>>(a, items);
  } else {
    // 8 x 256 x 5 floats = 40 KiB: under the 48 KiB a launch may use without opting in.
    simt_attention<kDType, 8><<<grid, block, smem, stream>>>(a, items);
  }
}

}  // namespace

void launch_simt(const StepArgs& a, const GpuItem* items, int32_t num_items, cudaStream_t stream) {
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

void launch_merge(const StepArgs& a, const GpuSplit* splits, int32_t num_splits,
                  cudaStream_t stream) {
  if (num_splits == 0) return;
  merge_splits<<<static_cast<unsigned>(num_splits), 128, 0, stream>>>(a, splits);
}

}  // namespace rpa::cuda::detail
