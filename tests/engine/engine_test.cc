// The serving engine on a tiny model: every request's greedy output is the one it gets alone
// (from the independent loop of reference_generate.h), whatever the batch, the token budget,
// prefix-cache hits or preemptions; cancellation frees blocks; stop strings, logprobs and errors.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include "../base/seed.h"
#include "base/thread_pool.h"
#include "reference_generate.h"

namespace kdr::engine {
namespace {

const std::string kDir = std::string(KDR_SOURCE_DIR) + "/tests/data/models/";

using kdr_test::test_seed;

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lm_ = new LoadedModel(LoadedModel::load(kDir + "qwen3.gguf"));
    pool_ = new ThreadPool(2);
  }
  static void TearDownTestSuite() {
    delete lm_;
    delete pool_;
  }

  // Random prompts of the given lengths.
  static std::vector<std::vector<int32_t>> prompts(std::mt19937_64& rng,
                                                   const std::vector<int>& lengths) {
    std::uniform_int_distribution<int32_t> tok(0, lm_->model->config().vocab_size - 1);
    std::vector<std::vector<int32_t>> out;
    for (int n : lengths) {
      std::vector<int32_t> p(static_cast<size_t>(n));
      for (auto& t : p) t = tok(rng);
      out.push_back(p);
    }
    return out;
  }

  // What the independent single-sequence loop produces for the prompt, greedy.
  static std::vector<int32_t> alone(const std::vector<int32_t>& prompt, int32_t max_tokens) {
    ReferenceOptions o;
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0.0f;
    return reference_generate(*lm_, *pool_, prompt, o);
  }

  static EngineOptions small() {
    EngineOptions o;
    o.kv_memory_bytes = 4 << 20;
    return o;
  }

  static Request greedy(const std::vector<int32_t>& prompt, int32_t max_tokens) {
    Request r;
    r.prompt = prompt;
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
    return r;
  }

  // Collects every Output of every request submitted through it.
  struct Sink {
    std::map<uint64_t, std::vector<Output>> outputs;
    OutputCallback callback() {
      return [this](const Output& o) { outputs[o.request_id].push_back(o); };
    }
    std::vector<int32_t> tokens(uint64_t id) const {
      std::vector<int32_t> t;
      for (const Output& o : outputs.at(id)) t.insert(t.end(), o.tokens.begin(), o.tokens.end());
      return t;
    }
    std::string text(uint64_t id) const {
      std::string t;
      for (const Output& o : outputs.at(id)) t += o.text;
      return t;
    }
    const Output& last(uint64_t id) const { return outputs.at(id).back(); }
  };

  static LoadedModel* lm_;
  static ThreadPool* pool_;
};

LoadedModel* EngineTest::lm_ = nullptr;
ThreadPool* EngineTest::pool_ = nullptr;

TEST_F(EngineTest, EachRequestOfABatchGetsItsOutputAlone) {
  std::mt19937_64 rng(test_seed());
  const auto ps = prompts(rng, {1, 5, 17, 40, 3, 64, 9, 33});
  // A small budget forces chunked prefill and steps that mix decodes, first chunks and
  // later chunks; a page size that does not divide the chunks.
  EngineOptions o;
  o.max_batched_tokens = 13;
  o.page_size = 5;
  o.max_num_seqs = 6;
  o.kv_memory_bytes = 4 << 20;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < ps.size(); ++i)
    ids.push_back(engine.submit(greedy(ps[i], 6 + static_cast<int32_t>(i)), sink.callback()));
  engine.run_until_idle();
  for (size_t i = 0; i < ps.size(); ++i) {
    const int32_t n = 6 + static_cast<int32_t>(i);
    EXPECT_EQ(sink.tokens(ids[i]), alone(ps[i], n)) << "request " << i;
    const Output& last = sink.last(ids[i]);
    EXPECT_TRUE(last.finished);
    EXPECT_EQ(last.finish_reason, "length");
    EXPECT_EQ(last.completion_tokens, n);
    EXPECT_EQ(last.prompt_tokens, static_cast<int32_t>(ps[i].size()));
  }
  const EngineStats st = engine.stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.requests_finished, static_cast<int64_t>(ps.size()));
  EXPECT_EQ(st.time_to_first_token.count, ps.size());
  EXPECT_GT(st.inter_token_latency.count, 0u);
}

