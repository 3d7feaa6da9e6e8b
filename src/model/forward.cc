#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "base/thread_pool.h"
#include "ops/activations.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace kdr::model {

// ---- KV cache ----

size_t KvCacheSet::bytes_per_token(const ModelConfig& c, rpa::KvDType dtype) {
  const size_t row = static_cast<size_t>(c.head_dim) * rpa::element_size(dtype) +
                     (dtype == rpa::KvDType::kInt8 ? sizeof(float) : 0);
  return 2 * row * static_cast<size_t>(c.num_kv_heads) * c.num_layers;
}

KvCacheSet::KvCacheSet(const ModelConfig& c, int32_t num_pages, int32_t page_size,
                       rpa::KvDType dtype) {
  shape_ = {num_pages, c.num_kv_heads, page_size, c.head_dim, dtype};
  const size_t pool_bytes = shape_.pool_elements() * rpa::element_size(dtype);
  // Every layer's K and V pool in one huge-page buffer (one per pool would round each up to
  // 2 MiB), each pool starting on a 64-byte line.
  const size_t stride = (pool_bytes + 63) / 64 * 64;
  pools_ = alloc_huge(2 * stride * static_cast<size_t>(c.num_layers));
  for (int32_t l = 0; l < c.num_layers; ++l) {
    rpa::KvCache kv;
    kv.shape = shape_;
    kv.k = pools_.get() + (2 * static_cast<size_t>(l)) * stride;
    kv.v = pools_.get() + (2 * static_cast<size_t>(l) + 1) * stride;
    bytes_ += 2 * pool_bytes;
    if (dtype == rpa::KvDType::kInt8) {
      k_scales_.emplace_back(new float[shape_.scale_elements()]());
      v_scales_.emplace_back(new float[shape_.scale_elements()]());
      kv.k_row_scales = k_scales_.back().get();
      kv.v_row_scales = v_scales_.back().get();
      bytes_ += 2 * shape_.scale_elements() * sizeof(float);
    }
    layers_.push_back(kv);
  }
}

void KvCacheSet::copy_page(int32_t src, int32_t dst, int32_t slots) {
  for (rpa::KvCache& layer : layers_) rpa::copy_page(layer, src, dst, slots);
}

rpa::RaggedBatch StepBatch::ragged() const {
  rpa::RaggedBatch b;
  b.num_seqs = num_seqs();
  b.num_tokens = static_cast<int32_t>(tokens.size());
  b.cu_q_lens = cu_q_lens.data();
  b.kv_lens = kv_lens.data();
  b.page_indices = page_indices.data();
  b.pages_per_seq = pages_per_seq;
  std::copy(distribution, distribution + 3, b.distribution);
  return b;
}

// ---- helpers ----

namespace {

ops::WeightMatrix as_matrix(const Weight& w) {
  ops::WeightMatrix m;
  m.type = w.type;
  m.data = w.data;
  m.rows = w.rows;
  m.cols = w.cols;
  m.row_stride = w.row_bytes;
  return m;
}

// Global layers rotate with the model's base, linear scaling and per-pair factors; Gemma-3's
// local (sliding-window) layers with their own base and no scaling.
ops::RopeTable global_rope(const ModelConfig& c) {
  return ops::RopeTable(ops::RopeConfig{c.head_dim, c.rope_base, c.rope_style, c.rope_linear_factor,
                                        c.rope_freq_factors});
}
ops::RopeTable local_rope(const ModelConfig& c) {
  return ops::RopeTable(ops::RopeConfig{c.head_dim, c.rope_base_local, c.rope_style, 1.0f, {}});
}

}  // namespace

struct Forward::Scratch {
  explicit Scratch(const ModelConfig& c) : rope_global(global_rope(c)), rope_local(local_rope(c)) {}
  std::vector<float> x, h, q, k, v, attn, o, gate, up, sel;
  std::vector<float> cos_g, sin_g, cos_l, sin_l;  // [T][D/2] for global and local layers
  ops::RopeTable rope_global, rope_local;
};

Forward::Forward(const Model& model, ThreadPool& pool)
    : model_(model), pool_(pool), s_(new Scratch(model.config())) {}

