// Parallel samples (Request::n > 1) on a tiny model: the prompt is prefilled once and forked;
// each sample equals the same request run alone with that sample's seed, whether it ran on the
// shared prompt blocks, waited for a seat, or was preempted and recomputed; the prompt's full
// blocks are held once; cancelling the request ends and frees every sample.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <utility>

#include "../base/seed.h"
#include "base/thread_pool.h"
#include "engine/engine.h"
#include "model/forward.h"
#include "reference_generate.h"

namespace kdr::engine {
namespace {

const std::string kDir = std::string(KDR_SOURCE_DIR) + "/tests/data/models/";

using kdr_test::test_seed;

class ParallelSamplesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lm_ = new LoadedModel(LoadedModel::load(kDir + "qwen3.gguf"));
    pool_ = new ThreadPool(2);
  }
  static void TearDownTestSuite() {
    delete lm_;
    delete pool_;
  }

  static std::vector<int32_t> prompt(std::mt19937_64& rng, int n) {
    std::uniform_int_distribution<int32_t> tok(0, lm_->model->config().vocab_size - 1);
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (auto& t : p) t = tok(rng);
    return p;
  }

  static Request sampled(const std::vector<int32_t>& p, int32_t max_tokens, uint64_t seed,
                         int32_t n) {
    Request r;
    r.prompt = p;
    r.max_tokens = max_tokens;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = seed;
    r.ignore_eos = true;
    r.logprobs = 2;
    r.n = n;
    return r;
  }

  // What the independent single-sequence loop produces with these sampling params.
  static std::vector<int32_t> alone(const std::vector<int32_t>& p, int32_t max_tokens,
                                    const SamplingParams& sampling) {
    ReferenceOptions o;
    o.max_tokens = max_tokens;
    o.sampling = sampling;
    return reference_generate(*lm_, *pool_, p, o);
  }

  static EngineOptions tiny_pool(int32_t blocks, int32_t page_size) {
    EngineOptions o;
    o.page_size = page_size;
    o.max_batched_tokens = 64;
    o.kv_memory_bytes = static_cast<int64_t>(
        blocks * page_size * model::KvCacheSet::bytes_per_token(lm_->model->config(), o.kv_dtype));
    return o;
  }

  // Every Output by (request, sample).
  struct Sink {
    std::map<std::pair<uint64_t, int32_t>, std::vector<Output>> outputs;
    OutputCallback callback() {
      return [this](const Output& o) { outputs[{o.request_id, o.index}].push_back(o); };
    }
    std::vector<int32_t> tokens(uint64_t id, int32_t i) const {
      std::vector<int32_t> t;
      for (const Output& o : outputs.at({id, i}))
        t.insert(t.end(), o.tokens.begin(), o.tokens.end());
      return t;
    }
    std::vector<float> logprobs(uint64_t id, int32_t i) const {
      std::vector<float> t;
      for (const Output& o : outputs.at({id, i}))
        t.insert(t.end(), o.logprobs.begin(), o.logprobs.end());
      return t;
    }
    std::string text(uint64_t id, int32_t i) const {
      std::string t;
      for (const Output& o : outputs.at({id, i})) t += o.text;
      return t;
    }
    const Output& last(uint64_t id, int32_t i) const { return outputs.at({id, i}).back(); }
    // Outputs with finished set, per sample: exactly one each, and the last.
    void expect_one_end_each(uint64_t id, int32_t n) const {
      for (int32_t i = 0; i < n; ++i) {
        const auto& v = outputs.at({id, i});
        int ends = 0;
        for (const Output& o : v) ends += o.finished;
        EXPECT_EQ(ends, 1) << "sample " << i;
        EXPECT_TRUE(v.back().finished) << "sample " << i;
      }
    }
  };

  static LoadedModel* lm_;
  static ThreadPool* pool_;
};

LoadedModel* ParallelSamplesTest::lm_ = nullptr;
ThreadPool* ParallelSamplesTest::pool_ = nullptr;

