// The language-model backends: the tolerant JSON reader and the schema checker on hand-made
// and random text, the OpenAI-compatible client against a local mock endpoint (request shape,
// retries, fallbacks, timeouts), the config file, the scripted backend, and the engine backend
// on a tiny model with a schema.
#include "hka/llm/llm.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "../../base/seed.h"

namespace kdr::hka {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

using kdr_test::test_seed;

// ---- tolerant JSON -------------------------------------------------------------------------

json parsed(const std::string& text) {
  std::string error;
  std::optional<json> j = parse_tolerant_json(text, &error);
  EXPECT_TRUE(j.has_value()) << "text: " << text << "\nerror: " << error;
  return j.value_or(json());
}

TEST(LlmTolerantJson, StrictJsonIsReadAsIs) {
  EXPECT_EQ(parsed(R"({"a": [1, 2.5, "x"], "b": {"c": null}})"),
            json::parse(R"({"a": [1, 2.5, "x"], "b": {"c": null}})"));
  EXPECT_EQ(parsed("[true, false]"), json::parse("[true, false]"));
}

TEST(LlmTolerantJson, ReadsInsideCodeFences) {
  EXPECT_EQ(parsed("Sure:\n```json\n{\"k\": 1}\n```\nDone."), json({{"k", 1}}));
  EXPECT_EQ(parsed("```\n[1, 2]\n```"), json({1, 2}));
  // Prose before the fence with brackets of its own does not win over the fence.
  EXPECT_EQ(parsed("Use {name} as below [note]\n```json\n{\"k\": 2}\n```"), json({{"k", 2}}));
}

TEST(LlmTolerantJson, FenceInsideAStringIsPartOfTheValue) {
  const std::string text = "{\"code\": \"```python\\nx = [1, 2]\\n```\", \"n\": 1}";
  EXPECT_EQ(parsed(text), json({{"code", "```python\nx = [1, 2]\n```"}, {"n", 1}}));
}

TEST(LlmTolerantJson, SkipsProseAroundTheValue) {
  EXPECT_EQ(parsed("Here is the plan: {\"steps\": 3} Hope this helps!"), json({{"steps", 3}}));
  EXPECT_EQ(parsed("See [the answer] below: {\"ok\": true}"), json({{"ok", true}}));
}

TEST(LlmTolerantJson, DropsTrailingCommas) {
  EXPECT_EQ(parsed("{\"a\": [1, 2, 3,], \"b\": 2,}"), json::parse(R"({"a": [1, 2, 3], "b": 2})"));
  EXPECT_EQ(parsed("[1,\n  2,\n]"), json({1, 2}));
}

TEST(LlmTolerantJson, StripsComments) {
  EXPECT_EQ(parsed("{\n  // the count\n  \"n\": 4, /* four */ \"url\": \"http://x/y\"\n}"),
            json::parse(R"({"n": 4, "url": "http://x/y"})"));
}

TEST(LlmTolerantJson, ReadsSingleQuotedStrings) {
  EXPECT_EQ(parsed("{'name': 'it\\'s \"fine\"', 'n': 1}"),
            json::parse(R"({"name": "it's \"fine\"", "n": 1})"));
}

TEST(LlmTolerantJson, ReadsPythonLiterals) {
  EXPECT_EQ(parsed("{'a': True, 'b': False, 'c': None, 'd': 'None'}"),
            json::parse(R"({"a": true, "b": false, "c": null, "d": "None"})"));
}

TEST(LlmTolerantJson, KeepsBracketsAndQuotesInsideStrings) {
  EXPECT_EQ(parsed(R"(x {"code": "if (a) { b[0] = '}'; }", "t": "\"]\""} y)"),
            json::parse(R"({"code": "if (a) { b[0] = '}'; }", "t": "\"]\""})"));
}

TEST(LlmTolerantJson, EscapesRawControlCharactersInStrings) {
  EXPECT_EQ(parsed("{\"text\": \"line one\nline two\tend\"}"),
            json({{"text", "line one\nline two\tend"}}));
  EXPECT_EQ(parsed("{\"path\": \"C:\\data\\x\"}"), json({{"path", "C:\\data\\x"}}));
}

TEST(LlmTolerantJson, UnterminatedValueIsNulloptWithReason) {
  for (const std::string text : {"{\"a\": [1, 2", "{\"a\": {\"b\": 1}", "{\"a\": \"open"}) {
    std::string error;
    EXPECT_FALSE(parse_tolerant_json(text, &error).has_value()) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
  std::string error;
  EXPECT_FALSE(parse_tolerant_json("no json here at all", &error).has_value());
  EXPECT_NE(error.find("no JSON"), std::string::npos) << error;
  EXPECT_FALSE(parse_tolerant_json("", &error).has_value());
}

TEST(LlmTolerantJson, BareScalarWhenNoContainer) {
  EXPECT_EQ(parsed("42"), json(42));
  EXPECT_EQ(parsed(" \"yes\" "), json("yes"));
}

std::string random_json(std::mt19937_64& rng, int depth) {
  std::uniform_int_distribution<int> kind(0, depth > 3 ? 3 : 5);
  auto word = [&] {
    static const std::string chars = "abc xyz{}[],:'\"\\/\n\tEé";
    std::string s;
    for (int i = 0, n = static_cast<int>(rng() % 8); i < n; ++i) s += chars[rng() % chars.size()];
    return json(s).dump();  // valid JSON string (é's bytes may be split: dump would throw)
  };
  switch (kind(rng)) {
    case 0:
      return std::to_string(static_cast<int64_t>(rng() % 2001) - 1000);
    case 1:
      return rng() % 2 ? "true" : "null";
    case 2:
      return "1.5e3";
    case 3: {
      try {
        return word();
      } catch (const std::exception&) {
        return "\"w\"";
      }
    }
    case 4: {
      std::string s = "[";
      for (int i = 0, n = static_cast<int>(rng() % 4); i < n; ++i)
        s += (i ? ", " : "") + random_json(rng, depth + 1);
      return s + "]";
    }
    default: {
      std::string s = "{";
      for (int i = 0, n = static_cast<int>(rng() % 4); i < n; ++i)
        s += (i ? ", " : "") + std::string("\"k") + std::to_string(i) +
             "\": " + random_json(rng, depth + 1);
      return s + "}";
    }
  }
}

TEST(LlmTolerantJson, RandomValidJsonRoundTrips) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 500; ++i) {
    // Built by appending: GCC 12 warns (-Wrestrict) on "[" + std::string&&.
    std::string text = "[";
    text += random_json(rng, 0);
    text += ']';
    const json want = json::parse(text);
    std::string error;
    const std::optional<json> got = parse_tolerant_json("Answer:\n" + text + "\nThanks", &error);
    ASSERT_TRUE(got.has_value()) << "seed " << seed << " text " << text << " error " << error;
    EXPECT_EQ(*got, want) << "seed " << seed << " text " << text;
  }
}

// Whatever the input, the reader returns a value or a reason and never throws.
void expect_value_or_reason(const std::string& text, uint64_t seed) {
  std::string error;
  std::optional<json> got;
  ASSERT_NO_THROW(got = parse_tolerant_json(text, &error)) << "seed " << seed;
  if (got) {
    EXPECT_EQ(json::parse(got->dump()), *got) << "seed " << seed;
  } else {
    EXPECT_FALSE(error.empty()) << "seed " << seed << " text " << text;
  }
}

TEST(LlmTolerantJson, FuzzRandomBytesNeverThrow) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  static const std::string biased = "{}[]\"',:/*\\ \n\tTrueFalseNone0123456789.-e`";
  for (int i = 0; i < 2000; ++i) {
    std::string text;
    const size_t n = rng() % 80;
    for (size_t k = 0; k < n; ++k)
      text += rng() % 3 ? biased[rng() % biased.size()] : static_cast<char>(rng() % 256);
    expect_value_or_reason(text, seed);
  }
}

TEST(LlmTolerantJson, FuzzMutatedJsonNeverThrows) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  static const std::string inserts = "{}[]\"',:/*\\\n`x";
  for (int i = 0; i < 2000; ++i) {
    std::string text = random_json(rng, 0);
    for (int m = 0, n = 1 + static_cast<int>(rng() % 4); m < n && !text.empty(); ++m) {
      const size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text.erase(at, 1);
          break;
        case 1:
          text.insert(at, 1, inserts[rng() % inserts.size()]);
          break;
        default:
          text[at] = static_cast<char>(rng() % 256);
      }
    }
    expect_value_or_reason(text, seed);
  }
  // Deep nesting stays within bounds.
  expect_value_or_reason(std::string(100000, '['), seed);
  expect_value_or_reason(std::string(100000, '[') + std::string(100000, ']'), seed);
}

