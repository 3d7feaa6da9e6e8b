// `kdr embed`: sentence embeddings of the texts given as arguments, or of each line of
// standard input. Writes JSON (one object with every vector) or JSON lines (one object per
// text) to stdout, and a summary (texts, tokens, time and tokens/s of tokenizing and
// embedding them, texts cut to the model's max_tokens) to stderr.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "cli/commands.h"
#include "model/embedder.h"
#include "server/embeddings.h"
#include "server/openai_protocol.h"

namespace kdr::cli {

namespace {

struct EmbedArgs {
  std::string model;
  std::string format = "json";
  std::vector<std::string> texts;
  int threads = 0;
  int repeat = 1;
};

void run_embed(EmbedArgs a) {
  if (a.texts.empty()) {
    if (isatty(STDIN_FILENO))
      throw std::invalid_argument("no texts: pass them as arguments or one per line on stdin");
    for (std::string line; std::getline(std::cin, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      a.texts.push_back(line);
    }
    if (a.texts.empty()) throw std::invalid_argument("no texts: standard input was empty");
  }
  const std::string dir = a.model.empty() ? model::default_embedding_model_path() : a.model;
  ThreadPool pool(a.threads > 0 ? a.threads : ThreadPool::hardware_threads());
  const auto embedder = model::Embedder::load(dir, pool);

  // --repeat runs the same batch again (benchmarks): the best time of tokenizing and
  // embedding it is reported (model loading excluded).
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<float>> vectors;
  double best = 1e300;
  for (int r = 0; r < a.repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    ids.clear();
    for (size_t i = 0; i < a.texts.size(); ++i) {
      try {
        ids.push_back(embedder->tokenize(a.texts[i]));
      } catch (const std::exception& e) {
        throw std::invalid_argument("text " + std::to_string(i + 1) + ": " + e.what());
      }
    }
    vectors = embedder->embed_tokens(ids);
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  int64_t tokens = 0, cut = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    tokens += static_cast<int64_t>(ids[i].size());
    if (static_cast<int64_t>(ids[i].size()) == embedder->max_tokens() &&
        embedder->tokenizer().encode(a.texts[i]).size() > ids[i].size())
      ++cut;
  }

  if (a.format == "jsonl") {
    for (size_t i = 0; i < vectors.size(); ++i)
      std::printf("{\"index\":%zu,\"tokens\":%zu,\"embedding\":%s}\n", i, ids[i].size(),
                  server::float_array_json(vectors[i]).c_str());
  } else {
    std::printf("{\"model\":%s,\"dim\":%d,\"tokens\":%lld,\"embeddings\":[",
                server::dump_json(embedder->name()).c_str(), embedder->dim(),
                static_cast<long long>(tokens));
    for (size_t i = 0; i < vectors.size(); ++i)
      std::printf("%s%s", i ? "," : "", server::float_array_json(vectors[i]).c_str());
    std::printf("]}\n");
  }
  std::fflush(stdout);
  std::fprintf(stderr,
               "kdr embed: %zu texts, %lld tokens, %.1f ms, %.0f tokens/s (%s, %d dims, %d "
               "threads)\n",
               a.texts.size(), static_cast<long long>(tokens), best * 1e3, tokens / best,
               embedder->name().c_str(), embedder->dim(), pool.num_threads());
  if (cut > 0)
    std::fprintf(stderr, "kdr embed: %lld texts were cut to the model's %d tokens\n",
                 static_cast<long long>(cut), embedder->max_tokens());
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto args = std::make_shared<EmbedArgs>();
  CLI::App* cmd = app.add_subcommand(
      "embed", "Sentence embeddings of the texts given, or of each line of standard input");
  cmd->add_option("-m,--model", args->model,
                  "sentence-transformers folder (default: models/embedding.path, "
                  "all-MiniLM-L6-v2 from scripts/setup)");
  cmd->add_option("--format", args->format, "json: one object; jsonl: one line per text")
      ->check(CLI::IsMember({"json", "jsonl"}))
      ->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "compute threads (default: all cores)");
  cmd->add_option("--repeat", args->repeat, "embed the batch this many times, report the best")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("texts", args->texts, "texts to embed (default: lines of standard input)");
  cmd->callback([args] { run_embed(*args); });
}

}  // namespace kdr::cli
