// Sentence embeddings: the BERT encoder and pooling against a plain double-precision
// reference on tiny random BERTs written to a temp folder (f32 and f16 weights, mean / CLS /
// max pooling, random token inputs), and all-MiniLM-L6-v2 against sentence-transformers on
// PyTorch (fixture from scripts/gen_embedding_fixtures.py): same token ids, cosine >= 0.999.
#include "model/embedder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "base/dtype.h"
#include "model/model_paths.h"
#include "model_test_util.h"

namespace kdr::model {
namespace {

using nlohmann::json;
using testing::Entry;
using testing::TempDir;

// A random BERT as PyTorch would hold it, [out][in] matrices, values as stored (f16-rounded
// when written as F16).
struct RefLayer {
  std::vector<double> wq, bq, wk, bk, wv, bv, wo, bo, n1w, n1b, wu, bu, wd, bd, n2w, n2b;
};
struct RefBert {
  int vocab = 60, hidden = 32, heads = 4, layers = 2, ffn = 48, positions = 40;
  std::vector<double> word, pos, type, enw, enb;
  std::vector<RefLayer> l;
};

struct Writer {
  std::mt19937_64& rng;
  bool f16;
  std::vector<Entry> entries;
  // Draws n values around `center`, stores them and returns what the file holds.
  std::vector<double> add(const std::string& name, std::vector<int64_t> shape, double scale,
                          double center = 0.0) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    std::normal_distribution<double> normal(center, scale);
    std::vector<double> values(n);
    Entry e{name, f16 ? "F16" : "F32", shape, {}};
    e.data.resize(n * (f16 ? 2 : 4));
    for (size_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(normal(rng));
      if (f16) {
        const uint16_t h = f32_to_f16(v);
        std::memcpy(&e.data[2 * i], &h, 2);
        values[i] = f16_to_f32(h);
      } else {
        std::memcpy(&e.data[4 * i], &v, 4);
        values[i] = v;
      }
    }
    entries.push_back(std::move(e));
    return values;
  }
};

// Writes config.json, model.safetensors, tokenizer.json, modules.json and the pooling config.
RefBert write_random_bert(const TempDir& dir, std::mt19937_64& rng, bool f16,
                          const std::string& pooling, const std::string& prefix = "") {
  RefBert m;
  Writer w{rng, f16, {}};
  const int64_t h = m.hidden, f = m.ffn;
  const std::string e = prefix + "embeddings.";
  m.word = w.add(e + "word_embeddings.weight", {m.vocab, h}, 1.0);
  m.pos = w.add(e + "position_embeddings.weight", {m.positions, h}, 0.5);
  m.type = w.add(e + "token_type_embeddings.weight", {2, h}, 0.5);
  m.enw = w.add(e + "LayerNorm.weight", {h}, 0.1, 1.0);
  m.enb = w.add(e + "LayerNorm.bias", {h}, 0.1);
  const double sh = 1.0 / std::sqrt(static_cast<double>(h)),
               sf = 1.0 / std::sqrt(static_cast<double>(f));
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = prefix + "encoder.layer." + std::to_string(l) + ".";
    RefLayer L;
    L.wq = w.add(p + "attention.self.query.weight", {h, h}, 2 * sh);
    L.bq = w.add(p + "attention.self.query.bias", {h}, 0.1);
    L.wk = w.add(p + "attention.self.key.weight", {h, h}, 2 * sh);
    L.bk = w.add(p + "attention.self.key.bias", {h}, 0.1);
    L.wv = w.add(p + "attention.self.value.weight", {h, h}, sh);
    L.bv = w.add(p + "attention.self.value.bias", {h}, 0.1);
    L.wo = w.add(p + "attention.output.dense.weight", {h, h}, sh);
    L.bo = w.add(p + "attention.output.dense.bias", {h}, 0.1);
    L.n1w = w.add(p + "attention.output.LayerNorm.weight", {h}, 0.1, 1.0);
    L.n1b = w.add(p + "attention.output.LayerNorm.bias", {h}, 0.1);
    L.wu = w.add(p + "intermediate.dense.weight", {f, h}, sh);
    L.bu = w.add(p + "intermediate.dense.bias", {f}, 0.1);
    L.wd = w.add(p + "output.dense.weight", {h, f}, sf);
    L.bd = w.add(p + "output.dense.bias", {h}, 0.1);
    L.n2w = w.add(p + "output.LayerNorm.weight", {h}, 0.1, 1.0);
    L.n2b = w.add(p + "output.LayerNorm.bias", {h}, 0.1);
    m.l.push_back(std::move(L));
  }
  testing::write_bytes(dir.file("model.safetensors"), testing::make_safetensors(w.entries));
  const json config = {{"model_type", "bert"},
                       {"vocab_size", m.vocab},
                       {"hidden_size", m.hidden},
                       {"num_hidden_layers", m.layers},
                       {"num_attention_heads", m.heads},
                       {"intermediate_size", m.ffn},
                       {"max_position_embeddings", m.positions},
                       {"type_vocab_size", 2},
                       {"layer_norm_eps", 1e-12},
                       {"hidden_act", "gelu"}};
  std::ofstream(dir.file("config.json")) << config.dump();
  json vocab = json::object();
  const char* specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (int i = 0; i < 5; ++i) vocab[specials[i]] = i;
  for (int i = 5; i < m.vocab; ++i)
    vocab[(i % 2 ? "##" : "") + std::string(1, 'a' + (i - 5) / 2)] = i;
  json added = json::array();
  for (int i = 0; i < 5; ++i)
    added.push_back({{"id", i}, {"content", specials[i]}, {"special", true}});
  const json tokenizer = {
      {"added_tokens", added},
      {"normalizer", {{"type", "BertNormalizer"}, {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "[CLS]"}}}},
          {{"Sequence", {{"id", "A"}}}},
          {{"SpecialToken", {{"id", "[SEP]"}}}}}},
        {"special_tokens",
         {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}}},
          {"[SEP]", {{"id", "[SEP]"}, {"ids", {3}}}}}}}},
      {"model", {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"vocab", vocab}}}};
  std::ofstream(dir.file("tokenizer.json")) << tokenizer.dump();
  std::ofstream(dir.file("modules.json"))
      << json::array(
             {{{"idx", 0}, {"path", ""}, {"type", "sentence_transformers.models.Transformer"}},
              {{"idx", 1}, {"path", "1_Pooling"}, {"type", "sentence_transformers.models.Pooling"}},
              {{"idx", 2},
               {"path", "2_Normalize"},
               {"type", "sentence_transformers.models.Normalize"}}})
             .dump();
  std::filesystem::create_directory(dir.file("1_Pooling"));
  std::ofstream(dir.file("1_Pooling/config.json")) << json{
      {"word_embedding_dimension", m.hidden},
      {"pooling_mode_mean_tokens", pooling == "mean"},
      {"pooling_mode_cls_token", pooling == "cls"},
      {"pooling_mode_max_tokens", pooling == "max"}}.dump();
  std::ofstream(dir.file("sentence_bert_config.json")) << json{{"max_seq_length", 24}}.dump();
  return m;
}

