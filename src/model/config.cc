#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "model/gguf.h"

namespace kdr::model {

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::kLlama:
      return "llama";
    case Arch::kQwen2:
      return "qwen2";
    case Arch::kQwen3:
      return "qwen3";
    case Arch::kGemma3:
      return "gemma3";
  }
  return "unknown";
}

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw ModelFileError(source + ": " + what);
}

Arch parse_arch(const std::string& name, const std::string& source) {
  if (name == "llama") return Arch::kLlama;
  if (name == "qwen2") return Arch::kQwen2;
  if (name == "qwen3") return Arch::kQwen3;
  if (name == "gemma3" || name == "gemma3_text") return Arch::kGemma3;
  fail(source, "unsupported architecture '" + name + "' (supported: llama, qwen2, qwen3, gemma3)");
}

// Gemma-3 makes every sixth layer global and the rest sliding-window.
std::vector<uint8_t> gemma3_pattern(int32_t layers, int32_t period) {
  std::vector<uint8_t> local(static_cast<size_t>(layers));
  for (int32_t i = 0; i < layers; ++i) local[i] = ((i + 1) % period) != 0;
  return local;
}

}  // namespace

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](const char* what, int64_t v) {
    if (v <= 0) fail(source, std::string(what) + " must be > 0, got " + std::to_string(v));
  };
  positive("vocab_size", vocab_size);
  positive("hidden size", hidden);
  positive("layer count", num_layers);
  positive("feed-forward size", ffn_hidden);
  positive("head count", num_heads);
  positive("kv head count", num_kv_heads);
  positive("head dim", head_dim);
  if (num_heads % num_kv_heads != 0)
    fail(source, "head count " + std::to_string(num_heads) +
                     " is not a multiple of kv head count " + std::to_string(num_kv_heads));
  if (head_dim % 8 != 0 || head_dim > 256)
    fail(source,
         "head dim " + std::to_string(head_dim) + " unsupported (multiple of 8, at most 256)");
  if (static_cast<int32_t>(layer_is_local.size()) != num_layers)
    fail(source, "layer pattern has " + std::to_string(layer_is_local.size()) + " entries for " +
                     std::to_string(num_layers) + " layers");
  if (!rope_freq_factors.empty() && static_cast<int32_t>(rope_freq_factors.size()) != head_dim / 2)
    fail(source, "rope frequency factors: expected " + std::to_string(head_dim / 2) +
                     " values, got " + std::to_string(rope_freq_factors.size()));
  if (!(norm_eps > 0.0f)) fail(source, "rms norm epsilon must be > 0");
}

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  const std::string arch(f.get_string("general.architecture"));
  c.arch = parse_arch(arch, f.path());
  const std::string p = arch + ".";
  c.hidden = static_cast<int32_t>(f.get_int(p + "embedding_length"));
  c.num_layers = static_cast<int32_t>(f.get_int(p + "block_count"));
  c.ffn_hidden = static_cast<int32_t>(f.get_int(p + "feed_forward_length"));
  c.num_heads = static_cast<int32_t>(f.get_int(p + "attention.head_count"));
  c.num_kv_heads =
      static_cast<int32_t>(f.find_int(p + "attention.head_count_kv").value_or(c.num_heads));
  c.head_dim = static_cast<int32_t>(f.find_int(p + "attention.key_length")
                                        .value_or(c.num_heads > 0 ? c.hidden / c.num_heads : 0));
  c.context_length = static_cast<int32_t>(f.find_int(p + "context_length").value_or(4096));
  c.norm_eps =
      static_cast<float>(f.find_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-6));
  c.rope_base = static_cast<float>(f.find_float(p + "rope.freq_base").value_or(10000.0));
  c.rope_base_local = c.rope_base;
  if (auto type = f.find_string(p + "rope.scaling.type"); type && *type == "linear")
    c.rope_linear_factor =
        static_cast<float>(f.find_float(p + "rope.scaling.factor").value_or(1.0));

  const TensorView& embd = f.tensor("token_embd.weight");
  c.vocab_size = static_cast<int32_t>(f.find_int(p + "vocab_size").value_or(embd.ne[1]));
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.layer_is_local.assign(static_cast<size_t>(std::max(c.num_layers, 0)), 0);
  if (const TensorView* t = f.find_tensor("rope_freqs.weight")) {
    if (t->type != DType::F32) fail(f.path(), "rope_freqs.weight must be F32");
    c.rope_freq_factors.resize(static_cast<size_t>(t->n_elements()));
    std::memcpy(c.rope_freq_factors.data(), t->data, t->n_bytes);
  }
  c.attn_logit_soft_cap =
      static_cast<float>(f.find_float(p + "attn_logit_softcapping").value_or(0.0));
  c.final_logit_soft_cap =
      static_cast<float>(f.find_float(p + "final_logit_softcapping").value_or(0.0));

  switch (c.arch) {
    case Arch::kLlama:
      c.rope_style = ops::RopeStyle::kInterleaved;
      break;
    case Arch::kQwen2:
      c.qkv_bias = true;
      break;
    case Arch::kQwen3:
      c.qk_norm = true;
      break;
    case Arch::kGemma3:
      c.qk_norm = c.sandwich_norms = c.scale_embeddings = true;
      c.activation = Activation::kGeluTanh;
      c.rope_base_local = 10000.0f;  // llama.cpp's fixed base for Gemma-3 local layers
      c.sliding_window =
          static_cast<int32_t>(f.find_int(p + "attention.sliding_window").value_or(512));
      c.layer_is_local = gemma3_pattern(
          c.num_layers,
          static_cast<int32_t>(f.find_int(p + "attention.sliding_window_pattern").value_or(6)));
      break;
  }
  c.qkv_bias = c.qkv_bias && f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  c.bos_id = static_cast<int32_t>(f.find_int("tokenizer.ggml.bos_token_id").value_or(-1));
  c.eos_id = static_cast<int32_t>(f.find_int("tokenizer.ggml.eos_token_id").value_or(-1));
  c.validate(f.path());
  return c;
}

