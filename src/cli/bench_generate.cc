// `kdr bench generate`: prompt and generation throughput of a model (default: the embedded
// Gemma-3-270M Q4_K_M) with the memory it took. bench/generate_vs_llamacpp.py runs it beside
// llama.cpp in the same session and prints the ratios.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/thread_pool.h"
#include "cli/commands.h"
#include "engine/generator.h"

namespace kdr::cli {

namespace {

struct BenchGenerateArgs {
  std::string model;
  int32_t prompt_tokens = 512;
  int32_t gen_tokens = 128;
  int threads = 2;
  int reps = 3;
  std::string kv_dtype = rpa::to_string(engine::kDefaultKvDType);
  bool json = false;
};

// A fixed English paragraph repeated to the wanted length: realistic token statistics
// without a data file.
std::vector<int32_t> make_prompt(const engine::LoadedModel& lm, int32_t n) {
  const std::string para =
      "The history of computing is a story of abstraction layered on abstraction. Early machines "
      "were programmed by rewiring panels; later, stored programs let the same hardware run any "
      "algorithm. Compilers turned human-readable code into instructions, operating systems shared "
      "one processor among many tasks, and networks connected machines across continents. ";
  std::vector<int32_t> ids;
  if (lm.tokenizer->bos_id() >= 0) ids.push_back(lm.tokenizer->bos_id());
  const std::vector<int32_t> piece = lm.tokenizer->encode(para, false, false);
  while (static_cast<int32_t>(ids.size()) < n) ids.insert(ids.end(), piece.begin(), piece.end());
  ids.resize(static_cast<size_t>(n));
  return ids;
}

void run(const BenchGenerateArgs& a) {
  const std::string path = a.model.empty() ? engine::default_model_path() : a.model;
  engine::LoadedModel lm = engine::LoadedModel::load(path);
  ThreadPool pool(a.threads);
  const std::vector<int32_t> prompt = make_prompt(lm, a.prompt_tokens);
  engine::GenerateOptions o;
  o.max_tokens = a.gen_tokens;
  o.sampling.temperature = 0.0f;
  o.ignore_eos = true;
  o.kv_dtype = parse_kv_dtype(a.kv_dtype);
  double best_pp = 0.0, best_tg = 0.0;
  for (int r = 0; r < a.reps; ++r) {
    const engine::GenerateStats st = engine::generate(lm, pool, prompt, o, nullptr);
    best_pp = std::max(best_pp, st.prompt_tokens / st.prompt_seconds);
    // The first token comes from the prefill; the rest are decode steps.
    best_tg = std::max(best_tg, (st.generated_tokens - 1) / st.generate_seconds);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double peak_mb = ru.ru_maxrss / 1024.0;
  const double file_mb = static_cast<double>(std::filesystem::file_size(path)) / (1 << 20);
  const double kv_mb =
      static_cast<double>(model::KvCacheSet::bytes_per_token(lm.model->config(), o.kv_dtype)) *
      (a.prompt_tokens + a.gen_tokens) / (1 << 20);
  if (a.json) {
    nlohmann::json j = {
        {"model", lm.name},           {"threads", a.threads},   {"prompt_tokens", a.prompt_tokens},
        {"gen_tokens", a.gen_tokens}, {"kv_dtype", a.kv_dtype}, {"prompt_tps", best_pp},
        {"gen_tps", best_tg},         {"peak_rss_mb", peak_mb}, {"model_file_mb", file_mb},
        {"kv_cache_mb", kv_mb}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("model %s, %d threads, best of %d\n", lm.name.c_str(), a.threads, a.reps);
    std::printf("prompt (%d tokens): %8.1f tokens/s\n", a.prompt_tokens, best_pp);
    std::printf("generation (%d tokens): %8.1f tokens/s\n", a.gen_tokens, best_tg);
    std::printf("peak RSS %.0f MB = model file %.0f MB + KV cache %.1f MB + %.0f MB other\n",
                peak_mb, file_mb, kv_mb, peak_mb - file_mb - kv_mb);
  }
}

}  // namespace

void add_bench_generate_command(CLI::App& bench) {
  auto args = std::make_shared<BenchGenerateArgs>();
  CLI::App* cmd = bench.add_subcommand("generate", "Prompt and generation tokens/s of a model");
  cmd->add_option("-m,--model", args->model,
                  "GGUF file or Hugging Face folder (default: the embedded default)");
  cmd->add_option("--prompt-tokens", args->prompt_tokens, "prompt length")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gen-tokens", args->gen_tokens, "tokens to generate")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("-t,--threads", args->threads, "threads")->check(CLI::Range(1, 1024));
  cmd->add_option("--reps", args->reps, "repetitions (best is reported)")
      ->check(CLI::Range(1, 100));
  add_kv_dtype_option(cmd, &args->kv_dtype);
  cmd->add_flag("--json", args->json, "one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace kdr::cli
