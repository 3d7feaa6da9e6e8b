// BERT's WordPiece tokenizer: ids against Hugging Face `tokenizers` on all-MiniLM-L6-v2's
// tokenizer.json (fixture from scripts/gen_embedding_fixtures.py: accents, CJK, Korean,
// punctuation, control characters, long words, the empty string), and the greedy
// longest-match rule against a plain reference on random vocabularies and words.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "../base/seed.h"
#include "model/model_paths.h"
#include "model/tokenizer.h"

namespace kdr::model {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json read_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return json::parse(s.str());
}

// A tokenizer.json with a WordPiece model over `vocab` (ids in order, the five BERT
// specials first) and the BERT normalizer, pre-tokenizer and post-processor.
std::string wordpiece_json(const std::vector<std::string>& vocab, int max_chars = 100,
                           const json& normalizer = json{{"type", "BertNormalizer"},
                                                         {"clean_text", true},
                                                         {"handle_chinese_chars", true},
                                                         {"strip_accents", nullptr},
                                                         {"lowercase", true}}) {
  json v = json::object();
  for (size_t i = 0; i < vocab.size(); ++i) v[vocab[i]] = i;
  json added = json::array();
  for (int i = 0; i < 5; ++i)
    added.push_back({{"id", i}, {"content", vocab[i]}, {"special", true}});
  return json{{"added_tokens", added},
              {"normalizer", normalizer},
              {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
              {"post_processor",
               {{"type", "BertProcessing"}, {"sep", {"[SEP]", 3}}, {"cls", {"[CLS]", 2}}}},
              {"model",
               {{"type", "WordPiece"},
                {"unk_token", "[UNK]"},
                {"continuing_subword_prefix", "##"},
                {"max_input_chars_per_word", max_chars},
                {"vocab", v}}}}
      .dump();
}

const std::vector<std::string> kSpecials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

TEST(WordPiece, MatchesHuggingFaceTokenizersOnMiniLm) {
  const auto dir = recorded_model_path("embedding.path");
  if (!dir) GTEST_SKIP() << "no embedding model (models/embedding.path); run scripts/setup";
  const Tokenizer tok(spec_from_tokenizer_json_file(*dir + "/tokenizer.json"));
  const json fixture =
      read_json(fs::path(KDR_SOURCE_DIR) / "tests/data/embeddings/wordpiece_tokens.json");
  const json& texts = fixture.at("texts");
  ASSERT_GE(texts.size(), 50u);
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i];
    const auto want = fixture.at("ids")[i].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(text), want) << "text " << i << ": " << json(text).dump();
  }
}

TEST(WordPiece, SplitsWordsIntoLongestKnownPieces) {
  std::vector<std::string> vocab = kSpecials;
  for (const char* t : {"un", "##aff", "##able", "aff", "able", "##a", "##ff", ",", "hello",
                        "##llo", "he", "cafe", "中", "文", "x"})
    vocab.push_back(t);
  const Tokenizer tok(spec_from_tokenizer_json(wordpiece_json(vocab, 5), "test.json"));
  const auto id = [&](const char* s) { return tok.token_id(s); };
  // [CLS] and [SEP] around; accents stripped and lowercased; CJK split; punctuation split;
  // a word no pieces spell is [UNK] as a whole; a word over 5 characters is [UNK].
  EXPECT_EQ(tok.encode("UnAff, Café中文 hezz xxxxxx he"),
            (std::vector<int32_t>{2, id("un"), id("##aff"), id(","), id("cafe"), id("中"), id("文"),
                                  1, 1, id("he"), 3}));
  EXPECT_EQ(tok.encode(""), (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(tok.encode("unaffable", false), (std::vector<int32_t>{1}));  // 9 > 5 characters
  EXPECT_EQ(tok.decode(tok.encode("unaff, hello")), "unaff , hello");
}

TEST(WordPiece, KeepsCaseAndAccentsWhenTheNormalizerSaysSo) {
  std::vector<std::string> vocab = kSpecials;
  for (const char* t : {"Café", "cafe", "##é"}) vocab.push_back(t);
  const json keep = {{"type", "BertNormalizer"},
                     {"clean_text", true},
                     {"handle_chinese_chars", true},
                     {"strip_accents", false},
                     {"lowercase", false}};
  const Tokenizer tok(spec_from_tokenizer_json(wordpiece_json(vocab, 100, keep), "t.json"));
  EXPECT_EQ(tok.encode("Café", false), (std::vector<int32_t>{tok.token_id("Café")}));
}

// Greedy longest-match-first, written plainly: at each position try every end from the
// longest; any failure makes the word [UNK].
std::vector<std::string> reference_pieces(const std::string& word,
                                          const std::vector<std::string>& vocab) {
  const auto known = [&](const std::string& p) {
    return std::find(vocab.begin(), vocab.end(), p) != vocab.end();
  };
  std::vector<std::string> out;
  size_t start = 0;
  while (start < word.size()) {
    bool found = false;
    for (size_t end = word.size(); end > start; --end) {
      const std::string piece = (start ? "##" : "") + word.substr(start, end - start);
      if (known(piece)) {
        out.push_back(piece);
        start = end;
        found = true;
        break;
      }
    }
    if (!found) return {"[UNK]"};
  }
  return out;
}

TEST(WordPiece, RandomVocabulariesMatchAPlainGreedyReference) {
  std::mt19937_64 rng(kdr_test::test_seed());
  for (int round = 0; round < 50; ++round) {
    std::vector<std::string> vocab = kSpecials;
    const auto random_word = [&](size_t max_len) {
      std::string w;
      const size_t len = 1 + rng() % max_len;
      for (size_t i = 0; i < len; ++i) w += static_cast<char>('a' + rng() % 3);
      return w;
    };
    for (int i = 0; i < 30; ++i) {
      std::string piece = (rng() % 2 ? "##" : "") + random_word(4);
      if (std::find(vocab.begin(), vocab.end(), piece) == vocab.end()) vocab.push_back(piece);
    }
    const Tokenizer tok(spec_from_tokenizer_json(wordpiece_json(vocab), "random.json"));
    std::string text;
    std::vector<int32_t> want;
    for (int w = 0; w < 8; ++w) {
      const std::string word = random_word(10);
      text += word + " ";
      for (const std::string& p : reference_pieces(word, vocab)) want.push_back(tok.token_id(p));
    }
    EXPECT_EQ(tok.encode(text, false), want) << "text: " << text;
  }
}

TEST(WordPiece, TokenizerJsonErrorsNameTheProblem) {
  std::vector<std::string> vocab = kSpecials;
  json j = json::parse(wordpiece_json(vocab));
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  try {
    spec_from_tokenizer_json(j.dump(), "bad.json");
    ADD_FAILURE() << "expected an error";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("BertPreTokenizer"), std::string::npos) << e.what();
  }
  j = json::parse(wordpiece_json(vocab));
  j["model"]["unk_token"] = "<unk>";
  try {
    spec_from_tokenizer_json(j.dump(), "bad.json");
    ADD_FAILURE() << "expected an error";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("unk_token '<unk>'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kdr::model
