// Private to src/rpa_cuda: what the host side (rpa_cuda.cu) passes to the kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "rpa_cuda/host_plan.h"

namespace rpa::cuda::detail {

// Everything a kernel reads besides its item list; passed by value (kernel parameter space).
struct StepArgs {
  // The step (device copies of the plan's metadata).
  const int32_t* cu_q_lens = nullptr;
  const int32_t* kv_lens = nullptr;
  const int32_t* page_indices = nullptr;  // [num_seqs][pages_per_seq]
  const int32_t* token_seq = nullptr;
  const float* sinks = nullptr;  // [Hq] device, or null
  int32_t pages_per_seq = 0;
  int32_t num_tokens = 0;
  int32_t first_written_token = 0;  // the write kernel stores tokens from here on
  // The layer.
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* out = nullptr;
  void* k_pool = nullptr;
  void* v_pool = nullptr;
  float* k_row_scales = nullptr;
  float* v_row_scales = nullptr;
  float k_scale = 1.0f;
  float v_scale = 1.0f;
  float* partials = nullptr;  // [num_partials][group][head_dim + 2]: m, l, acc
  // The shape.
  int32_t dtype = 0;  // KvDType
  int32_t num_kv_heads = 0;
  int32_t num_q_heads = 0;
  int32_t group = 1;
  int32_t page_size = 0;
  int32_t head_dim = 0;
  float sm_scale = 1.0f;
  float soft_cap = 0.0f;
  int32_t causal = 1;
  int32_t sliding_window = 0;
};

// Enqueue the kernels on `stream` (launch errors are left for the caller to check).
void launch_write(const StepArgs& a, cudaStream_t stream);
void launch_simt(const StepArgs& a, const GpuItem* items, int32_t num_items, cudaStream_t stream);
// The first version of the CUDA-core kernel (simt_kernel_v1.cu), run instead of the current
// one when RPA_CUDA_SIMT_KERNEL=v1.
void launch_simt_v1(const StepArgs& a, const GpuItem* items, int32_t num_items,
                    cudaStream_t stream);
void launch_mma(const StepArgs& a, const GpuItem* items, int32_t num_items, cudaStream_t stream);
void launch_merge(const StepArgs& a, const GpuSplit* splits, int32_t num_splits,
                  cudaStream_t stream);

}  // namespace rpa::cuda::detail
