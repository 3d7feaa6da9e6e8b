// rpa::run against rpa::reference over a sampled matrix of docs/rpa.md section 4: every KV
// dtype x every head dim, with page size, thread count, head configuration, causal, sliding
// window, soft cap, sinks, batch size, distribution mix and tile sizes spread evenly over the
// cases. Outputs must be close; the updated cache must be identical byte for byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "rpa/rpa.h"
#include "rpa_test_util.h"

namespace rpa_test {
namespace {

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return rpa_test::case_name(info.param, info.index);
}

class KernelMatrixTest : public ::testing::TestWithParam<Case> {};

TEST_P(KernelMatrixTest, MatchesReferenceAndWritesTheSameCacheBytes) {
  const Case c = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  CaseData data = make_case_data(c, seed);
  const Batch& b = data.batch;
  Cache& cache = data.cache;
  const NewTokens& x = data.x;
  const rpa::AttentionParams p = data.params();
  const rpa::Tuning tuning = data.tuning;

  Cache want_cache = cache;
  const std::vector<float> want = run_reference(b, p, x, want_cache);
  const std::vector<float> got = run_kernel(b, p, x, cache, c.threads, tuning);

  // The kernel accumulates in f32 with an online softmax, the reference in double. With inputs
  // in [-1, 1] the outputs are convex combinations of values in [-1, 1]; the f32 error of a
  // D <= 256 dot product and of the softmax sums stays around 1e-6, so 1e-4 absolute (+1e-4
  // relative) leaves a wide margin while any masking, scaling or position error shows up as
  // 1e-2 or more. Quantized caches need no more: both sides read the same dequantized bytes
  // (the int8 decode also rounds Q to int16, one scale per row: ~1e-6 on these outputs).
  EXPECT_TRUE(outputs_close(got, want, c.hq, c.head_dim, 1e-4, 1e-4));
  EXPECT_TRUE(caches_equal(cache, want_cache));
}

INSTANTIATE_TEST_SUITE_P(Matrix, KernelMatrixTest, ::testing::ValuesIn(kernel_matrix()), case_name);

// Every specialised path alone and all three together, at a size where tiles and pages have
// ragged edges, on the two most common caches.
struct PathCase {
  Mix mix;
  rpa::KvDType dtype;
};

class KernelPathTest : public ::testing::TestWithParam<PathCase> {};

TEST_P(KernelPathTest, EachDistributionRangeMatchesReference) {
  const PathCase pc = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  BatchSpec spec;
  spec.num_seqs = 17;
  spec.mix = pc.mix;
  spec.page_size = 16;
  spec.max_cached = 300;
  spec.prefill_chunk = 37;
  spec.max_mixed_q = 70;
  const Batch b = random_batch(spec, rng);
  Cache cache = make_cache(pc.dtype, 2, 64, b, 16, rng);
  const NewTokens x = random_tokens(b.num_tokens(), 8, 2, 64, rng);
  rpa::AttentionParams p;
  p.num_q_heads = 8;
  p.sm_scale = 0.125f;
  Cache want_cache = cache;
  const std::vector<float> want = run_reference(b, p, x, want_cache);
  const std::vector<float> got = run_kernel(b, p, x, cache, 2);
  EXPECT_TRUE(outputs_close(got, want, 8, 64, 1e-4, 1e-4));
  EXPECT_TRUE(caches_equal(cache, want_cache));
}

INSTANTIATE_TEST_SUITE_P(Paths, KernelPathTest,
                         ::testing::Values(PathCase{Mix::kDecode, rpa::KvDType::kF32},
                                           PathCase{Mix::kPrefill, rpa::KvDType::kF32},
                                           PathCase{Mix::kMixed, rpa::KvDType::kF32},
                                           PathCase{Mix::kAll, rpa::KvDType::kF32},
                                           PathCase{Mix::kDecode, rpa::KvDType::kBF16},
                                           PathCase{Mix::kPrefill, rpa::KvDType::kBF16},
                                           PathCase{Mix::kMixed, rpa::KvDType::kBF16},
                                           PathCase{Mix::kAll, rpa::KvDType::kBF16}),
                         [](const ::testing::TestParamInfo<PathCase>& info) {
                           return std::string(to_string(info.param.mix)) + "_" +
                                  rpa::to_string(info.param.dtype);
                         });

// A decode longer than the default split size is split at fixed positions and merged.
TEST(KernelSplitKv, LongDecodesWithDefaultSplitMatchReference) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  const std::vector<int32_t> q_lens = {1, 1, 1, 9};
  const std::vector<int32_t> kv_lens = {5000, 2049, 17, 4100};
  const int32_t dist[3] = {3, 3, 4};
  const Batch b = layout_batch(q_lens, kv_lens, dist, 64, rng);
  Cache cache = make_cache(rpa::KvDType::kBF16, 2, 64, b, 64, rng);
  const NewTokens x = random_tokens(b.num_tokens(), 4, 2, 64, rng);
  rpa::AttentionParams p;
  p.num_q_heads = 4;
  p.sm_scale = 0.125f;
  Cache want_cache = cache;
  const std::vector<float> want = run_reference(b, p, x, want_cache);
  const std::vector<float> got = run_kernel(b, p, x, cache, 2);
  EXPECT_TRUE(outputs_close(got, want, 4, 64, 1e-4, 1e-4));
  EXPECT_TRUE(caches_equal(cache, want_cache));
}

