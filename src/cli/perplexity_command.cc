// `kdr perplexity`: scores a text file with a model in non-overlapping windows (like
// llama.cpp's llama-perplexity) and prints perplexity; --dump writes per-position token,
// top-1 prediction and negative log-likelihood as JSON for comparison with a reference.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/thread_pool.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/generator.h"

namespace kdr::cli {

namespace {

struct PerplexityArgs {
  std::string model, file, dump;
  int32_t window = 256;
  int32_t max_tokens = 0;
  int threads = 0;
  bool f32_weights = false;
  std::string kv_dtype = rpa::to_string(engine::kDefaultKvDType);
};

void run_perplexity(const PerplexityArgs& a) {
  const std::string path = a.model.empty() ? engine::default_model_path() : a.model;
  model::LoadOptions lo;
  lo.dequantize_to_f32 = a.f32_weights;
  engine::LoadedModel lm = engine::LoadedModel::load(path, lo);
  std::ifstream in(a.file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + a.file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<int32_t> ids =
      lm.tokenizer->encode(ss.str(), /*add_special=*/false, /*parse_special=*/false);
  if (a.max_tokens > 0 && static_cast<int32_t>(ids.size()) > a.max_tokens) ids.resize(a.max_tokens);
  const model::ModelConfig& c = lm.model->config();
  // The window, bos and the one token each request must generate fit the context.
  const int32_t w = std::min(a.window, c.context_length - 2);
  if (static_cast<int32_t>(ids.size()) < 2)
    throw std::runtime_error(a.file + ": fewer than 2 tokens");
  ThreadPool pool(a.threads > 0 ? a.threads : ThreadPool::hardware_threads());
  // Each window is a request on the engine that scores its prompt (Request::prompt_logprobs),
  // one window per step, the path `kdr serve` takes; the prefix cache is bypassed.
  engine::EngineOptions eo;
  eo.kv_dtype = parse_kv_dtype(a.kv_dtype);
  eo.max_num_seqs = 1;
  eo.max_batched_tokens = w + 1;
  eo.max_model_len = std::min(w + 2, c.context_length);
  eo.calibrate = false;
  eo.prefix_caching = false;
  eo.kv_memory_bytes = static_cast<int64_t>(eo.max_model_len + 2 * eo.page_size) *
                       static_cast<int64_t>(model::KvCacheSet::bytes_per_token(c, eo.kv_dtype));
  engine::Engine engine(lm, pool, eo);
  nlohmann::json dump = {{"model", path},
                         {"window", w},
                         {"kv_dtype", a.kv_dtype},
                         {"positions", nlohmann::json::array()}};
  double nll_sum = 0.0;
  int64_t scored = 0;
  const int32_t bos = lm.tokenizer->bos_id();
  const int32_t first = bos >= 0 ? 1 : 0;
  std::string error;
  for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(w)) {
    // Each window starts with bos (as llama-perplexity does) and scores every position
    // after its first text token.
    engine::Request r;
    if (bos >= 0) r.prompt.push_back(bos);
    const size_t end = std::min(ids.size(), start + static_cast<size_t>(w));
    r.prompt.insert(r.prompt.end(), ids.begin() + static_cast<std::ptrdiff_t>(start),
                    ids.begin() + static_cast<std::ptrdiff_t>(end));
    if (static_cast<int32_t>(r.prompt.size()) - first < 2) break;
    r.max_tokens = 1;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    r.prompt_logprobs = a.dump.empty() ? 0 : 1;
    const std::vector<int32_t> window = r.prompt;
    engine.submit(std::move(r), [&](const engine::Output& out) {
      // Entry i scores window token i + 1; the first text token (after bos) is not scored.
      for (size_t i = static_cast<size_t>(first); i < out.prompt_logprobs.size(); ++i) {
        const double nll = -static_cast<double>(out.prompt_logprobs[i]);
        nll_sum += nll;
        ++scored;
        if (!a.dump.empty())
          dump["positions"].push_back({window[i + 1], out.prompt_top_logprobs[i].at(0).token, nll});
      }
      if (out.finished && out.finish_reason == "error") error = out.error;
    });
    engine.run_until_idle();
    if (!error.empty()) throw std::runtime_error(a.file + ": " + error);
  }
  const double ppl = std::exp(nll_sum / static_cast<double>(scored));
  std::printf("tokens: %zu, scored positions: %lld, window: %d, perplexity: %.4f\n", ids.size(),
              static_cast<long long>(scored), w, ppl);
  if (!a.dump.empty()) {
    dump["perplexity"] = ppl;
    dump["tokens"] = ids;
    std::ofstream out(a.dump);
    out << dump.dump() << "\n";
    if (!out) throw std::runtime_error("cannot write " + a.dump);
  }
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  auto args = std::make_shared<PerplexityArgs>();
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a model on a text file");
  cmd->add_option("-m,--model", args->model,
                  "GGUF file or Hugging Face folder (default: the embedded default)");
  cmd->add_option("-f,--file", args->file, "text file")->required();
  cmd->add_option("-w,--window", args->window, "tokens per window")->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--max-tokens", args->max_tokens, "score at most this many tokens of the file");
  cmd->add_option("--dump", args->dump, "write per-position JSON (token, top-1, nll) here");
  cmd->add_option("-t,--threads", args->threads, "threads (default: all cores)");
  cmd->add_flag("--f32-weights", args->f32_weights,
                "dequantize weights to f32 at load (matmuls on f32 weights, no per-tile decoding)");
  add_kv_dtype_option(cmd, &args->kv_dtype);
  cmd->callback([args] { run_perplexity(*args); });
}

}  // namespace kdr::cli
