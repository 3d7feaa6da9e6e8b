// A loaded model: its config and views of every weight, mapped from a GGUF file or a
// Hugging Face folder (safetensors). Large matrices stay in the mapped file in their stored
// type; small vectors (norms, biases) are copied to f32, with format conventions applied
// (Gemma's (1 + w) norms are stored pre-added in GGUF, added here for safetensors).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tensor.h"

namespace kdr::model {

class GgufFile;
class HfModelDir;

// A matrix of `rows` output features, each a row of `cols` inputs in `type`'s blocks.
struct Weight {
  DType type = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;
  bool present() const { return data != nullptr; }
};

struct LayerWeights {
  std::vector<float> attn_norm, q_norm, k_norm, post_attn_norm, ffn_norm, post_ffn_norm;
  std::vector<float> q_bias, k_bias, v_bias;
  Weight wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct LoadOptions {
  // Dequantize every matrix to f32 at load (memory grows to 4 bytes per weight). Matmuls then
  // read f32 weights instead of decoding blocks per tile: a diagnostic that separates the
  // matmul's decoding from the rest of the forward pass when comparing with an f32 reference.
  bool dequantize_to_f32 = false;
};

class Model {
 public:
  // `path` is a .gguf file or a folder with config.json + safetensors. Throws
  // ModelFileError naming the file and tensor on any problem.
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& options = {});
  ~Model();

  const ModelConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  const Weight& token_embedding() const { return token_embd_; }
  const Weight& output() const { return output_; }  // the embedding when tied
  const std::vector<float>& output_norm() const { return output_norm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  // Bytes of all weights (for memory reporting).
  size_t weight_bytes() const { return weight_bytes_; }
  const GgufFile* gguf() const { return gguf_.get(); }
  const HfModelDir* hf_dir() const { return hf_.get(); }

  // Row `token` of the embedding table as f32 (dequantized), not yet scaled.
  void embedding_row(int32_t token, float* out) const;

 private:
  Model() = default;
  std::string path_;
  ModelConfig config_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<HfModelDir> hf_;
  Weight token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  size_t weight_bytes_ = 0;
  std::vector<std::unique_ptr<float[]>> owned_;  // dequantized matrices (LoadOptions)
  friend class ModelLoader;
};

}  // namespace kdr::model
