#include "server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "engine/engine.h"
#include "engine/json_grammar.h"
#include "model/config.h"
#include "model/weights.h"
#include "server/embeddings.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"

namespace kdr::server {

namespace {

using nlohmann::json;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump_json(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  if (e.status() == 401) res.set_header("WWW-Authenticate", "Bearer");
  if (e.status() == 503) res.set_header("Retry-After", "1");
  send_json(res, e.status(), e.to_json());
}

// Compares without an early exit, so response times do not reveal how much of a key matched.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// One submitted request as long as its HTTP response lives. Whoever drops the last reference
// (the content provider's end, a failed write, the server stopping) cancels the request
// unless every sample finished, so a departed client's KV is freed at the engine's next step.
struct InFlight {
  engine::Engine* engine;
  std::shared_ptr<engine::RequestStream> stream;
  // Touched only by the one worker thread that writes the response.
  int32_t open;  // samples not finished yet
  bool finished = false;
  InFlight(engine::Engine* e, std::shared_ptr<engine::RequestStream> s, int32_t samples)
      : engine(e), stream(std::move(s)), open(samples) {}
  ~InFlight() {
    if (!finished) engine->cancel(stream->id());
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
};

// What one Output adds to a response: the bytes to write, and whether the response is
// complete with them.
struct Piece {
  std::string bytes;
  bool last = false;
};

// Hands each Output of the request to `encode` and writes the bytes it returns. Whenever
// `heartbeat` passes without a write, writes `beat`: a closed connection only shows as a
// failed write. Returns what a cpp-httplib content provider returns (false: abandon).
// `cut_on_cancel`: a request cancelled by the server stopping ends the connection without
// a complete body. A JSON response's 200 status went out with the first heartbeat, so an
// error body would read as a success; a cut response is a transport failure that clients
// (the OpenAI SDK) and routers (sglang-router) retry elsewhere.
bool pump(InFlight& flight, httplib::DataSink& sink, const std::atomic<bool>& stopping,
          std::chrono::milliseconds heartbeat, std::string_view beat, bool cut_on_cancel,
          const std::function<Piece(const engine::Output&)>& encode) {
  using Clock = std::chrono::steady_clock;
  auto last_write = Clock::now();
  engine::Output out;
  for (;;) {
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(last_write + heartbeat -
                                                                            Clock::now());
    if (flight.stream->next(out, std::max(wait, std::chrono::milliseconds(0)))) {
      if (out.finished && --flight.open == 0) flight.finished = true;
      if (out.finished && cut_on_cancel && out.finish_reason == "cancelled") return false;
      const Piece piece = encode(out);
      if (!piece.bytes.empty()) {
        if (!sink.write(piece.bytes.data(), piece.bytes.size())) return false;
        last_write = Clock::now();
      }
      // Complete before every sample ended (one failed): the others are cancelled as the
      // flight is dropped.
      if (piece.last) {
        sink.done();
        return true;
      }
      continue;
    }
    // Checked only when nothing is queued, so the last Outputs of an engine that stopped
    // first (its requests end "cancelled") still reach their clients.
    if (stopping.load()) return false;
    if (Clock::now() >= last_write + heartbeat) {
      if (!sink.write(beat.data(), beat.size())) return false;
      last_write = Clock::now();
    }
  }
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  httplib::Server http;
  std::thread listener;
  socket_t listen_socket = -1;  // set by the socket-options hook when binding
  std::atomic<bool> stopping{false};

  // Set once by ready(); `is_ready` publishes them to the workers.
  std::atomic<bool> is_ready{false};
  engine::Engine* engine = nullptr;
  const model::Embedder* embedder = nullptr;
  ServedModel served;
  int64_t ready_time = 0;

  std::mutex counts_mu;
  StatusCounts status_counts;

  const uint64_t id_salt = std::random_device{}() * 0x9e3779b97f4a7c15ull ^ std::random_device{}();
  std::atomic<uint64_t> next_id{0};
  std::atomic<uint64_t> next_seed{0};

  explicit Impl(ServerOptions o) : options(std::move(o)) {}

  void routes();
  engine::Engine& require_ready() const;
  void completion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  ResponseInfo response_info(Endpoint endpoint);
};

engine::Engine& Server::Impl::require_ready() const {
  if (!is_ready.load(std::memory_order_acquire))
    throw ApiError(503, "the model is still loading; retry when GET /health answers 200", "",
                   "model_loading");
  return *engine;
}

ResponseInfo Server::Impl::response_info(Endpoint endpoint) {
  char id[40];
  std::snprintf(id, sizeof(id), "%s%016" PRIx64 "%08" PRIx64,
                endpoint == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-", id_salt,
                next_id.fetch_add(1) & 0xffffffffu);
  return {id, static_cast<int64_t>(std::time(nullptr)), served.id};
}

void Server::Impl::completion(const httplib::Request& req, httplib::Response& res,
                              Endpoint endpoint) {
  engine::Engine& eng = require_ready();
  // A request without a seed samples afresh, as OpenAI does.
  CompletionRequest cr = parse_completion_request(
      req.body, endpoint, served, id_salt + next_seed.fetch_add(1) * 0x2545f4914f6cdd1dull);
  std::shared_ptr<engine::RequestStream> stream;
  const int32_t samples = cr.request.n;
  try {
    stream = eng.submit_stream(std::move(cr.request));
  } catch (const engine::QueueFullError& e) {
    throw ApiError(503, std::string("the server is busy: ") + e.what(), "", "queue_full");
  } catch (const engine::RequestError& e) {
    throw ApiError(400, e.what());
  }
  auto flight = std::make_shared<InFlight>(&eng, std::move(stream), samples);
  const ResponseInfo info = response_info(endpoint);
  const model::Tokenizer& tokenizer = *served.tokenizer;
  const auto heartbeat = options.heartbeat;
  std::atomic<bool>* stop_flag = &stopping;

  if (cr.stream) {
    auto encoder = std::make_shared<StreamEncoder>(info, cr, tokenizer);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [flight, encoder, heartbeat, stop_flag](
                                                              size_t, httplib::DataSink& sink) {
      // An SSE comment: clients skip it.
      return pump(*flight, sink, *stop_flag, heartbeat, ": ping\n\n", /*cut_on_cancel=*/false,
                  [&](const engine::Output& out) {
                    std::string bytes = encoder->encode(out);
                    return Piece{std::move(bytes), encoder->done()};
                  });
    });
    return;
  }

