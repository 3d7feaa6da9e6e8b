// The forward pass of a decoder-only transformer over one ragged batch (an engine step):
// new tokens of many sequences back to back, attention through rpa on a paged KV cache,
// logits only for the rows that need them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/huge_buffer.h"
#include "model/weights.h"
#include "rpa/rpa.h"

namespace kdr {
class ThreadPool;
}

namespace kdr::model {

// Paged K/V pools for every layer, sharing one page table (a page id means the same
// token block in every layer).
class KvCacheSet {
 public:
  KvCacheSet(const ModelConfig& config, int32_t num_pages, int32_t page_size, rpa::KvDType dtype);
  const rpa::CacheShape& shape() const { return shape_; }
  rpa::KvCache& layer(int32_t i) { return layers_[i]; }
  // Copies the first `slots` token rows of page `src` into page `dst` in every layer.
  void copy_page(int32_t src, int32_t dst, int32_t slots);
  size_t bytes() const { return bytes_; }
  // Bytes one token occupies across all layers.
  static size_t bytes_per_token(const ModelConfig& config, rpa::KvDType dtype);

 private:
  rpa::CacheShape shape_;
  HugeBuffer pools_;  // K and V of every layer
  std::vector<std::unique_ptr<float[]>> k_scales_, v_scales_;
  std::vector<rpa::KvCache> layers_;
  size_t bytes_ = 0;
};

// One step's inputs, in the layout rpa wants: sequences sorted decode | prefill | mixed.
struct StepBatch {
  std::vector<int32_t> tokens;        // [T] new tokens
  std::vector<int32_t> cu_q_lens;     // [S + 1]
  std::vector<int32_t> kv_lens;       // [S] cached + new
  std::vector<int32_t> page_indices;  // [S][pages_per_seq]
  int32_t pages_per_seq = 0;
  int32_t distribution[3] = {0, 0, 0};
  std::vector<int32_t> logit_rows;  // indices into tokens whose logits are wanted

  int32_t num_seqs() const { return static_cast<int32_t>(kv_lens.size()); }
  rpa::RaggedBatch ragged() const;
};

class Forward {
 public:
  Forward(const Model& model, ThreadPool& pool);
  ~Forward();
  // Runs every layer for the batch, writing the new tokens' K/V into `cache`, and fills
  // logits [logit_rows.size()][vocab].
  void run(const StepBatch& batch, KvCacheSet& cache, float* logits);

 private:
  struct Scratch;
  const Model& model_;
  ThreadPool& pool_;
  std::unique_ptr<Scratch> s_;
};

}  // namespace kdr::model