TEST_F(EngineTest, WhileARequestDecodesAPromptIsPrefilledInChunksSizedToTheStepTarget) {
  std::mt19937_64 rng(test_seed());
  const auto ps = prompts(rng, {5, 64});
  // A target no step can meet: a step that carries a decode gives the prompt only its least
  // chunk (4 tokens), so the 64-token prompt takes 16 steps, each also advancing the stream.
  EngineOptions o = small();
  o.max_batched_tokens = 64;
  o.itl_target_ms = 1e-6;
  o.min_prefill_chunk = 4;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  const uint64_t a = engine.submit(greedy(ps[0], 40), sink.callback());
  ASSERT_TRUE(engine.step());  // a's prompt in one step (no decode yet: the whole cap)
  ASSERT_EQ(sink.tokens(a).size(), 1u);
  const uint64_t b = engine.submit(greedy(ps[1], 3), sink.callback());
  int steps = 0;
  while (!sink.outputs.count(b)) {
    ASSERT_TRUE(engine.step());
    ++steps;
  }
  EXPECT_EQ(steps, 16);
  EXPECT_EQ(sink.tokens(a).size(), 17u);  // one token per step: the stream never waited
  engine.run_until_idle();
  EXPECT_EQ(sink.tokens(a), alone(ps[0], 40));
  EXPECT_EQ(sink.tokens(b), alone(ps[1], 3));
  // With a target every step meets, the same prompt goes in one step next to the decode.
  o.itl_target_ms = 1e9;
  o.max_batched_tokens = 128;
  Engine fast(*lm_, *pool_, o);
  Sink sink2;
  const uint64_t a2 = fast.submit(greedy(ps[0], 40), sink2.callback());
  ASSERT_TRUE(fast.step());
  const uint64_t b2 = fast.submit(greedy(ps[1], 3), sink2.callback());
  ASSERT_TRUE(fast.step());
  EXPECT_EQ(sink2.tokens(b2).size(), 1u);
  fast.run_until_idle();
  EXPECT_EQ(sink2.tokens(a2), sink.tokens(a));
}

TEST_F(EngineTest, RepeatedPromptHitsThePrefixCacheAndGivesTheSameOutput) {
  std::mt19937_64 rng(test_seed());
  const auto ps = prompts(rng, {50});
  EngineOptions o;
  o.page_size = 8;
  o.kv_memory_bytes = 4 << 20;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  const uint64_t a = engine.submit(greedy(ps[0], 8), sink.callback());
  engine.run_until_idle();
  // A prompt that shares the first 40 tokens and then differs.
  std::vector<int32_t> other = ps[0];
  other[45] = (other[45] + 1) % lm_->model->config().vocab_size;
  const uint64_t b = engine.submit(greedy(ps[0], 8), sink.callback());
  const uint64_t c = engine.submit(greedy(other, 8), sink.callback());
  engine.run_until_idle();
  EXPECT_EQ(sink.last(a).cached_tokens, 0);
  // 50 tokens: 6 full blocks of 8, all reusable (the last token is always recomputed).
  EXPECT_EQ(sink.last(b).cached_tokens, 48);
  EXPECT_EQ(sink.last(c).cached_tokens, 40);
  const auto want = alone(ps[0], 8);
  EXPECT_EQ(sink.tokens(a), want);
  EXPECT_EQ(sink.tokens(b), want);
  EXPECT_EQ(sink.tokens(c), alone(other, 8));
  const EngineStats st = engine.stats();
  EXPECT_EQ(st.prefix_query_tokens, 150);
  EXPECT_EQ(st.prefix_hit_tokens, 88);
  EXPECT_EQ(st.prompt_tokens, 150 - 88);
  EXPECT_GT(st.kv_blocks_cached, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);
}

