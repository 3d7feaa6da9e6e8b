// The HTTP surface on a real engine and a tiny model: greedy answers equal the single-sequence
// generator's, streams reassemble to the same text, every refusal is an OpenAI-shaped JSON
// error with the right status, clients that go away get their requests cancelled and their
// KV freed, and /metrics shows what happened.
#include "server/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include "../base/seed.h"
#include "base/thread_pool.h"
#include "engine/engine.h"
#include "engine/json_grammar.h"

namespace kdr::server {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

const std::string kModelPath = std::string(KDR_SOURCE_DIR) + "/tests/data/models/qwen3.gguf";

using kdr_test::test_seed;

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lm_ = new engine::LoadedModel(engine::LoadedModel::load(kModelPath));
    pool_ = new ThreadPool(2);
    engine::EngineOptions o;
    o.kv_memory_bytes = 8 << 20;
    o.page_size = 16;
    engine_ = new engine::Engine(*lm_, *pool_, o);
    vocabulary_ = new std::shared_ptr<const engine::Vocabulary>(
        engine::build_vocabulary(*lm_->tokenizer, lm_->stop_ids));
    ServerOptions so;
    so.port = 0;
    so.heartbeat = milliseconds(50);
    server_ = new Server(so);
    server_->start();
    server_->ready(*engine_, "tiny", *vocabulary_);
    engine_->start();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete engine_;
    delete vocabulary_;
    delete pool_;
    delete lm_;
  }

  static httplib::Client client(int port = 0) {
    httplib::Client c("127.0.0.1", port ? port : server_->port());
    c.set_read_timeout(60, 0);
    return c;
  }

  // POST with a JSON body; returns status and the parsed body (null when it does not parse).
  static std::pair<int, json> post(const std::string& path, const std::string& body) {
    auto res = client().Post(path.c_str(), body, "application/json");
    if (!res) return {-1, nullptr};
    return {res->status, json::parse(res->body, nullptr, /*allow_exceptions=*/false)};
  }
  static std::pair<int, json> post(const std::string& path, const json& body) {
    return post(path, body.dump());
  }

  // Text the single-sequence generator produces for the prompt, greedy, ignoring eos.
  static std::string generate_text(const std::vector<int32_t>& prompt, int32_t max_tokens) {
    engine::GenerateOptions o;
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0.0f;
    o.ignore_eos = true;
    std::string text;
    engine::generate(*lm_, *pool_, prompt, o, [&](const std::string& t) { text += t; });
    return text;
  }

  static std::vector<int32_t> chat_prompt(const std::string& user) {
    const std::vector<model::ChatMessage> m = {{"user", user}};
    return lm_->tokenizer->encode(lm_->chat->render(m, true), false, true);
  }

  // Waits until the engine holds no request and no KV block; false after `timeout`.
  static bool engine_idle(milliseconds timeout = milliseconds(10000)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      const engine::EngineStats s = engine_->stats();
      if (s.running == 0 && s.waiting == 0 && s.kv_blocks_used == 0) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

  static void expect_error(int status, const json& body, int want_status,
                           const std::string& message, const json& param = nullptr) {
    EXPECT_EQ(status, want_status) << body.dump();
    ASSERT_TRUE(body.is_object() && body.contains("error")) << body.dump();
    const json& e = body["error"];
    EXPECT_EQ(e["message"].get<std::string>().rfind(message, 0), 0u) << e.dump();
    EXPECT_EQ(e["param"], param) << e.dump();
    EXPECT_TRUE(e["type"].is_string());
    EXPECT_TRUE(e.contains("code"));
  }

  static engine::LoadedModel* lm_;
  static ThreadPool* pool_;
  static engine::Engine* engine_;
  static std::shared_ptr<const engine::Vocabulary>* vocabulary_;
  static Server* server_;
};

engine::LoadedModel* ServerTest::lm_ = nullptr;
ThreadPool* ServerTest::pool_ = nullptr;
engine::Engine* ServerTest::engine_ = nullptr;
std::shared_ptr<const engine::Vocabulary>* ServerTest::vocabulary_ = nullptr;
Server* ServerTest::server_ = nullptr;