// ---- schema checking ------------------------------------------------------------------------

const ordered_json kPlanSchema = ordered_json::parse(R"({
  "type": "object",
  "properties": {
    "subtasks": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
      "type": "object",
      "properties": {"goal": {"type": "string", "minLength": 2},
                     "kind": {"enum": ["sql", "docs"]},
                     "weight": {"type": "number", "minimum": 0, "maximum": 1}},
      "required": ["goal", "kind"]}},
    "note": {"type": ["string", "null"]}
  },
  "required": ["subtasks"],
  "additionalProperties": false
})");

TEST(LlmSchemaViolation, ValidValueIsEmpty) {
  EXPECT_EQ(schema_violation(json::parse(R"({"subtasks": [{"goal": "count", "kind": "sql",
                                             "weight": 0.5}], "note": null})"),
                             kPlanSchema),
            "");
}

TEST(LlmSchemaViolation, NamesThePointerAndTheProblem) {
  auto v = [](const char* text) { return schema_violation(json::parse(text), kPlanSchema); };
  EXPECT_EQ(v(R"({"subtasks": [{"goal": 7, "kind": "sql"}]})"),
            "/subtasks/0/goal: expected a string");
  EXPECT_EQ(v(R"({"subtasks": [{"goal": "ab", "kind": "sql"}, {"kind": "sql"}]})"),
            "/subtasks/1: missing required property 'goal'");
  EXPECT_EQ(v(R"([1])"), "/: expected an object");
  EXPECT_EQ(v(R"({})"), "/: missing required property 'subtasks'");
  EXPECT_EQ(v(R"({"subtasks": []})"), "/subtasks: 0 items, fewer than minItems 1");
  EXPECT_EQ(v(R"({"subtasks": [{"goal": "ab", "kind": "web"}]})"),
            "/subtasks/0/kind: \"web\" is not one of [\"sql\",\"docs\"]");
  EXPECT_EQ(v(R"({"subtasks": [{"goal": "ab", "kind": "sql", "weight": 2}]})"),
            "/subtasks/0/weight: above maximum 1");
  EXPECT_EQ(v(R"({"subtasks": [{"goal": "a", "kind": "sql"}]})"),
            "/subtasks/0/goal: shorter than minLength 2");
  EXPECT_EQ(v(R"({"subtasks": [{"goal": "ab", "kind": "sql"}], "note": 3})"),
            "/note: expected a string or null");
  EXPECT_EQ(v(R"({"subtasks": [{"goal": "ab", "kind": "sql"}], "extra": 1})"),
            "/: unexpected property 'extra'");
}