// Decodes read K/V rows in place from the pages (bf16, f16, f32, int8; fp8 through f16 copies
// in scratch): head dims that are
// not a multiple of 16 (a tail after the 16-element chunks) or that leave each narrower PV
// block of the odd rows (d 40, 72, 136), odd KV blocks (a padding key), splits, a sliding
// window, a soft cap, and query groups of 1 to 7 rows (the 4-row blocks, then a pair and/or
// a single row: MHA is 1, GQA 2 is 2) over 2 KV heads (an item reads both, prefetching the
// second head's rows while it computes the first), on 1 and 2 threads, with outputs bitwise
// equal across the thread counts.
TEST(KernelDecodeDirect, EveryDirectDtypeAndHeadDimMatchesReference) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  for (rpa::KvDType dt : {rpa::KvDType::kBF16, rpa::KvDType::kF16, rpa::KvDType::kF32,
                          rpa::KvDType::kInt8, rpa::KvDType::kFp8E4M3}) {
    for (int32_t d : {8, 24, 40, 72, 128, 136}) {
      for (int32_t group : {1, 2, 3, 4, 5, 6, 7}) {
        const int32_t hkv = 2, hq = group * hkv;
        SCOPED_TRACE(std::string(rpa::to_string(dt)) + " d" + std::to_string(d) + " group" +
                     std::to_string(group));
        const std::vector<int32_t> q_lens = {1, 1, 1, 1};
        const std::vector<int32_t> kv_lens = {1, 37, 200, 131};
        const int32_t dist[3] = {4, 4, 4};
        const Batch b = layout_batch(q_lens, kv_lens, dist, 16, rng);
        Cache cache = make_cache(dt, hkv, d, b, 16, rng);
        const NewTokens x = random_tokens(b.num_tokens(), hq, hkv, d, rng);
        rpa::AttentionParams p;
        p.num_q_heads = hq;
        p.sm_scale = 1.0f / std::sqrt(static_cast<float>(d));
        if (group % 2 == 1) {
          p.sliding_window = 100;
          p.soft_cap = 30.0f;
        }
        rpa::Tuning t;
        t.decode_kv_block = 23;  // odd: a padding key in every block
        t.split_kv_tokens = 64;
        Cache want_cache = cache;
        const std::vector<float> want = run_reference(b, p, x, want_cache);
        Cache cache2 = cache, cache3 = cache;
        const std::vector<float> got = run_kernel(b, p, x, cache, 1, t);
        const std::vector<float> got2 = run_kernel(b, p, x, cache2, 2, t);
        const std::vector<float> got3 = run_kernel(b, p, x, cache3, 2);  // default tiles
        EXPECT_TRUE(outputs_close(got, want, hq, d, 1e-4, 1e-4));
        EXPECT_TRUE(outputs_close(got3, want, hq, d, 1e-4, 1e-4));
        EXPECT_TRUE(caches_equal(cache, want_cache));
        EXPECT_TRUE(caches_equal(cache3, want_cache));
        EXPECT_TRUE(bitwise_equal(got, got2));
      }
    }
  }
}

