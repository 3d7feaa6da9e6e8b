// POST /v1/embeddings apart from HTTP: every input form, every refusal with its status and
// param, and the response body (float lists that read back to the same floats, base64 of
// little-endian f32), on random vectors; the whole route on all-MiniLM-L6-v2 when installed.
#include "server/embeddings.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "../base/seed.h"
#include "model/embedder.h"
#include "model/model_paths.h"
#include "server/openai_protocol.h"

namespace kdr::server {
namespace {

using nlohmann::json;

EmbeddingRequest parse(const json& body) {
  return parse_embedding_request(body.dump(), "minilm", 100);
}

// The status and param of the ApiError that parsing `body` throws.
std::pair<int, std::string> refusal(const json& body) {
  try {
    parse(body);
  } catch (const ApiError& e) {
    return {e.status(), e.param()};
  }
  ADD_FAILURE() << "accepted: " << body.dump();
  return {0, ""};
}

std::string base64_decode(const std::string& s) {
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    acc = (acc << 6) | static_cast<uint32_t>(alphabet.find(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

TEST(EmbeddingRequest, AcceptsEveryInputForm) {
  EXPECT_EQ(parse({{"input", "hi"}, {"model", "minilm"}}).texts, std::vector<std::string>{"hi"});
  const EmbeddingRequest list = parse({{"input", {"a", "b c"}}, {"encoding_format", "base64"}});
  EXPECT_EQ(list.texts, (std::vector<std::string>{"a", "b c"}));
  EXPECT_TRUE(list.base64);
  EXPECT_FALSE(parse({{"input", "x"}, {"encoding_format", "float"}}).base64);
  EXPECT_EQ(parse({{"input", {5, 6, 7}}}).token_inputs,
            (std::vector<std::vector<int32_t>>{{5, 6, 7}}));
  EXPECT_EQ(parse({{"input", {{1, 2}, {99}}}}).token_inputs,
            (std::vector<std::vector<int32_t>>{{1, 2}, {99}}));
  // sglang-router's placeholder for no model, explicit nulls, and fields we ignore.
  EXPECT_EQ(parse({{"input", "x"}, {"model", "unknown"}, {"dimensions", nullptr}, {"user", "u"}})
                .texts.size(),
            1u);
}

TEST(EmbeddingRequest, RefusalsNameTheField) {
  const std::vector<std::pair<json, std::pair<int, std::string>>> cases = {
      {{{"model", "minilm"}}, {400, "input"}},
      {{{"input", ""}}, {400, "input"}},
      {{{"input", json::array()}}, {400, "input"}},
      {{{"input", 3}}, {400, "input"}},
      {{{"input", {"a", ""}}}, {400, "input[1]"}},
      {{{"input", {"a", 2}}}, {400, "input[1]"}},
      {{{"input", {{1}, "a"}}}, {400, "input[1]"}},
      {{{"input", {{1}, json::array()}}}, {400, "input[1]"}},
      {{{"input", {{1, 100}}}}, {400, "input[0][1]"}},
      {{{"input", {1, -1}}}, {400, "input[1]"}},
      {{{"input", {1, 2.5}}}, {400, "input[1]"}},
      {{{"input", "a"}, {"encoding_format", "int8"}}, {400, "encoding_format"}},
      {{{"input", "a"}, {"dimensions", 128}}, {400, "dimensions"}},
      {{{"input", "a"}, {"model", 7}}, {400, "model"}},
      {{{"input", "a"}, {"model", "gpt"}}, {404, "model"}},
      {{{"input", std::vector<std::string>(kMaxEmbeddingInputs + 1, "a")}}, {400, "input"}},
  };
  for (const auto& [body, want] : cases) EXPECT_EQ(refusal(body), want) << body.dump();
  EXPECT_NO_THROW(parse({{"input", std::vector<std::string>(kMaxEmbeddingInputs, "a")}}));
  try {
    parse_embedding_request("[1]", "minilm", 100);
    ADD_FAILURE() << "accepted a list body";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
  }
}

TEST(EmbeddingResponse, FloatsAndBase64ReadBackExactly) {
  std::mt19937_64 rng(kdr_test::test_seed());
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<std::vector<float>> vectors(1 + rng() % 5, std::vector<float>(1 + rng() % 40));
  for (auto& v : vectors)
    for (float& x : v) x = normal(rng) * std::pow(10.0f, static_cast<float>(rng() % 7) - 3.0f);
  for (bool base64 : {false, true}) {
    const json r = json::parse(embedding_response(vectors, base64, "minilm", 42));
    EXPECT_EQ(r["object"], "list");
    EXPECT_EQ(r["model"], "minilm");
    EXPECT_EQ(r["usage"], (json{{"prompt_tokens", 42}, {"total_tokens", 42}}));
    ASSERT_EQ(r["data"].size(), vectors.size());
    for (size_t i = 0; i < vectors.size(); ++i) {
      const json& d = r["data"][i];
      EXPECT_EQ(d["object"], "embedding");
      EXPECT_EQ(d["index"], i);
      std::vector<float> got;
      if (base64) {
        const std::string bytes = base64_decode(d["embedding"].get<std::string>());
        ASSERT_EQ(bytes.size(), vectors[i].size() * 4);
        got.resize(vectors[i].size());
        std::memcpy(got.data(), bytes.data(), bytes.size());
      } else {
        for (const json& x : d["embedding"]) got.push_back(static_cast<float>(x.get<double>()));
      }
      EXPECT_EQ(got, vectors[i]) << (base64 ? "base64" : "float") << " vector " << i;
    }
  }
}

TEST(EmbeddingRoute, WithoutAModelAnswers404SayingHowToServeOne) {
  try {
    handle_embeddings(R"({"input": "x"})", nullptr);
    ADD_FAILURE() << "expected a 404";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 404);
    EXPECT_NE(std::string(e.what()).find("--embedding-model"), std::string::npos) << e.what();
  }
}

TEST(EmbeddingRoute, MiniLmVectorsAndUsage) {
  const auto dir = model::recorded_model_path("embedding.path");
  if (!dir) GTEST_SKIP() << "no embedding model (models/embedding.path); run scripts/setup";
  ThreadPool pool(2);
  const auto embedder = model::Embedder::load(*dir, pool);
  const std::vector<std::string> texts = {"The cat sits on the mat.", "Quarterly revenue rose."};
  const json r = json::parse(handle_embeddings(
      json{{"input", texts}, {"model", embedder->name()}}.dump(), embedder.get()));
  const auto want = embedder->embed(texts);
  ASSERT_EQ(r["data"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    std::vector<float> got;
    for (const json& x : r["data"][i]["embedding"])
      got.push_back(static_cast<float>(x.get<double>()));
    EXPECT_EQ(got, want[i]);
  }
  EXPECT_EQ(r["usage"]["prompt_tokens"], embedder->count_tokens(texts));
}

}  // namespace
}  // namespace kdr::server