TEST(LlmSchemaViolation, IntegersRefsAndAlternatives) {
  const ordered_json schema = ordered_json::parse(R"({
    "$defs": {"count": {"type": "integer", "minimum": 0}},
    "type": "object",
    "properties": {"n": {"$ref": "#/$defs/count"},
                   "v": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]}}
  })");
  EXPECT_EQ(schema_violation(json::parse(R"({"n": 3, "v": [1, 2.0]})"), schema), "");
  EXPECT_EQ(schema_violation(json::parse(R"({"n": 1.5})"), schema), "/n: expected an integer");
  EXPECT_EQ(schema_violation(json::parse(R"({"n": -1})"), schema), "/n: below minimum 0");
  EXPECT_NE(schema_violation(json::parse(R"({"v": 5})"), schema).find("/v: matches none"),
            std::string::npos);
}

// ---- OpenAI-compatible backend against a mock endpoint ----------------------------------------

struct MockRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

struct MockResponse {
  int status = 200;
  std::string body;
  std::map<std::string, std::string> headers;
  int delay_ms = 0;  // before answering
};

// A one-connection-at-a-time HTTP/1.1 endpoint on 127.0.0.1 (Connection: close).
class MockEndpoint {
 public:
  using Handler = std::function<MockResponse(const MockRequest&)>;
  explicit MockEndpoint(Handler handler) : handler_(std::move(handler)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~MockEndpoint() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::vector<MockRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      handle(c);
      close(c);
    }
  }

  void handle(int c) {
    std::string data;
    char buf[65536];
    size_t header_end = std::string::npos;
    size_t length = 0;
    for (;;) {
      if (header_end != std::string::npos && data.size() >= header_end + 4 + length) break;
      const ssize_t n = recv(c, buf, sizeof(buf), 0);
      if (n <= 0) return;
      data.append(buf, static_cast<size_t>(n));
      if (header_end == std::string::npos &&
          (header_end = data.find("\r\n\r\n")) != std::string::npos) {
        std::string lower = data.substr(0, header_end);
        for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (const size_t cl = lower.find("content-length:"); cl != std::string::npos)
          length = std::strtoul(lower.c_str() + cl + 15, nullptr, 10);
      }
    }
    MockRequest req;
    std::istringstream head(data.substr(0, header_end));
    std::string line;
    std::getline(head, line);
    std::istringstream first(line);
    first >> req.method >> req.path;
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      req.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    req.body = data.substr(header_end + 4, length);
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(req);
    }
    const MockResponse res = handler_(req);
    if (res.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(res.delay_ms));
    std::string out =
        "HTTP/1.1 " + std::to_string(res.status) + " X\r\nContent-Type: application/json\r\n";
    for (const auto& [k, v] : res.headers) out += k + ": " + v + "\r\n";
    out += "Content-Length: " + std::to_string(res.body.size()) + "\r\nConnection: close\r\n\r\n";
    out += res.body;
    send(c, out.data(), out.size(), MSG_NOSIGNAL);
  }

  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<MockRequest> requests_;
};