void layer_norm(std::vector<double>& x, const std::vector<double>& w,
                const std::vector<double>& b) {
  double mean = 0, var = 0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(x.size());
  for (double v : x) var += (v - mean) * (v - mean);
  var /= static_cast<double>(x.size());
  const double inv = 1.0 / std::sqrt(var + 1e-12);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (x[i] - mean) * inv * w[i] + b[i];
}

// y = W x + b for W [out][in].
std::vector<double> linear(const std::vector<double>& w, const std::vector<double>& b,
                           const std::vector<double>& x) {
  std::vector<double> y(b);
  for (size_t o = 0; o < b.size(); ++o)
    for (size_t i = 0; i < x.size(); ++i) y[o] += w[o * x.size() + i] * x[i];
  return y;
}

// The encoder written plainly in double: hidden states of one sequence.
std::vector<std::vector<double>> reference_encode(const RefBert& m,
                                                  const std::vector<int32_t>& ids) {
  const size_t n = ids.size(), h = m.hidden, d = h / m.heads;
  std::vector<std::vector<double>> x(n, std::vector<double>(h));
  for (size_t t = 0; t < n; ++t) {
    for (size_t i = 0; i < h; ++i) x[t][i] = m.word[ids[t] * h + i] + m.pos[t * h + i] + m.type[i];
    layer_norm(x[t], m.enw, m.enb);
  }
  for (const RefLayer& L : m.l) {
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (size_t t = 0; t < n; ++t) {
      q[t] = linear(L.wq, L.bq, x[t]);
      k[t] = linear(L.wk, L.bk, x[t]);
      v[t] = linear(L.wv, L.bv, x[t]);
    }
    for (size_t t = 0; t < n; ++t) {
      std::vector<double> ctx(h, 0.0);
      for (size_t head = 0; head < static_cast<size_t>(m.heads); ++head) {
        std::vector<double> s(n);
        double mx = -1e300, sum = 0;
        for (size_t j = 0; j < n; ++j) {
          s[j] = 0;
          for (size_t i = 0; i < d; ++i) s[j] += q[t][head * d + i] * k[j][head * d + i];
          s[j] /= std::sqrt(static_cast<double>(d));
          mx = std::max(mx, s[j]);
        }
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (size_t j = 0; j < n; ++j)
          for (size_t i = 0; i < d; ++i) ctx[head * d + i] += s[j] / sum * v[j][head * d + i];
      }
      std::vector<double> a = linear(L.wo, L.bo, ctx);
      for (size_t i = 0; i < h; ++i) a[i] += x[t][i];
      layer_norm(a, L.n1w, L.n1b);
      std::vector<double> u = linear(L.wu, L.bu, a);
      for (double& e : u) e = 0.5 * e * (1.0 + std::erf(e / std::sqrt(2.0)));
      std::vector<double> o = linear(L.wd, L.bd, u);
      for (size_t i = 0; i < h; ++i) o[i] += a[i];
      layer_norm(o, L.n2w, L.n2b);
      x[t] = o;  // rows already used by later tokens' attention were read above
    }
  }
  return x;
}

