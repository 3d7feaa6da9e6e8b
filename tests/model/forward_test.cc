// The forward pass against transformers: tiny random models of every architecture, saved as
// safetensors and as GGUF by scripts/gen_model_fixtures.py with transformers' logits and
// greedy continuations. Both formats must reproduce them.
#include "model/forward.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/thread_pool.h"

namespace kdr::model {
namespace {

const std::string kDir = std::string(KDR_SOURCE_DIR) + "/tests/data/models/";

nlohmann::json manifest() {
  std::ifstream in(kDir + "manifest.json");
  if (!in) return nullptr;
  return nlohmann::json::parse(in);
}

std::vector<float> read_logits(const std::string& key) {
  std::ifstream in(kDir + key + ".logits.bin", std::ios::binary);
  std::vector<float> out;
  float f;
  while (in.read(reinterpret_cast<char*>(&f), 4)) out.push_back(f);
  return out;
}

// A single sequence with its own pages, stepped through prefill chunks and decodes.
struct Sequence {
  KvCacheSet cache;
  std::vector<int32_t> pages;
  int32_t kv_len = 0;
  static constexpr int kPage = 4;
  Sequence(const ModelConfig& c, int32_t max_tokens)
      : cache(c, (max_tokens + kPage - 1) / kPage + 1, kPage, rpa::KvDType::kF32) {
    // Scatter the pages so the page table is not the identity.
    for (int32_t i = cache.shape().num_pages - 1; i >= 0; --i) pages.push_back(i);
  }
  // Feeds tokens, returns logits of every fed row.
  std::vector<float> feed(Forward& fwd, const std::vector<int32_t>& tokens, int vocab) {
    StepBatch b;
    b.tokens = tokens;
    const int32_t n = static_cast<int32_t>(tokens.size());
    b.cu_q_lens = {0, n};
    kv_len += n;
    b.kv_lens = {kv_len};
    b.page_indices = pages;
    b.pages_per_seq = static_cast<int32_t>(pages.size());
    // A single token is a decode; a longer chunk a prefill.
    b.distribution[0] = n == 1 ? 1 : 0;
    b.distribution[1] = 1;
    b.distribution[2] = 1;
    for (int32_t i = 0; i < n; ++i) b.logit_rows.push_back(i);
    std::vector<float> logits(static_cast<size_t>(n) * vocab);
    fwd.run(b, cache, logits.data());
    return logits;
  }
};

int argmax(const float* x, int n) { return static_cast<int>(std::max_element(x, x + n) - x); }

class ForwardVsTransformers : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(ForwardVsTransformers, LogitsAndGreedyContinuationMatch) {
  const auto [key, use_gguf] = GetParam();
  const nlohmann::json m = manifest();
  ASSERT_FALSE(m.is_null()) << "missing " << kDir << "manifest.json";
  const auto model = Model::load(use_gguf ? kDir + key + ".gguf" : kDir + key);
  const ModelConfig& c = model->config();
  const int vocab = c.vocab_size;
  ThreadPool pool(2);
  Forward fwd(*model, pool);
  const std::vector<float> ref = read_logits(key);
  size_t offset = 0;
  for (const auto& p : m["models"][key]["prompts"]) {
    const std::vector<int32_t> ids = p["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> greedy = p["greedy"].get<std::vector<int32_t>>();
    Sequence seq(c, static_cast<int32_t>(ids.size() + greedy.size()));
    // Prefill in two chunks so the second attends to cached pages and new tokens at once.
    const size_t split = ids.size() / 2;
    std::vector<float> logits = seq.feed(fwd, {ids.begin(), ids.begin() + split}, vocab);
    const std::vector<float> tail = seq.feed(fwd, {ids.begin() + split, ids.end()}, vocab);
    logits.insert(logits.end(), tail.begin(), tail.end());
    ASSERT_LE(offset + logits.size(), ref.size());
    for (size_t r = 0; r < ids.size(); ++r) {
      float scale = 0.0f;
      for (int v = 0; v < vocab; ++v)
        scale = std::max(scale, std::fabs(ref[offset + r * vocab + v]));
      for (int v = 0; v < vocab; ++v) {
        const float want = ref[offset + r * vocab + v];
        ASSERT_NEAR(logits[r * vocab + v], want, 1e-4f * scale)
            << key << (use_gguf ? " gguf" : " safetensors") << " position " << r << " token " << v;
      }
    }
    offset += ids.size() * vocab;
    // Greedy continuation, one decode step at a time.
    int next = argmax(&logits[(ids.size() - 1) * vocab], vocab);
    std::vector<int32_t> got;
    for (size_t i = 0; i < greedy.size(); ++i) {
      got.push_back(next);
      const std::vector<float> l = seq.feed(fwd, {next}, vocab);
      next = argmax(l.data(), vocab);
    }
    EXPECT_EQ(got, greedy) << key;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ForwardVsTransformers,
                         ::testing::Combine(::testing::Values("llama", "llama31", "qwen2", "qwen3",
                                                              "gemma3"),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) ? "_gguf" : "_safetensors");
                         });

// A sequence's logits do not depend on what else is in the batch (rpa and matmul are batch
// invariant), so running both prompts together must give bitwise the rows of each alone.
TEST(Forward, BatchedSequencesMatchAloneBitwise) {
  const nlohmann::json m = manifest();
  ASSERT_FALSE(m.is_null());
  const auto model = Model::load(kDir + "qwen3.gguf");
  const ModelConfig& c = model->config();
  ThreadPool pool(2);
  Forward fwd(*model, pool);
  const auto& prompts = m["models"]["qwen3"]["prompts"];
  const auto a = prompts[0]["ids"].get<std::vector<int32_t>>();
  const auto b = prompts[1]["ids"].get<std::vector<int32_t>>();
  Sequence sa(c, 64), sb(c, 64);
  const auto la = sa.feed(fwd, a, c.vocab_size);
  const auto lb = sb.feed(fwd, b, c.vocab_size);

  KvCacheSet cache(c, 64, 4, rpa::KvDType::kF32);
  StepBatch batch;
  batch.tokens = a;
  batch.tokens.insert(batch.tokens.end(), b.begin(), b.end());
  batch.cu_q_lens = {0, static_cast<int32_t>(a.size()), static_cast<int32_t>(a.size() + b.size())};
  batch.kv_lens = {static_cast<int32_t>(a.size()), static_cast<int32_t>(b.size())};
  batch.pages_per_seq = 16;
  for (int i = 0; i < 32; ++i) batch.page_indices.push_back(i * 2 + (i >= 16 ? -31 : 0));
  batch.distribution[1] = 2;
  batch.distribution[2] = 2;
  batch.logit_rows = {static_cast<int32_t>(a.size() - 1),
                      static_cast<int32_t>(a.size() + b.size() - 1)};
  std::vector<float> logits(2 * static_cast<size_t>(c.vocab_size));
  fwd.run(batch, cache, logits.data());
  for (int v = 0; v < c.vocab_size; ++v) {
    ASSERT_EQ(logits[v], la[(a.size() - 1) * c.vocab_size + v]) << v;
    ASSERT_EQ(logits[c.vocab_size + v], lb[(b.size() - 1) * c.vocab_size + v]) << v;
  }
}

}  // namespace
}  // namespace kdr::model