  auto result = std::make_shared<CompletionResult>(samples);
  const CompletionRequest shape = cr;
  // "; charset=utf-8" keeps cpp-httplib from gzip-compressing the body: compression would
  // buffer the heartbeat spaces and no write would reach the socket to reveal a closed one.
  res.set_chunked_content_provider(
      "application/json; charset=utf-8", [flight, result, shape, info, &tokenizer, heartbeat,
                                          stop_flag](size_t, httplib::DataSink& sink) {
        return pump(
            *flight, sink, *stop_flag, heartbeat, " ", /*cut_on_cancel=*/true,
            [&](const engine::Output& out) {
              result->add(out);
              if (out.finished && out.finish_reason == "error")
                return Piece{dump_json(ApiError(500, "generation failed: " + out.error).to_json()),
                             true};
              if (!result->finished()) return Piece{};
              return Piece{dump_json(completion_response(info, shape, *result, tokenizer)), true};
            });
      });
}

void Server::Impl::routes() {
  // Every handler's ApiError becomes its OpenAI-shaped answer.
  auto guarded = [this](auto handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      }
    };
  };

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (is_ready.load(std::memory_order_acquire))
      send_json(res, 200, {{"status", "ok"}});
    else
      send_json(res, 503, {{"status", "loading"}});
  });
  http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
             require_ready();
             json models = models_response(served.id, ready_time, served.max_model_len);
             add_embedding_model(models, embedder, ready_time);
             send_json(res, 200, models);
           }));
  // Worker discovery of sglang-router and vllm-router (the older /get_* names too).
  for (const char* route : {"/server_info", "/get_server_info"})
    http.Get(route, guarded([this](const httplib::Request&, httplib::Response& res) {
               require_ready();
               send_json(res, 200, server_info_response(served));
             }));
  for (const char* route : {"/model_info", "/get_model_info"})
    http.Get(route, guarded([this](const httplib::Request&, httplib::Response& res) {
               require_ready();
               send_json(res, 200, model_info_response(served));
             }));
  http.Post("/v1/chat/completions",
            guarded([this](const httplib::Request& req, httplib::Response& res) {
              completion(req, res, Endpoint::kChatCompletions);
            }));
  http.Post("/v1/completions", guarded([this](const httplib::Request& req, httplib::Response& res) {
              completion(req, res, Endpoint::kCompletions);
            }));
  // Embeddings run on this HTTP worker; the Embedder serialises them on its own thread pool,
  // so chat generation shares the cores meanwhile but is never blocked by them.
  http.Post("/v1/embeddings", guarded([this](const httplib::Request& req, httplib::Response& res) {
              require_ready();
              res.set_content(handle_embeddings(req.body, embedder), "application/json");
            }));
  http.Post("/tokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
              require_ready();
              send_json(res, 200, tokenize_response(req.body, *served.tokenizer));
            }));
  http.Post("/detokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
              require_ready();
              send_json(res, 200, detokenize_response(req.body, *served.tokenizer));
            }));
  http.Get("/metrics", guarded([this](const httplib::Request&, httplib::Response& res) {
             const engine::EngineStats stats = require_ready().stats();
             StatusCounts counts;
             {
               std::lock_guard<std::mutex> lock(counts_mu);
               counts = status_counts;
             }
             res.set_content(format_metrics(stats, counts, served.id), "text/plain; version=0.0.4");
           }));

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // Everything but /health needs the key (and /metrics, unless --open-metrics): /tokenize
    // is as costly per byte as a prompt.
    if (options.api_key.empty() || req.path == "/health" ||
        (options.open_metrics && req.path == "/metrics"))
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 && same_secret(auth.substr(7), options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401,
                             auth.empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                          : "invalid API key",
                             "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // cpp-httplib calls this for every status >= 400, ours included: only fill empty bodies
  // (unknown routes, oversized or malformed requests it refused itself).
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty() || res.content_provider_)
          return httplib::Server::HandlerResponse::Unhandled;
        std::string message;
        switch (res.status) {
          case 404:
            message = "no route for " + req.method + " " + req.path;
            break;
          case 413:
            // cpp-httplib parses form-encoded bodies itself and caps them at 8 KiB; curl -d
            // sends that type unless told otherwise.
            message = req.get_header_value("Content-Type") == "application/x-www-form-urlencoded"
                          ? "form-encoded request bodies are limited to " +
                                std::to_string(CPPHTTPLIB_FORM_URL_ENCODED_PAYLOAD_MAX_LENGTH) +
                                " bytes: send JSON with 'Content-Type: application/json'"
                          : "request body larger than the limit of " +
                                std::to_string(options.max_body_bytes) + " bytes";
            break;
          case 400:
            message = "malformed HTTP request";
            break;
          default:
            message = "request refused with HTTP status " + std::to_string(res.status);
        }
        send_json(res, res.status, ApiError(res.status, message).to_json());
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, ApiError(500, "internal error: " + what));
      });
  http.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    std::lock_guard<std::mutex> lock(counts_mu);
    ++status_counts[res.status];
  });
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& s = *impl_;
  const size_t threads = static_cast<size_t>(std::max(1, s.options.threads));
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.http.set_payload_max_length(s.options.max_body_bytes);
  s.http.set_keep_alive_max_count(1000);
  // cpp-httplib listens with a backlog of 5 (fixed when the library was built): remember the
  // listening socket so that start() can raise it, and do not let another process bind the
  // same port (the library's default sets SO_REUSEPORT).
  s.http.set_socket_options([&s](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    s.listen_socket = sock;
  });
  s.routes();
}