TEST_F(ParallelSamplesTest, EachSampleEqualsTheRequestAloneWithItsSeed) {
  std::mt19937_64 rng(test_seed());
  // 37 tokens on pages of 8: four full prompt blocks shared, a partial one copied.
  const auto p = prompt(rng, 37);
  const uint64_t seed = rng();
  const int32_t n = 4, max_tokens = 12;
  EngineOptions o;
  o.page_size = 8;
  o.kv_memory_bytes = 4 << 20;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  const uint64_t id = engine.submit(sampled(p, max_tokens, seed, n), sink.callback());
  engine.run_until_idle();
  sink.expect_one_end_each(id, n);
  std::set<std::vector<int32_t>> distinct;
  // The reference: the same request with n = 1 and sample i's seed, on a fresh engine.
  Engine ref(*lm_, *pool_, o);
  Sink ref_sink;
  for (int32_t i = 0; i < n; ++i) {
    const uint64_t one = ref.submit(sampled(p, max_tokens, seed + i, 1), ref_sink.callback());
    ref.run_until_idle();
    SamplingParams sp = sampled(p, max_tokens, seed + i, 1).sampling;
    EXPECT_EQ(sink.tokens(id, i), alone(p, max_tokens, sp)) << "sample " << i;
    EXPECT_EQ(sink.tokens(id, i), ref_sink.tokens(one, 0)) << "sample " << i;
    EXPECT_EQ(sink.logprobs(id, i), ref_sink.logprobs(one, 0)) << "sample " << i;
    EXPECT_EQ(sink.text(id, i), ref_sink.text(one, 0)) << "sample " << i;
    const Output& last = sink.last(id, i);
    EXPECT_EQ(last.finish_reason, "length");
    EXPECT_EQ(last.completion_tokens, max_tokens);
    EXPECT_EQ(last.prompt_tokens, 37);
    distinct.insert(sink.tokens(id, i));
  }
  // At temperature 1 on a model this small, four samples of 12 tokens all differ.
  EXPECT_EQ(distinct.size(), static_cast<size_t>(n));
  const EngineStats st = engine.stats();
  EXPECT_EQ(st.prompt_tokens, 37);  // prefilled once
  EXPECT_EQ(st.generation_tokens, n * max_tokens);
  EXPECT_EQ(st.samples_forked, n - 1);
  EXPECT_EQ(st.requests_finished, 1);
  EXPECT_EQ(st.time_to_first_token.count, 1u);
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.kv_blocks_shared, 0);
}

TEST_F(ParallelSamplesTest, ExplicitSeedsAndGreedySamples) {
  std::mt19937_64 rng(test_seed());
  const auto p = prompt(rng, 16);  // a whole number of pages: nothing to copy at the fork
  EngineOptions o;
  o.page_size = 8;
  o.kv_memory_bytes = 4 << 20;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  Request r = sampled(p, 9, 0, 3);
  r.seeds = {rng(), rng(), rng()};
  const uint64_t id = engine.submit(r, sink.callback());
  Request g = sampled(p, 9, 0, 3);
  g.sampling.temperature = 0.0f;
  const uint64_t greedy = engine.submit(g, sink.callback());
  engine.run_until_idle();
  SamplingParams gp = g.sampling;
  const auto want_greedy = alone(p, 9, gp);
  for (int32_t i = 0; i < 3; ++i) {
    SamplingParams sp = r.sampling;
    sp.seed = r.seeds[static_cast<size_t>(i)];
    EXPECT_EQ(sink.tokens(id, i), alone(p, 9, sp)) << "sample " << i;
    EXPECT_EQ(sink.tokens(greedy, i), want_greedy) << "greedy sample " << i;
  }
  sink.expect_one_end_each(id, 3);
  sink.expect_one_end_each(greedy, 3);
}

