// Ragged paged attention: one call computes attention for a whole ragged batch of
// decoding and prefilling sequences straight from a paged KV cache, writing the new
// tokens' K/V into their pages in the same pass.
//
// Usage, once per engine step:
//   rpa::RaggedBatch batch{...};                        // metadata of this step
//   rpa::Plan plan = rpa::make_plan(batch, shape, params, pool.num_threads());
//   for (each layer) rpa::run(plan, q, k, v, cache[layer], out, pool);
//
// Layout (see docs/rpa.md):
//   q, out   f32 [T][Hq][D]        new tokens of all sequences, back to back
//   k, v     f32 [T][Hkv][D]       their keys and values
//   K pool   [num_pages][Hkv][page_size][D] of the cache dtype; V pool the same.
//   int8 row scales [num_pages][Hkv][page_size] f32, one per (token, head), for K and V.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace kdr {
class ThreadPool;
}

namespace rpa {

// Every contract violation is reported as an Error naming the offending value.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class KvDType : int32_t {
  kF32 = 0,
  kBF16 = 1,
  kF16 = 2,
  kInt8 = 3,     // symmetric, one f32 scale per (token, head), quantized on write
  kFp8E4M3 = 4,  // e4m3fn with a per-tensor scale (KvCache::k_scale / v_scale)
};
const char* to_string(KvDType dtype);
size_t element_size(KvDType dtype);  // bytes per stored element

struct CacheShape {
  int32_t num_pages = 0;
  int32_t num_kv_heads = 0;
  int32_t page_size = 0;  // tokens per page, 1..256
  int32_t head_dim = 0;
  KvDType dtype = KvDType::kF32;

  size_t pool_elements() const {
    return static_cast<size_t>(num_pages) * num_kv_heads * page_size * head_dim;
  }
  size_t scale_elements() const {  // int8 only
    return static_cast<size_t>(num_pages) * num_kv_heads * page_size;
  }
};

// A paged KV cache for one layer. The pools are owned by the caller.
struct KvCache {
  CacheShape shape;
  void* k = nullptr;
  void* v = nullptr;
  float* k_row_scales = nullptr;  // kInt8: [num_pages][Hkv][page_size]
  float* v_row_scales = nullptr;
  float k_scale = 1.0f;  // kFp8E4M3: stored = fp8(x / k_scale), read = fp8 * k_scale
  float v_scale = 1.0f;
};

// The ragged batch of one step. Pointers are host memory owned by the caller; make_plan
// copies what it needs.
struct RaggedBatch {
  int32_t num_seqs = 0;
  int32_t num_tokens = 0;                 // T: must equal cu_q_lens[num_seqs]
  const int32_t* cu_q_lens = nullptr;     // [num_seqs + 1], cu_q_lens[0] == 0, non-decreasing
  const int32_t* kv_lens = nullptr;       // [num_seqs], cached + new tokens after this step
  const int32_t* page_indices = nullptr;  // [num_seqs][pages_per_seq]
  int32_t pages_per_seq = 0;
  // (decode_end, prefill_end, num_seqs): [0, decode_end) have q_len 1,
  // [decode_end, prefill_end) are prefill chunks, [prefill_end, num_seqs) are mixed.
  int32_t distribution[3] = {0, 0, 0};
};

struct AttentionParams {
  int32_t num_q_heads = 0;  // Hq, a multiple of Hkv
  float sm_scale = 1.0f;
  bool causal = true;            // false: every new token sees all kv_len positions
  int32_t sliding_window = 0;    // 0: none; else a token at pos sees t > pos - window
  float soft_cap = 0.0f;         // 0: none; else logits = cap * tanh(s / cap)
  const float* sinks = nullptr;  // [Hq] learned logit per query head added to the softmax
                                 // denominator (gpt-oss), or null
};

// Block sizes; the defaults were chosen by the sweep recorded in docs/rpa.md.
struct Tuning {
  int32_t prefill_q_block = 0;        // new tokens per prefill tile (0: default)
  int32_t prefill_kv_block = 0;       // kv positions per prefill tile (0: default)
  int32_t split_kv_tokens = 0;        // a decode longer than this is split at multiples of it
                                      // (fixed by position, so results are batch invariant;
                                      // 0: 512 for items over several KV heads, else 256 per
                                      // KV head, at most 2048)
  int32_t decode_kv_block = 0;        // kv positions per decode tile (0: 32 for items over
                                      // several KV heads, else 64)
  int32_t decode_heads_per_item = 0;  // KV heads one decode work item reads, one after the
                                      // other per KV block (0: all, at most 16)
};

// Throws Error naming the sequence and the value when the batch breaks the contract.
void validate(const RaggedBatch& batch, const CacheShape& shape, const AttentionParams& params);

// The work split of one step: built once (validating the batch), run for every layer.
class Plan {
 public:
  Plan();
  ~Plan();
  Plan(Plan&&) noexcept;
  Plan& operator=(Plan&&) noexcept;

  int32_t num_seqs() const;
  int32_t num_tokens() const;
  int32_t num_work_items() const;  // (sequence, kv heads, q tile, kv split) units
  int32_t num_kv_splits() const;   // partial results merged after the split-KV decode
  const CacheShape& shape() const;
  const AttentionParams& params() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  friend Plan make_plan(const RaggedBatch&, const CacheShape&, const AttentionParams&, int,
                        const Tuning&);
  std::unique_ptr<Impl> impl_;
};

Plan make_plan(const RaggedBatch& batch, const CacheShape& shape, const AttentionParams& params,
               int num_threads, const Tuning& tuning = {});

// Writes k/v of the new tokens into their pages and computes out. The cache must have the
// shape the plan was made for. pool may be null (runs on the calling thread).
void run(const Plan& plan, const float* q, const float* k, const float* v, KvCache& cache,
         float* out, kdr::ThreadPool* pool);

// Scalar reference with double accumulation: validates, writes the cache exactly as run()
// does, then attends by gathering pages. The oracle for every test.
void reference(const RaggedBatch& batch, const AttentionParams& params, const float* q,
               const float* k, const float* v, KvCache& cache, float* out);

// Stores one row of D values for (page, head, slot) as the cache dtype, and reads it back
// as f32. Shared by the reference, the kernels and the tests so quantization is identical.
void store_row(KvCache& cache, bool is_v, int32_t page, int32_t head, int32_t slot, const float* x);
void load_row(const KvCache& cache, bool is_v, int32_t page, int32_t head, int32_t slot, float* x);
// Copies the first `slots` token rows of page `src` (K, V and their int8 row scales, every
// head) into page `dst`, bit for bit: forked sequences each get their own copy of a shared,
// partly filled page before they write into it.
void copy_page(KvCache& cache, int32_t src, int32_t dst, int32_t slots);

}  // namespace rpa
