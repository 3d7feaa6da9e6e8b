// Private to src/rpa_cuda: the work split of one step as the host computes it (plain C++,
// unit-tested without a GPU in tests/rpa_cuda/host_plan_test.cc) and the device kernels read.
#pragma once

#include <cstdint>
#include <vector>

#include "rpa/rpa.h"

namespace rpa::cuda::detail {

// Rows of a work item are (new token, query head of the group) pairs of one sequence and KV
// head, numbered row = token * group + head_in_group: a tile may cover any number of query
// heads per KV head, so every GQA ratio tiles the same way.
constexpr int32_t kMmaRows = 64;     // rows per tensor-core tile (4 warps x 16)
constexpr int32_t kMmaKvBlock = 64;  // KV positions per tensor-core step
constexpr int32_t kSimtRows = 16;    // rows per prefill tile of the CUDA-core kernel
constexpr int32_t kDefaultSplitKvTokens = 512;

// One CTA of an attention kernel: rows [row_begin, row_end) of sequence `seq` and KV head
// `kv_head`, over absolute KV positions [kv_begin, kv_end). partial >= 0: a split-KV decode
// piece that writes its unnormalised state to partial slot `partial` (group rows) for the merge.
// kWritesNewRow: the decode item whose range holds the new token (position kv_len - 1) stores
// that token's K and V rows of its KV head itself before attending (the fused KV update); no
// other CTA reads that slot (other pieces end before it, other heads use other rows, and
// validate keeps pages receiving new tokens out of every other sequence).
struct GpuItem {
  int32_t seq = 0;
  int32_t kv_head = 0;
  int32_t row_begin = 0;
  int32_t row_end = 0;
  int32_t kv_begin = 0;
  int32_t kv_end = 0;
  int32_t partial = -1;
  int32_t flags = 0;  // kWritesNewRow
};
constexpr int32_t kWritesNewRow = 1;
static_assert(sizeof(GpuItem) == 32, "GpuItem is copied to the device as 8 int32");

// A split decode (sequence, KV head): partial slots [first_partial, first_partial + num_splits)
// merged in that order.
struct GpuSplit {
  int32_t seq = 0;
  int32_t kv_head = 0;
  int32_t first_partial = 0;
  int32_t num_splits = 0;
};

// Whether prefill and mixed tiles of this cache dtype run on tensor cores: the 16-bit caches,
// whose rows feed mma directly. f32, int8 and fp8 caches run the CUDA-core kernel in f32
// (exact dequantised values, the CPU's accuracy) for every path.
bool uses_tensor_cores(KvDType dtype);

struct HostPlan {
  CacheShape shape;
  AttentionParams params;  // params.sinks points into `sinks` (or is null)
  std::vector<float> sinks;
  int32_t group = 1;  // Hq / Hkv
  int32_t num_seqs = 0;
  int32_t num_tokens = 0;
  int32_t pages_per_seq = 0;
  int32_t split_kv_tokens = 0;
  std::vector<int32_t> cu_q_lens;     // [num_seqs + 1]
  std::vector<int32_t> kv_lens;       // [num_seqs]
  std::vector<int32_t> page_indices;  // [num_seqs][pages_per_seq]
  std::vector<int32_t> token_seq;     // [num_tokens]: the sequence of each new token
  std::vector<GpuItem> simt_items;    // CUDA-core kernel: decodes, and prefill of non-16-bit caches
  std::vector<GpuItem> mma_items;     // tensor-core kernel: prefill/mixed tiles of 16-bit caches
  std::vector<GpuSplit> splits;
  int32_t num_partials = 0;  // slots of group rows x (head_dim + 2) floats
  // New tokens [0, first_written_token) are decodes whose rows their attention CTA writes
  // (fused); the write kernel stores the rest. 0 when the update is not fused.
  int32_t first_written_token = 0;
};

// Validates (rpa::Error) and splits the batch. Every item depends on its own sequence only.
// For diagnosis (see make_plan): tensor_cores = false sends every item to the CUDA-core
// kernel (RPA_CUDA_TENSOR_CORES=0); fused_write = false leaves every KV write to the write
// kernel (RPA_CUDA_FUSED_WRITE=0).
HostPlan plan_on_host(const RaggedBatch& batch, const CacheShape& shape,
                      const AttentionParams& params, const Tuning& tuning, bool tensor_cores = true,
                      bool fused_write = true);

}  // namespace rpa::cuda::detail
