// The KV write of a step: each new token's K and V rows stored into its page slot as the
// cache dtype, with exactly the roundings of rpa::store_row (base/dtype_portable.h; no
// fast-math, no conversion intrinsic). It runs before the attention kernels on the same
// stream, so no CTA reads a slot while another writes it.
#include "rpa_cuda/device_common.cuh"

namespace rpa::cuda::detail {
namespace {

constexpr int kRowsPerBlock = 4;  // one warp per (token, KV head, K or V) row

__global__ void __launch_bounds__(kWarp* kRowsPerBlock) write_rows(StepArgs a) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int64_t rows_per_side = static_cast<int64_t>(a.num_tokens) * a.num_kv_heads;
  if (row >= 2 * rows_per_side) return;
  const bool is_v = row >= rows_per_side;
  const int64_t r = is_v ? row - rows_per_side : row;
  const int32_t tok = static_cast<int32_t>(r / a.num_kv_heads);
  const int32_t head = static_cast<int32_t>(r % a.num_kv_heads);
  const int32_t seq = a.token_seq[tok];
  const int32_t q_len = a.cu_q_lens[seq + 1] - a.cu_q_lens[seq];
  const int32_t pos = a.kv_lens[seq] - q_len + (tok - a.cu_q_lens[seq]);
  const int32_t page = page_row(a, seq)[pos / a.page_size];
  const int64_t dst_row = row_index(a, page, head, pos % a.page_size);
  const int d = a.head_dim;
  const float* src = (is_v ? a.v : a.k) + r * d;
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
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
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

}  // namespace

void launch_write(const StepArgs& a, cudaStream_t stream) {
  const int64_t rows = 2 * static_cast<int64_t>(a.num_tokens) * a.num_kv_heads;
  if (rows == 0) return;
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  write_rows<<<static_cast<unsigned>(blocks), kWarp * kRowsPerBlock, 0, stream>>>(a);
}

}  // namespace rpa::cuda::detail
