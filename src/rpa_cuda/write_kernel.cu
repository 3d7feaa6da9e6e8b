// The KV write of the new tokens the attention kernels do not write themselves (prefill and
// mixed tokens; all tokens when the fused decode write is off): one warp per (token, KV head,
// K or V) row, store_new_row in device_common.cuh. It runs before the attention kernels on
// the same stream, so no CTA reads a slot while another writes it.
#include "rpa_cuda/device_common.cuh"

namespace rpa::cuda::detail {
namespace {

constexpr int kRowsPerBlock = 4;  // one warp per (token, KV head, K or V) row

__global__ void __launch_bounds__(kWarp* kRowsPerBlock) write_rows(StepArgs a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int64_t rows_per_side =
      static_cast<int64_t>(a.num_tokens - a.first_written_token) * a.num_kv_heads;
  if (row >= 2 * rows_per_side) return;
  const bool is_v = row >= rows_per_side;
  const int64_t r = is_v ? row - rows_per_side : row;
  store_new_row(a, a.first_written_token + static_cast<int32_t>(r / a.num_kv_heads),
                static_cast<int32_t>(r % a.num_kv_heads), is_v, threadIdx.x % kWarp);
}

}  // namespace

void launch_write(const StepArgs& a, cudaStream_t stream) {
  const int64_t rows =
      2 * static_cast<int64_t>(a.num_tokens - a.first_written_token) * a.num_kv_heads;
  if (rows == 0) return;
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  write_rows<<<static_cast<unsigned>(blocks), kWarp * kRowsPerBlock, 0, stream>>>(a);
}

}  // namespace rpa::cuda::detail
