// The hyperparameters of a decoder-only transformer, read from GGUF metadata or from a
// Hugging Face config.json, normalised so the forward pass needs no per-format branches.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "ops/rope.h"

namespace kdr::model {

class GgufFile;

enum class Arch { kLlama, kQwen2, kQwen3, kGemma3 };
const char* arch_name(Arch arch);

enum class Activation { kSilu, kGeluTanh };

struct ModelConfig {
  Arch arch = Arch::kLlama;
  int32_t vocab_size = 0;
  int32_t hidden = 0;
  int32_t num_layers = 0;
  int32_t ffn_hidden = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t context_length = 0;
  float norm_eps = 1e-6f;
  Activation activation = Activation::kSilu;

  // kInterleaved for llama GGUF files (their converter permuted Q/K), kHalfSplit for Hugging
  // Face weights and qwen2/qwen3/gemma3 everywhere.
  ops::RopeStyle rope_style = ops::RopeStyle::kHalfSplit;
  float rope_base = 10000.0f;        // global (full-attention) layers
  float rope_base_local = 10000.0f;  // sliding-window layers (Gemma-3)
  float rope_linear_factor = 1.0f;   // positions divided by this on global layers
  // Llama-3.1 style: per-pair divisors of the inverse frequencies (empty: none).
  std::vector<float> rope_freq_factors;

  float attn_scale = 0.0f;              // softmax scale (1/sqrt(head_dim) unless the model says)
  int32_t sliding_window = 0;           // for layers marked local
  std::vector<uint8_t> layer_is_local;  // [num_layers]

  bool qkv_bias = false;          // qwen2
  bool qk_norm = false;           // qwen3, gemma3
  bool sandwich_norms = false;    // gemma3: post-attention and post-ffn norms
  bool scale_embeddings = false;  // gemma3: embeddings times sqrt(hidden)
  bool tied_embeddings = false;
  float final_logit_soft_cap = 0.0f;
  float attn_logit_soft_cap = 0.0f;

  int32_t bos_id = -1;
  int32_t eos_id = -1;

  // Sanity checks with messages naming the value; `source` names the file.
  void validate(const std::string& source) const;
};

// Reads `<arch>.*` keys; rope style follows llama.cpp's conventions per architecture.
ModelConfig config_from_gguf(const GgufFile& file);
// Reads a transformers config.json (already parsed); weights are in HF (half-split) form.
ModelConfig config_from_hf(const nlohmann::json& config, const std::string& source);

}  // namespace kdr::model