std::string completion(const std::string& content, bool with_usage = true) {
  json j = {{"id", "c1"},
            {"model", "served-model"},
            {"choices",
             {{{"index", 0},
               {"message", {{"role", "assistant"}, {"content", content}}},
               {"finish_reason", "stop"}}}}};
  if (with_usage) j["usage"] = {{"prompt_tokens", 11}, {"completion_tokens", 7}};
  return j.dump();
}

OpenAiConfig config_for(const MockEndpoint& endpoint) {
  // The mock is local: no proxy from the environment may stand between.
  setenv("NO_PROXY", "127.0.0.1,localhost", 1);
  setenv("no_proxy", "127.0.0.1,localhost", 1);
  OpenAiConfig c;
  c.base_url = endpoint.url();
  c.models = {{"default", "base-model"}, {"coder", "code-model"}};
  c.vision_roles = {"vision"};
  c.timeout_s = 5;
  c.max_retries = 3;
  c.backoff_s = 0.01;
  return c;
}

LlmCall simple_call(const std::string& role = "planner") {
  LlmCall call;
  call.role = role;
  call.messages = {{"system", "You plan.", ""}, {"user", "Count the rows.", ""}};
  call.max_tokens = 100;
  call.temperature = 0.2;
  call.seed = 7;
  return call;
}

TEST(LlmOpenAi, SendsModelMessagesSchemaAndKey) {
  MockEndpoint endpoint([](const MockRequest&) {
    return MockResponse{200, completion("{}"), {}, 0};
  });
  OpenAiConfig config = config_for(endpoint);
  config.api_key = "sk-test";
  auto backend = make_openai_backend(config);
  LlmCall call = simple_call("coder");
  call.json_schema = ordered_json::parse(R"({"type": "object", "properties": {"b": {}, "a": {}}})");
  call.schema_name = "plan";
  call.messages.push_back({"user", "Look at this.", std::string("\x89PNG\r\n", 6)});
  backend->complete(call);
  backend->complete(simple_call("writer"));

  const std::vector<MockRequest> requests = endpoint.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].path, "/v1/chat/completions");
  EXPECT_EQ(requests[0].headers.at("authorization"), "Bearer sk-test");
  const ordered_json body = ordered_json::parse(requests[0].body);
  EXPECT_EQ(body["model"], "code-model");
  EXPECT_EQ(body["max_tokens"], 100);
  EXPECT_DOUBLE_EQ(body["temperature"].get<double>(), 0.2);
  EXPECT_EQ(body["seed"], 7);
  EXPECT_EQ(body["messages"][0], ordered_json({{"role", "system"}, {"content", "You plan."}}));
  const ordered_json& parts = body["messages"][2]["content"];
  ASSERT_TRUE(parts.is_array());
  EXPECT_EQ(parts[0], ordered_json({{"type", "text"}, {"text", "Look at this."}}));
  EXPECT_EQ(parts[1]["type"], "image_url");
  EXPECT_EQ(parts[1]["image_url"]["url"], "data:image/png;base64,iVBORw0K");
  const ordered_json& rf = body["response_format"];
  EXPECT_EQ(rf["type"], "json_schema");
  EXPECT_EQ(rf["json_schema"]["name"], "plan");
  EXPECT_EQ(rf["json_schema"]["strict"], true);
  EXPECT_EQ(rf["json_schema"]["schema"].dump(), call.json_schema->dump());  // order kept
  const json second = json::parse(requests[1].body);
  EXPECT_EQ(second["model"], "base-model");
  EXPECT_FALSE(second.contains("response_format"));

  EXPECT_TRUE(backend->accepts_images("vision"));
  EXPECT_FALSE(backend->accepts_images("coder"));
  EXPECT_EQ(backend->describe(), "openai:" + endpoint.url());
}

