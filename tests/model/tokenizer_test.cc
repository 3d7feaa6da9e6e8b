// Tokenizer ids against Hugging Face `tokenizers` (fixtures from
// scripts/gen_tokenizer_fixtures.py): trained Llama-3 / Qwen2 byte-level BPE tokenizer.json
// files, the same vocabularies as GGUF metadata, and the real Gemma-3 GGUF when present.
#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "../base/seed.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"

namespace kdr::model {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const fs::path kData = fs::path(KDR_SOURCE_DIR) / "tests" / "data" / "tokenizer";

using kdr_test::test_seed;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json read_json(const fs::path& path) { return json::parse(read_text(path)); }

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

// Every fixture case of one family: ids and decoded text as Hugging Face gives them.
void expect_matches_hf(const Tokenizer& tok, const json& cases) {
  int checked = 0;
  for (const json& c : cases) {
    const std::string text = c.at("text");
    if (c.value("nfc_changes_text", false)) continue;  // NFC is not applied (see tokenizer.h)
    const bool parse_special = c.at("parse_special");
    const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
    const std::vector<int32_t> got = tok.encode(text, /*add_special=*/false, parse_special);
    EXPECT_EQ(got, want) << "text: " << json(text).dump() << " parse_special=" << parse_special
                         << "\n got:  " << show(got) << "\n want: " << show(want);
    EXPECT_EQ(tok.decode(want, /*skip_special=*/false), c.at("decoded").get<std::string>())
        << "text: " << json(text).dump();
    ++checked;
  }
  EXPECT_GT(checked, 30);
}

// A GGUF holding the tokenizer keys of a spec file written like llama.cpp's converter.
std::vector<uint8_t> gguf_from_spec_json(const json& spec) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("tokenizer.ggml.model", spec.at("model").get<std::string>());
  w.add_string("tokenizer.ggml.pre", spec.at("pre").get<std::string>());
  w.add_string_array("tokenizer.ggml.tokens", spec.at("tokens").get<std::vector<std::string>>());
  w.add_i32_array("tokenizer.ggml.token_type", spec.at("token_type").get<std::vector<int32_t>>());
  w.add_string_array("tokenizer.ggml.merges", spec.at("merges").get<std::vector<std::string>>());
  w.add_u32("tokenizer.ggml.bos_token_id", spec.at("bos_token_id").get<uint32_t>());
  w.add_u32("tokenizer.ggml.eos_token_id", spec.at("eos_token_id").get<uint32_t>());
  w.add_bool("tokenizer.ggml.add_bos_token", spec.at("add_bos_token").get<bool>());
  return w.to_bytes();
}

class ByteLevelBpe : public ::testing::TestWithParam<const char*> {};

TEST_P(ByteLevelBpe, TokenizerJsonMatchesHuggingFace) {
  const std::string family = GetParam();
  const Tokenizer tok(
      spec_from_tokenizer_json_file((kData / (family + ".tokenizer.json")).string()));
  EXPECT_TRUE(tok.spec().byte_level);
  EXPECT_EQ(tok.spec().ignore_merges, family == "llama3");
  expect_matches_hf(tok, read_json(kData / (family + ".expected.json")));
}

TEST_P(ByteLevelBpe, GgufSpecMatchesHuggingFace) {
  const std::string family = GetParam();
  const json spec_json = read_json(kData / (family + ".gguf_spec.json"));
  const std::vector<uint8_t> bytes = gguf_from_spec_json(spec_json);
  const GgufFile file = GgufFile::from_memory(bytes.data(), bytes.size(), family + ".gguf");
  const Tokenizer tok(spec_from_gguf(file));
  EXPECT_EQ(tok.spec().model, TokenizerModel::kBpe);
  EXPECT_EQ(tok.bos_id(), spec_json.at("bos_token_id").get<int32_t>());
  expect_matches_hf(tok, read_json(kData / (family + ".expected.json")));

  // add_special puts bos in front only where the file says so (Llama 3 yes, Qwen2 no).
  const std::vector<int32_t> plain = tok.encode("Hello world", false);
  std::vector<int32_t> with_bos = plain;
  if (spec_json.at("add_bos_token").get<bool>()) with_bos.insert(with_bos.begin(), tok.bos_id());
  EXPECT_EQ(tok.encode("Hello world", true), with_bos);
}

INSTANTIATE_TEST_SUITE_P(Families, ByteLevelBpe, ::testing::Values("llama3", "qwen2"));