// Prefill and mixed tiles: the outer-product QK and the 6/4/2-row PV blocks over head dims
// with a tail of one vector (not a multiple of 16), query-row counts leaving each remainder
// of 6, and KV blocks that are not a multiple of the vector length.
TEST(KernelPrefillTiles, RowAndHeadDimRemaindersMatchReference) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  for (rpa::KvDType dt : {rpa::KvDType::kBF16, rpa::KvDType::kF32, rpa::KvDType::kInt8}) {
    for (int32_t d : {8, 40, 72, 136}) {
      for (int32_t hq : {1, 3, 4, 5}) {
        SCOPED_TRACE(std::string(rpa::to_string(dt)) + " d" + std::to_string(d) + " hq" +
                     std::to_string(hq));
        const std::vector<int32_t> q_lens = {1, 7, 7, 3, 5, 2};
        const std::vector<int32_t> kv_lens = {30, 7, 40, 60, 5, 90};
        const int32_t dist[3] = {1, 3, 6};
        const Batch b = layout_batch(q_lens, kv_lens, dist, 16, rng);
        Cache cache = make_cache(dt, 1, d, b, 16, rng);
        const NewTokens x = random_tokens(b.num_tokens(), hq, 1, d, rng);
        rpa::AttentionParams p;
        p.num_q_heads = hq;
        p.sm_scale = 1.0f / std::sqrt(static_cast<float>(d));
        rpa::Tuning t;
        t.prefill_q_block = 5;
        t.prefill_kv_block = 13;
        Cache want_cache = cache;
        const std::vector<float> want = run_reference(b, p, x, want_cache);
        Cache cache2 = cache;
        const std::vector<float> got = run_kernel(b, p, x, cache, 1, t);
        const std::vector<float> got2 = run_kernel(b, p, x, cache2, 2);  // default tiles
        EXPECT_TRUE(outputs_close(got, want, hq, d, 1e-4, 1e-4));
        EXPECT_TRUE(outputs_close(got2, want, hq, d, 1e-4, 1e-4));
        EXPECT_TRUE(caches_equal(cache, want_cache));
      }
    }
  }
}

// Sequences may share fully cached prefix pages (a prefix cache) as long as no page that
// receives new tokens is mapped twice.
TEST(KernelSharedPrefix, SequencesReadingOneCachedPageMatchReference) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  const std::vector<int32_t> q_lens = {1, 1, 5};
  const std::vector<int32_t> kv_lens = {20, 30, 25};
  const int32_t dist[3] = {2, 2, 3};
  Batch b = layout_batch(q_lens, kv_lens, dist, 16, rng);
  // Fill the cache, then make sequences 1 and 2 share sequence 0's first (full) page.
  Cache cache = make_cache(rpa::KvDType::kF16, 1, 64, b, 16, rng);
  b.page_indices[1 * b.pages_per_seq] = b.page_indices[0];
  b.page_indices[2 * b.pages_per_seq] = b.page_indices[0];
  const NewTokens x = random_tokens(b.num_tokens(), 3, 1, 64, rng);
  rpa::AttentionParams p;
  p.num_q_heads = 3;
  p.sm_scale = 0.125f;
  Cache want_cache = cache;
  const std::vector<float> want = run_reference(b, p, x, want_cache);
  const std::vector<float> got = run_kernel(b, p, x, cache, 2);
  EXPECT_TRUE(outputs_close(got, want, 3, 64, 1e-4, 1e-4));
  EXPECT_TRUE(caches_equal(cache, want_cache));
}

// An empty step (no sequences) is valid and touches nothing.
TEST(KernelEmpty, EmptyBatchWritesNothing) {
  const uint64_t seed = test_seed();
  Rng rng(seed);
  const int32_t dist[3] = {0, 0, 0};
  const Batch b = layout_batch({}, {}, dist, 16, rng, 4);
  Cache cache = make_cache(rpa::KvDType::kF32, 1, 64, b, 16, rng);
  const Cache before = cache;
  rpa::AttentionParams p;
  p.num_q_heads = 2;
  const std::vector<float> got = run_kernel(b, p, NewTokens{}, cache, 2);
  EXPECT_TRUE(got.empty());
  EXPECT_TRUE(caches_equal(cache, before));
}

}  // namespace
}  // namespace rpa_test