Server::~Server() { stop(); }

void Server::start() {
  Impl& s = *impl_;
  const bool bound = s.options.port == 0
                         ? (s.options.port = s.http.bind_to_any_port(s.options.host)) > 0
                         : s.http.bind_to_port(s.options.host, s.options.port);
  if (!bound)
    throw std::runtime_error("cannot listen on " + s.options.host + ":" +
                             std::to_string(s.options.port) +
                             " (address in use, or not an address of this machine)");
  // Listening again on a listening socket only changes its backlog (Linux, BSD).
  if (s.listen_socket >= 0 && ::listen(s.listen_socket, std::max(1, s.options.listen_backlog)) != 0)
    throw std::runtime_error("cannot set the listen backlog to " +
                             std::to_string(s.options.listen_backlog) + ": " +
                             std::strerror(errno));
  s.listener = std::thread([&s] { s.http.listen_after_bind(); });
  // stop() only takes effect once the accept loop runs.
  while (!s.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

int Server::port() const { return impl_->options.port; }

void Server::ready(engine::Engine& engine, std::string model_id,
                   std::shared_ptr<const engine::Vocabulary> vocabulary) {
  Impl& s = *impl_;
  s.engine = &engine;
  s.served.id = std::move(model_id);
  s.served.tokenizer = engine.model().tokenizer.get();
  s.served.chat = engine.model().chat ? &*engine.model().chat : nullptr;
  s.served.max_model_len = engine.max_model_len();
  s.served.vocabulary = std::move(vocabulary);
  s.served.path = engine.model().path;
  s.served.version = s.options.version;
  s.served.arch = model::arch_name(engine.model().model->config().arch);
  s.served.max_running = engine.options().max_num_seqs;
  s.served.max_total_tokens = engine.kv_budget().tokens;
  s.served.max_step_tokens = engine.options().max_batched_tokens;
  s.ready_time = static_cast<int64_t>(std::time(nullptr));
  s.is_ready.store(true, std::memory_order_release);
}

void Server::serve_embeddings(const model::Embedder* embedder) { impl_->embedder = embedder; }

void Server::stop() {
  Impl& s = *impl_;
  s.stopping = true;
  s.http.stop();
  if (s.listener.joinable()) s.listener.join();
}

}  // namespace kdr::server