TEST(LlmOpenAi, ReadsTextUsageAndModel) {
  MockEndpoint endpoint([](const MockRequest& r) {
    return MockResponse{200, completion("hello", r.body.find("Count") != std::string::npos), {}, 0};
  });
  auto backend = make_openai_backend(config_for(endpoint));
  const LlmReply reply = backend->complete(simple_call());
  EXPECT_EQ(reply.text, "hello");
  EXPECT_EQ(reply.prompt_tokens, 11);
  EXPECT_EQ(reply.completion_tokens, 7);
  EXPECT_EQ(reply.model, "served-model");
  EXPECT_EQ(reply.finish_reason, "stop");
  EXPECT_EQ(reply.attempts, 1);
  EXPECT_GT(reply.latency_s, 0.0);

  LlmCall no_usage = simple_call();
  no_usage.messages = {{"user", std::string(400, 'a'), ""}};
  const LlmReply estimated = backend->complete(no_usage);
  EXPECT_EQ(estimated.prompt_tokens, 100);  // bytes / 4
  EXPECT_EQ(estimated.completion_tokens, 1);
}

TEST(LlmOpenAi, RetriesAfterServerError) {
  std::atomic<int> n{0};
  MockEndpoint endpoint([&](const MockRequest&) {
    return ++n == 1 ? MockResponse{500, R"({"error": {"message": "busy"}})", {}, 0}
                    : MockResponse{200, completion("ok"), {}, 0};
  });
  const LlmReply reply = make_openai_backend(config_for(endpoint))->complete(simple_call());
  EXPECT_EQ(reply.text, "ok");
  EXPECT_EQ(reply.attempts, 2);
}

TEST(LlmOpenAi, HonoursRetryAfterOn429) {
  std::atomic<int> n{0};
  MockEndpoint endpoint([&](const MockRequest&) {
    return ++n == 1 ? MockResponse{429,
                                   R"({"error": {"message": "slow down"}})",
                                   {{"Retry-After", "0"}},
                                   0}
                    : MockResponse{200, completion("ok"), {}, 0};
  });
  OpenAiConfig config = config_for(endpoint);
  config.backoff_s = 20;  // Retry-After: 0 overrides the long backoff
  const LlmReply reply = make_openai_backend(config)->complete(simple_call());
  EXPECT_EQ(reply.attempts, 2);
  EXPECT_LT(reply.latency_s, 5.0);
}

TEST(LlmOpenAi, GivesUpAfterMaxRetries) {
  MockEndpoint endpoint([](const MockRequest&) {
    return MockResponse{503, R"({"error": {"message": "overloaded"}})", {}, 0};
  });
  OpenAiConfig config = config_for(endpoint);
  config.max_retries = 2;
  try {
    make_openai_backend(config)->complete(simple_call());
    FAIL() << "no LlmError";
  } catch (const LlmError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("HTTP 503"), std::string::npos) << what;
    EXPECT_NE(what.find("overloaded"), std::string::npos) << what;
    EXPECT_NE(what.find("3 attempts"), std::string::npos) << what;
  }
  EXPECT_EQ(endpoint.requests().size(), 3u);
}

