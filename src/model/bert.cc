#include "model/bert.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "model/hf_dir.h"
#include "ops/activations.h"
#include "ops/gemm.h"
#include "ops/norm.h"
#include "ops/quant.h"

namespace kdr::model {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw ModelFileError("file " + file + ": " + what);
}

int32_t positive_int(const json& c, const std::string& file, const char* key) {
  const auto it = c.find(key);
  if (it == c.end() || !it->is_number_integer() || it->get<int64_t>() <= 0 ||
      it->get<int64_t>() > (1 << 24))
    fail(file, std::string("'") + key + "' must be a positive integer");
  return static_cast<int32_t>(it->get<int64_t>());
}

BertConfig read_config(const HfModelDir& dir) {
  const json& c = dir.config();
  const std::string& file = dir.config_path();
  if (c.value("model_type", "") != "bert")
    fail(file, "model_type '" + c.value("model_type", "") + "' is not a BERT encoder ('bert')");
  BertConfig cfg;
  cfg.vocab_size = positive_int(c, file, "vocab_size");
  cfg.hidden = positive_int(c, file, "hidden_size");
  cfg.num_layers = positive_int(c, file, "num_hidden_layers");
  cfg.num_heads = positive_int(c, file, "num_attention_heads");
  cfg.ffn_hidden = positive_int(c, file, "intermediate_size");
  cfg.max_positions = positive_int(c, file, "max_position_embeddings");
  cfg.type_vocab_size = positive_int(c, file, "type_vocab_size");
  if (cfg.hidden % cfg.num_heads != 0)
    fail(file, "hidden_size " + std::to_string(cfg.hidden) + " is not a multiple of " +
                   "num_attention_heads " + std::to_string(cfg.num_heads));
  const json eps = c.value("layer_norm_eps", json(1e-12));
  if (!eps.is_number() || !(eps.get<double>() > 0))
    fail(file, "'layer_norm_eps' must be a positive number");
  cfg.norm_eps = static_cast<float>(eps.get<double>());
  const std::string act = c.value("hidden_act", "gelu");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") {
    cfg.gelu_tanh = true;
  } else if (act != "gelu") {
    fail(file, "hidden_act '" + act + "' is not supported (gelu, gelu_new, gelu_pytorch_tanh)");
  }
  const std::string pos = c.value("position_embedding_type", "absolute");
  if (pos != "absolute")
    fail(file, "position_embedding_type '" + pos + "' is not supported (only absolute)");
  return cfg;
}

// Reads tensors by their names in a BertModel checkpoint, converting to f32.
class TensorReader {
 public:
  explicit TensorReader(const HfModelDir& dir) : w_(dir.weights()) {
    prefix_ = w_.find_tensor("embeddings.word_embeddings.weight") == nullptr &&
                      w_.find_tensor("bert.embeddings.word_embeddings.weight") != nullptr
                  ? "bert."
                  : "";
  }

  // dims in PyTorch order ([out, in] for a matrix).
  std::vector<float> read(const std::string& name, std::vector<int64_t> dims) const {
    const std::string full = prefix_ + name;
    std::reverse(dims.begin(), dims.end());
    const TensorView& t = w_.expect_shape(full, dims);
    if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16)
      fail(w_.file_of(full), "tensor " + full + " is " + dtype_name(t.type) +
                                 " (only F32, F16 and BF16 are supported)");
    std::vector<float> out(static_cast<size_t>(t.n_elements()));
    const int64_t rows = t.n_rows(), cols = t.ne[0];
    for (int64_t r = 0; r < rows; ++r)
      ops::dequantize_row(t.type, t.data + r * t.row_bytes(), out.data() + r * cols, cols);
    return out;
  }

 private:
  const SafetensorsShards& w_;
  std::string prefix_;
};

// y += a * x; restrict lets the compiler vectorize without checking for overlap.
inline void axpy(float* __restrict y, const float* __restrict x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Runs fn(begin, end) over row blocks of [0, rows) on the pool.
template <class Fn>
void for_rows(ThreadPool& pool, int64_t rows, Fn&& fn) {
  constexpr int64_t kBlock = 16;
  pool.parallel_for((rows + kBlock - 1) / kBlock, [&](int64_t task, int) {
    fn(task * kBlock, std::min(rows, (task + 1) * kBlock));
  });
}

}  // namespace

