// Seeded rpa test cases with no test framework: ragged batches, owned KV caches, random
// activations, the kernel test matrix and the comparisons every check makes. Shared by the
// CPU tests (through rpa_test_util.h, which adds GoogleTest assertions) and the GPU test
// program (tests/rpa_cuda), so both check the same cases against rpa::reference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iosfwd>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "rpa/rpa.h"

namespace rpa_test {

using Rng = std::mt19937_64;

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

std::vector<float> run_reference(const Batch& batch, const rpa::AttentionParams& params,
                                 const NewTokens& x, Cache& cache);

// One sequence of a batch as a batch of its own, on the same pool and page table row, in the
// range of the distribution it had.
Batch alone(const Batch& b, int i);
// Sequence i's new tokens of x (q [Hq][D], k and v [Hkv][D] per token).
NewTokens tokens_of(const Batch& b, const NewTokens& x, int i, int32_t hq, int32_t hkv, int32_t d);

// One case of the kernel matrix (docs/rpa.md section 4): the axes a case varies.
struct Case {
  rpa::KvDType dtype = rpa::KvDType::kF32;
  int32_t head_dim = 128;
  int32_t page_size = 16;
  int32_t threads = 1;
  int32_t hq = 4, hkv = 1;
  bool causal = true;
  int32_t window = 0;
  float soft_cap = 0.0f;
  bool sinks = false;
  int32_t num_seqs = 1;
  Mix mix = Mix::kAll;
  bool odd_tiles = false;  // small, odd tile sizes and split-KV every 48 tokens
};
std::string case_name(const Case& c, size_t index);
// GoogleTest prints a parameter with this (else as raw bytes, padding included, in test lists).
void PrintTo(const Case& c, std::ostream* os);

// `n` values cycling through `values`, shuffled: every value equally often. Each axis of a
// matrix gets such a column, shuffled independently with a fixed seed, so the case list is
// stable across runs while the axes stay uncorrelated; the data inside each case comes from
// the printed random seed.
template <typename T>
std::vector<T> balanced_column(const std::vector<T>& values, size_t n, std::mt19937& rng) {
  std::vector<T> col(n);
  for (size_t i = 0; i < n; ++i) col[i] = values[i % values.size()];
  std::shuffle(col.begin(), col.end(), rng);
  return col;
}

// The values each axis of a case matrix takes (the dtype and head dim are the matrix's own).
struct AxisValues {
  std::vector<int32_t> page_sizes;
  std::vector<int32_t> threads{1, 2, 4};
  std::vector<std::pair<int32_t, int32_t>> heads;  // (hq, hkv)
  std::vector<bool> causal{true, false};
  std::vector<int32_t> windows{0, 5, 128};
  std::vector<float> soft_caps{0.0f, 50.0f};
  std::vector<bool> sinks{false, true};
  std::vector<int32_t> num_seqs{1, 17};
  std::vector<Mix> mixes;  // empty: every case keeps its own mix
  std::vector<bool> odd_tiles{false, false, true};
};
// Gives every case one value of each axis from a balanced column per axis, drawn from
// `structure` in the order of AxisValues' fields.
void spread_axes(std::vector<Case>& cases, const AxisValues& values, std::mt19937& structure);

// Every KV dtype x every head dim, plus extra cases leaning on the common f32/bf16 caches,
// with the other axes spread evenly by a fixed seed: the list is the same on every run.
std::vector<Case> kernel_matrix();

// The batch of a case: about 10^7 multiply-adds of reference work (sequences shrink as the
// width Hq x D and the number of sequences grow, and by `extra_shrink`), prefill-range
// sequences of `prefill_chunk` tokens before shrinking.
BatchSpec case_batch_spec(const Case& c, int32_t prefill_chunk, int32_t extra_shrink = 1);

// A case made concrete from a seed: the batch, a filled cache, new tokens and parameters.
struct CaseData {
  Batch batch;
  Cache cache;
  NewTokens x;
  std::vector<float> sinks;  // [hq], used when the case has sinks
  bool has_sinks = false;
  rpa::AttentionParams base_params;
  rpa::Tuning tuning;  // the CPU kernel's tile sizes for the case (odd_tiles)

  // base_params with sinks pointing into this object.
  rpa::AttentionParams params() const;
};
// The batch from case_batch_spec(c, 40), or from `spec`.
CaseData make_case_data(const Case& c, uint64_t seed);
CaseData make_case_data(const Case& c, uint64_t seed, const BatchSpec& spec);

// Comparisons: an empty string when they hold, else a message naming the first or worst
// difference with its coordinates.
// |got - want| <= atol + rtol * |want| element-wise (NaN on either side fails).
std::string compare_outputs(const std::vector<float>& got, const std::vector<float>& want,
                            int32_t hq, int32_t d, double atol, double rtol);
std::string compare_bitwise(const std::vector<float>& a, const std::vector<float>& b);
// Pools and int8 row scales equal byte for byte (NaN poison included).
std::string compare_caches(const Cache& got, const Cache& want);

}  // namespace rpa_test