// Request::prompt_logprobs: every prompt token's log-probability and the top tokens at each
// position, computed in prompt chunks beside another request, equal the model's own
// log-softmax over one forward pass of the whole prompt; a cached prefix is not used.
TEST_F(EngineTest, PromptLogprobsEqualTheLogSoftmaxOfOneForwardPass) {
  std::mt19937_64 rng(test_seed());
  const auto ps = prompts(rng, {std::uniform_int_distribution<int>(20, 60)(rng), 30});
  const std::vector<int32_t>& p = ps[0];
  const int32_t n = static_cast<int32_t>(p.size());
  const int32_t vocab = lm_->model->config().vocab_size;
  // The reference: one step over the whole prompt, logits at every position.
  model::KvCacheSet cache(lm_->model->config(), (n + 15) / 16, 16, kDefaultKvDType);
  model::Forward fwd(*lm_->model, *pool_);
  model::StepBatch b;
  b.tokens = p;
  b.cu_q_lens = {0, n};
  b.kv_lens = {n};
  b.pages_per_seq = (n + 15) / 16;
  for (int32_t i = 0; i < b.pages_per_seq; ++i) b.page_indices.push_back(i);
  b.distribution[1] = b.distribution[2] = 1;
  for (int32_t r = 0; r + 1 < n; ++r) b.logit_rows.push_back(r);
  std::vector<float> logits(b.logit_rows.size() * static_cast<size_t>(vocab));
  fwd.run(b, cache, logits.data());

  EngineOptions o;
  o.page_size = 8;
  o.max_batched_tokens = 13;  // several chunks, shared with the other request
  o.kv_memory_bytes = 4 << 20;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  engine.submit(greedy(p, 2), sink.callback());  // puts the prompt in the prefix cache
  engine.run_until_idle();
  Request r = greedy(p, 3);
  r.prompt_logprobs = 3;
  const uint64_t id = engine.submit(r, sink.callback());
  const uint64_t other = engine.submit(greedy(ps[1], 3), sink.callback());
  engine.run_until_idle();
  const Output& first = sink.outputs.at(id).front();
  EXPECT_EQ(first.cached_tokens, 0);
  ASSERT_EQ(first.prompt_logprobs.size(), static_cast<size_t>(n - 1));
  ASSERT_EQ(first.prompt_top_logprobs.size(), static_cast<size_t>(n - 1));
  for (int32_t i = 0; i + 1 < n; ++i) {
    const float* row = &logits[static_cast<size_t>(i) * vocab];
    double mx = row[0];
    for (int32_t v = 1; v < vocab; ++v) mx = std::max<double>(mx, row[v]);
    double sum = 0.0;
    for (int32_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
    const double lse = mx + std::log(sum);
    EXPECT_NEAR(first.prompt_logprobs[i], row[p[i + 1]] - lse, 2e-3) << "token " << i + 1;
    const auto& top = first.prompt_top_logprobs[i];
    ASSERT_EQ(top.size(), 3u);
    for (const TopLogprob& t : top) EXPECT_NEAR(t.logprob, row[t.token] - lse, 2e-3);
    EXPECT_NEAR(top[0].logprob, mx - lse, 2e-3);
    EXPECT_GE(top[0].logprob, top[1].logprob);
    EXPECT_GE(top[1].logprob, top[2].logprob);
  }
  // Later outputs do not repeat them, and generation is what the prompt gives alone.
  for (size_t k = 1; k < sink.outputs.at(id).size(); ++k)
    EXPECT_TRUE(sink.outputs.at(id)[k].prompt_logprobs.empty());
  EXPECT_EQ(sink.tokens(id), alone(p, 3));
  EXPECT_EQ(sink.tokens(other), alone(ps[1], 3));
  EXPECT_TRUE(sink.outputs.at(other).front().prompt_logprobs.empty());
}

TEST_F(EngineTest, PreemptionUnderATinyKvPoolLosesNoRequest) {
  std::mt19937_64 rng(test_seed());
  const auto ps = prompts(rng, {20, 31, 12, 25, 18, 7});
  EngineOptions o;
  o.page_size = 4;
  o.max_batched_tokens = 32;
  o.prefix_caching = false;
  // 24 blocks of 4 tokens: room for two or three of these requests at a time.
  o.kv_memory_bytes = static_cast<int64_t>(
      24 * 4 * model::KvCacheSet::bytes_per_token(lm_->model->config(), o.kv_dtype));
  Engine engine(*lm_, *pool_, o);
  EXPECT_EQ(engine.kv_budget().blocks, 24);
  EXPECT_EQ(engine.max_model_len(), 96);
  Sink sink;
  std::vector<uint64_t> ids;
  for (const auto& p : ps) ids.push_back(engine.submit(greedy(p, 30), sink.callback()));
  engine.run_until_idle();
  for (size_t i = 0; i < ps.size(); ++i)
    EXPECT_EQ(sink.tokens(ids[i]), alone(ps[i], 30)) << "request " << i;
  const EngineStats st = engine.stats();
  EXPECT_GT(st.preemptions, 0);
  EXPECT_EQ(st.requests_finished, 6);
  EXPECT_EQ(st.kv_blocks_used, 0);
}

TEST_F(EngineTest, CancelEndsTheRequestAndFreesItsBlocks) {
  std::mt19937_64 rng(test_seed());
  const auto ps = prompts(rng, {30, 10});
  EngineOptions o;
  o.kv_memory_bytes = 4 << 20;
  Engine engine(*lm_, *pool_, o);
  Sink sink;
  const uint64_t a = engine.submit(greedy(ps[0], 100), sink.callback());
  const uint64_t b = engine.submit(greedy(ps[1], 5), sink.callback());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(engine.step());
  EXPECT_GT(engine.stats().kv_blocks_used, 0);
  engine.cancel(a);
  engine.cancel(12345);  // unknown: ignored
  engine.run_until_idle();
  EXPECT_EQ(sink.last(a).finish_reason, "cancelled");
  EXPECT_LT(sink.last(a).completion_tokens, 100);
  EXPECT_EQ(sink.tokens(b), alone(ps[1], 5));
  EngineStats st = engine.stats();
  EXPECT_EQ(st.requests_cancelled, 1);
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.running, 0);

  // Cancelling the only request: the step that finds nothing left still publishes the
  // idle state (what /metrics shows after a client hangs up).
  const uint64_t c = engine.submit(greedy(ps[0], 50), sink.callback());
  ASSERT_TRUE(engine.step());
  EXPECT_EQ(engine.stats().running, 1);
  engine.cancel(c);
  EXPECT_FALSE(engine.step());
  st = engine.stats();
  EXPECT_EQ(sink.last(c).finish_reason, "cancelled");
  EXPECT_EQ(st.requests_cancelled, 2);
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);
}

