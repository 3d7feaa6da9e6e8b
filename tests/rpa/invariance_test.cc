// Properties the engine relies on, checked bit for bit: where pages sit in the pool does not
// matter, a sequence's result does not depend on the rest of the batch or on the thread
// count, a plan serves every layer, and positions past 2^16 work.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "rpa/rpa.h"
#include "rpa_test_util.h"

namespace rpa_test {
namespace {

rpa::AttentionParams params_for(int32_t hq, int32_t d) {
  rpa::AttentionParams p;
  p.num_q_heads = hq;
  p.sm_scale = 1.0f / std::sqrt(static_cast<float>(d));
  return p;
}

// Copies page `from` of src into page `to` of dst (K, V and int8 row scales).
void copy_page(const Cache& src, int32_t from, Cache& dst, int32_t to) {
  const rpa::CacheShape& s = src.shape;
  const size_t page_rows = static_cast<size_t>(s.num_kv_heads) * s.page_size;
  const size_t page_bytes = page_rows * s.head_dim * rpa::element_size(s.dtype);
  std::memcpy(&dst.k[to * page_bytes], &src.k[from * page_bytes], page_bytes);
  std::memcpy(&dst.v[to * page_bytes], &src.v[from * page_bytes], page_bytes);
  if (!src.k_row_scales.empty()) {
    std::copy_n(&src.k_row_scales[from * page_rows], page_rows, &dst.k_row_scales[to * page_rows]);
    std::copy_n(&src.v_row_scales[from * page_rows], page_rows, &dst.v_row_scales[to * page_rows]);
  }
}

class PagePermutationTest : public ::testing::TestWithParam<rpa::KvDType> {};

TEST_P(PagePermutationTest, MovingPagesInThePoolGivesBitwiseEqualOutputAndMovedCache) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  BatchSpec spec;
  spec.num_seqs = 9;
  spec.page_size = 16;
  spec.max_cached = 200;
  const Batch a = random_batch(spec, rng);
  Cache cache_a = make_cache(GetParam(), 2, 64, a, 16, rng);
  const NewTokens x = random_tokens(a.num_tokens(), 8, 2, 64, rng);

