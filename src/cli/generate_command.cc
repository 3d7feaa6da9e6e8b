// `kdr generate`: streams a completion of a prompt (or a chat turn) from a model, then
// reports prompt and generation speed.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "base/dtype_registry.h"
#include "base/thread_pool.h"
#include "cli/commands.h"
#include "engine/generator.h"

namespace kdr::cli {

namespace {

// The KV cache types the commands take. Names are parsed by the dtype registry (f32, bf16 or
// bfloat16, f16 or float16, int8, fp8 or fp8e4m3 or float8_e4m3fn, any case); this maps the
// registry's entry to rpa's type. fp8 is e4m3 with per-tensor scales of 1 (as vLLM's
// --kv-cache-dtype fp8 without calibrated scales): it keeps values up to 448 in magnitude,
// 3 mantissa bits.
constexpr std::pair<DType, rpa::KvDType> kKvDTypes[] = {{DType::F32, rpa::KvDType::kF32},
                                                        {DType::BF16, rpa::KvDType::kBF16},
                                                        {DType::F16, rpa::KvDType::kF16},
                                                        {DType::INT8_ROW, rpa::KvDType::kInt8},
                                                        {DType::FP8_E4M3, rpa::KvDType::kFp8E4M3}};

std::optional<rpa::KvDType> find_kv_dtype(const std::string& s) {
  if (const DTypeTraits* t = find_dtype(s))
    for (const auto& [dtype, kv] : kKvDTypes)
      if (t->id == dtype) return kv;
  return std::nullopt;
}

std::string kv_dtype_names() {
  std::string names;
  for (const auto& entry : kKvDTypes)
    names += (names.empty() ? "" : ", ") + std::string(rpa::to_string(entry.second));
  return names;
}

}  // namespace

rpa::KvDType parse_kv_dtype(const std::string& s) {
  if (const auto kv = find_kv_dtype(s)) return *kv;
  throw std::invalid_argument("--kv-dtype must be one of " + kv_dtype_names() + ", got '" + s +
                              "'");
}

void add_kv_dtype_option(CLI::App* cmd, std::string* name) {
  cmd->add_option("--kv-dtype", *name, "KV cache type: " + kv_dtype_names())
      ->check(CLI::Validator(
          [](std::string& s) {
            return find_kv_dtype(s) ? std::string()
                                    : "must be one of " + kv_dtype_names() + ", got '" + s + "'";
          },
          "KV_DTYPE"))
      ->capture_default_str();
}

namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  std::string system;
  bool chat = false;
  int32_t n = 128;
  float temp = 0.8f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  int threads = 0;
  std::string kv_dtype = rpa::to_string(engine::kDefaultKvDType);
  bool ignore_eos = false;
};

void print_stats(const engine::GenerateStats& st) {
  auto rate = [](int32_t n, double s) { return s > 0.0 ? n / s : 0.0; };
  std::fprintf(stderr,
               "\n\nprompt: %d tokens in %.3f s (%.1f tokens/s)\ngeneration: %d tokens in %.3f s "
               "(%.1f tokens/s), finish: %s\n",
               st.prompt_tokens, st.prompt_seconds, rate(st.prompt_tokens, st.prompt_seconds),
               st.generated_tokens, st.generate_seconds,
               rate(st.generated_tokens > 0 ? st.generated_tokens - 1 : 0, st.generate_seconds),
               st.finish_reason.c_str());
}

void run_generate(const GenerateArgs& a) {
  const std::string path = a.model.empty() ? engine::default_model_path() : a.model;
  engine::LoadedModel lm = engine::LoadedModel::load(path);
  ThreadPool pool(a.threads > 0 ? a.threads : ThreadPool::hardware_threads());
  engine::GenerateOptions o;
  o.max_tokens = a.n;
  o.sampling.temperature = a.temp;
  o.sampling.top_k = a.top_k;
  o.sampling.top_p = a.top_p;
  o.sampling.min_p = a.min_p;
  o.sampling.repetition_penalty = a.repeat_penalty;
  o.sampling.presence_penalty = a.presence_penalty;
  o.sampling.frequency_penalty = a.frequency_penalty;
  o.sampling.seed = a.seed;
  o.kv_dtype = parse_kv_dtype(a.kv_dtype);
  o.ignore_eos = a.ignore_eos;
  auto print = [](const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };

  if (!a.chat) {
    const std::vector<int32_t> ids =
        lm.tokenizer->encode(a.prompt, /*add_special=*/true, /*parse_special=*/true);
    print(a.prompt);
    print_stats(engine::generate(lm, pool, ids, o, print));
    return;
  }
  if (!lm.chat)
    throw std::runtime_error(
        "--chat: the model's chat template is not one kdr knows (gemma3, llama3, chatml)");
  if (lm.chat_inferred) std::fprintf(stderr, "note: %s\n", lm.chat_note().c_str());
  std::vector<model::ChatMessage> messages;
  if (!a.system.empty()) messages.push_back({"system", a.system});
  auto turn = [&](const std::string& user) {
    messages.push_back({"user", user});
    const std::string text = lm.chat->render(messages, /*add_generation_prompt=*/true);
    // The rendered template already holds bos where the family wants it.
    const std::vector<int32_t> ids =
        lm.tokenizer->encode(text, /*add_special=*/false, /*parse_special=*/true);
    std::string reply;
    const auto st = engine::generate(lm, pool, ids, o, [&](const std::string& t) {
      reply += t;
      print(t);
    });
    messages.push_back({"assistant", reply});
    print_stats(st);
  };
  if (!a.prompt.empty()) {
    turn(a.prompt);
    return;
  }
  std::string line;
  std::fprintf(stderr, "chat with %s; an empty line or end of input quits\n> ", lm.name.c_str());
  while (std::getline(std::cin, line) && !line.empty()) {
    turn(line);
    std::fprintf(stderr, "> ");
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Stream a completion from a model");
  cmd->add_option("-m,--model", args->model,
                  "GGUF file or Hugging Face folder (default: the embedded default)");
  cmd->add_option("-p,--prompt", args->prompt, "prompt text (with --chat: the user message)");
  cmd->add_flag("--chat", args->chat,
                "format as a chat turn with the model's template; without -p, chat on stdin");
  cmd->add_option("--system", args->system, "system message for --chat");
  cmd->add_option("-n,--max-tokens", args->n, "tokens to generate")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temp", args->temp, "temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", args->top_k, "top-k (0 = off)")->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--top-p", args->top_p, "top-p")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", args->min_p, "min-p")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", args->repeat_penalty, "repetition penalty (1 = off)");
  cmd->add_option("--presence-penalty", args->presence_penalty, "presence penalty");
  cmd->add_option("--frequency-penalty", args->frequency_penalty, "frequency penalty");
  cmd->add_option("--seed", args->seed, "sampling seed");
  cmd->add_option("-t,--threads", args->threads, "threads (default: all cores)");
  add_kv_dtype_option(cmd, &args->kv_dtype);
  cmd->add_flag("--ignore-eos", args->ignore_eos, "keep generating past end-of-sequence tokens");
  cmd->callback([args] {
    if (!args->chat && args->prompt.empty())
      throw CLI::ValidationError("generate", "give -p PROMPT or --chat");
    run_generate(*args);
  });
}

}  // namespace kdr::cli
