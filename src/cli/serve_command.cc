// `kdr serve`: the OpenAI-compatible HTTP server on one model. It listens before the model is
// loaded (GET /health answers 503 until the engine runs), logs what the KV budget buys, and
// stops gracefully on SIGINT or SIGTERM: open requests are answered with an error, then the
// server closes.
#include <pthread.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "base/thread_pool.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/json_grammar.h"
#include "model/embedder.h"
#include "model/model_paths.h"
#include "server/server.h"

namespace kdr::cli {

namespace {

struct ServeArgs {
  std::string model;
  std::string model_name;
  std::string embedding_model;  // a folder, "none", or "" for the default when installed
  server::ServerOptions server;
  engine::EngineOptions engine;
  std::string kv_dtype = rpa::to_string(engine::kDefaultKvDType);
  bool no_prefix_caching = false;
  int threads = 0;
};

void run_serve(ServeArgs a) {
  // Every thread started from here on inherits the blocked signals; the main thread takes
  // them with sigwait once serving (a signal during loading waits until loading ends).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  a.server.version = std::string("kdr ") + KDR_VERSION;
  server::Server http(a.server);
  http.start();
  const std::string address = "http://" + a.server.host + ":" + std::to_string(http.port());
  std::fprintf(stderr, "kdr serve: listening on %s, loading the model\n", address.c_str());

  const std::string path = a.model.empty() ? engine::default_model_path() : a.model;
  const engine::LoadedModel lm = engine::LoadedModel::load(path);
  ThreadPool pool(a.threads > 0 ? a.threads : ThreadPool::hardware_threads());
  a.engine.kv_dtype = parse_kv_dtype(a.kv_dtype);
  a.engine.prefix_caching = !a.no_prefix_caching;
  // An EngineConfigError propagates to main, which prints it (it names the option to change)
  // and exits 1.
  const auto engine_start = std::chrono::steady_clock::now();
  engine::Engine engine(lm, pool, a.engine);
  const double engine_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - engine_start)
          .count();
  std::fprintf(stderr, "kdr serve: %s\n", engine.kv_budget().summary().c_str());
  {
    const engine::EngineStats st = engine.stats();
    char target[64];
    if (a.engine.itl_target_ms > 0)
      std::snprintf(target, sizeof target, "%.1f ms", a.engine.itl_target_ms);
    else
      std::snprintf(target, sizeof target, "auto");
    std::fprintf(stderr,
                 "kdr serve: step cost measured: %.2f ms + %.3f ms per token + %.3f ms per "
                 "sampled row; step target while decoding: %s, at most %d tokens (engine "
                 "ready in %.0f ms: KV pool and calibration)\n",
                 st.step_cost[0] * 1e3, st.step_cost[1] * 1e3, st.step_cost[2] * 1e3, target,
                 a.engine.max_batched_tokens, engine_ms);
  }
  if (lm.chat_inferred) std::fprintf(stderr, "kdr serve: note: %s\n", lm.chat_note().c_str());
  // The embedding model gets a pool of its own: ThreadPool is not re-entrant, and embedding
  // requests run on HTTP workers while the engine's step loop uses the engine's pool.
  std::unique_ptr<ThreadPool> embed_pool;
  std::unique_ptr<model::Embedder> embedder;
  std::string embed_dir = a.embedding_model == "none" ? "" : a.embedding_model;
  if (a.embedding_model.empty())
    embed_dir = model::recorded_model_path("embedding.path").value_or("");
  if (!embed_dir.empty()) {
    embed_pool = std::make_unique<ThreadPool>(pool.num_threads());
    embedder = model::Embedder::load(embed_dir, *embed_pool);
    http.serve_embeddings(embedder.get());
    std::fprintf(stderr, "kdr serve: embeddings: '%s' (%d dims, texts cut to %d tokens) from %s\n",
                 embedder->name().c_str(), embedder->dim(), embedder->max_tokens(),
                 embed_dir.c_str());
  } else {
    std::fprintf(
        stderr, "kdr serve: no embedding model (%s): /v1/embeddings answers 404\n",
        a.embedding_model == "none" ? "--embedding-model none" : "models/embedding.path absent");
  }
  const std::string name = a.model_name.empty() ? lm.name : a.model_name;
  http.ready(engine, name, engine::build_vocabulary(*lm.tokenizer, lm.stop_ids));
  engine.start();
  std::fprintf(stderr, "kdr serve: serving '%s' from %s on %s\n", name.c_str(), path.c_str(),
               address.c_str());

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "kdr serve: %s, stopping\n", strsignal(sig));
  // Engine first: its open requests end as "cancelled", so their clients get an error answer
  // rather than a cut connection; then the HTTP side finishes writing and closes.
  engine.stop();
  http.stop();
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  cmd->add_option("-m,--model", args->model,
                  "GGUF file or Hugging Face folder (default: the embedded default)");
  cmd->add_option("--model-name", args->model_name,
                  "the model id clients send and /v1/models lists (default: the file name)");
  cmd->add_option("--embedding-model", args->embedding_model,
                  "sentence-transformers folder served on /v1/embeddings, or 'none' (default: "
                  "models/embedding.path when scripts/setup installed it)");
  cmd->add_option("--host", args->server.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", args->server.port, "port to listen on (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--api-key", args->server.api_key,
                  "require 'Authorization: Bearer KEY' on every route but /health");
  cmd->add_flag("--open-metrics", args->server.open_metrics,
                "serve /metrics without the API key (for a scraper without one)");
  cmd->add_option("--http-threads", args->server.threads,
                  "HTTP workers: the most connections served at once")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--listen-backlog", args->server.listen_backlog,
                  "connections queued before they are accepted (capped by the kernel's "
                  "net.core.somaxconn)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--kv-memory", args->engine.kv_memory_bytes,
                  "memory for the KV cache, with K/M/G suffixes (e.g. 512M)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  cmd->add_option("--page-size", args->engine.page_size, "tokens per KV block")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  add_kv_dtype_option(cmd, &args->kv_dtype);
  cmd->add_option("--max-num-seqs", args->engine.max_num_seqs, "running requests at most")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-batched-tokens,--max-step-tokens", args->engine.max_batched_tokens,
                  "tokens computed per step at most")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--itl-target-ms", args->engine.itl_target_ms,
                  "time target of a step that carries decoding requests, in ms: prompt chunks "
                  "are sized to it (0: automatic, see docs/serving.md); lower "
                  "favours inter-token latency, higher time to first token")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--prefill-backlog-ms", args->engine.prefill_backlog_ms,
                  "with the automatic target: while the prompts present need more than this "
                  "much compute to prefill, steps take the whole token cap (time to first "
                  "token first); 0: never")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  cmd->add_option("--min-prefill-chunk", args->engine.min_prefill_chunk,
                  "prompt tokens the oldest waiting prompt gets per step at least, whatever "
                  "the target")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-queue", args->engine.max_waiting,
                  "waiting requests beyond which new ones get 503")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--max-model-len", args->engine.max_model_len,
                  "prompt + completion tokens at most (0: the model's context length, as far "
                  "as the KV cache holds)")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd->add_flag("--no-prefix-caching", args->no_prefix_caching,
                "do not share KV blocks between requests with the same prefix");
  cmd->add_option("-t,--threads", args->threads, "compute threads (default: all cores)");
  cmd->callback([args] { run_serve(*args); });
}

}  // namespace kdr::cli