TEST_F(EngineTest, StopStringsCutTheTextAndEndTheRequest) {
  std::mt19937_64 rng(test_seed());
  // Find a prompt whose greedy text is long enough to cut in the middle.
  for (int attempt = 0; attempt < 20; ++attempt) {
    const auto p = prompts(rng, {12})[0];
    Engine engine(*lm_, *pool_, small());
    Sink sink;
    const uint64_t full = engine.submit(greedy(p, 12), sink.callback());
    engine.run_until_idle();
    const std::string text = sink.text(full);
    if (text.size() < 8) continue;
    const std::string stop = text.substr(text.size() / 2, 3);
    const size_t at = text.find(stop);
    Request r = greedy(p, 12);
    r.stop = {"never-in-the-output-\x01", stop};
    const uint64_t cut = engine.submit(r, sink.callback());
    engine.run_until_idle();
    EXPECT_EQ(sink.text(cut), text.substr(0, at));
    EXPECT_EQ(sink.last(cut).finish_reason, "stop");
    // Streamed pieces never contain text after the stop string.
    return;
  }
  GTEST_FAIL() << "no prompt gave a long enough text";
}

TEST_F(EngineTest, LogprobsAreSortedAndGreedyPicksTheBest) {
  std::mt19937_64 rng(test_seed());
  const auto p = prompts(rng, {10})[0];
  Engine engine(*lm_, *pool_, small());
  Sink sink;
  Request r = greedy(p, 5);
  r.logprobs = 3;
  const uint64_t id = engine.submit(r, sink.callback());
  engine.run_until_idle();
  int n = 0;
  for (const Output& o : sink.outputs[id]) {
    ASSERT_EQ(o.logprobs.size(), o.tokens.size());
    for (size_t i = 0; i < o.tokens.size(); ++i, ++n) {
      const auto& top = o.top_logprobs[i];
      ASSERT_EQ(top.size(), 3u);
      EXPECT_EQ(top[0].token, o.tokens[i]);
      EXPECT_EQ(top[0].logprob, o.logprobs[i]);
      EXPECT_GE(top[0].logprob, top[1].logprob);
      EXPECT_GE(top[1].logprob, top[2].logprob);
      EXPECT_LE(top[0].logprob, 0.0f);
    }
  }
  EXPECT_EQ(n, 5);
}