std::vector<double> reference_embedding(const RefBert& m, const std::vector<int32_t>& ids,
                                        const std::string& pooling) {
  const auto x = reference_encode(m, ids);
  std::vector<double> e(m.hidden, pooling == "max" ? -1e300 : 0.0);
  for (size_t t = 0; t < x.size(); ++t)
    for (int i = 0; i < m.hidden; ++i) {
      if (pooling == "mean") e[i] += x[t][i] / static_cast<double>(x.size());
      if (pooling == "max") e[i] = std::max(e[i], x[t][i]);
      if (pooling == "cls" && t == 0) e[i] = x[t][i];
    }
  double norm = 0;
  for (double v : e) norm += v * v;
  for (double& v : e) v /= std::sqrt(norm);
  return e;
}

struct RandomCase {
  bool f16;
  const char* pooling;
  const char* prefix;
};

class RandomBert : public ::testing::TestWithParam<RandomCase> {};

TEST_P(RandomBert, MatchesAPlainDoubleReferenceOnRandomTokens) {
  const RandomCase c = GetParam();
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  const RefBert m = write_random_bert(dir, rng, c.f16, c.pooling, c.prefix);
  ThreadPool pool(2);
  const auto embedder = Embedder::load(dir.file(""), pool);
  ASSERT_EQ(embedder->dim(), m.hidden);
  ASSERT_EQ(embedder->max_tokens(), 24);
  // Random lengths (1 to 30: the longer ones are cut to 24) and random ids.
  std::vector<std::vector<int32_t>> inputs(9);
  for (auto& in : inputs) {
    in.resize(1 + rng() % 30);
    for (int32_t& id : in) id = static_cast<int32_t>(rng() % m.vocab);
  }
  const auto got = embedder->embed_tokens(inputs);
  ASSERT_EQ(got.size(), inputs.size());
  for (size_t s = 0; s < inputs.size(); ++s) {
    std::vector<int32_t> ids = inputs[s];
    if (ids.size() > 24) ids.resize(24);
    const std::vector<double> want = reference_embedding(m, ids, c.pooling);
    double dot = 0, worst = 0;
    for (int i = 0; i < m.hidden; ++i) {
      dot += want[i] * got[s][i];
      worst = std::max(worst, std::abs(want[i] - got[s][i]));
    }
    EXPECT_LT(worst, 1e-4) << "input " << s << " (" << ids.size() << " tokens)";
    EXPECT_GT(dot, 0.99999) << "input " << s;
  }
  // A sequence's vector does not depend on what else is in the batch.
  const auto alone = embedder->embed_tokens(std::span(inputs).subspan(3, 1));
  EXPECT_EQ(alone[0], got[3]);
}