// The "data: " payloads of an SSE body, heartbeat comments skipped.
std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    if (end == std::string::npos) break;
    const std::string event = body.substr(at, end - at);
    at = end + 2;
    if (event.rfind(':', 0) == 0) continue;
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    out.push_back(event.substr(6));
  }
  EXPECT_EQ(at, body.size()) << "unterminated event";
  return out;
}

TEST_F(ServerTest, HealthSaysLoadingUntilReady) {
  ServerOptions so;
  so.port = 0;
  Server s(so);
  s.start();
  auto c = client(s.port());
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 503);
  EXPECT_EQ(json::parse(h->body), json({{"status", "loading"}}));
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 503);
  EXPECT_EQ(json::parse(m->body)["error"]["code"], "model_loading");
  s.ready(*engine_, "tiny", nullptr);
  h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body), json({{"status", "ok"}}));
}

TEST_F(ServerTest, ModelsListsTheServedModel) {
  auto res = client().Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  const json body = json::parse(res->body);
  EXPECT_EQ(body["object"], "list");
  ASSERT_EQ(body["data"].size(), 1u);
  EXPECT_EQ(body["data"][0]["id"], "tiny");
  EXPECT_EQ(body["data"][0]["max_model_len"], engine_->max_model_len());
}

TEST_F(ServerTest, RouterDiscoveryRoutesNameTheServedModel) {
  // sglang-router and vllm-router register a worker from /server_info and /model_info (or
  // the older /get_* names): without them they filed kdr's model as "unknown".
  for (const char* path : {"/server_info", "/get_server_info"}) {
    auto res = client().Get(path);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << path;
    const json body = json::parse(res->body);
    EXPECT_EQ(body["served_model_name"], "tiny");
    EXPECT_EQ(body["model_path"], kModelPath);
    EXPECT_EQ(body["max_model_len"], engine_->max_model_len());
    EXPECT_EQ(body["max_total_tokens"], engine_->kv_budget().tokens);
    EXPECT_EQ(body["max_running_requests"], engine_->options().max_num_seqs);
  }
  for (const char* path : {"/model_info", "/get_model_info"}) {
    auto res = client().Get(path);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << path;
    const json body = json::parse(res->body);
    EXPECT_EQ(body["model_path"], kModelPath);
    EXPECT_EQ(body["is_generation"], true);
    EXPECT_EQ(body["model_type"], "qwen3");
    EXPECT_EQ(body["architectures"], json::array({"Qwen3ForCausalLM"}));
  }
}

TEST_F(ServerTest, ChatGreedyEqualsTheGenerator) {
  const auto [status, body] = post(
      "/v1/chat/completions", json{{"model", "tiny"},
                                   {"messages", {{{"role", "user"}, {"content", "hello there"}}}},
                                   {"temperature", 0},
                                   {"max_tokens", 12},
                                   {"ignore_eos", true}});
  ASSERT_EQ(status, 200) << body.dump();
  const auto prompt = chat_prompt("hello there");
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(body["model"], "tiny");
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(body["choices"][0]["message"]["content"], generate_text(prompt, 12));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt.size());
  EXPECT_EQ(body["usage"]["completion_tokens"], 12);
  EXPECT_EQ(body["usage"]["total_tokens"], prompt.size() + 12);
}

TEST_F(ServerTest, CompletionGreedyEqualsTheGenerator) {
  const auto [status, body] = post("/v1/completions", json{{"prompt", "once upon a time"},
                                                           {"temperature", 0},
                                                           {"max_tokens", 10},
                                                           {"ignore_eos", true}});
  ASSERT_EQ(status, 200) << body.dump();
  const auto prompt = lm_->tokenizer->encode("once upon a time", true, true);
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["text"], generate_text(prompt, 10));
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt.size());
}

