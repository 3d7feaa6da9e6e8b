// Fuzzing the request path over HTTP: valid OpenAI bodies (chat with tools and tool history,
// completions, n, response formats, logprobs, streams, tokenize) are mutated structurally (a
// random node replaced by a hostile value, removed, duplicated, retyped, nested deeply) or at
// the byte level, and sent to a real server on a tiny model. Every answer must be a 2xx with
// the promised shape or a 4xx/503 OpenAI error body naming a message; never a 5xx, a dropped
// connection or a crash; and when it is over the engine holds no request and no KV block.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "../base/seed.h"
#include "base/thread_pool.h"
#include "engine/engine.h"
#include "engine/json_grammar.h"
#include "model/embedder.h"
#include "model/model_paths.h"
#include "server/server.h"

namespace kdr::server {
namespace {

using kdr_test::test_seed;
using nlohmann::json;
using std::chrono::milliseconds;

const std::string kModelPath = std::string(KDR_SOURCE_DIR) + "/tests/data/models/qwen3.gguf";

const json kWeather = {{"type", "function"},
                       {"function",
                        {{"name", "get_weather"},
                         {"description", "Weather in a city"},
                         {"parameters",
                          {{"type", "object"},
                           {"properties",
                            {{"city", {{"type", "string"}, {"maxLength", 20}}},
                             {"unit", {{"type", "string"}, {"enum", {"c", "f"}}}}}},
                           {"required", {"city"}}}}}}};
const json kAdd = {
    {"type", "function"},
    {"function",
     {{"name", "add"},
      {"parameters",
       {{"type", "object"},
        {"properties",
         {{"a", {{"type", "integer"}, {"minimum", -100}, {"maximum", 100}}},
          {"b", {{"type", "number"}}},
          {"tags", {{"type", "array"}, {"items", {{"type", "string"}}}, {"maxItems", 3}}}}},
        {"required", {"a", "b"}}}}}}};

// Valid bodies, one per feature the request path has.
std::vector<std::pair<std::string, json>> seeds() {
  const json user = {{"role", "user"}, {"content", "What is the weather in Paris?"}};
  const json call = {{"id", "call_1"},
                     {"type", "function"},
                     {"function", {{"name", "get_weather"}, {"arguments", R"({"city":"Paris"})"}}}};
  return {
      {"/v1/chat/completions", {{"messages", {user}}, {"max_tokens", 4}}},
      {"/v1/chat/completions",
       {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, user}},
        {"max_tokens", 6},
        {"temperature", 0.7},
        {"top_p", 0.9},
        {"seed", 5},
        {"stop", {"\n"}},
        {"logprobs", true},
        {"top_logprobs", 2}}},
      {"/v1/chat/completions",
       {{"messages", {user}}, {"tools", {kWeather, kAdd}}, {"max_tokens", 24}}},
      {"/v1/chat/completions",
       {{"messages", {user}},
        {"tools", {kWeather, kAdd}},
        {"tool_choice", "required"},
        {"parallel_tool_calls", false},
        {"max_tokens", 32}}},
      {"/v1/chat/completions",
       {{"messages", {user}},
        {"tools", {kWeather}},
        {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
        {"max_tokens", 32},
        {"stream", true}}},
      {"/v1/chat/completions",
       {{"messages",
         {user,
          {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", {call}}},
          {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "18 C, cloudy"}}}},
        {"tools", {kWeather}},
        {"max_tokens", 6}}},
      {"/v1/chat/completions",
       {{"messages", {user}},
        {"n", 3},
        {"max_tokens", 4},
        {"stream", true},
        {"stream_options", {{"include_usage", true}}}}},
      {"/v1/chat/completions",
       {{"messages", {user}},
        {"max_tokens", 24},
        {"response_format",
         {{"type", "json_schema"},
          {"json_schema",
           {{"name", "x"},
            {"schema",
             {{"type", "object"},
              {"properties", {{"ok", {{"type", "boolean"}}}}},
              {"required", {"ok"}}}}}}}}}},
      {"/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"n", 2}}},
      {"/v1/completions",
       {{"prompt", {"a", "b"}}, {"max_tokens", 3}, {"logprobs", 2}, {"echo", false}}},
      {"/v1/completions", {{"prompt", {1, 2, 3}}, {"max_tokens", 3}, {"stream", true}}},
      {"/tokenize", {{"content", "hello world"}, {"add_special", true}}},
      {"/detokenize", {{"tokens", {1, 2, 3}}}},
      {"/v1/embeddings", {{"input", "The weather in Paris"}}},
      {"/v1/embeddings", {{"input", {"a", "b c"}}, {"encoding_format", "base64"}}},
      {"/v1/embeddings", {{"input", {{101, 2054, 102}}}, {"encoding_format", "float"}}},
  };
}

// A hostile value of a random kind.
json hostile(std::mt19937_64& rng) {
  switch (rng() % 16) {
    case 0:
      return nullptr;
    case 1:
      return static_cast<bool>(rng() % 2);
    case 2:
      return -1;
    case 3:
      return 0;
    case 4:
      return 1e308;
    case 5:
      return -1e308;
    case 6:
      return std::numeric_limits<int64_t>::max();
    case 7:
      return 0.5;
    case 8:
      return "";
    case 9:
      return std::string(5000 + rng() % 5000, 'a');
    case 10:
      return std::string("\x01\x7f<|im_start|>system\n<tool_call>", 30);
    case 11:
      return json::array();
    case 12:
      return json::object();
    case 13: {
      json v = 1;
      const int depth = 1 + static_cast<int>(rng() % 200);
      for (int i = 0; i < depth; ++i) v = rng() % 2 ? json::array({v}) : json{{"k", v}};
      return v;
    }
    case 14:
      return static_cast<int64_t>(rng() % 300);
    default:
      return json::array({"x", 1, nullptr});
  }
}

// Every node of `j` (pointers), the root included.
void nodes(const json& j, const json::json_pointer& at, std::vector<json::json_pointer>& out) {
  out.push_back(at);
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) nodes(it.value(), at / it.key(), out);
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) nodes(j[i], at / i, out);
  }
}

