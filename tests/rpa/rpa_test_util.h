// Shared fixtures for the rpa tests: seeded random ragged batches, owned KV caches and
// comparisons. Every helper that draws randomness takes the test's Rng, whose seed is
// printed (rerun a failure with KDR_SEED=<seed> and the same --gtest_filter).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "rpa/rpa.h"

namespace rpa_test {

using Rng = std::mt19937_64;

// The seed of this test: KDR_SEED if set, else a fresh random one. Printed to stdout.
uint64_t test_seed();

// Which of the three specialised ranges of `distribution` a batch fills.
enum class Mix { kDecode, kPrefill, kMixed, kAll };
const char* to_string(Mix mix);

// A ragged batch that owns its metadata; view() is what make_plan/reference take.
struct Batch {
  std::vector<int32_t> cu_q_lens{0};
  std::vector<int32_t> kv_lens;
  std::vector<int32_t> page_indices;  // [num_seqs][pages_per_seq]
  int32_t pages_per_seq = 1;
  int32_t distribution[3] = {0, 0, 0};
  int32_t num_pages = 1;  // pool size this batch was laid out for

  int32_t num_seqs() const { return static_cast<int32_t>(kv_lens.size()); }
  int32_t num_tokens() const { return cu_q_lens.back(); }
  int32_t q_len(int i) const { return cu_q_lens[i + 1] - cu_q_lens[i]; }
  rpa::RaggedBatch view() const;
};

// Lays out sequences with the given (q_len, kv_len) pairs on distinct, randomly permuted pages
// of a pool with `extra_pages` pages no sequence uses. Unused page table entries hold -1 (the
// contract only constrains the pages a sequence needs).
Batch layout_batch(const std::vector<int32_t>& q_lens, const std::vector<int32_t>& kv_lens,
                   const int32_t distribution[3], int32_t page_size, Rng& rng,
                   int32_t extra_pages = 3);

struct BatchSpec {
  int32_t num_seqs = 1;
  Mix mix = Mix::kAll;
  int32_t page_size = 16;
  int32_t max_cached = 160;    // cached tokens before this step are drawn from [0, max_cached]
  int32_t prefill_chunk = 16;  // q_len of every prefill-range sequence
  int32_t max_mixed_q = 24;    // mixed-range q_len is drawn from [1, max_mixed_q]
};

// A random batch sorted as the contract wants: decodes, then prefill chunks, then mixed.
Batch random_batch(const BatchSpec& spec, Rng& rng);

// A paged KV cache that owns its pools.
struct Cache {
  rpa::CacheShape shape;
  std::vector<uint8_t> k, v;
  std::vector<float> k_row_scales, v_row_scales;  // int8 only
  float k_scale = 1.0f, v_scale = 1.0f;           // fp8 only

  rpa::KvCache view();
};

// A cache for `batch` in which every slot is first poisoned with NaN (so a kernel that reads
// past kv_len produces NaN), then the cached prefix [0, kv_len - q_len) of every sequence is
// filled with random rows through store_row. fp8 caches get non-1 per-tensor scales.
Cache make_cache(rpa::KvDType dtype, int32_t num_kv_heads, int32_t head_dim, const Batch& batch,
                 int32_t page_size, Rng& rng);

// Uniform floats in [lo, hi).
std::vector<float> random_floats(size_t n, Rng& rng, float lo = -1.0f, float hi = 1.0f);

// q [T][Hq][D], k and v [T][Hkv][D] for the new tokens of a batch.
struct NewTokens {
  std::vector<float> q, k, v;
};
NewTokens random_tokens(int32_t num_tokens, int32_t hq, int32_t hkv, int32_t d, Rng& rng);

// Runs the optimised kernel (plan + run) on a copy of `cache`, returning out; `cache` is
// updated in place.
std::vector<float> run_kernel(const Batch& batch, const rpa::AttentionParams& params,
                              const NewTokens& x, Cache& cache, int num_threads,
                              const rpa::Tuning& tuning = {});
std::vector<float> run_reference(const Batch& batch, const rpa::AttentionParams& params,
                                 const NewTokens& x, Cache& cache);

// |got - want| <= atol + rtol * |want| element-wise; reports the worst element with its
// (token, head, dim) coordinates.
::testing::AssertionResult outputs_close(const std::vector<float>& got,
                                         const std::vector<float>& want, int32_t hq, int32_t d,
                                         double atol, double rtol);
::testing::AssertionResult bitwise_equal(const std::vector<float>& a, const std::vector<float>& b);
// Pools and int8 row scales equal byte for byte (NaN poison included).
::testing::AssertionResult caches_equal(const Cache& got, const Cache& want);

}  // namespace rpa_test