TEST_F(EngineTest, BadRequestsAndConfigurationsAreRefusedWithTheNumbers) {
  EngineOptions o;
  o.kv_memory_bytes = 4 << 20;
  o.max_waiting = 2;
  Engine engine(*lm_, *pool_, o);
  EXPECT_EQ(engine.max_model_len(), 256);
  try {
    engine.submit(greedy({1, 2, 3}, 254), nullptr);
    FAIL();
  } catch (const RequestError& e) {
    EXPECT_STREQ(e.what(),
                 "this model's maximum context length is 256 tokens; the prompt has 3 tokens and "
                 "max_tokens is 254 (257 in total)");
  }
  EXPECT_THROW(engine.submit(greedy({}, 4), nullptr), RequestError);
  EXPECT_THROW(engine.submit(greedy({1, -1}, 4), nullptr), RequestError);
  EXPECT_THROW(engine.submit(greedy({1}, 0), nullptr), RequestError);
  Request bad = greedy({1}, 4);
  bad.sampling.top_p = 2.0f;
  EXPECT_THROW(engine.submit(bad, nullptr), RequestError);
  engine.submit(greedy({1}, 4), nullptr);
  engine.submit(greedy({1}, 4), nullptr);
  EXPECT_THROW(engine.submit(greedy({1}, 4), nullptr), QueueFullError);
  engine.run_until_idle();

  EngineOptions tiny;
  tiny.kv_memory_bytes = 1000;
  try {
    Engine e(*lm_, *pool_, tiny);
    FAIL();
  } catch (const EngineConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("raise --kv-memory"), std::string::npos) << e.what();
  }
  EngineOptions too_long;
  too_long.max_model_len = 100000;
  EXPECT_THROW(Engine(*lm_, *pool_, too_long), EngineConfigError);
}

TEST_F(EngineTest, BackgroundLoopServesConcurrentSubmitters) {
  std::mt19937_64 rng(test_seed());
  const auto ps = prompts(rng, {3, 8, 21, 14, 30, 5, 11, 17});
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : ps) want.push_back(alone(p, 7));
  EngineOptions o;
  o.kv_memory_bytes = 4 << 20;
  o.max_batched_tokens = 16;
  Engine engine(*lm_, *pool_, o);
  engine.start();
  std::vector<std::vector<int32_t>> got(ps.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < ps.size(); ++i)
    clients.emplace_back([&, i] {
      auto stream = engine.submit_stream(greedy(ps[i], 7));
      Output out;
      do {
        ASSERT_TRUE(stream->next(out, std::chrono::seconds(60)));
        got[i].insert(got[i].end(), out.tokens.begin(), out.tokens.end());
      } while (!out.finished);
    });
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(got[i], want[i]) << "request " << i;
  // A request still running when the engine stops ends as cancelled.
  auto stream = engine.submit_stream(greedy(ps[0], 200));
  engine.stop();
  Output out;
  bool finished = false;
  while (!finished && stream->next(out, std::chrono::seconds(10)))
    if (out.finished) {
      finished = true;
      EXPECT_EQ(out.finish_reason, "cancelled");
    }
  EXPECT_TRUE(finished);
  EXPECT_THROW(engine.submit(greedy(ps[0], 2), nullptr), QueueFullError);
}

}  // namespace
}  // namespace kdr::engine