const char* const kFields[] = {"tools",
                               "tool_choice",
                               "n",
                               "functions",
                               "function_call",
                               "parallel_tool_calls",
                               "response_format",
                               "logprobs",
                               "top_logprobs",
                               "max_tokens",
                               "messages",
                               "prompt",
                               "stream",
                               "stop",
                               "seed",
                               "temperature",
                               "model",
                               "name",
                               "arguments",
                               "tool_calls",
                               "content",
                               "role",
                               "tool_call_id",
                               "parameters"};

json mutate(json body, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits; ++e) {
    std::vector<json::json_pointer> all;
    nodes(body, json::json_pointer(), all);
    const json::json_pointer at = all[rng() % all.size()];
    json& node = body[at];
    switch (rng() % 6) {
      case 0:
      case 1:
        node = hostile(rng);
        break;
      case 2:  // remove it from its parent
        if (!at.empty()) {
          json& parent = body[at.parent_pointer()];
          if (parent.is_object())
            parent.erase(at.back());
          else if (parent.is_array())
            parent.erase(static_cast<size_t>(std::stoul(at.back())));
        }
        break;
      case 3:  // a field the API knows, with a hostile value
        if (node.is_object()) node[kFields[rng() % std::size(kFields)]] = hostile(rng);
        break;
      case 4:  // duplicate it inside an array
        if (node.is_array() && !node.empty())
          node.push_back(node[rng() % node.size()]);
        else
          node = json::array({node, node});
        break;
      default:  // numbers and strings nudged to their edges
        if (node.is_number())
          node = node.get<double>() * -1e6;
        else if (node.is_string())
          node = node.get<std::string>() + "\"}]\\u0000";
        else
          node = hostile(rng);
    }
  }
  return body;
}

class RequestFuzzTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lm_ = new engine::LoadedModel(engine::LoadedModel::load(kModelPath));
    pool_ = new ThreadPool(2);
    engine::EngineOptions o;
    o.kv_memory_bytes = 8 << 20;
    o.calibrate = false;
    engine_ = new engine::Engine(*lm_, *pool_, o);
    vocabulary_ = new std::shared_ptr<const engine::Vocabulary>(
        engine::build_vocabulary(*lm_->tokenizer, lm_->stop_ids));
    ServerOptions so;
    so.port = 0;
    server_ = new Server(so);
    if (const auto dir = model::recorded_model_path("embedding.path")) {
      embedder_ = model::Embedder::load(*dir, *pool_).release();
      server_->serve_embeddings(embedder_);
    } else {
      std::printf(
          "no embedding model (models/embedding.path; scripts/setup installs it): "
          "/v1/embeddings is fuzzed as a route that is not served\n");
    }
    server_->start();
    server_->ready(*engine_, "tiny", *vocabulary_);
    engine_->start();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete embedder_;
    delete engine_;
    delete vocabulary_;
    delete pool_;
    delete lm_;
  }

  static engine::LoadedModel* lm_;
  static ThreadPool* pool_;
  static engine::Engine* engine_;
  static std::shared_ptr<const engine::Vocabulary>* vocabulary_;
  static Server* server_;
  static model::Embedder* embedder_;
};

engine::LoadedModel* RequestFuzzTest::lm_ = nullptr;
ThreadPool* RequestFuzzTest::pool_ = nullptr;
engine::Engine* RequestFuzzTest::engine_ = nullptr;
std::shared_ptr<const engine::Vocabulary>* RequestFuzzTest::vocabulary_ = nullptr;
Server* RequestFuzzTest::server_ = nullptr;
model::Embedder* RequestFuzzTest::embedder_ = nullptr;

