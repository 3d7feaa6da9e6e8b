#include "model/weights.h"

#include <filesystem>

#include "model/gguf.h"
#include "model/hf_dir.h"
#include "ops/quant.h"

namespace kdr::model {

Model::~Model() = default;

// Resolves weights by their GGUF name or their Hugging Face name, whichever the model uses.
class ModelLoader {
 public:
  ModelLoader(Model& m, const LoadOptions& o) : m_(m), options_(o) {}

  void load() {
    const ModelConfig& c = m_.config_;
    const int64_t q_out = static_cast<int64_t>(c.num_heads) * c.head_dim;
    const int64_t kv_out = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
    m_.token_embd_ = matrix("token_embd.weight", "embed_tokens.weight", c.hidden, c.vocab_size);
    m_.output_norm_ = vec("output_norm.weight", "norm.weight", c.hidden, true);
    if (c.tied_embeddings || !has("output.weight", "lm_head.weight")) {
      m_.output_ = m_.token_embd_;
    } else {
      m_.output_ = matrix("output.weight", "lm_head.weight", c.hidden, c.vocab_size);
    }
    m_.layers_.resize(static_cast<size_t>(c.num_layers));
    for (int32_t i = 0; i < c.num_layers; ++i) {
      LayerWeights& l = m_.layers_[i];
      const std::string g = "blk." + std::to_string(i) + ".";
      const std::string h = "layers." + std::to_string(i) + ".";
      l.attn_norm = vec(g + "attn_norm.weight", h + "input_layernorm.weight", c.hidden, true);
      l.wq = matrix(g + "attn_q.weight", h + "self_attn.q_proj.weight", c.hidden, q_out);
      l.wk = matrix(g + "attn_k.weight", h + "self_attn.k_proj.weight", c.hidden, kv_out);
      l.wv = matrix(g + "attn_v.weight", h + "self_attn.v_proj.weight", c.hidden, kv_out);
      l.wo = matrix(g + "attn_output.weight", h + "self_attn.o_proj.weight", q_out, c.hidden);
      if (c.qkv_bias) {
        l.q_bias = vec(g + "attn_q.bias", h + "self_attn.q_proj.bias", q_out, false);
        l.k_bias = vec(g + "attn_k.bias", h + "self_attn.k_proj.bias", kv_out, false);
        l.v_bias = vec(g + "attn_v.bias", h + "self_attn.v_proj.bias", kv_out, false);
      }
      if (c.qk_norm) {
        l.q_norm = vec(g + "attn_q_norm.weight", h + "self_attn.q_norm.weight", c.head_dim, true);
        l.k_norm = vec(g + "attn_k_norm.weight", h + "self_attn.k_norm.weight", c.head_dim, true);
      }
      if (c.sandwich_norms) {
        l.post_attn_norm = vec(g + "post_attention_norm.weight",
                               h + "post_attention_layernorm.weight", c.hidden, true);
        l.ffn_norm =
            vec(g + "ffn_norm.weight", h + "pre_feedforward_layernorm.weight", c.hidden, true);
        l.post_ffn_norm = vec(g + "post_ffw_norm.weight", h + "post_feedforward_layernorm.weight",
                              c.hidden, true);
      } else {
        l.ffn_norm =
            vec(g + "ffn_norm.weight", h + "post_attention_layernorm.weight", c.hidden, true);
      }
      l.w_gate = matrix(g + "ffn_gate.weight", h + "mlp.gate_proj.weight", c.hidden, c.ffn_hidden);
      l.w_up = matrix(g + "ffn_up.weight", h + "mlp.up_proj.weight", c.hidden, c.ffn_hidden);
      l.w_down = matrix(g + "ffn_down.weight", h + "mlp.down_proj.weight", c.ffn_hidden, c.hidden);
    }
  }

  void set_hf_prefix() {
    for (const char* p : {"model.", "language_model.model.", "model.language_model.", ""}) {
      if (m_.hf_->weights().find_tensor(std::string(p) + "embed_tokens.weight")) {
        prefix_ = p;
        return;
      }
    }
    throw ModelFileError(m_.path_ + ": no embed_tokens.weight tensor found");
  }