TEST_F(ServerTest, StreamingReassemblesToTheSameText) {
  for (const bool chat : {true, false}) {
    json req = {{"temperature", 0}, {"max_tokens", 14}, {"ignore_eos", true}};
    if (chat)
      req["messages"] = {{{"role", "user"}, {"content", "tell me"}}};
    else
      req["prompt"] = "tell me";
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    const auto [status, whole] = post(path, req);
    ASSERT_EQ(status, 200);
    req["stream"] = true;
    req["stream_options"] = {{"include_usage", true}};
    auto res = client().Post(path.c_str(), req.dump(), "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
    const auto events = sse_payloads(res->body);
    ASSERT_GE(events.size(), 4u) << res->body;
    EXPECT_EQ(events.back(), "[DONE]");
    std::string text;
    std::string finish;
    for (size_t i = 0; i + 2 < events.size(); ++i) {
      const json c = json::parse(events[i]);
      EXPECT_EQ(c["object"], chat ? "chat.completion.chunk" : "text_completion");
      const json& choice = c["choices"][0];
      text += chat ? choice["delta"].value("content", "") : choice["text"].get<std::string>();
      if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"];
    }
    if (chat) {
      EXPECT_EQ(json::parse(events[0])["choices"][0]["delta"]["role"], "assistant");
    }
    const std::string want = chat ? whole["choices"][0]["message"]["content"].get<std::string>()
                                  : whole["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(text, want);
    EXPECT_EQ(finish, "length");
    const json usage = json::parse(events[events.size() - 2]);
    EXPECT_TRUE(usage["choices"].empty());
    EXPECT_EQ(usage["usage"]["completion_tokens"], 14);
    EXPECT_EQ(usage["usage"]["prompt_tokens"], whole["usage"]["prompt_tokens"]);
  }
}

TEST_F(ServerTest, JsonObjectResponseFormatGivesAnObject) {
  const auto [status, body] =
      post("/v1/chat/completions",
           json{{"messages", {{{"role", "user"}, {"content", "json please"}}}},
                {"temperature", 0},
                {"max_tokens", 60},
                {"response_format",
                 {{"type", "json_schema"},
                  {"json_schema",
                   {{"schema",
                     {{"type", "object"},
                      {"properties", {{"c", {{"type", "string"}, {"enum", {"red", "blue"}}}}}},
                      {"required", {"c"}},
                      {"additionalProperties", false}}}}}}}});
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_EQ(body["choices"][0]["finish_reason"], "stop") << body.dump();
  const json value = json::parse(body["choices"][0]["message"]["content"].get<std::string>());
  ASSERT_TRUE(value.is_object());
  EXPECT_TRUE(value["c"] == "red" || value["c"] == "blue") << value.dump();
}

// Properties come out in the schema's order, not sorted (json would sort "zeta" after "alpha").
TEST_F(ServerTest, JsonSchemaPropertiesKeepTheSchemaOrder) {
  const std::string body_text = R"({"prompt": "x", "temperature": 0, "max_tokens": 40,
    "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": {
      "type": "object", "required": ["zeta", "alpha"],
      "properties": {"zeta": {"type": "boolean"}, "alpha": {"enum": [1, 2]}}}}}})";
  const auto [status, body] = post("/v1/completions", body_text);
  ASSERT_EQ(status, 200) << body.dump();
  const std::string text = body["choices"][0]["text"].get<std::string>();
  const nlohmann::ordered_json value = nlohmann::ordered_json::parse(text);
  ASSERT_EQ(value.size(), 2u) << text;
  EXPECT_EQ(value.begin().key(), "zeta") << text;
  EXPECT_TRUE(value["alpha"] == 1 || value["alpha"] == 2) << text;
}

TEST_F(ServerTest, RefusalsAreOpenAIShapedErrors) {
  const std::string msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  auto [s1, b1] = post("/v1/chat/completions", std::string("{\"messages\": ["));
  expect_error(s1, b1, 400, "invalid JSON body: parse error");
  auto [s2, b2] = post("/v1/chat/completions", "{" + msgs + R"(, "temperature": "hot"})");
  expect_error(s2, b2, 400, "'temperature' must be a number", "temperature");
  auto [s3, b3] =
      post("/v1/chat/completions",
           std::string("{\"messages\": [{\"role\": \"user\", \"content\": \"\xc3\x28\"}]}"));
  expect_error(s3, b3, 400, "request body is not valid UTF-8");
  auto [s4, b4] = post("/v1/chat/completions", "{" + msgs + R"(, "model": "gpt-4o"})");
  expect_error(s4, b4, 404, "model 'gpt-4o' does not exist", "model");
  EXPECT_EQ(b4["error"]["code"], "model_not_found");
  auto [s5, b5] =
      post("/v1/completions", json{{"prompt", std::vector<int32_t>(250, 7)}, {"max_tokens", 50}});
  expect_error(s5, b5, 400,
               "this model's maximum context length is 256 tokens, but the request needs 300 (250 "
               "prompt tokens + 50 max_tokens)",
               "max_tokens");
  EXPECT_EQ(b5["error"]["code"], "context_length_exceeded");
  auto [s6, b6] = post("/v1/nothing-here", json::object());
  expect_error(s6, b6, 404, "no route for POST /v1/nothing-here");
  auto [s7, b7] = post("/detokenize", std::string(R"({"tokens": [1, "x"]})"));
  expect_error(s7, b7, 400, "'tokens[1]' must be a token id", "tokens");
  EXPECT_TRUE(engine_idle());
}