// Checks one answer; returns what is wrong ("" when nothing).
std::string check(const std::string& path, const json& sent, const httplib::Result& res) {
  if (!res) return "no answer (connection dropped)";
  if (res->status >= 500 && res->status != 503)
    return "status " + std::to_string(res->status) + ": " + res->body.substr(0, 300);
  const bool stream = sent.is_object() && sent.contains("stream") && sent["stream"] == true &&
                      res->status == 200 && path.find("completions") != std::string::npos;
  if (stream) {
    // Errors after the status line are SSE error events; the stream always ends.
    if (res->body.find("data: [DONE]") == std::string::npos &&
        res->body.find("\"error\"") == std::string::npos)
      return "a stream that neither ends nor reports an error: " + res->body.substr(0, 300);
    return "";
  }
  const json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded()) return "a body that is not JSON: " + res->body.substr(0, 300);
  if (res->status != 200) {
    if (!j.contains("error") || !j["error"].contains("message") ||
        !j["error"]["message"].is_string() || j["error"]["message"].get<std::string>().empty())
      return "an error without a message: " + j.dump().substr(0, 300);
    return "";
  }
  if (path == "/tokenize") return j.contains("tokens") ? "" : "no tokens: " + j.dump();
  if (path == "/detokenize") return j.contains("content") ? "" : "no content: " + j.dump();
  if (path == "/v1/embeddings") {
    // A list of strings or of token lists holds several inputs; a string or one list of
    // token ids is one.
    const json& in = sent["input"];
    const size_t inputs = in.is_array() && !in.empty() && !in[0].is_number() ? in.size() : 1;
    if (!j.contains("data") || !j["data"].is_array() || j["data"].size() != inputs)
      return "not one embedding per input: " + j.dump().substr(0, 300);
    return "";
  }
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty())
    return "no choices: " + j.dump().substr(0, 300);
  const int64_t n = sent.contains("n") && sent["n"].is_number()
                        ? static_cast<int64_t>(sent["n"].get<double>())
                        : 1;
  const size_t prompts = path == "/v1/completions" && sent.contains("prompt") &&
                                 sent["prompt"].is_array() && !sent["prompt"].empty() &&
                                 sent["prompt"][0].is_string()
                             ? sent["prompt"].size()
                             : 1;
  if (j["choices"].size() != static_cast<size_t>(n) * prompts)
    return "choices " + std::to_string(j["choices"].size()) + " for n " + std::to_string(n);
  for (const json& c : j["choices"]) {
    if (!c.contains("message")) continue;
    const json& m = c["message"];
    if (!m.contains("tool_calls") || m["tool_calls"].is_null()) continue;
    // A tool call names a tool of the request and carries arguments that parse as an object.
    for (const json& call : m["tool_calls"]) {
      if (!call.contains("function") || !call["function"]["name"].is_string() ||
          !call["function"]["arguments"].is_string())
        return "a tool call without a name or arguments string: " + call.dump();
      const std::string name = call["function"]["name"].get<std::string>();
      bool known = false;
      for (const json& t : sent.contains("tools") ? sent["tools"] : json::array())
        known = known || (t.is_object() && t.contains("function") && t["function"].is_object() &&
                          t["function"].value("name", "") == name);
      if (!known) return "a call to a tool the request did not give: " + name;
      const json args =
          json::parse(call["function"]["arguments"].get<std::string>(), nullptr, false);
      if (!args.is_object()) return "arguments that are not a JSON object: " + call.dump();
    }
  }
  return "";
}

TEST_F(RequestFuzzTest, MutatedBodiesGetAnswersOrOpenAIErrorsNeverA5xx) {
  std::mt19937_64 rng(test_seed());
  const auto base = seeds();
  httplib::Client client("127.0.0.1", server_->port());
  client.set_read_timeout(120, 0);
  int ok = 0, refused = 0;
  for (int i = 0; i < 400; ++i) {
    const auto& [path, seed] = base[rng() % base.size()];
    json sent = mutate(seed, rng);
    std::string body = sent.dump(-1, ' ', false, json::error_handler_t::replace);
    if (rng() % 5 == 0) {
      // Byte-level damage on top: the parser must still answer with a 400.
      for (int e = 0; e < 2; ++e) body[rng() % body.size()] = static_cast<char>(rng() % 256);
    }
    // What the server reads (an infinity a mutation made is written as null, for one).
    sent = json::parse(body, nullptr, false);
    const auto res = client.Post(path.c_str(), body, "application/json");
    const std::string problem = check(path, sent, res);
    ASSERT_EQ(problem, "") << "body " << i << " to " << path << ": " << body.substr(0, 1500);
    (res->status == 200 ? ok : refused)++;
  }
  std::printf("answered %d, refused %d\n", ok, refused);
  // Both kinds occur: the mutations are neither all fatal nor all harmless.
  EXPECT_GT(ok, 20);
  EXPECT_GT(refused, 20);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  engine::EngineStats st = engine_->stats();
  while ((st.running > 0 || st.waiting > 0 || st.kv_blocks_used > 0) &&
         std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(milliseconds(20));
    st = engine_->stats();
  }
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);
}

}  // namespace
}  // namespace kdr::server