BertModel::BertModel(BertConfig config, std::vector<float> word_embeddings,
                     std::vector<float> position_embeddings, std::vector<float> type_embeddings,
                     std::vector<float> embed_norm_w, std::vector<float> embed_norm_b,
                     std::vector<BertLayer> layers)
    : config_(config),
      word_(std::move(word_embeddings)),
      position_(std::move(position_embeddings)),
      type_(std::move(type_embeddings)),
      embed_norm_w_(std::move(embed_norm_w)),
      embed_norm_b_(std::move(embed_norm_b)),
      layers_(std::move(layers)) {}

std::unique_ptr<BertModel> BertModel::load(const HfModelDir& dir) {
  const BertConfig c = read_config(dir);
  const TensorReader r(dir);
  const int64_t h = c.hidden, f = c.ffn_hidden;
  std::vector<BertLayer> layers(static_cast<size_t>(c.num_layers));
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    BertLayer& L = layers[l];
    std::vector<float> qkv;
    for (const char* part : {"query", "key", "value"}) {
      const std::vector<float> w = r.read(p + "attention.self." + part + ".weight", {h, h});
      const std::vector<float> b = r.read(p + "attention.self." + part + ".bias", {h});
      qkv.insert(qkv.end(), w.begin(), w.end());
      L.b_qkv.insert(L.b_qkv.end(), b.begin(), b.end());
    }
    L.w_qkv = ops::PackedWeights(qkv.data(), 3 * h, h);
    L.w_out = ops::PackedWeights(r.read(p + "attention.output.dense.weight", {h, h}).data(), h, h);
    L.b_out = r.read(p + "attention.output.dense.bias", {h});
    L.norm1_w = r.read(p + "attention.output.LayerNorm.weight", {h});
    L.norm1_b = r.read(p + "attention.output.LayerNorm.bias", {h});
    L.w_up = ops::PackedWeights(r.read(p + "intermediate.dense.weight", {f, h}).data(), f, h);
    L.b_up = r.read(p + "intermediate.dense.bias", {f});
    L.w_down = ops::PackedWeights(r.read(p + "output.dense.weight", {h, f}).data(), h, f);
    L.b_down = r.read(p + "output.dense.bias", {h});
    L.norm2_w = r.read(p + "output.LayerNorm.weight", {h});
    L.norm2_b = r.read(p + "output.LayerNorm.bias", {h});
  }
  return std::make_unique<BertModel>(
      c, r.read("embeddings.word_embeddings.weight", {c.vocab_size, h}),
      r.read("embeddings.position_embeddings.weight", {c.max_positions, h}),
      r.read("embeddings.token_type_embeddings.weight", {c.type_vocab_size, h}),
      r.read("embeddings.LayerNorm.weight", {h}), r.read("embeddings.LayerNorm.bias", {h}),
      std::move(layers));
}

