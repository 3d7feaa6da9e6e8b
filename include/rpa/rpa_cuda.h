// Ragged paged attention on NVIDIA GPUs: the contract of rpa/rpa.h (same batch, shape,
// parameters and cache layout, the same rpa::reference as the oracle) with device memory.
// This header holds no CUDA types: device pointers are plain pointers and a stream is a
// void* (a cudaStream_t; null is the default stream).
//
// Usage, once per engine step:
//   rpa::RaggedBatch batch{...};                        // host metadata of this step
//   rpa::cuda::Plan plan = rpa::cuda::make_plan(batch, shape, params, stream);
//   for (each layer) rpa::cuda::run(plan, q, k, v, cache[layer], out, stream);
//
// Layout (device memory, as on the CPU):
//   q, out   f32 [T][Hq][D]; k, v f32 [T][Hkv][D]
//   K pool   [num_pages][Hkv][page_size][D] of the cache dtype; V pool the same (separate).
//   int8 row scales [num_pages][Hkv][page_size] f32 (KvCache::k_row_scales, v_row_scales).
// Every offset into the pools is computed in 64 bits: pools may exceed 2^31 elements.
// rpa::KvCache describes a device cache here: its k, v and row-scale pointers are device
// pointers; k_scale and v_scale (fp8) are host values.
//
// Results are batch invariant and deterministic: a sequence's work is split only at fixed
// multiples of a position (Tuning::split_kv_tokens, 512 by default on the GPU), and every
// reduction runs in a fixed order.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "rpa/rpa.h"

namespace rpa::cuda {

// A CUDA call failed (no device, out of memory, a launch error); the message names it.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// True when a CUDA device can run the kernels; otherwise false with the reason in *why.
bool device_available(std::string* why);
// The device's name and compute capability, e.g. "NVIDIA H100 80GB HBM3 (sm_90)".
std::string device_name();

// The work split of one step, uploaded to the device once and run for every layer. Holds
// device memory (metadata and the split-KV workspace) until destroyed.
class Plan {
 public:
  Plan();
  ~Plan();
  Plan(Plan&&) noexcept;
  Plan& operator=(Plan&&) noexcept;

  int32_t num_seqs() const;
  int32_t num_tokens() const;
  int32_t num_work_items() const;         // CTAs of the attention kernels (all paths)
  int32_t num_tensor_core_items() const;  // of which the tensor-core prefill/mixed kernel runs
  int32_t num_kv_splits() const;          // partial results merged after the split-KV decode
  const CacheShape& shape() const;
  const AttentionParams& params() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  friend Plan make_plan(const RaggedBatch&, const CacheShape&, const AttentionParams&, void*,
                        const Tuning&);
  std::unique_ptr<Impl> impl_;
};

// Validates the batch (rpa::Error), plans on the host and uploads the plan on `stream`.
// Only Tuning::split_kv_tokens applies on the GPU (the tile sizes are fixed by the kernels).
Plan make_plan(const RaggedBatch& batch, const CacheShape& shape, const AttentionParams& params,
               void* stream = nullptr, const Tuning& tuning = {});

// Enqueues on `stream`: writes k/v of the new tokens into their pages (the bytes
// rpa::store_row writes), then computes out. Device pointers; the cache must have the shape
// the plan was made for. Returns without waiting for the kernels.
void run(const Plan& plan, const float* q, const float* k, const float* v, KvCache& cache,
         float* out, void* stream = nullptr);

}  // namespace rpa::cuda