TEST(LlmOpenAi, BadRequestFailsAtOnce) {
  MockEndpoint endpoint([](const MockRequest&) {
    return MockResponse{400, R"({"error": {"message": "max_tokens is too large"}})", {}, 0};
  });
  OpenAiConfig config = config_for(endpoint);
  config.api_key = "sk-secret";
  try {
    make_openai_backend(config)->complete(simple_call());
    FAIL() << "no LlmError";
  } catch (const LlmError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(endpoint.url() + "/chat/completions"), std::string::npos) << what;
    EXPECT_NE(what.find("HTTP 400"), std::string::npos) << what;
    EXPECT_NE(what.find("max_tokens is too large"), std::string::npos) << what;
    EXPECT_EQ(what.find("sk-secret"), std::string::npos) << what;
  }
  EXPECT_EQ(endpoint.requests().size(), 1u);
}

TEST(LlmOpenAi, RetriesWithoutResponseFormatWhenRefusedAndRemembers) {
  MockEndpoint endpoint([](const MockRequest& r) {
    if (r.body.find("response_format") != std::string::npos)
      return MockResponse{
          400, R"({"error": {"message": "response_format is not supported"}})", {}, 0};
    return MockResponse{200, completion("{\"a\": 1}"), {}, 0};
  });
  auto backend = make_openai_backend(config_for(endpoint));
  LlmCall call = simple_call();
  call.json_schema = ordered_json::parse(R"({"type": "object"})");
  const LlmReply first = backend->complete(call);
  EXPECT_EQ(first.text, "{\"a\": 1}");
  EXPECT_EQ(first.attempts, 2);
  const LlmReply second = backend->complete(call);
  EXPECT_EQ(second.attempts, 1);
  EXPECT_EQ(endpoint.requests().size(), 3u);
}

TEST(LlmOpenAi, TimeoutFailsAfterRetries) {
  MockEndpoint endpoint([](const MockRequest&) {
    return MockResponse{200, completion("late"), {}, 600};
  });
  OpenAiConfig config = config_for(endpoint);
  config.timeout_s = 0.3;
  config.max_retries = 1;
  try {
    make_openai_backend(config)->complete(simple_call());
    FAIL() << "no LlmError";
  } catch (const LlmError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("2 attempts"), std::string::npos) << what;
    EXPECT_NE(what.find("timed out"), std::string::npos) << what;
  }
}

TEST(LlmOpenAi, ConnectionRefusedIsLlmError) {
  int port = 0;
  {
    MockEndpoint closed([](const MockRequest&) { return MockResponse{}; });
    port = std::stoi(closed.url().substr(17));
  }
  OpenAiConfig config;
  config.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  config.models = {{"default", "m"}};
  config.max_retries = 1;
  config.backoff_s = 0.01;
  EXPECT_THROW(make_openai_backend(config)->complete(simple_call()), LlmError);
}

TEST(LlmOpenAi, NullContentIsLlmError) {
  MockEndpoint endpoint([](const MockRequest&) {
    json j = json::parse(completion("x"));
    j["choices"][0]["message"]["content"] = nullptr;
    return MockResponse{200, j.dump(), {}, 0};
  });
  try {
    make_openai_backend(config_for(endpoint))->complete(simple_call());
    FAIL() << "no LlmError";
  } catch (const LlmError& e) {
    EXPECT_NE(std::string(e.what()).find("content is null"), std::string::npos) << e.what();
  }
}

// ---- config file -------------------------------------------------------------------------------

class LlmConfig : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& text) {
    const std::filesystem::path p = std::filesystem::temp_directory_path() /
                                    ("kdr_llm_config_" + std::to_string(getpid()) + ".json");
    std::ofstream(p) << text;
    files_.push_back(p);
    return p;
  }
  void TearDown() override {
    for (const auto& p : files_) std::filesystem::remove(p);
  }
  std::string error_of(const std::string& text) {
    try {
      load_openai_config(write(text));
    } catch (const LlmError& e) {
      return e.what();
    }
    return "";
  }
  std::vector<std::filesystem::path> files_;
};