INSTANTIATE_TEST_SUITE_P(Weights, RandomBert,
                         ::testing::Values(RandomCase{false, "mean", ""},
                                           RandomCase{true, "mean", ""},
                                           RandomCase{false, "cls", "bert."},
                                           RandomCase{false, "max", ""}),
                         [](const auto& info) {
                           return std::string(info.param.f16 ? "f16_" : "f32_") +
                                  info.param.pooling + (*info.param.prefix ? "_prefixed" : "");
                         });

TEST(Embedder, TextsAreTokenizedWithClsAndSepAndCutToMaxTokens) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  write_random_bert(dir, rng, false, "mean");
  ThreadPool pool(1);
  const auto embedder = Embedder::load(dir.file(""), pool);
  // Vocabulary from id 5: ##a, a, ##b, b, ...
  EXPECT_EQ(embedder->tokenize("ab B"), (std::vector<int32_t>{2, 6, 7, 8, 3}));
  const std::string long_text(100, 'a');  // one word of 100 pieces: a ##a ##a ...
  const std::vector<int32_t> cut = embedder->tokenize(long_text);
  ASSERT_EQ(cut.size(), 24u);
  EXPECT_EQ(cut.front(), 2);
  EXPECT_EQ(cut.back(), 3);
  const std::vector<std::string> texts = {"ab B", long_text, ""};
  EXPECT_EQ(embedder->count_tokens(texts), 5 + 24 + 2);
  const auto by_text = embedder->embed(texts);
  const auto by_ids = embedder->embed_tokens(
      std::vector<std::vector<int32_t>>{embedder->tokenize(texts[0]), cut, embedder->tokenize("")});
  EXPECT_EQ(by_text, by_ids);
}

TEST(Embedder, BadModelFoldersAndInputsNameTheProblem) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  write_random_bert(dir, rng, false, "mean");
  ThreadPool pool(1);
  {
    const auto embedder = Embedder::load(dir.file(""), pool);
    try {
      embedder->embed_tokens(std::vector<std::vector<int32_t>>{{2, 3}, {2, 999}});
      ADD_FAILURE() << "expected an error";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("input 1: token id 999"), std::string::npos) << e.what();
    }
  }
  std::ofstream(dir.file("config.json")) << json{{"model_type", "llama"}}.dump();
  EXPECT_MODEL_ERROR(Embedder::load(dir.file(""), pool), "model_type 'llama'");
}

// all-MiniLM-L6-v2 against sentence-transformers: the ids it feeds the model and its vectors.
TEST(Embedder, MiniLmMatchesSentenceTransformers) {
  const auto dir = recorded_model_path("embedding.path");
  if (!dir) GTEST_SKIP() << "no embedding model (models/embedding.path); run scripts/setup";
  std::ifstream in(std::string(KDR_SOURCE_DIR) + "/tests/data/embeddings/all_minilm_l6_v2.json");
  ASSERT_TRUE(in);
  std::ostringstream text;
  text << in.rdbuf();
  const json fixture = json::parse(text.str());
  ThreadPool pool(2);
  const auto embedder = Embedder::load(*dir, pool);
  EXPECT_EQ(embedder->dim(), 384);
  EXPECT_EQ(embedder->max_tokens(), fixture.at("max_seq_length").get<int>());
  EXPECT_EQ(embedder->pooling(), EmbeddingPooling::kMean);
  EXPECT_TRUE(embedder->normalizes());
  const auto texts = fixture.at("texts").get<std::vector<std::string>>();
  ASSERT_GE(texts.size(), 40u);
  const auto vectors = embedder->embed(texts);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(embedder->tokenize(texts[i]), fixture.at("ids")[i].get<std::vector<int32_t>>())
        << "text " << i << ": " << json(texts[i]).dump();
    const auto want = fixture.at("vectors")[i].get<std::vector<double>>();
    ASSERT_EQ(want.size(), vectors[i].size());
    double dot = 0, nw = 0, ng = 0;
    for (size_t k = 0; k < want.size(); ++k) {
      dot += want[k] * vectors[i][k];
      nw += want[k] * want[k];
      ng += static_cast<double>(vectors[i][k]) * vectors[i][k];
    }
    EXPECT_GE(dot / std::sqrt(nw * ng), 0.999) << "text " << i << ": " << json(texts[i]).dump();
    EXPECT_NEAR(ng, 1.0, 1e-5) << "text " << i;
  }
}

}  // namespace
}  // namespace kdr::model