TEST_F(ServerTest, OversizedBodiesGet413) {
  const std::string huge = "{\"prompt\": \"" + std::string(9 << 20, 'a') + "\"}";
  const auto [status, body] = post("/v1/completions", huge);
  expect_error(status, body, 413, "request body larger than the limit of 8388608 bytes");
  // curl -d sends this type; the HTTP library caps it far lower.
  auto res = client().Post("/v1/completions", "{\"prompt\": \"" + std::string(9000, 'a') + "\"}",
                           "application/x-www-form-urlencoded");
  ASSERT_TRUE(res);
  expect_error(res->status, json::parse(res->body), 413,
               "form-encoded request bodies are limited to 8192 bytes: send JSON with "
               "'Content-Type: application/json'");
}

TEST_F(ServerTest, ApiKeyGuardsTheV1Routes) {
  ServerOptions so;
  so.port = 0;
  so.api_key = "sekrit";
  Server s(so);
  s.start();
  s.ready(*engine_, "tiny", nullptr);
  auto c = client(s.port());
  auto missing = c.Get("/v1/models");
  ASSERT_TRUE(missing);
  expect_error(missing->status, json::parse(missing->body), 401, "missing API key");
  auto wrong = c.Get("/v1/models", {{"Authorization", "Bearer nope"}});
  ASSERT_TRUE(wrong);
  expect_error(wrong->status, json::parse(wrong->body), 401, "invalid API key");
  auto post_wrong = c.Post("/v1/completions", {{"Authorization", "Bearer sekrit2"}},
                           R"({"prompt": "a", "max_tokens": 1})", "application/json");
  ASSERT_TRUE(post_wrong);
  EXPECT_EQ(post_wrong->status, 401);
  auto right = c.Get("/v1/models", {{"Authorization", "Bearer sekrit"}});
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 200);
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  // /tokenize costs CPU per byte like a prompt: behind the key, as /detokenize and /metrics.
  for (const char* path : {"/tokenize", "/detokenize"}) {
    auto open = c.Post(path, R"({"content": "a", "tokens": [1]})", "application/json");
    ASSERT_TRUE(open);
    EXPECT_EQ(open->status, 401) << path;
  }
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 401);
  auto keyed = c.Post("/tokenize", {{"Authorization", "Bearer sekrit"}}, R"({"content": "a"})",
                      "application/json");
  ASSERT_TRUE(keyed);
  EXPECT_EQ(keyed->status, 200);
  // --open-metrics lets a scraper without the key read /metrics.
  so.open_metrics = true;
  Server s2(so);
  s2.start();
  s2.ready(*engine_, "tiny", nullptr);
  auto c2 = client(s2.port());
  auto scraped = c2.Get("/metrics");
  ASSERT_TRUE(scraped);
  EXPECT_EQ(scraped->status, 200);
}

