// The tensor-core prefill/mixed kernel for bf16 and f16 caches (nvcuda::wmma, mma.sync
// underneath; sm_80 and later).
//
// One CTA per work item: up to 64 rows (token x query head of one KV head) against the item's
// KV range in blocks of 64 positions. Each of the 4 warps owns 16 rows. Per block:
//   S = Q K^T (wmma, f32) -> shared; each row's online softmax by a lane pair (f32, masked
//   positions are exactly 0 and never multiply a loaded value); P rounded to the cache type;
//   O (f32, shared) rescaled, then O += P V (wmma).
// K and V blocks arrive by cp.async (16 bytes a copy, zero-filled outside the visible range:
// positions past kv_len are never read, so NaN in unwritten slots cannot leak as 0 x NaN).
// V of block b loads while S of block b is computed and K of block b + 1 while P V runs: two
// stages in the space of one K and one V buffer. Q and P are rounded to the cache's 16-bit
// type (FlashAttention's accuracy); the accumulation is f32.
//
// Correctness before speed: shared-memory S and O cost bandwidth that register-resident
// fragments (mma.sync with known layouts, or wgmma) would save; see docs/rpa-cuda.md.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "rpa_cuda/device_common.cuh"

namespace rpa::cuda::detail {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kRows = kMmaRows;      // 64
constexpr int kBlock = kMmaKvBlock;  // 64 positions
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kSLd = kBlock + 4;  // f32 S row stride (floats; a multiple of 4 for wmma)
constexpr int kPLd = kBlock + 8;  // 16-bit P row stride (a multiple of 8 for wmma)

__host__ __device__ constexpr int padded_dim(int d) { return (d + 15) / 16 * 16; }
__host__ __device__ constexpr int align128(int bytes) { return (bytes + 127) / 128 * 128; }

// Shared-memory plan of one CTA for head dim d (bytes, each region 128-byte aligned so every
// wmma pointer is 32-byte aligned).
struct Smem {
  int qkv_ld, o_ld;  // element strides of Q/K/V rows and of O rows
  int q, k, v, s, p, o, total;
  __host__ __device__ explicit Smem(int d) {
    const int dp = padded_dim(d);
    qkv_ld = dp + 8;
    o_ld = dp + 4;
    const int qkv_bytes = align128(kRows * qkv_ld * 2);
    q = 0;
    k = q + qkv_bytes;
    v = k + qkv_bytes;
    s = v + qkv_bytes;
    p = s + align128(kRows * kSLd * 4);
    o = p + align128(kRows * kPLd * 2);
    total = o + align128(kRows * o_ld * 4);
  }
};

template <typename T>
__device__ __forceinline__ T to_t(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 to_t<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half to_t<__half>(float x) {
  return __float2half_rn(x);
}
template <typename T>
__device__ __forceinline__ float from_t(T x);
template <>
__device__ __forceinline__ float from_t<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <>
__device__ __forceinline__ float from_t<__half>(__half x) {
  return __half2float(x);
}

// 16-byte global -> shared copy; src_bytes 0 fills the 16 bytes with zeros instead.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  const unsigned dst_s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst_s), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Starts the copy of positions [block, block + 64) of the item's KV head from `pool` into
// `dst` (rows of qkv_ld elements); positions outside [lo, hi) become zero rows.
template <typename T>
__device__ __forceinline__ void load_block(const StepArgs& a, const void* pool, T* dst, int ld,
                                           const int32_t* pages, int32_t kv_head, int32_t block,
                                           int32_t lo, int32_t hi) {
  const int d = a.head_dim;
  const int chunks = d / 8;  // 16-byte pieces of a row (head_dim is a multiple of 8)
  for (int c = threadIdx.x; c < kBlock * chunks; c += kThreads) {
    const int r = c / chunks, piece = c % chunks;
    const int32_t t = block + r;
    const bool visible = t >= lo && t < hi;
    const T* src = static_cast<const T*>(pool);
    if (visible)
      src += row_index(a, pages[t / a.page_size], kv_head, t % a.page_size) * d + piece * 8;
    cp_async16(dst + r * ld + piece * 8, src, visible ? 16 : 0);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) mma_attention(StepArgs a, const GpuItem* items) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const GpuItem it = items[blockIdx.x];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int d = a.head_dim, dp = padded_dim(d), g = a.group;
  const Smem lay(d);
  const int ld = lay.qkv_ld, o_ld = lay.o_ld;
  T* q_s = reinterpret_cast<T*>(smem_raw + lay.q);
  T* k_s = reinterpret_cast<T*>(smem_raw + lay.k);
  T* v_s = reinterpret_cast<T*>(smem_raw + lay.v);
  float* s_s = reinterpret_cast<float*>(smem_raw + lay.s);
  T* p_s = reinterpret_cast<T*>(smem_raw + lay.p);
  float* o_s = reinterpret_cast<float*>(smem_raw + lay.o);

  const int32_t tok0 = a.cu_q_lens[it.seq];
  const int32_t q_len = a.cu_q_lens[it.seq + 1] - tok0;
  const int32_t kv_len = a.kv_lens[it.seq];
  const int32_t first_new = kv_len - q_len;
  const int32_t* pages = page_row(a, it.seq);
  const int nrows = it.row_end - it.row_begin;

  // Q rounded to T (rows past the item and dims past d are 0); O = 0; the pad columns
  // [d, dp) of K and V are zeroed once (cp.async writes only [0, d)).
  for (int i = threadIdx.x; i < kRows * dp; i += kThreads) {
    const int r = i / dp, x = i % dp;
    float val = 0.0f;
    if (r < nrows && x < d) {
      const int32_t row = it.row_begin + r, j = row / g, qh = it.kv_head * g + row % g;
      val = a.q[(static_cast<int64_t>(tok0 + j) * a.num_q_heads + qh) * d + x];
    }
    q_s[r * ld + x] = to_t<T>(val);
    o_s[r * o_ld + x] = 0.0f;
    if (x >= d) {
      k_s[r * ld + x] = to_t<T>(0.0f);
      v_s[r * ld + x] = to_t<T>(0.0f);
    }
  }

  // The softmax state of row `my_row`, held by the lane pair (2i, 2i + 1) of its warp; each
  // lane of the pair takes half of the block's columns and half of O's.
  const int my_row = warp * 16 + lane / 2, half = lane % 2;
  int32_t row_lo = 0, row_hi = 0;  // visible positions of my_row
  if (my_row < nrows) {
    const int32_t pos = first_new + (it.row_begin + my_row) / g;
    row_hi = min(it.kv_end, a.causal ? pos + 1 : kv_len);
    row_lo = max(it.kv_begin, a.sliding_window > 0 ? pos - a.sliding_window + 1 : 0);
  }
  float m = -INFINITY, l = 0.0f;

  const int32_t first_block = it.kv_begin / kBlock * kBlock;
  load_block<T>(a, a.k_pool, k_s, ld, pages, it.kv_head, first_block, it.kv_begin, it.kv_end);
  cp_async_commit();
  load_block<T>(a, a.v_pool, v_s, ld, pages, it.kv_head, first_block, it.kv_begin, it.kv_end);
  cp_async_commit();

  for (int32_t block = first_block; block < it.kv_end; block += kBlock) {
    const int32_t next = block + kBlock;
    cp_async_wait<1>();  // K of this block has landed (V may still be in flight)
    __syncthreads();

    // S = Q K^T for this warp's 16 rows.
    for (int n = 0; n < kBlock / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag;
      wmma::fill_fragment(s_frag, 0.0f);
      for (int kk = 0; kk < dp / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> q_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> k_frag;
        wmma::load_matrix_sync(q_frag, q_s + warp * 16 * ld + kk * 16, ld);
        wmma::load_matrix_sync(k_frag, k_s + n * 16 * ld + kk * 16, ld);
        wmma::mma_sync(s_frag, q_frag, k_frag, s_frag);
      }
      wmma::store_matrix_sync(s_s + warp * 16 * kSLd + n * 16, s_frag, kSLd, wmma::mem_row_major);
    }
    __syncthreads();  // every warp is done with K: refill it with the next block
    if (next < it.kv_end)
      load_block<T>(a, a.k_pool, k_s, ld, pages, it.kv_head, next, it.kv_begin, it.kv_end);
    cp_async_commit();  // (possibly empty: keeps the group count uniform)

    // Online softmax of my_row over this block's half of the columns.
    {
      const float* s_row = s_s + my_row * kSLd;
      float s_val[kBlock / 2];
      float cmax = -INFINITY;
#pragma unroll
      for (int c = 0; c < kBlock / 2; ++c) {
        const int col = half * (kBlock / 2) + c;
        const int32_t t = block + col;
        s_val[c] = (t >= row_lo && t < row_hi) ? logit(a, s_row[col]) : -INFINITY;
        cmax = fmaxf(cmax, s_val[c]);
      }
      cmax = fmaxf(cmax, __shfl_xor_sync(0xffffffffu, cmax, 1));
      const float m_new = fmaxf(m, cmax);
      const float corr = rescale(m, m_new);
      float sum = 0.0f;
      T* p_row = p_s + my_row * kPLd + half * (kBlock / 2);
#pragma unroll
      for (int c = 0; c < kBlock / 2; ++c) {
        const T pt = to_t<T>(m_new == -INFINITY ? 0.0f : softmax_weight(s_val[c], m_new));
        p_row[c] = pt;
        sum += from_t<T>(pt);  // the rounded weights P V uses, so the normalisation matches
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      l = l * corr + sum;
      m = m_new;
      float* o_row = o_s + my_row * o_ld + half * (dp / 2);
      for (int x = 0; x < dp / 2; ++x) o_row[x] *= corr;
    }

    cp_async_wait<1>();  // V of this block has landed (the next K may still be in flight)
    __syncthreads();

    // O += P V for this warp's 16 rows.
    for (int n = 0; n < dp / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
      float* o_tile = o_s + warp * 16 * o_ld + n * 16;
      wmma::load_matrix_sync(o_frag, o_tile, o_ld, wmma::mem_row_major);
      for (int kk = 0; kk < kBlock / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> p_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> v_frag;
        wmma::load_matrix_sync(p_frag, p_s + warp * 16 * kPLd + kk * 16, kPLd);
        wmma::load_matrix_sync(v_frag, v_s + kk * 16 * ld + n * 16, ld);
        wmma::mma_sync(o_frag, p_frag, v_frag, o_frag);
      }
      wmma::store_matrix_sync(o_tile, o_frag, o_ld, wmma::mem_row_major);
    }
    __syncthreads();  // every warp is done with V: refill it with the next block
    if (next < it.kv_end)
      load_block<T>(a, a.v_pool, v_s, ld, pages, it.kv_head, next, it.kv_begin, it.kv_end);
    cp_async_commit();
  }
  cp_async_wait<0>();
  __syncwarp();

  if (my_row < nrows) {
    const int32_t row = it.row_begin + my_row, j = row / g, qh = it.kv_head * g + row % g;
    const float f = finish_factor(m, l, a.sinks, qh);
    float* out = a.out + (static_cast<int64_t>(tok0 + j) * a.num_q_heads + qh) * d;
    const float* o_row = o_s + my_row * o_ld;
    for (int x = half; x < d; x += 2) out[x] = o_row[x] * f;
  }
}

template <typename T>
void launch_typed(const StepArgs& a, const GpuItem* items, int32_t n, cudaStream_t stream) {
  const Smem lay(a.head_dim);
  // Over 48 KiB of dynamic shared memory needs an opt-in (up to 227 KiB on sm_90).
  cudaFuncSetAttribute(mma_attention<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, lay.total);
  mma_attention<T><<<static_cast<unsigned>(n), kThreads, lay.total, stream>>>(a, items);
}

}  // namespace

void launch_mma(const StepArgs& a, const GpuItem* items, int32_t num_items, cudaStream_t stream) {
  if (num_items == 0) return;
  if (static_cast<KvDType>(a.dtype) == KvDType::kBF16)
    launch_typed<__nv_bfloat16>(a, items, num_items, stream);
  else
    launch_typed<__half>(a, items, num_items, stream);
}

}  // namespace rpa::cuda::detail
