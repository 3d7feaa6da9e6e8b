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
  const int32_t w = std::min(a.window, c.context_length);
  if (static_cast<int32_t>(ids.size()) < 2)
    throw std::runtime_error(a.file + ": fewer than 2 tokens");
  ThreadPool pool(a.threads > 0 ? a.threads : ThreadPool::hardware_threads());
  model::Forward fwd(*lm.model, pool);
  const int32_t page = 16;
  const int32_t pages = (w + 1 + page - 1) / page;
  model::KvCacheSet cache(c, pages, page, parse_kv_dtype(a.kv_dtype));
  std::vector<float> logits;
  nlohmann::json dump = {{"model", path},
                         {"window", w},
                         {"kv_dtype", a.kv_dtype},
                         {"positions", nlohmann::json::array()}};
  double nll_sum = 0.0;
  int64_t scored = 0;
  const int32_t bos = lm.tokenizer->bos_id();
  for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(w)) {
    // Each window starts with bos (as llama-perplexity does) and scores every position
    // after its first text token.
    model::StepBatch b;
    if (bos >= 0) b.tokens.push_back(bos);
    const size_t end = std::min(ids.size(), start + static_cast<size_t>(w));
    b.tokens.insert(b.tokens.end(), ids.begin() + static_cast<std::ptrdiff_t>(start),
                    ids.begin() + static_cast<std::ptrdiff_t>(end));
    const int32_t n = static_cast<int32_t>(b.tokens.size());
    const int32_t first = bos >= 0 ? 1 : 0;
    if (n - first < 2) break;
    b.cu_q_lens = {0, n};
    b.kv_lens = {n};
    b.pages_per_seq = pages;
    for (int32_t i = 0; i < pages; ++i) b.page_indices.push_back(i);
    b.distribution[1] = b.distribution[2] = 1;
    for (int32_t r = first; r < n - 1; ++r) b.logit_rows.push_back(r);
    logits.resize(b.logit_rows.size() * static_cast<size_t>(c.vocab_size));
    fwd.run(b, cache, logits.data());
    for (size_t r = 0; r < b.logit_rows.size(); ++r) {
      const float* l = &logits[r * c.vocab_size];
      const int32_t target = b.tokens[b.logit_rows[r] + 1];
      float mx = l[0];
      int32_t top = 0;
      for (int32_t v = 1; v < c.vocab_size; ++v)
        if (l[v] > mx) mx = l[v], top = v;
      double sum = 0.0;
      for (int32_t v = 0; v < c.vocab_size; ++v) sum += std::exp(static_cast<double>(l[v] - mx));
      const double nll = (mx + std::log(sum)) - l[target];
      nll_sum += nll;
      ++scored;
      if (!a.dump.empty()) dump["positions"].push_back({target, top, nll});
    }
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
