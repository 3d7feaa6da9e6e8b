// Generation end to end on a tiny model: greedy decoding through the generator (chunked
// prefill + decode steps) reproduces transformers' greedy continuation.
#include "engine/generator.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/thread_pool.h"

namespace kdr::engine {
namespace {

const std::string kDir = std::string(KDR_SOURCE_DIR) + "/tests/data/models/";

TEST(Generator, GreedyMatchesTransformersWithSmallPrefillChunks) {
  std::ifstream in(kDir + "manifest.json");
  ASSERT_TRUE(in) << "missing fixtures";
  const auto manifest = nlohmann::json::parse(in);
  LoadedModel lm = LoadedModel::load(kDir + "llama.gguf");
  lm.stop_ids.clear();  // the fixture continuation ignores eos
  ThreadPool pool(2);
  for (const auto& p : manifest["models"]["llama"]["prompts"]) {
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    const auto want = p["greedy"].get<std::vector<int32_t>>();
    GenerateOptions o;
    o.max_tokens = static_cast<int32_t>(want.size());
    o.sampling.temperature = 0.0f;
    o.prefill_chunk = 5;
    o.page_size = 3;
    o.kv_dtype = rpa::KvDType::kF32;
    std::vector<int32_t> got;
    const GenerateStats st = generate(lm, pool, ids, o, nullptr, &got);
    EXPECT_EQ(got, want);
    EXPECT_EQ(st.generated_tokens, static_cast<int32_t>(want.size()));
    EXPECT_EQ(st.finish_reason, "length");
  }
}

TEST(Generator, RejectsPromptsBeyondTheContext) {
  LoadedModel lm = LoadedModel::load(kDir + "qwen3.gguf");
  ThreadPool pool(1);
  GenerateOptions o;
  o.max_tokens = lm.model->config().context_length;
  try {
    generate(lm, pool, {1, 2, 3}, o, nullptr);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the context length 256"), std::string::npos)
        << e.what();
  }
  o.max_tokens = 4;
  EXPECT_THROW(generate(lm, pool, {1, 999999}, o, nullptr), std::invalid_argument);
  EXPECT_THROW(generate(lm, pool, {}, o, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace kdr::engine