TEST_F(LlmConfig, ReadsEveryFieldAndTheKeyFromTheEnvironment) {
  setenv("KDR_TEST_LLM_KEY", "sk-env", 1);
  const OpenAiConfig c = load_openai_config(write(R"({
    "url": "http://h:1/v1", "api_key_env": "KDR_TEST_LLM_KEY",
    "models": {"default": "m", "coder": "c"}, "vision_roles": ["vision"],
    "timeout_s": 30, "max_retries": 5, "backoff_s": 0.5, "json_schema": false})"));
  EXPECT_EQ(c.base_url, "http://h:1/v1");
  EXPECT_EQ(c.api_key, "sk-env");
  EXPECT_EQ(c.models.at("coder"), "c");
  EXPECT_EQ(c.vision_roles, std::vector<std::string>{"vision"});
  EXPECT_DOUBLE_EQ(c.timeout_s, 30);
  EXPECT_EQ(c.max_retries, 5);
  EXPECT_DOUBLE_EQ(c.backoff_s, 0.5);
  EXPECT_FALSE(c.json_schema);
}

TEST_F(LlmConfig, ErrorsNameTheFileAndTheKey) {
  EXPECT_NE(error_of("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"models": {"default": "m"}, "timeout_s": "10"})").find("'timeout_s'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"models": {"default": 3}})").find("'models.default'"), std::string::npos);
  EXPECT_NE(error_of(R"({"url": "http://x"})").find("\"default\""), std::string::npos);
  EXPECT_NE(error_of(R"({"models": {"default": "m"}, "timeout": 1})").find("unknown key 'timeout'"),
            std::string::npos);
  const std::string e = error_of("[]");
  EXPECT_NE(e.find("kdr_llm_config_"), std::string::npos) << e;
  EXPECT_THROW(load_openai_config("/nonexistent/kdr.json"), LlmError);
}

// ---- scripted backend ------------------------------------------------------------------------

TEST(LlmScripted, AnswersByRoleThenWildcardAndRecordsCalls) {
  ScriptedBackend backend;
  backend.on("planner", [](const LlmCall&) { return std::string("{\"plan\": 1}"); });
  backend.on("*", [](const LlmCall& c) { return "any:" + c.role; });
  EXPECT_EQ(backend.complete(simple_call("planner")).text, "{\"plan\": 1}");
  const LlmReply r = backend.complete(simple_call("writer"));
  EXPECT_EQ(r.text, "any:writer");
  EXPECT_EQ(r.prompt_tokens, static_cast<int64_t>((9 + 15) / 4));
  EXPECT_EQ(r.completion_tokens, 2);
  EXPECT_EQ(backend.count("planner"), 1);
  EXPECT_EQ(backend.count("writer"), 1);
  ASSERT_EQ(backend.calls().size(), 2u);
  EXPECT_EQ(backend.calls()[1].role, "writer");
  EXPECT_EQ(backend.describe(), "scripted");
}

TEST(LlmScripted, UnknownRoleAndThrowingHandlers) {
  ScriptedBackend backend;
  try {
    backend.complete(simple_call("coder"));
    FAIL() << "no LlmError";
  } catch (const LlmError& e) {
    EXPECT_EQ(std::string(e.what()), "scripted backend: no answer for role coder");
  }
  backend.on("coder", [](const LlmCall&) -> std::string { throw LlmError("endpoint down"); });
  EXPECT_THROW(backend.complete(simple_call("coder")), LlmError);
  EXPECT_EQ(backend.count("coder"), 2);
  EXPECT_FALSE(backend.accepts_images("vision"));
  backend.set_accepts_images(true);
  EXPECT_TRUE(backend.accepts_images("vision"));
}

// ---- engine backend on a tiny model -------------------------------------------------------------

class LlmEngine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineBackendOptions o;
    o.model_path = std::string(KDR_SOURCE_DIR) + "/tests/data/models/gemma3.gguf";
    o.threads = 2;
    o.kv_memory_bytes = int64_t{16} << 20;
    backend_ = make_engine_backend(o).release();
  }
  static void TearDownTestSuite() {
    delete backend_;
    backend_ = nullptr;
  }
  static LlmBackend* backend_;
};
LlmBackend* LlmEngine::backend_ = nullptr;