 private:
  const TensorView* find(const std::string& gguf_name, const std::string& hf_name) const {
    if (m_.gguf_) return m_.gguf_->find_tensor(gguf_name);
    // lm_head sits outside the "model." prefix.
    if (hf_name == "lm_head.weight") return m_.hf_->weights().find_tensor(hf_name);
    return m_.hf_->weights().find_tensor(prefix_ + hf_name);
  }
  bool has(const std::string& g, const std::string& h) const { return find(g, h) != nullptr; }
  const TensorView& get(const std::string& g, const std::string& h) const {
    const TensorView* t = find(g, h);
    if (!t) throw ModelFileError(m_.path_ + ": missing tensor " + (m_.gguf_ ? g : prefix_ + h));
    return *t;
  }
  std::string source_of(const TensorView& t) const {
    return m_.gguf_ ? m_.gguf_->path() : m_.hf_->weights().file_of(t.name);
  }

  Weight matrix(const std::string& g, const std::string& h, int64_t cols, int64_t rows) {
    const TensorView& t = get(g, h);
    check_shape(source_of(t), t, {cols, rows});
    if (!ops::is_supported_type(t.type))
      throw ModelFileError(source_of(t) + ": tensor " + t.name + ": type " + dtype_name(t.type) +
                           " is not supported for matrices");
    Weight w;
    w.type = t.type;
    w.rows = rows;
    w.cols = cols;
    w.data = t.data;
    w.row_bytes = t.row_bytes();
    m_.weight_bytes_ += t.n_bytes;
    if (options_.dequantize_to_f32 && t.type != DType::F32) {
      std::unique_ptr<float[]> f(new float[static_cast<size_t>(rows * cols)]);
      for (int64_t r = 0; r < rows; ++r)
        ops::dequantize_row(t.type, t.data + r * w.row_bytes, f.get() + r * cols, cols);
      w.type = DType::F32;
      w.data = reinterpret_cast<const uint8_t*>(f.get());
      w.row_bytes = static_cast<size_t>(cols) * sizeof(float);
      m_.owned_.push_back(std::move(f));
    }
    return w;
  }

  std::vector<float> vec(const std::string& g, const std::string& h, int64_t n, bool is_norm) {
    const TensorView& t = get(g, h);
    check_shape(source_of(t), t, {n});
    if (!ops::is_supported_type(t.type))
      throw ModelFileError(source_of(t) + ": tensor " + t.name + ": unsupported type " +
                           dtype_name(t.type));
    std::vector<float> out(static_cast<size_t>(n));
    ops::dequantize_row(t.type, t.data, out.data(), n);
    // llama.cpp's converter stores Gemma's (1 + w) norm weights already offset.
    if (is_norm && !m_.gguf_ && m_.config_.arch == Arch::kGemma3)
      for (float& x : out) x += 1.0f;
    m_.weight_bytes_ += t.n_bytes;
    return out;
  }

  Model& m_;
  LoadOptions options_;
  std::string prefix_;
};

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->path_ = path;
  ModelLoader loader(*m, options);
  if (std::filesystem::is_directory(path)) {
    m->hf_ = std::make_unique<HfModelDir>(HfModelDir::open(path));
    m->config_ = config_from_hf(m->hf_->config(), m->hf_->config_path());
    loader.set_hf_prefix();
  } else {
    m->gguf_ = std::make_unique<GgufFile>(GgufFile::open(path));
    m->config_ = config_from_gguf(*m->gguf_);
  }
  loader.load();
  return m;
}

void Model::embedding_row(int32_t token, float* out) const {
  if (token < 0 || token >= config_.vocab_size)
    throw std::out_of_range("token id " + std::to_string(token) + " outside the vocabulary of " +
                            std::to_string(config_.vocab_size));
  ops::dequantize_row(token_embd_.type,
                      token_embd_.data + static_cast<size_t>(token) * token_embd_.row_bytes, out,
                      token_embd_.cols);
}

}  // namespace kdr::model