TEST_F(ServerTest, RandomBodiesGetJsonErrorsNeverCrashes) {
  std::mt19937_64 rng(test_seed());
  const std::string valid =
      R"({"prompt": "hi", "max_tokens": 2, "temperature": 0.5, "stop": ["x"], "logprobs": 1})";
  for (int i = 0; i < 150; ++i) {
    std::string body;
    if (i % 2 == 0) {
      body.resize(rng() % 200);
      for (char& c : body) c = static_cast<char>(rng());
    } else {
      body = valid;
      for (int e = 0; e < 3; ++e) body[rng() % body.size()] = static_cast<char>(rng() % 128);
    }
    const char* path = i % 3 == 0 ? "/v1/chat/completions" : "/v1/completions";
    auto res = client().Post(path, body, "application/json");
    ASSERT_TRUE(res) << "no answer to body " << i;
    const json j = json::parse(res->body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << res->body;
    if (res->status == 200) {
      EXPECT_TRUE(j.contains("choices")) << j.dump();
    } else {
      EXPECT_GE(res->status, 400);
      EXPECT_LT(res->status, 500) << j.dump();
      EXPECT_TRUE(j["error"]["message"].is_string()) << j.dump();
    }
  }
  EXPECT_TRUE(engine_idle());
}

TEST_F(ServerTest, TokenizeRoundTrips) {
  auto [s1, t] = post("/tokenize", json{{"content", "the quick fox"}});
  ASSERT_EQ(s1, 200);
  EXPECT_EQ(t["tokens"].get<std::vector<int32_t>>(),
            lm_->tokenizer->encode("the quick fox", false, true));
  auto [s2, d] = post("/detokenize", json{{"tokens", t["tokens"]}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(d["content"], "the quick fox");
}

TEST_F(ServerTest, QueueFullIs503) {
  engine::EngineOptions o;
  o.kv_memory_bytes = 2 << 20;
  o.max_waiting = 1;
  engine::Engine idle(*lm_, *pool_, o);  // never started: what is queued stays queued
  ServerOptions so;
  so.port = 0;
  Server s(so);
  s.start();
  s.ready(idle, "tiny", nullptr);
  engine::Request r;
  r.prompt = {1, 2, 3};
  r.max_tokens = 1;
  auto held = idle.submit_stream(r);
  auto res = client(s.port()).Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1})",
                                   "application/json");
  ASSERT_TRUE(res);
  expect_error(res->status, json::parse(res->body), 503, "the server is busy");
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  s.stop();
}

TEST_F(ServerTest, ARequestCancelledByShutdownIsCutNotAnErrorUnder200) {
  // The engine is stopped while a non-streaming request waits (its 200 went out with the
  // first heartbeat): the client must see a failed transfer, which it and routers retry,
  // not a complete body that reads as a success.
  engine::EngineOptions o;
  o.kv_memory_bytes = 2 << 20;
  engine::Engine idle(*lm_, *pool_, o);  // never started: the request waits until stop()
  ServerOptions so;
  so.port = 0;
  so.heartbeat = milliseconds(20);
  Server s(so);
  s.start();
  s.ready(idle, "tiny", nullptr);
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(200));
    idle.stop();  // its open requests end "cancelled"
  });
  auto res = client(s.port()).Post("/v1/completions", R"({"prompt": "a", "max_tokens": 4})",
                                   "application/json");
  stopper.join();
  EXPECT_FALSE(res) << "got a complete response: " << res->status << " " << res->body;
  s.stop();
}