// Random text from a pool that mixes scripts, emoji, digits and whitespace runs.
std::string random_text(std::mt19937_64& rng) {
  static const std::vector<std::string> pool = {
      "a",        "Z",
      "e",        " ",
      " ",        "  ",
      "\n",       "\t",
      "\r\n",     "7",
      "42",       ".",
      "'s",       "(",
      "}",        "é",
      "ß",        "Ω",
      "ж",        "日",
      "本",       "語",
      "한",       "ท",
      "😀",        "🎉",
      "👍🏽", "\u00a0",
      "\u3000",   "x\u0301",
      "—",        "→",
      "∑",        "\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",
      "abc",      "The",
      " the",     "\u200b",
  };
  std::uniform_int_distribution<size_t> len(0, 40), pick(0, pool.size() - 1);
  std::string s;
  for (size_t i = 0, n = len(rng); i < n; ++i) s += pool[pick(rng)];
  return s;
}

// decode(encode(text)) gives the text back, and streaming one id at a time gives the same
// text without ever emitting part of a UTF-8 character.
void expect_round_trip_and_streaming(const Tokenizer& tok, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 300; ++trial) {
    const std::string text = random_text(rng);
    const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/true, false);
    ASSERT_EQ(tok.decode(ids), text) << "text: " << json(text).dump();
    StreamingDetokenizer stream(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      ASSERT_EQ(utf8_sanitize(piece), piece) << "partial UTF-8 emitted for " << json(text).dump();
      streamed += piece;
    }
    streamed += stream.finish();
    ASSERT_EQ(streamed, text);
  }
}

TEST_P(ByteLevelBpe, RandomTextRoundTripsAndStreams) {
  const std::string family = GetParam();
  const Tokenizer tok(
      spec_from_tokenizer_json_file((kData / (family + ".tokenizer.json")).string()));
  expect_round_trip_and_streaming(tok, test_seed());
}

TEST(ByteLevelBpe, SpecialTokensRenderOnlyWhenAsked) {
  const Tokenizer tok(spec_from_tokenizer_json_file((kData / "qwen2.tokenizer.json").string()));
  const int32_t im_end = tok.token_id("<|im_end|>");
  const int32_t tool = tok.token_id("<tool_call>");
  ASSERT_GE(im_end, 0);
  ASSERT_GE(tool, 0);
  EXPECT_EQ(tok.token_type(im_end), TokenType::kControl);
  EXPECT_EQ(tok.token_type(tool), TokenType::kUserDefined);
  const std::vector<int32_t> ids = tok.encode("hi<|im_end|><tool_call>", false, true);
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "hi<tool_call>");
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/false), "hi<|im_end|><tool_call>");
  StreamingDetokenizer stream(tok, /*skip_special=*/true);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  EXPECT_EQ(out + stream.finish(), "hi<tool_call>");
}

// ---- Gemma-3: the real vocabulary ------------------------------------------------------

std::string gemma_gguf_path() {
  if (const char* env = std::getenv("KDR_GEMMA3_GGUF")) return env;
  const fs::path root(KDR_SOURCE_DIR);
  if (fs::exists(root / "models" / "default.path")) {
    std::string p = read_text(root / "models" / "default.path");
    while (!p.empty() && (p.back() == '\n' || p.back() == ' ')) p.pop_back();
    if (fs::exists(p)) return p;
  }
  const fs::path fallback = root / "models" / "gemma-3-270m-q4_k_m.gguf";
  return fs::exists(fallback) ? fallback.string() : "";
}

TEST(Gemma3Tokenizer, RealVocabularyMatchesHuggingFace) {
  const std::string path = gemma_gguf_path();
  if (path.empty()) GTEST_SKIP() << "no Gemma-3 GGUF (models/default.path); run scripts/setup";
  const GgufFile file = GgufFile::open(path);
  const Tokenizer tok(spec_from_gguf(file));
  EXPECT_EQ(tok.spec().model, TokenizerModel::kSpm);
  EXPECT_FALSE(tok.spec().add_space_prefix);
  EXPECT_EQ(tok.n_vocab(), 262144);
  const json expected = read_json(kData / "gemma3.expected.json");
  expect_matches_hf(tok, expected.at("cases"));

  // bos is added in front (add_bos_token), eos is not.
  const std::vector<int32_t> ids = tok.encode("Hello world");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), expected.at("bos").get<int32_t>());
  EXPECT_EQ(tok.decode(ids), "Hello world");

  expect_round_trip_and_streaming(tok, test_seed());
}

// ---- SentencePiece merging on a small hand-made vocabulary ------------------------------

TokenizerSpec tiny_spm(bool add_space_prefix) {
  TokenizerSpec s;
  s.model = TokenizerModel::kSpm;
  s.tokens = {"<unk>",
              "<s>",
              "</s>",
              "\xE2\x96\x81",
              "a",
              "b",
              "c",
              "ab",
              "bc",
              "abc",
              "\xE2\x96\x81"
              "a"};
  // "bc" outranks "ab", so "abc" is reached through a + bc.
  s.scores = {0, 0, 0, -1, -2, -2, -2, -5, -3, -4, -1};
  s.token_types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  s.token_types.resize(s.tokens.size(), TokenType::kNormal);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    s.tokens.push_back(name);
    s.scores.push_back(0);
    s.token_types.push_back(TokenType::kByte);
  }
  s.unk_id = 0;
  s.bos_id = 1;
  s.eos_id = 2;
  s.add_bos = true;
  s.add_space_prefix = add_space_prefix;
  return s;
}