void BertModel::encode(ThreadPool& pool, std::span<const int32_t> tokens,
                       std::span<const int32_t> cu_seq_lens, float* out) const {
  const BertConfig& c = config_;
  const int64_t t_count = static_cast<int64_t>(tokens.size());
  const int64_t h = c.hidden, f = c.ffn_hidden, d = c.head_dim();
  if (cu_seq_lens.empty() || cu_seq_lens.front() != 0 || cu_seq_lens.back() != t_count)
    throw std::invalid_argument("bert: cu_seq_lens must run from 0 to the token count " +
                                std::to_string(t_count));
  const int64_t n_seqs = static_cast<int64_t>(cu_seq_lens.size()) - 1;
  std::vector<int32_t> position(static_cast<size_t>(t_count));
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int32_t len = cu_seq_lens[s + 1] - cu_seq_lens[s];
    if (len < 0 || len > c.max_positions)
      throw std::invalid_argument("bert: sequence " + std::to_string(s) + " has " +
                                  std::to_string(len) + " tokens, the model takes 0 to " +
                                  std::to_string(c.max_positions));
    for (int32_t j = 0; j < len; ++j) position[cu_seq_lens[s] + j] = j;
  }
  for (int64_t t = 0; t < t_count; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab_size)
      throw std::invalid_argument("bert: token id " + std::to_string(tokens[t]) +
                                  " is outside the vocabulary of " + std::to_string(c.vocab_size));
  if (t_count == 0) return;

  // x (the residual stream) lives in `out`.
  float* x = out;
  for_rows(pool, t_count, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* xt = x + t * h;
      const float* w = &word_[static_cast<size_t>(tokens[t]) * h];
      const float* p = &position_[static_cast<size_t>(position[t]) * h];
      for (int64_t i = 0; i < h; ++i) xt[i] = w[i] + p[i] + type_[i];
      ops::layer_norm(xt, embed_norm_w_.data(), embed_norm_b_.data(), c.norm_eps, xt, h);
    }
  });

  std::vector<float> qkv(static_cast<size_t>(t_count * 3 * h));
  std::vector<float> ctx(static_cast<size_t>(t_count * h)), tmp(static_cast<size_t>(t_count * h));
  std::vector<float> up(static_cast<size_t>(t_count * f));
  int32_t longest = 0;
  for (int64_t s = 0; s < n_seqs; ++s)
    longest = std::max(longest, cu_seq_lens[s + 1] - cu_seq_lens[s]);
  // Per thread: K of one head transposed [d][L], and one row of scores [L].
  std::vector<std::vector<float>> scratch(
      static_cast<size_t>(pool.num_threads()),
      std::vector<float>(static_cast<size_t>(longest * (d + 1))));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  for (const BertLayer& L : layers_) {
    ops::gemm_f32(pool, x, t_count, L.w_qkv, L.b_qkv.data(), qkv.data());

    // One task per (sequence, head): every query of the sequence attends to every key of it.
    pool.parallel_for(n_seqs * c.num_heads, [&](int64_t task, int thread) {
      const int64_t s = task / c.num_heads, head = task % c.num_heads;
      const int64_t first = cu_seq_lens[s], len = cu_seq_lens[s + 1] - first;
      float* kt = scratch[thread].data();  // [d][len]
      float* score = kt + d * len;
      for (int64_t j = 0; j < len; ++j) {
        const float* k = &qkv[(first + j) * 3 * h + h + head * d];
        for (int64_t i = 0; i < d; ++i) kt[i * len + j] = k[i];
      }
      for (int64_t qi = 0; qi < len; ++qi) {
        const float* q = &qkv[(first + qi) * 3 * h + head * d];
        std::fill(score, score + len, 0.0f);
        for (int64_t i = 0; i < d; ++i) {
          const float qs = q[i] * scale;
          axpy(score, kt + i * len, qs, len);
        }
        ops::softmax(score, len);
        float* o = &ctx[(first + qi) * h + head * d];
        std::fill(o, o + d, 0.0f);
        for (int64_t j = 0; j < len; ++j) {
          axpy(o, &qkv[(first + j) * 3 * h + 2 * h + head * d], score[j], d);
        }
      }
    });

    ops::gemm_f32(pool, ctx.data(), t_count, L.w_out, L.b_out.data(), tmp.data());
    for_rows(pool, t_count, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* r = &tmp[t * h];
        float* xt = x + t * h;
        ops::add(r, xt, r, h);
        ops::layer_norm(r, L.norm1_w.data(), L.norm1_b.data(), c.norm_eps, xt, h);
      }
    });

    ops::gemm_f32(pool, x, t_count, L.w_up, L.b_up.data(), up.data());
    for_rows(pool, t_count, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* u = &up[t * f];
        if (c.gelu_tanh) {
          ops::gelu_tanh(u, u, f);
        } else {
          ops::gelu_erf(u, u, f);
        }
      }
    });

    ops::gemm_f32(pool, up.data(), t_count, L.w_down, L.b_down.data(), tmp.data());
    for_rows(pool, t_count, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* r = &tmp[t * h];
        float* xt = x + t * h;
        ops::add(r, xt, r, h);
        ops::layer_norm(r, L.norm2_w.data(), L.norm2_b.data(), c.norm_eps, xt, h);
      }
    });
  }
}

}  // namespace kdr::model