TEST_F(ParallelSamplesTest, ThePromptsFullBlocksAreHeldOnceDuringDecode) {
  std::mt19937_64 rng(test_seed());
  const int32_t ps = 8, len = 37, n = 3, full = len / ps;
  const auto p = prompt(rng, len);
  EngineOptions o;
  o.page_size = ps;
  o.kv_memory_bytes = 4 << 20;
  o.prefix_caching = false;  // blocks are shared by the fork alone
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  const uint64_t id = engine.submit(sampled(p, 20, rng(), n), sink.callback());
  auto blocks_of = [&](int32_t kv_tokens) { return (kv_tokens + ps - 1) / ps; };
  ASSERT_TRUE(engine.step());  // the prompt in one step, then the fork
  EngineStats st = engine.stats();
  EXPECT_EQ(st.samples_forked, n - 1);
  EXPECT_EQ(st.kv_blocks_shared, full);
  // The parent's 5 blocks and a copy of the partial one per extra sample; n separate
  // requests would hold n * 5.
  EXPECT_EQ(st.kv_blocks_used, blocks_of(len) + (n - 1));
  EXPECT_EQ(st.running, n);
  for (int32_t k = 1; k < 12; ++k) {
    ASSERT_TRUE(engine.step());
    st = engine.stats();
    // After k decode steps each sample holds the K/V of len + k tokens.
    const int32_t own = blocks_of(len + k) - full;
    EXPECT_EQ(st.kv_blocks_used, full + n * own) << "after decode step " << k;
    EXPECT_EQ(st.kv_blocks_shared, full) << "after decode step " << k;
  }
  EXPECT_EQ(st.prompt_tokens, len);
  engine.run_until_idle();
  sink.expect_one_end_each(id, n);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_F(ParallelSamplesTest, ForkedSamplesPreemptedUnderKvPressureKeepTheirOutputs) {
  std::mt19937_64 rng(test_seed());
  // 24 blocks of 4 tokens: the prompt's 5 blocks plus 3 samples of 30 tokens need 29.
  const auto p = prompt(rng, 20);
  const auto other = prompt(rng, 13);
  const uint64_t seed = rng();
  Engine engine(*lm_, *pool_, tiny_pool(24, 4));
  Sink sink;
  const uint64_t id = engine.submit(sampled(p, 30, seed, 3), sink.callback());
  const uint64_t b = engine.submit(sampled(other, 20, seed, 2), sink.callback());
  engine.run_until_idle();
  const EngineStats st = engine.stats();
  EXPECT_GT(st.preemptions, 0);
  for (int32_t i = 0; i < 3; ++i) {
    SamplingParams sp = sampled(p, 30, seed + i, 1).sampling;
    EXPECT_EQ(sink.tokens(id, i), alone(p, 30, sp)) << "sample " << i;
  }
  for (int32_t i = 0; i < 2; ++i) {
    SamplingParams sp = sampled(other, 20, seed + i, 1).sampling;
    EXPECT_EQ(sink.tokens(b, i), alone(other, 20, sp)) << "sample " << i << " of the second";
  }
  sink.expect_one_end_each(id, 3);
  sink.expect_one_end_each(b, 2);
  EXPECT_EQ(st.requests_finished, 2);
  EXPECT_EQ(st.kv_blocks_used, 0);
}

TEST_F(ParallelSamplesTest, SamplesBeyondTheSeatLimitWaitAndStillMatch) {
  std::mt19937_64 rng(test_seed());
  const auto p = prompt(rng, 11);
  const uint64_t seed = rng();
  EngineOptions o;
  o.page_size = 4;
  o.kv_memory_bytes = 4 << 20;
  o.max_num_seqs = 2;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  const uint64_t id = engine.submit(sampled(p, 8, seed, 5), sink.callback());
  ASSERT_TRUE(engine.step());
  EngineStats st = engine.stats();
  EXPECT_EQ(st.running, 2);
  EXPECT_EQ(st.waiting, 3);
  engine.run_until_idle();
  for (int32_t i = 0; i < 5; ++i) {
    SamplingParams sp = sampled(p, 8, seed + i, 1).sampling;
    EXPECT_EQ(sink.tokens(id, i), alone(p, 8, sp)) << "sample " << i;
  }
  sink.expect_one_end_each(id, 5);
  st = engine.stats();
  // The waiting samples found the two full prompt blocks in the prefix cache.
  EXPECT_EQ(st.prompt_tokens, 11 + 3 * 3);
  EXPECT_EQ(st.kv_blocks_used, 0);
}

TEST_F(ParallelSamplesTest, CancelEndsEverySampleAndFreesAllBlocks) {
  std::mt19937_64 rng(test_seed());
  const auto p = prompt(rng, 29);
  EngineOptions o;
  o.page_size = 8;
  o.kv_memory_bytes = 4 << 20;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  const uint64_t id = engine.submit(sampled(p, 100, rng(), 4), sink.callback());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(engine.step());
  EXPECT_EQ(engine.stats().running, 4);
  EXPECT_GT(engine.stats().kv_blocks_shared, 0);
  engine.cancel(id);
  EXPECT_FALSE(engine.step());
  sink.expect_one_end_each(id, 4);
  for (int32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(sink.last(id, i).finish_reason, "cancelled");
    EXPECT_EQ(sink.last(id, i).completion_tokens, 3);
  }
  EngineStats st = engine.stats();
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.kv_blocks_shared, 0);
  EXPECT_EQ(st.requests_cancelled, 1);
  EXPECT_EQ(st.requests_finished, 1);

  // Cancelled before its prompt was done: every sample still ends, once.
  o.max_batched_tokens = 8;
  o.itl_target_ms = 1e-6;
  o.min_prefill_chunk = 8;
  Engine slow(*lm_, *pool_, o);
  Sink sink2;
  const uint64_t early = slow.submit(sampled(p, 10, 1, 3), sink2.callback());
  ASSERT_TRUE(slow.step());  // 8 of 29 prompt tokens
  slow.cancel(early);
  EXPECT_FALSE(slow.step());
  sink2.expect_one_end_each(early, 3);
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(sink2.last(early, i).finish_reason, "cancelled");
  EXPECT_EQ(slow.stats().kv_blocks_used, 0);
  EXPECT_EQ(slow.stats().requests_finished, 1);
}

