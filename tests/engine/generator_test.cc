// Generation end to end on a tiny model: greedy decoding through the generator (chunked
// prefill + decode steps) reproduces transformers' greedy continuation.
#include "engine/generator.h"

#include <gtest/gtest.h>

#include <filesystem>
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

// A file without a chat template gets its architecture's turn format, and a note saying so (a
// base model, like the default Gemma-3-270M, does not follow turns); a template in the files
// gives no note.
TEST(Generator, NotesAChatFormatTakenFromTheArchitecture) {
  const LoadedModel gguf = LoadedModel::load(kDir + "gemma3.gguf");
  ASSERT_TRUE(gguf.chat);
  EXPECT_EQ(gguf.chat->format, model::ChatFormat::kGemma3);
  EXPECT_TRUE(gguf.chat_inferred);
  const std::string note = gguf.chat_note();
  EXPECT_NE(note.find("gemma3.gguf carries no chat template"), std::string::npos) << note;
  EXPECT_NE(note.find("gemma3 format"), std::string::npos) << note;

  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / "kdr_gemma3_with_template";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
    fs::create_symlink(fs::path(kDir) / "gemma3" / f, dir / f);
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"chat_template": "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"})";
  const LoadedModel hf = LoadedModel::load(dir.string());
  ASSERT_TRUE(hf.chat);
  EXPECT_EQ(hf.chat->format, model::ChatFormat::kGemma3);
  EXPECT_FALSE(hf.chat_inferred);
  EXPECT_EQ(hf.chat_note(), "");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kdr::engine