Forward::~Forward() = default;

void Forward::run(const StepBatch& batch, KvCacheSet& cache, float* logits) {
  const ModelConfig& c = model_.config();
  const int64_t t_count = static_cast<int64_t>(batch.tokens.size());
  const int hidden = c.hidden, d = c.head_dim, hq = c.num_heads, hkv = c.num_kv_heads;
  const int64_t q_dim = static_cast<int64_t>(hq) * d, kv_dim = static_cast<int64_t>(hkv) * d;
  Scratch& s = *s_;
  if (t_count == 0) return;
  for (int32_t row : batch.logit_rows)
    if (row < 0 || row >= t_count)
      throw std::invalid_argument("logit row " + std::to_string(row) + " outside the batch of " +
                                  std::to_string(t_count) + " tokens");

  // Plans: validated once, reused by every layer of the same kind.
  const rpa::RaggedBatch ragged = batch.ragged();
  rpa::AttentionParams global_params;
  global_params.num_q_heads = hq;
  global_params.sm_scale = c.attn_scale;
  global_params.soft_cap = c.attn_logit_soft_cap;
  rpa::AttentionParams local_params = global_params;
  local_params.sliding_window = c.sliding_window;
  const bool any_local =
      std::any_of(c.layer_is_local.begin(), c.layer_is_local.end(), [](uint8_t v) { return v; });
  const bool any_global =
      std::any_of(c.layer_is_local.begin(), c.layer_is_local.end(), [](uint8_t v) { return !v; });
  rpa::Plan global_plan, local_plan;
  if (any_global)
    global_plan = rpa::make_plan(ragged, cache.shape(), global_params, pool_.num_threads());
  if (any_local)
    local_plan = rpa::make_plan(ragged, cache.shape(), local_params, pool_.num_threads());

  s.x.resize(t_count * hidden);
  s.h.resize(t_count * hidden);
  s.q.resize(t_count * q_dim);
  s.k.resize(t_count * kv_dim);
  s.v.resize(t_count * kv_dim);
  s.attn.resize(t_count * q_dim);
  s.o.resize(t_count * hidden);
  s.gate.resize(t_count * c.ffn_hidden);
  s.up.resize(t_count * c.ffn_hidden);

  // Rotary tables for each token's absolute position.
  const int half = d / 2;
  s.cos_g.resize(t_count * half);
  s.sin_g.resize(t_count * half);
  s.cos_l.resize(t_count * half);
  s.sin_l.resize(t_count * half);
  for (int32_t i = 0; i < batch.num_seqs(); ++i) {
    const int32_t q_len = batch.cu_q_lens[i + 1] - batch.cu_q_lens[i];
    for (int32_t j = 0; j < q_len; ++j) {
      const int64_t tok = batch.cu_q_lens[i] + j;
      const int64_t pos = batch.kv_lens[i] - q_len + j;
      s.rope_global.angles(pos, &s.cos_g[tok * half], &s.sin_g[tok * half]);
      s.rope_local.angles(pos, &s.cos_l[tok * half], &s.sin_l[tok * half]);
    }
  }

  // Embeddings.
  const float embed_scale = c.scale_embeddings ? std::sqrt(static_cast<float>(hidden)) : 1.0f;
  for (int64_t t = 0; t < t_count; ++t) {
    model_.embedding_row(batch.tokens[t], &s.x[t * hidden]);
    if (embed_scale != 1.0f)
      for (int i = 0; i < hidden; ++i) s.x[t * hidden + i] *= embed_scale;
  }

  for (int32_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = model_.layers()[l];
    const bool local = c.layer_is_local[l];
    for (int64_t t = 0; t < t_count; ++t)
      ops::rms_norm(&s.x[t * hidden], w.attn_norm.data(), c.norm_eps, &s.h[t * hidden], hidden);
    const ops::MatmulTarget qkv[] = {{as_matrix(w.wq), s.q.data()},
                                     {as_matrix(w.wk), s.k.data()},
                                     {as_matrix(w.wv), s.v.data()}};
    ops::matmul_same_x(pool_, s.h.data(), t_count, qkv, 3);
    const ops::RopeTable& rope = local ? s.rope_local : s.rope_global;
    const float* cs = local ? s.cos_l.data() : s.cos_g.data();
    const float* sn = local ? s.sin_l.data() : s.sin_g.data();
    for (int64_t t = 0; t < t_count; ++t) {
      float* qt = &s.q[t * q_dim];
      float* kt = &s.k[t * kv_dim];
      float* vt = &s.v[t * kv_dim];
      if (c.qkv_bias) {
        for (int64_t i = 0; i < q_dim; ++i) qt[i] += w.q_bias[i];
        for (int64_t i = 0; i < kv_dim; ++i) kt[i] += w.k_bias[i];
        for (int64_t i = 0; i < kv_dim; ++i) vt[i] += w.v_bias[i];
      }
      for (int h = 0; h < hq; ++h) {
        if (c.qk_norm) ops::rms_norm(qt + h * d, w.q_norm.data(), c.norm_eps, qt + h * d, d);
        rope.rotate(qt + h * d, cs + t * half, sn + t * half);
      }
      for (int h = 0; h < hkv; ++h) {
        if (c.qk_norm) ops::rms_norm(kt + h * d, w.k_norm.data(), c.norm_eps, kt + h * d, d);
        rope.rotate(kt + h * d, cs + t * half, sn + t * half);
      }
    }
    rpa::run(local ? local_plan : global_plan, s.q.data(), s.k.data(), s.v.data(), cache.layer(l),
             s.attn.data(), &pool_);
    ops::matmul(pool_, s.attn.data(), t_count, as_matrix(w.wo), s.o.data());
    for (int64_t t = 0; t < t_count; ++t) {
      float* ot = &s.o[t * hidden];
      if (c.sandwich_norms) ops::rms_norm(ot, w.post_attn_norm.data(), c.norm_eps, ot, hidden);
      float* xt = &s.x[t * hidden];
      for (int i = 0; i < hidden; ++i) xt[i] += ot[i];
      ops::rms_norm(xt, w.ffn_norm.data(), c.norm_eps, &s.h[t * hidden], hidden);
    }
    const ops::MatmulTarget gate_up[] = {{as_matrix(w.w_gate), s.gate.data()},
                                         {as_matrix(w.w_up), s.up.data()}};
    ops::matmul_same_x(pool_, s.h.data(), t_count, gate_up, 2);
    const int64_t ff = static_cast<int64_t>(t_count) * c.ffn_hidden;
    if (c.activation == Activation::kGeluTanh) {
      ops::geglu_tanh(s.gate.data(), s.up.data(), s.gate.data(), ff);
    } else {
      ops::swiglu(s.gate.data(), s.up.data(), s.gate.data(), ff);
    }
    ops::matmul(pool_, s.gate.data(), t_count, as_matrix(w.w_down), s.o.data());
    for (int64_t t = 0; t < t_count; ++t) {
      float* ot = &s.o[t * hidden];
      if (c.sandwich_norms) ops::rms_norm(ot, w.post_ffn_norm.data(), c.norm_eps, ot, hidden);
      float* xt = &s.x[t * hidden];
      for (int i = 0; i < hidden; ++i) xt[i] += ot[i];
    }
  }

  // Logits only for the rows asked for.
  const int64_t n_out = static_cast<int64_t>(batch.logit_rows.size());
  if (n_out == 0) return;
  s.sel.resize(n_out * hidden);
  for (int64_t r = 0; r < n_out; ++r)
    ops::rms_norm(&s.x[static_cast<int64_t>(batch.logit_rows[r]) * hidden],
                  model_.output_norm().data(), c.norm_eps, &s.sel[r * hidden], hidden);
  ops::matmul(pool_, s.sel.data(), n_out, as_matrix(model_.output()), logits);
  if (c.final_logit_soft_cap > 0.0f) {
    const float cap = c.final_logit_soft_cap;
    for (int64_t i = 0; i < n_out * c.vocab_size; ++i) logits[i] = cap * std::tanh(logits[i] / cap);
  }
}

}  // namespace kdr::model