TEST_F(LlmEngine, SchemaReplyParsesAndFollowsTheSchema) {
  LlmCall call = simple_call();
  call.temperature = 0.0;
  call.max_tokens = 64;
  call.json_schema = ordered_json::parse(R"({"type": "object",
      "properties": {"answer": {"enum": ["yes", "no"]}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
      "required": ["answer", "n"]})");
  const LlmReply reply = backend_->complete(call);
  EXPECT_EQ(reply.finish_reason, "stop") << reply.text;
  std::string error;
  const std::optional<json> value = parse_tolerant_json(reply.text, &error);
  ASSERT_TRUE(value.has_value()) << reply.text << ": " << error;
  EXPECT_EQ(json::parse(reply.text), *value);  // strict JSON, not a repaired one
  EXPECT_EQ(schema_violation(*value, *call.json_schema), "") << reply.text;
  EXPECT_GT(reply.prompt_tokens, 0);
  EXPECT_GT(reply.completion_tokens, 0);
  EXPECT_EQ(reply.model, "gemma3.gguf");
  EXPECT_EQ(backend_->describe(), "engine:gemma3.gguf");
  EXPECT_FALSE(backend_->accepts_images("vision"));
  // The fixture carries no chat template: the backend says its turns follow the architecture.
  EXPECT_NE(backend_->note().find("gemma3.gguf carries no chat template"), std::string::npos)
      << backend_->note();
}

TEST_F(LlmEngine, GreedyIsDeterministic) {
  LlmCall call = simple_call();
  call.temperature = 0.0;
  call.max_tokens = 24;
  const LlmReply a = backend_->complete(call);
  const LlmReply b = backend_->complete(call);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.completion_tokens, b.completion_tokens);
  EXPECT_LE(a.completion_tokens, 24);
}

TEST_F(LlmEngine, SeededSamplingRepeats) {
  LlmCall call = simple_call();
  call.temperature = 0.8;
  call.seed = 123;
  call.max_tokens = 16;
  EXPECT_EQ(backend_->complete(call).text, backend_->complete(call).text);
}

TEST(LlmEngineLoad, MissingModelIsLlmError) {
  EngineBackendOptions o;
  o.model_path = "/nonexistent/model.gguf";
  try {
    make_engine_backend(o);
    FAIL() << "no LlmError";
  } catch (const LlmError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos) << e.what();
  }
}

TEST_F(LlmEngine, UnsupportedSchemaKeywordIsLlmError) {
  LlmCall call = simple_call();
  call.max_tokens = 8;
  call.json_schema = ordered_json::parse(R"({"type": "string", "pattern": "^a+$"})");
  try {
    backend_->complete(call);
    FAIL() << "no LlmError";
  } catch (const LlmError& e) {
    EXPECT_NE(std::string(e.what()).find("pattern"), std::string::npos) << e.what();
  }
}

TEST_F(LlmEngine, OverlongPromptLosesTheMiddleOfTheLongestUserMessage) {
  LlmCall call = simple_call();
  call.max_tokens = 8;
  std::string doc;
  for (int i = 0; doc.size() < 200000; ++i) doc += "word" + std::to_string(i) + " ";
  call.messages = {{"system", "Answer briefly.", ""}, {"user", "Question? " + doc + " END", ""}};
  const LlmReply reply = backend_->complete(call);
  // The tiny model's context is 256 tokens: the ~100k-token prompt was cut to fit with room for
  // the reply.
  EXPECT_GT(reply.prompt_tokens, 100);
  EXPECT_LE(reply.prompt_tokens + 8, 256);
  EXPECT_GE(reply.completion_tokens, 1);
  EXPECT_LE(reply.completion_tokens, 8);
}

}  // namespace
}  // namespace kdr::hka

namespace kdr::hka {
namespace {

// Text in a message is data: a turn marker written in a document is tokenized as characters,
// not as the control token (which would let a document open a new turn).
TEST_F(LlmEngine, ControlTokenTextInAMessageStaysText) {
  auto prompt_tokens = [](const std::string& content) {
    LlmCall call = simple_call();
    call.max_tokens = 1;
    call.messages = {{"user", content, ""}};
    return backend_->complete(call).prompt_tokens;
  };
  const int64_t plain = prompt_tokens("ab");
  // "</s>" is a control token of the tiny model (as "<start_of_turn>" is of real Gemma).
  const int64_t marker = prompt_tokens("a</s>b");
  EXPECT_GE(marker - plain, 3) << "the marker became one control token";
}

}  // namespace
}  // namespace kdr::hka