// A raw connection, so the test can hang up in the middle of a response.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  }
  ~RawClient() { hang_up(); }
  void post(const std::string& path, const std::string& body) {
    const std::string req = "POST " + path +
                            " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            "Content-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(send(fd_, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  }
  // Reads until `needle` has arrived; false on end of stream.
  bool read_until(const std::string& needle) {
    char buf[4096];
    while (received_.find(needle) == std::string::npos) {
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  void hang_up() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  std::string received_;
};

// An engine stepped by the test, one step every 20 ms, behind its own server: a request
// lasts long enough for its client to hang up in the middle of it.
class SlowServing {
 public:
  SlowServing(const engine::LoadedModel& lm, ThreadPool& pool)
      : engine_(lm, pool, engine_options()), server_(server_options()) {
    server_.start();
    server_.ready(engine_, "tiny", nullptr);
    stepper_ = std::thread([this] {
      while (!done_) {
        engine_.step();
        std::this_thread::sleep_for(milliseconds(20));
      }
    });
  }
  ~SlowServing() {
    server_.stop();
    done_ = true;
    stepper_.join();
  }
  int port() const { return server_.port(); }
  // Waits until a request was cancelled and its blocks freed; the stats then.
  engine::EngineStats wait_for_cancellation() {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    engine::EngineStats s = engine_.stats();
    while (std::chrono::steady_clock::now() < end) {
      s = engine_.stats();
      if (s.requests_cancelled > 0 && s.running == 0 && s.kv_blocks_used == 0) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return s;
  }

 private:
  static engine::EngineOptions engine_options() {
    engine::EngineOptions o;
    o.kv_memory_bytes = 4 << 20;
    return o;
  }
  static ServerOptions server_options() {
    ServerOptions so;
    so.port = 0;
    so.heartbeat = milliseconds(50);
    return so;
  }
  engine::Engine engine_;
  Server server_;
  std::atomic<bool> done_{false};
  std::thread stepper_;
};

TEST_F(ServerTest, StreamingClientThatHangsUpIsCancelled) {
  SlowServing slow(*lm_, *pool_);
  RawClient c(slow.port());
  c.post(
      "/v1/completions",
      json{{"prompt", "a long story"}, {"max_tokens", 200}, {"ignore_eos", true}, {"stream", true}}
          .dump());
  ASSERT_TRUE(c.read_until("\"text\""));  // generation is under way
  c.hang_up();
  const engine::EngineStats s = slow.wait_for_cancellation();
  EXPECT_EQ(s.requests_cancelled, 1);
  EXPECT_EQ(s.requests_finished, 1);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_LT(s.generation_tokens, 200);
}

TEST_F(ServerTest, NonStreamingClientThatHangsUpIsCancelled) {
  SlowServing slow(*lm_, *pool_);
  RawClient c(slow.port());
  c.post("/v1/completions",
         json{{"prompt", "a long story"}, {"max_tokens", 200}, {"ignore_eos", true}}.dump());
  ASSERT_TRUE(c.read_until("\r\n\r\n"));  // the headers: the request is in the engine
  c.hang_up();
  const engine::EngineStats s = slow.wait_for_cancellation();
  EXPECT_EQ(s.requests_cancelled, 1);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_LT(s.generation_tokens, 200);
}

// The value of an unlabelled metric line "name value".
double metric(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  EXPECT_NE(at, std::string::npos) << name;
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

TEST_F(ServerTest, MetricsShowAPrefixCacheHit) {
  std::vector<int32_t> prompt(80);
  std::mt19937_64 rng(test_seed());
  for (auto& t : prompt) t = static_cast<int32_t>(rng() % 300) + 10;
  auto get_metrics = [] {
    auto res = client().Get("/metrics");
    EXPECT_TRUE(res && res->status == 200);
    return res ? res->body : std::string();
  };
  const double hits_before = metric(get_metrics(), "kdr_prefix_cache_hit_tokens_total");
  const double generated_before = metric(get_metrics(), "kdr_generation_tokens_total");
  int64_t completion_tokens = 0;  // a random prompt may end at 1 token (end of text)
  for (int i = 0; i < 2; ++i) {
    const auto [status, body] =
        post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 2}, {"temperature", 0}});
    ASSERT_EQ(status, 200) << body.dump();
    completion_tokens += body["usage"]["completion_tokens"].get<int64_t>();
    if (i == 1) {
      EXPECT_GE(body["usage"]["prompt_tokens_details"]["cached_tokens"], 64);
    }
  }
  // The engine closes its books on a request just after handing over the last token, so a
  // scrape right after the response may still count it as running: wait (bounded) for that.
  std::string text = get_metrics();
  for (int tries = 0; tries < 200 && metric(text, "kdr_requests_running") != 0; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = get_metrics();
  }
  // The second request found its full blocks: 80 tokens hold 5 blocks of 16, the last
  // recomputed for its logits.
  EXPECT_GE(metric(text, "kdr_prefix_cache_hit_tokens_total") - hits_before, 64);
  EXPECT_EQ(metric(text, "kdr_requests_running"), 0);
  EXPECT_GT(metric(text, "kdr_kv_blocks_total"), 0);
  EXPECT_GE(completion_tokens, 2);
  EXPECT_EQ(metric(text, "kdr_generation_tokens_total") - generated_before, completion_tokens);
  EXPECT_NE(text.find("kdr_http_responses_total{code=\"200\"} "), std::string::npos);
  EXPECT_NE(text.find("kdr_time_to_first_token_seconds_bucket{le=\"+Inf\"} "), std::string::npos);
  EXPECT_NE(text.find("# TYPE kdr_e2e_request_latency_seconds histogram"), std::string::npos);
}

}  // namespace
}  // namespace kdr::server
