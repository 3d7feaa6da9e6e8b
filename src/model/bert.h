// The BERT encoder of sentence-embedding models (all-MiniLM-L6-v2, bge, e5, ...): loaded from
// a Hugging Face folder (config.json with model_type "bert", safetensors weights in f32, f16
// or bf16, kept as f32) and run on a packed batch of sequences. Attention is bidirectional
// within each sequence; sequences never see each other, so no padding is computed, and a
// sequence's result does not depend on the others in the batch (ops/gemm.h is batch
// invariant).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "ops/gemm.h"

namespace kdr::model {

class HfModelDir;

struct BertConfig {
  int32_t vocab_size = 0;
  int32_t hidden = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t ffn_hidden = 0;
  int32_t max_positions = 0;  // max_position_embeddings
  int32_t type_vocab_size = 0;
  float norm_eps = 1e-12f;
  bool gelu_tanh = false;  // hidden_act "gelu_new" / "gelu_pytorch_tanh"; else "gelu" (erf)
  int32_t head_dim() const { return hidden / num_heads; }
};

// One encoder layer: matrices packed for ops::gemm_f32, vectors in f32.
struct BertLayer {
  ops::PackedWeights w_qkv;  // query, key, value stacked: [3 * hidden][hidden]
  ops::PackedWeights w_out, w_up, w_down;
  std::vector<float> b_qkv, b_out, norm1_w, norm1_b, b_up, b_down, norm2_w, norm2_b;
};

class BertModel {
 public:
  // Throws ModelFileError naming the file and key or tensor that is wrong (model_type,
  // hidden_act, position_embedding_type, shapes, dtypes). Tensor names may carry the
  // "bert." prefix of task-head checkpoints.
  static std::unique_ptr<BertModel> load(const HfModelDir& dir);
  // Builds a model from weights in memory (tests).
  BertModel(BertConfig config, std::vector<float> word_embeddings,
            std::vector<float> position_embeddings, std::vector<float> type_embeddings,
            std::vector<float> embed_norm_w, std::vector<float> embed_norm_b,
            std::vector<BertLayer> layers);

  const BertConfig& config() const { return config_; }

  // The last layer's hidden states, out[t][hidden], for tokens packed sequence after
  // sequence: sequence i is tokens[cu_seq_lens[i], cu_seq_lens[i + 1]), its positions start
  // at 0, token type 0. Throws std::invalid_argument on a token id outside the vocabulary
  // or a sequence longer than max_positions. Not re-entrant (pool.parallel_for).
  void encode(ThreadPool& pool, std::span<const int32_t> tokens,
              std::span<const int32_t> cu_seq_lens, float* out) const;

 private:
  BertConfig config_;
  std::vector<float> word_, position_, type_, embed_norm_w_, embed_norm_b_;
  std::vector<BertLayer> layers_;
};

}  // namespace kdr::model