ModelConfig config_from_hf(const nlohmann::json& j0, const std::string& source) {
  const nlohmann::json& j = j0.contains("text_config") ? j0["text_config"] : j0;
  auto req = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key) || j[key].is_null())
      fail(source, std::string("missing key '") + key + "'");
    if (!j[key].is_number()) fail(source, std::string("key '") + key + "' must be a number");
    return j[key];
  };
  auto opt_num = [&](const char* key, double dflt) {
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : dflt;
  };
  ModelConfig c;
  std::string type = j.value("model_type", std::string());
  if (type.empty() && j0.contains("model_type")) type = j0["model_type"].get<std::string>();
  c.arch = parse_arch(type, source);
  c.hidden = req("hidden_size").get<int32_t>();
  c.num_layers = req("num_hidden_layers").get<int32_t>();
  c.ffn_hidden = req("intermediate_size").get<int32_t>();
  c.num_heads = req("num_attention_heads").get<int32_t>();
  c.num_kv_heads = static_cast<int32_t>(opt_num("num_key_value_heads", c.num_heads));
  c.head_dim =
      static_cast<int32_t>(opt_num("head_dim", c.num_heads > 0 ? c.hidden / c.num_heads : 0));
  c.vocab_size = req("vocab_size").get<int32_t>();
  c.context_length = static_cast<int32_t>(opt_num("max_position_embeddings", 4096));
  c.norm_eps = static_cast<float>(opt_num("rms_norm_eps", 1e-6));
  c.rope_base = static_cast<float>(opt_num("rope_theta", 10000.0));
  c.rope_base_local = c.rope_base;
  c.tied_embeddings =
      j.value("tie_word_embeddings", c.arch == Arch::kGemma3 || c.arch == Arch::kQwen3);
  c.rope_style = ops::RopeStyle::kHalfSplit;
  c.layer_is_local.assign(static_cast<size_t>(std::max(c.num_layers, 0)), 0);
  // transformers 5 keeps RoPE settings in rope_parameters (per layer type for Gemma-3);
  // earlier versions in rope_theta / rope_scaling / rope_local_base_freq.
  nlohmann::json rope_global = j.contains("rope_scaling") && j["rope_scaling"].is_object()
                                   ? j["rope_scaling"]
                                   : nlohmann::json::object();
  nlohmann::json rope_local = nlohmann::json::object();
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const auto& rp = j["rope_parameters"];
    if (rp.contains("full_attention")) {
      rope_global = rp["full_attention"];
      if (rp.contains("sliding_attention")) rope_local = rp["sliding_attention"];
    } else {
      rope_global = rp;
    }
  }
  if (rope_global.contains("rope_theta")) c.rope_base = rope_global["rope_theta"].get<float>();
  c.rope_base_local = rope_local.contains("rope_theta")
                          ? rope_local["rope_theta"].get<float>()
                          : static_cast<float>(opt_num("rope_local_base_freq", c.rope_base));
  {
    const auto& rs = rope_global;
    const std::string rt = rs.value("rope_type", rs.value("type", std::string()));
    const float factor = rs.value("factor", 1.0f);
    if (rt == "llama3") {
      const ops::Llama3RopeScaling scaling{factor, rs.value("low_freq_factor", 1.0f),
                                           rs.value("high_freq_factor", 4.0f),
                                           rs.value("original_max_position_embeddings", 8192.0f)};
      try {
        c.rope_freq_factors = ops::llama3_freq_factors(c.head_dim, c.rope_base, scaling);
      } catch (const std::invalid_argument& e) {
        fail(source, e.what());
      }
    } else if (rt == "linear") {
      c.rope_linear_factor = factor;
    } else if (!rt.empty() && rt != "default") {
      fail(source, "unsupported rope type '" + rt + "'");
    }
  }
  c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  switch (c.arch) {
    case Arch::kLlama:
      c.qkv_bias = j.value("attention_bias", false);
      break;
    case Arch::kQwen2:
      c.qkv_bias = true;
      break;
    case Arch::kQwen3:
      c.qk_norm = true;
      c.qkv_bias = j.value("attention_bias", false);
      break;
    case Arch::kGemma3: {
      c.qk_norm = c.sandwich_norms = c.scale_embeddings = true;
      c.activation = Activation::kGeluTanh;
      c.sliding_window = static_cast<int32_t>(opt_num("sliding_window", 512));
      c.attn_scale =
          1.0f / std::sqrt(static_cast<float>(opt_num("query_pre_attn_scalar", c.head_dim)));
      c.final_logit_soft_cap = static_cast<float>(opt_num("final_logit_softcapping", 0.0));
      c.attn_logit_soft_cap = static_cast<float>(opt_num("attn_logit_softcapping", 0.0));
      if (j.contains("layer_types") && j["layer_types"].is_array()) {
        const auto& lt = j["layer_types"];
        if (static_cast<int32_t>(lt.size()) != c.num_layers)
          fail(source, "layer_types has " + std::to_string(lt.size()) + " entries for " +
                           std::to_string(c.num_layers) + " layers");
        for (int32_t i = 0; i < c.num_layers; ++i)
          c.layer_is_local[i] = lt[i].get<std::string>() == "sliding_attention";
      } else {
        c.layer_is_local = gemma3_pattern(
            c.num_layers, static_cast<int32_t>(opt_num("sliding_window_pattern", 6)));
      }
      break;
    }
  }
  auto first_id = [&](const char* key) -> int32_t {
    if (!j.contains(key)) return -1;
    const auto& v = j[key];
    if (v.is_number_integer()) return v.get<int32_t>();
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int32_t>();
    return -1;
  };
  c.bos_id = first_id("bos_token_id");
  c.eos_id = first_id("eos_token_id");
  c.validate(source);
  return c;
}

}  // namespace kdr::model
