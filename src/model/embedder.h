// Sentence embeddings from a sentence-transformers folder: a BERT encoder (bert.h), its
// WordPiece tokenizer (tokenizer.json), pooling as 1_Pooling/config.json says (mean over the
// tokens, [CLS], max, or mean scaled by sqrt(length)), and L2 normalisation when modules.json
// lists sentence_transformers.models.Normalize. Texts longer than max_tokens() (from
// sentence_bert_config.json's max_seq_length, 256 for all-MiniLM-L6-v2, else the model's
// positions) are cut to their first max_tokens() tokens, [SEP] last, as sentence-transformers
// does.
//
// Used by `kdr embed`, the server's /v1/embeddings and the research agent's retrieval.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/thread_pool.h"
#include "model/bert.h"
#include "model/tokenizer.h"

namespace kdr::model {

enum class EmbeddingPooling { kMean, kCls, kMax, kMeanSqrtLen };

class Embedder {
 public:
  // `dir` is the folder with config.json, model.safetensors, tokenizer.json and, optionally,
  // modules.json, 1_Pooling/config.json and sentence_bert_config.json. The pool runs every
  // forward pass and must outlive the Embedder. Throws ModelFileError or TokenizerError
  // naming the file and what is wrong.
  static std::unique_ptr<Embedder> load(const std::string& dir, ThreadPool& pool);
  Embedder(std::unique_ptr<BertModel> model, Tokenizer tokenizer, ThreadPool& pool,
           std::string name, int32_t max_tokens, EmbeddingPooling pooling, bool normalize);

  int32_t dim() const { return model_->config().hidden; }
  int32_t max_tokens() const { return max_tokens_; }
  const std::string& name() const { return name_; }
  EmbeddingPooling pooling() const { return pooling_; }
  bool normalizes() const { return normalize_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const BertModel& model() const { return *model_; }

  // The ids the model sees for `text`: [CLS] pieces [SEP], cut to max_tokens(). Throws
  // TokenizerError on text that is not UTF-8.
  std::vector<int32_t> tokenize(std::string_view text) const;

  // One vector per text (normalised as the model's config says), in order. Texts are packed
  // into batches without padding; a text's vector does not depend on the others.
  // Thread-safe: calls are serialised (one forward pass at a time on the pool).
  std::vector<std::vector<float>> embed(std::span<const std::string> texts) const;
  // The same from token ids, used as given (no [CLS]/[SEP] added), cut to max_tokens().
  // Throws std::invalid_argument naming the input and id outside the vocabulary, or an
  // empty input.
  std::vector<std::vector<float>> embed_tokens(std::span<const std::vector<int32_t>> inputs) const;

  // Tokens the texts take after truncation, [CLS] and [SEP] included.
  int64_t count_tokens(std::span<const std::string> texts) const;

 private:
  std::unique_ptr<BertModel> model_;
  Tokenizer tokenizer_;
  ThreadPool* pool_;
  std::string name_;
  int32_t max_tokens_;
  EmbeddingPooling pooling_;
  bool normalize_;
  mutable std::mutex mu_;
};

// The embedding model recorded by scripts/setup (models/embedding.path), searched like
// engine::default_model_path(). Throws std::runtime_error saying how to install it.
std::string default_embedding_model_path();

}  // namespace kdr::model