  // The same sequences with every pool page p moved to perm[p].
  std::vector<int32_t> perm(a.num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  Batch b = a;
  for (int32_t& page : b.page_indices)
    if (page >= 0) page = perm[page];
  Cache cache_b = cache_a;
  for (int32_t p = 0; p < a.num_pages; ++p) copy_page(cache_a, p, cache_b, perm[p]);

  const rpa::AttentionParams p = params_for(8, 64);
  const std::vector<float> out_a = run_kernel(a, p, x, cache_a, 2);
  const std::vector<float> out_b = run_kernel(b, p, x, cache_b, 2);
  EXPECT_TRUE(bitwise_equal(out_a, out_b));
  Cache moved = cache_b;
  for (int32_t q = 0; q < a.num_pages; ++q) copy_page(cache_b, perm[q], moved, q);
  EXPECT_TRUE(caches_equal(moved, cache_a));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PagePermutationTest,
                         ::testing::Values(rpa::KvDType::kF32, rpa::KvDType::kBF16,
                                           rpa::KvDType::kInt8),
                         [](const ::testing::TestParamInfo<rpa::KvDType>& info) {
                           return std::string(rpa::to_string(info.param));
                         });

struct InvarianceCase {
  rpa::KvDType dtype;
  int32_t window;
  float soft_cap;
  bool sinks;
};

class BatchInvarianceTest : public ::testing::TestWithParam<InvarianceCase> {};

TEST_P(BatchInvarianceTest, EverySequenceAloneEqualsItsRowsInABatchOf32AtAnyThreadCount) {
  const InvarianceCase c = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  const int32_t hq = 6, hkv = 2, d = 64, ps = 16;
  // 32 sequences over all three ranges; one decode is long enough to be split (default split
  // size 512 for decode items over both KV heads), so the merge order is covered too.
  std::vector<int32_t> q_lens, kv_lens;
  auto draw = [&](int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
  };
  for (int i = 0; i < 32; ++i) {
    const int32_t q = i < 14 ? 1 : i < 22 ? 24 : draw(1, 40);
    q_lens.push_back(q);
    kv_lens.push_back(i == 3 ? 4500 : q + draw(0, 150));
  }
  const int32_t dist[3] = {14, 22, 32};
  const Batch b = layout_batch(q_lens, kv_lens, dist, ps, rng);
  const Cache cache = make_cache(c.dtype, hkv, d, b, ps, rng);
  const NewTokens x = random_tokens(b.num_tokens(), hq, hkv, d, rng);
  const std::vector<float> sinks = random_floats(hq, rng, -2.0f, 2.0f);
  rpa::AttentionParams p = params_for(hq, d);
  p.sliding_window = c.window;
  p.soft_cap = c.soft_cap;
  p.sinks = c.sinks ? sinks.data() : nullptr;

  Cache batch_cache = cache;
  const std::vector<float> out = run_kernel(b, p, x, batch_cache, 2);
  for (int threads : {1, 4}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    Cache other = cache;
    EXPECT_TRUE(bitwise_equal(run_kernel(b, p, x, other, threads), out));
    EXPECT_TRUE(caches_equal(other, batch_cache));
  }

  const size_t row = static_cast<size_t>(hq) * d;
  for (int i = 0; i < b.num_seqs(); ++i) {
    SCOPED_TRACE("sequence " + std::to_string(i) + " q_len " + std::to_string(b.q_len(i)) +
                 " kv_len " + std::to_string(b.kv_lens[i]));
    const size_t t0 = b.cu_q_lens[i], t1 = b.cu_q_lens[i + 1];
    Cache single = cache;
    const std::vector<float> got =
        run_kernel(alone(b, i), p, tokens_of(b, x, i, hq, hkv, d), single, 1 + i % 2);
    EXPECT_TRUE(
        bitwise_equal(got, std::vector<float>(out.begin() + t0 * row, out.begin() + t1 * row)));
  }
}

INSTANTIATE_TEST_SUITE_P(Options, BatchInvarianceTest,
                         ::testing::Values(InvarianceCase{rpa::KvDType::kF32, 0, 0.0f, false},
                                           InvarianceCase{rpa::KvDType::kBF16, 37, 30.0f, true},
                                           InvarianceCase{rpa::KvDType::kInt8, 0, 0.0f, true}),
                         [](const ::testing::TestParamInfo<InvarianceCase>& info) {
                           return std::string(rpa::to_string(info.param.dtype)) +
                                  (info.param.window ? "_window" : "") +
                                  (info.param.soft_cap > 0 ? "_cap" : "") +
                                  (info.param.sinks ? "_sinks" : "");
                         });

// A decode work item may cover several KV heads (read one after the other per KV block):
// every head must see exactly the blocks and arithmetic it sees in an item of its own, so the
// output and the written cache are bitwise those of one head per item, for any grouping
// (including one that does not divide Hkv), split decodes and thread counts.
class DecodeHeadsPerItemTest : public ::testing::TestWithParam<rpa::KvDType> {};

TEST_P(DecodeHeadsPerItemTest, AnyGroupingOfKvHeadsGivesBitwiseEqualOutputAndCache) {
  const rpa::KvDType dtype = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  const int32_t hq = 10, hkv = 5, d = 80, ps = 16;
  std::vector<int32_t> q_lens, kv_lens;
  for (int i = 0; i < 12; ++i) {
    const int32_t q = i < 9 ? 1 : 7;
    q_lens.push_back(q);
    kv_lens.push_back(q + std::uniform_int_distribution<int32_t>(0, 400)(rng));
  }
  const int32_t dist[3] = {9, 12, 12};
  const Batch b = layout_batch(q_lens, kv_lens, dist, ps, rng);
  const Cache cache = make_cache(dtype, hkv, d, b, ps, rng);
  const NewTokens x = random_tokens(b.num_tokens(), hq, hkv, d, rng);
  const std::vector<float> sinks = random_floats(hq, rng, -2.0f, 2.0f);
  rpa::AttentionParams p = params_for(hq, d);
  p.sliding_window = 300;
  p.sinks = sinks.data();

  rpa::Tuning t;
  t.decode_kv_block = 23;  // odd: a padding key in every block
  t.split_kv_tokens = 96;  // most decodes are split
  t.decode_heads_per_item = 1;
  Cache one_cache = cache;
  const std::vector<float> one = run_kernel(b, p, x, one_cache, 2, t);
  for (int32_t heads : {2, 3, 5, 0}) {
    for (int threads : {1, 3}) {
      SCOPED_TRACE("heads per item " + std::to_string(heads) + ", threads " +
                   std::to_string(threads));
      t.decode_heads_per_item = heads;
      Cache other = cache;
      EXPECT_TRUE(bitwise_equal(run_kernel(b, p, x, other, threads, t), one));
      EXPECT_TRUE(caches_equal(other, one_cache));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DecodeHeadsPerItemTest,
                         ::testing::Values(rpa::KvDType::kF32, rpa::KvDType::kBF16,
                                           rpa::KvDType::kF16, rpa::KvDType::kInt8,
                                           rpa::KvDType::kFp8E4M3),
                         [](const ::testing::TestParamInfo<rpa::KvDType>& info) {
                           return std::string(rpa::to_string(info.param));
                         });

// A plan is made once per step and run for every layer: different caches and inputs.
TEST(PlanReuse, OnePlanServesSeveralLayersAndIsNotChangedByRunning) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  BatchSpec spec;
  spec.num_seqs = 12;
  spec.page_size = 16;
  const Batch b = random_batch(spec, rng);
  const int32_t hq = 8, hkv = 2, d = 96;
  const rpa::AttentionParams p = params_for(hq, d);
  std::vector<Cache> layers;
  std::vector<NewTokens> inputs;
  for (int l = 0; l < 4; ++l) {
    layers.push_back(make_cache(rpa::KvDType::kBF16, hkv, d, b, 16, rng));
    inputs.push_back(random_tokens(b.num_tokens(), hq, hkv, d, rng));
  }
  const std::vector<Cache> initial = layers;

  kdr::ThreadPool pool(2);
  const rpa::Plan plan = rpa::make_plan(b.view(), layers[0].shape, p, pool.num_threads());
  EXPECT_EQ(plan.num_seqs(), b.num_seqs());
  EXPECT_EQ(plan.num_tokens(), b.num_tokens());
  std::vector<std::vector<float>> outs;
  for (int l = 0; l < 4; ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    std::vector<float> out(inputs[l].q.size());
    rpa::KvCache view = layers[l].view();
    rpa::run(plan, inputs[l].q.data(), inputs[l].k.data(), inputs[l].v.data(), view, out.data(),
             &pool);
    Cache want_cache = initial[l];
    const std::vector<float> want = run_reference(b, p, inputs[l], want_cache);
    EXPECT_TRUE(outputs_close(out, want, hq, d, 1e-4, 1e-4));
    EXPECT_TRUE(caches_equal(layers[l], want_cache));
    outs.push_back(out);
  }
  // Running layer 0 again, after the others, from its initial cache repeats it exactly.
  Cache again = initial[0];
  std::vector<float> out(inputs[0].q.size());
  rpa::KvCache view = again.view();
  rpa::run(plan, inputs[0].q.data(), inputs[0].k.data(), inputs[0].v.data(), view, out.data(),
           &pool);
  EXPECT_TRUE(bitwise_equal(out, outs[0]));
  EXPECT_TRUE(caches_equal(again, layers[0]));
}

// Regression for 16-bit position arithmetic (upstream broke Gemma-3 past 32K tokens): a decode
// at 70,000, a prefill chunk straddling 65,536 and a mixed chunk at the end of 70,001.
TEST(LongContext, PositionsBeyond65536MatchReference) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  const std::vector<int32_t> q_lens = {1, 8, 3};
  const std::vector<int32_t> kv_lens = {70000, 65540, 70001};
  const int32_t dist[3] = {1, 2, 3};
  const int32_t hq = 2, hkv = 1, d = 64, ps = 128;
  const Batch b = layout_batch(q_lens, kv_lens, dist, ps, rng);
  Cache cache = make_cache(rpa::KvDType::kBF16, hkv, d, b, ps, rng);
  const NewTokens x = random_tokens(b.num_tokens(), hq, hkv, d, rng);
  const rpa::AttentionParams p = params_for(hq, d);
  Cache want_cache = cache;
  const std::vector<float> want = run_reference(b, p, x, want_cache);
  const std::vector<float> got = run_kernel(b, p, x, cache, 2);
  // Averages of ~70,000 random values are small (~0.002), so the absolute tolerance is
  // tightened: attending to a wrapped (mod 2^16) range would move them by ~1e-3.
  EXPECT_TRUE(outputs_close(got, want, hq, d, 1e-5, 1e-4));
  EXPECT_TRUE(caches_equal(cache, want_cache));
}

}  // namespace
}  // namespace rpa_test