TEST(SpmTokenizer, MergesBestScoreFirstAndFallsBackToBytes) {
  const Tokenizer tok(tiny_spm(false));
  const int32_t byte0 = tok.token_id("<0x00>");
  // "abc": bc (-3) merges before ab (-5), then a+bc -> abc (-4).
  EXPECT_EQ(tok.encode("abc", false), (std::vector<int32_t>{9}));
  // A space becomes U+2581; "▁a" (-1) merges first and takes the second a from "ab".
  EXPECT_EQ(tok.encode("ab ab", false), (std::vector<int32_t>{7, 10, 5}));
  // "é" (C3 A9) is not in the vocabulary: one byte token per byte.
  EXPECT_EQ(tok.encode("é", false), (std::vector<int32_t>{byte0 + 0xC3, byte0 + 0xA9}));
  EXPECT_EQ(tok.encode("a", true), (std::vector<int32_t>{1, 4}));
  EXPECT_EQ(tok.decode(tok.encode("ab é c", true)), "ab é c");
  // parse_special: "<s>" is bos only when asked.
  EXPECT_EQ(tok.encode("<s>a", false, true), (std::vector<int32_t>{1, 4}));
  EXPECT_EQ(tok.encode("<s>a", false, false).front(), byte0 + '<');
}

TEST(SpmTokenizer, SpacePrefixIsAddedAndRemovedAgain) {
  const Tokenizer tok(tiny_spm(true));
  EXPECT_EQ(tok.encode("a", false), (std::vector<int32_t>{10}));  // "▁a"
  EXPECT_EQ(tok.decode(tok.encode("a b", true)), "a b");
  StreamingDetokenizer stream(tok);
  std::string out;
  for (int32_t id : tok.encode("a b", true)) out += stream.push(id);
  EXPECT_EQ(out + stream.finish(), "a b");
}

// ---- errors and UTF-8 handling ----------------------------------------------------------

template <class Fn>
std::string tokenizer_error(Fn&& fn) {
  try {
    fn();
  } catch (const TokenizerError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a TokenizerError";
  return "";
}

TEST(TokenizerErrors, NameWhatIsWrong) {
  const Tokenizer tok(tiny_spm(false));
  EXPECT_NE(
      tokenizer_error([&] { tok.encode("ok\xC3(", false); }).find("not valid UTF-8 at byte 2"),
      std::string::npos);
  EXPECT_NE(tokenizer_error([&] { tok.token_bytes(1 << 20); }).find("token id 1048576"),
            std::string::npos);

  TokenizerSpec bpe;
  bpe.model = TokenizerModel::kBpe;
  bpe.tokens = {"a", "b", "ab"};
  bpe.merges = {"a c"};
  EXPECT_NE(tokenizer_error([&] { Tokenizer t(bpe); }).find("merge 0 'a c'"), std::string::npos);
  bpe.merges = {"a b"};
  bpe.pre = "mystery";
  EXPECT_NE(tokenizer_error([&] { Tokenizer t(bpe); }).find("pre-tokenizer 'mystery'"),
            std::string::npos);
  TokenizerSpec bad = tiny_spm(false);
  bad.bos_id = 99999;
  EXPECT_NE(tokenizer_error([&] { Tokenizer t(bad); }).find("bos id 99999"), std::string::npos);
  EXPECT_NE(tokenizer_error([&] {
              spec_from_tokenizer_json("{\"model\": {\"type\": \"Unigram\"}}", "t.json");
            }).find("t.json: model.type 'Unigram'"),
            std::string::npos);
}

TEST(Utf8Sanitize, ReplacesMaximalInvalidSubpartsLikePython) {
  // Expected values are Python's bytes.decode("utf-8", "replace").
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_sanitize("ok"), "ok");
  EXPECT_EQ(utf8_sanitize("\xE2\x82"), r);
  EXPECT_EQ(utf8_sanitize("\xC0\x80"), r + r);
  EXPECT_EQ(utf8_sanitize("\xED\xA0\x80"), r + r + r);
  EXPECT_EQ(utf8_sanitize("\xF0\x9F\x98"
                          "A"),
            r + "A");
  EXPECT_EQ(utf8_sanitize("\xF4\x90\x80\x80"), r + r + r + r);
  size_t tail = 0;
  EXPECT_EQ(utf8_sanitize("x\xF0\x9F\x98", true, &tail), "x");
  EXPECT_EQ(tail, 3u);
}

}  // namespace
}  // namespace kdr::model
