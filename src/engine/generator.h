// A loaded model (weights, tokenizer, chat format, stop tokens) and single-request generation:
// generate() is one request on an engine::Engine of its own (engine.h), so `kdr generate` and
// `kdr bench generate` run the scheduler, batch building, sampling and stop handling that
// `kdr serve` runs, with prompt chunks of GenerateOptions::prefill_chunk tokens.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "model/chat_template.h"
#include "model/forward.h"
#include "model/tokenizer.h"

namespace kdr {
class ThreadPool;
}

namespace kdr::engine {

// A model ready to run: weights, tokenizer, chat format and the tokens that end a turn.
struct LoadedModel {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<model::Tokenizer> tokenizer;
  std::optional<model::ChatTemplate> chat;  // absent when the family is not recognised
  // The file carries no chat template: `chat` is the turn format of its architecture, which
  // a base (pretrained-only) model was never taught to follow.
  bool chat_inferred = false;
  std::vector<int32_t> stop_ids;  // eos and end-of-turn tokens
  std::string name;               // file or folder name, for /v1/models
  std::string path;               // as loaded

  static LoadedModel load(const std::string& path, const model::LoadOptions& options = {});
  bool is_stop(int32_t id) const;
  // A one-line note for chat users when chat_inferred ("" otherwise).
  std::string chat_note() const;
};

// The path of the default model recorded by scripts/setup (models/default.path), searched
// from $KDR_HOME, the executable's folder upwards, then the working directory. Throws
// std::runtime_error saying how to install it when none is found.
std::string default_model_path();

// The KV cache type of the engine, kdr generate, serve, perplexity and the research agent's
// in-process backend unless told otherwise: half the bytes of f32 (llama.cpp keeps f16, vLLM
// the model's dtype), 99.6% top-1 agreement with transformers on Gemma-3-270M against 100%
// for f32 (docs/models.md), and generation ~10% faster at a 512-token depth.
inline constexpr rpa::KvDType kDefaultKvDType = rpa::KvDType::kBF16;

struct GenerateOptions {
  int32_t max_tokens = 128;
  SamplingParams sampling;
  int32_t prefill_chunk = 512;
  int32_t page_size = 16;
  rpa::KvDType kv_dtype = kDefaultKvDType;
  bool ignore_eos = false;
};

struct GenerateStats {
  int32_t prompt_tokens = 0;
  int32_t generated_tokens = 0;
  double prompt_seconds = 0.0;
  double generate_seconds = 0.0;  // after the first token
  std::string finish_reason;      // "stop" or "length"
};

// Runs prompt + generation; on_text receives decoded text as it becomes valid UTF-8.
GenerateStats generate(const LoadedModel& lm, ThreadPool& pool, const std::vector<int32_t>& prompt,
                       const GenerateOptions& options,
                       const std::function<void(const std::string&)>& on_text,
                       std::vector<int32_t>* out_tokens = nullptr);

}  // namespace kdr::engine
