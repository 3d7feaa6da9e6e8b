// The OpenAI-compatible HTTP server (cpp-httplib) in front of an engine::Engine.
//
// Routes: GET /health (503 "loading" until ready(), then 200), GET /v1/models,
// POST /v1/chat/completions and /v1/completions (JSON, or Server-Sent Events with "stream"),
// POST /v1/embeddings (server/embeddings.h), POST /tokenize and /detokenize, GET /metrics
// (Prometheus text). Errors are OpenAI-shaped JSON.
//
// A client that goes away has its request cancelled, so its KV blocks are freed. cpp-httplib
// 0.11 notices a closed connection only when a write fails, so every completion is answered
// through a chunked content provider that writes while it waits: SSE comments on streams,
// spaces before the JSON body otherwise (JSON allows leading whitespace).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace kdr::engine {
class Engine;
class Vocabulary;
}  // namespace kdr::engine
namespace kdr::model {
class Embedder;
}

namespace kdr::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see Server::port())
  // When set, every route but /health (and /metrics with open_metrics) needs
  // "Authorization: Bearer <api_key>".
  std::string api_key;
  bool open_metrics = false;
  std::string version = "kdr";  // what /server_info reports
  // HTTP worker threads. Each open connection holds one while it lives (keep-alive included),
  // so this bounds the clients served at once; the others wait for a free worker.
  int threads = 128;
  size_t max_body_bytes = size_t{8} << 20;  // larger request bodies get 413
  // Connections the kernel queues before they are accepted (listen(2) backlog; the kernel
  // caps it at net.core.somaxconn). A burst of clients beyond it gets connection resets.
  int listen_backlog = 4096;
  // How often a waiting response writes to its connection to find out whether it is closed.
  std::chrono::milliseconds heartbeat{500};
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and serves on background threads; until ready() every model route answers 503.
  // Throws std::runtime_error naming the address when it cannot bind.
  void start();
  int port() const;  // the bound port (after start())

  // Serves `engine` (not owned: it must outlive stop()) under the name `model_id`.
  // `vocabulary` enables response_format json_object / json_schema; null refuses them.
  void ready(engine::Engine& engine, std::string model_id,
             std::shared_ptr<const engine::Vocabulary> vocabulary);
  // Serves POST /v1/embeddings with `embedder` (not owned: it must outlive stop()); call
  // before ready(). Without one that route answers 404 saying how to serve one.
  void serve_embeddings(const model::Embedder* embedder);

  // Stops accepting, cuts the responses still open (their requests are cancelled) and joins
  // the workers; idle keep-alive connections hold a worker up to 5 s. Stop the engine first
  // to answer open requests with an error instead. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kdr::server