// Every architecture (Gemma 3's sliding window included): sampled and greedy forks match the
// independent single-sequence loop (reference_generate.h).
class ParallelSamplesEveryModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ParallelSamplesEveryModelTest, SamplesMatchTheGeneratorWithTheirSeeds) {
  std::mt19937_64 rng(test_seed());
  const LoadedModel lm = LoadedModel::load(kDir + GetParam() + ".gguf");
  ThreadPool pool(2);
  std::uniform_int_distribution<int32_t> tok(0, lm.model->config().vocab_size - 1);
  std::vector<int32_t> p(static_cast<size_t>(std::uniform_int_distribution<int>(2, 40)(rng)));
  for (auto& t : p) t = tok(rng);
  EngineOptions o;
  o.page_size = 8;
  o.kv_memory_bytes = 4 << 20;
  Engine engine(lm, pool, o);
  std::map<std::pair<uint64_t, int32_t>, std::vector<int32_t>> got;
  auto sink = [&](const Output& out) {
    auto& v = got[{out.request_id, out.index}];
    v.insert(v.end(), out.tokens.begin(), out.tokens.end());
  };
  Request r;
  r.prompt = p;
  r.max_tokens = 10;
  r.ignore_eos = true;
  r.n = 3;
  r.sampling.seed = rng();
  const uint64_t sampled_id = engine.submit(r, sink);
  Request g = r;
  g.sampling.temperature = 0.0f;
  const uint64_t greedy_id = engine.submit(g, sink);
  engine.run_until_idle();
  auto alone = [&](SamplingParams sp) {
    ReferenceOptions go;
    go.max_tokens = 10;
    go.sampling = sp;
    return reference_generate(lm, pool, p, go);
  };
  const auto want_greedy = alone(g.sampling);
  for (int32_t i = 0; i < 3; ++i) {
    SamplingParams sp = r.sampling;
    sp.seed += static_cast<uint64_t>(i);
    EXPECT_EQ((got[{sampled_id, i}]), alone(sp)) << "sample " << i;
    EXPECT_EQ((got[{greedy_id, i}]), want_greedy) << "greedy sample " << i;
  }
  // Two requests of three samples: each prompt computed once (they arrive in the same step,
  // so neither finds the other's blocks in the prefix cache).
  EXPECT_EQ(engine.stats().prompt_tokens, 2 * static_cast<int64_t>(p.size()));
}

INSTANTIATE_TEST_SUITE_P(TinyModels, ParallelSamplesEveryModelTest,
                         ::testing::Values("llama", "llama31", "qwen2", "qwen3", "gemma3"));

TEST_F(ParallelSamplesTest, BadSampleCountsAreRefused) {
  EngineOptions o;
  o.kv_memory_bytes = 4 << 20;
  Engine engine(*lm_, *pool_, o);
  Request r = sampled({1, 2, 3}, 4, 0, 0);
  EXPECT_THROW(engine.submit(r, nullptr), RequestError);
  r.n = kMaxSamples + 1;
  EXPECT_THROW(engine.submit(r, nullptr), RequestError);
  r.n = 2;
  r.seeds = {1, 2, 3};
  try {
    engine.submit(r, nullptr);
    FAIL();
  } catch (const RequestError& e) {
    EXPECT_STREQ(e.what(), "seeds must hold one seed per sample: n is 2, got 3 seeds");
  }
}

}  // namespace
}  // namespace kdr::engine
