// The OpenAI wire format apart from HTTP: every request field and its default, every refusal
// with its status, message and param, the response objects, the Server-Sent Events text of a
// stream, and the /metrics page.
#include "server/openai_protocol.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <random>

#include "../base/seed.h"
#include "engine/json_grammar.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "server/metrics.h"

namespace kdr::server {
namespace {

using nlohmann::json;

const std::string kModelPath = std::string(KDR_SOURCE_DIR) + "/tests/data/models/qwen3.gguf";

using kdr_test::test_seed;

class ProtocolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lm_ = new engine::LoadedModel(engine::LoadedModel::load(kModelPath));
  }
  static void TearDownTestSuite() { delete lm_; }

  static ServedModel served() {
    ServedModel m;
    m.id = "tiny";
    m.tokenizer = lm_->tokenizer.get();
    m.chat = lm_->chat ? &*lm_->chat : nullptr;
    m.max_model_len = 256;
    return m;
  }

  static CompletionRequest chat(const json& body, const ServedModel& m = served()) {
    return parse_completion_request(body.dump(), Endpoint::kChatCompletions, m, 42);
  }
  static CompletionRequest completion(const json& body, const ServedModel& m = served()) {
    return parse_completion_request(body.dump(), Endpoint::kCompletions, m, 42);
  }

  static std::vector<int32_t> chat_tokens(const std::vector<model::ChatMessage>& messages) {
    return lm_->tokenizer->encode(lm_->chat->render(messages, true), false, true);
  }

  static engine::LoadedModel* lm_;
};

engine::LoadedModel* ProtocolTest::lm_ = nullptr;

const json kHello = {{"messages", {{{"role", "user"}, {"content", "hello"}}}}};

TEST_F(ProtocolTest, ChatDefaults) {
  ASSERT_TRUE(lm_->chat.has_value()) << "the fixture needs a chat template";
  const CompletionRequest r = chat(kHello);
  const auto want = chat_tokens({{"user", "hello"}});
  EXPECT_EQ(r.request.prompt, want);
  // Without max_tokens the completion may use the rest of the context.
  EXPECT_EQ(r.request.max_tokens, 256 - static_cast<int32_t>(want.size()));
  EXPECT_EQ(r.request.sampling.temperature, 1.0f);
  EXPECT_EQ(r.request.sampling.top_p, 1.0f);
  EXPECT_EQ(r.request.sampling.top_k, 0);
  EXPECT_EQ(r.request.sampling.min_p, 0.0f);
  EXPECT_EQ(r.request.sampling.presence_penalty, 0.0f);
  EXPECT_EQ(r.request.sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(r.request.sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(r.request.sampling.seed, 42u);
  EXPECT_TRUE(r.request.stop.empty());
  EXPECT_FALSE(r.request.ignore_eos);
  EXPECT_EQ(r.request.logprobs, -1);
  EXPECT_EQ(r.request.grammar, nullptr);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.endpoint, Endpoint::kChatCompletions);
}

TEST_F(ProtocolTest, ChatEveryField) {
  const json body = {
      {"model", "tiny"},
      {"messages",
       {{{"role", "developer"}, {"content", "be brief"}},
        {{"role", "user"},
         {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
        {{"role", "assistant"}, {"content", "ok"}},
        {{"role", "user"}, {"content", "more"}}}},
      {"max_tokens", 9},
      {"temperature", 0.5},
      {"top_p", 0.9},
      {"top_k", 7},
      {"min_p", 0.05},
      {"seed", 1234},
      {"stop", {"x", "yz"}},
      {"presence_penalty", 0.25},
      {"frequency_penalty", -0.5},
      {"repetition_penalty", 1.1},
      {"logprobs", true},
      {"top_logprobs", 3},
      {"response_format", {{"type", "text"}}},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
      {"ignore_eos", true},
      {"user", "someone"},
      {"n", 1},
      {"some_future_field", {1, 2}}};
  const CompletionRequest r = chat(body);
  // developer is the system role; text parts are joined by newlines.
  EXPECT_EQ(r.request.prompt,
            chat_tokens(
                {{"system", "be brief"}, {"user", "a\nb"}, {"assistant", "ok"}, {"user", "more"}}));
  EXPECT_EQ(r.request.max_tokens, 9);
  EXPECT_FLOAT_EQ(r.request.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.request.sampling.top_p, 0.9f);
  EXPECT_EQ(r.request.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(r.request.sampling.min_p, 0.05f);
  EXPECT_EQ(r.request.sampling.seed, 1234u);
  EXPECT_EQ(r.request.stop, (std::vector<std::string>{"x", "yz"}));
  EXPECT_FLOAT_EQ(r.request.sampling.presence_penalty, 0.25f);
  EXPECT_FLOAT_EQ(r.request.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r.request.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(r.request.logprobs, 3);
  EXPECT_EQ(r.request.grammar, nullptr);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.request.ignore_eos);
}

TEST_F(ProtocolTest, ChatLogprobsWithoutTopAskForTheChosenTokenOnly) {
  json body = kHello;
  body["logprobs"] = true;
  EXPECT_EQ(chat(body).request.logprobs, 0);
  body["logprobs"] = false;
  EXPECT_EQ(chat(body).request.logprobs, -1);
}

TEST_F(ProtocolTest, NullMeansAbsent) {
  json body = kHello;
  body["temperature"] = nullptr;
  body["max_tokens"] = nullptr;
  body["stop"] = nullptr;
  body["seed"] = nullptr;
  const CompletionRequest r = chat(body);
  EXPECT_EQ(r.request.sampling.temperature, 1.0f);
  EXPECT_EQ(r.request.sampling.seed, 42u);
  EXPECT_TRUE(r.request.stop.empty());
}

TEST_F(ProtocolTest, MaxCompletionTokensWinsOverMaxTokens) {
  json body = kHello;
  body["max_tokens"] = 5;
  body["max_completion_tokens"] = 7;
  EXPECT_EQ(chat(body).request.max_tokens, 7);
}

TEST_F(ProtocolTest, CompletionPromptShapes) {
  const auto& tok = *lm_->tokenizer;
  const auto want = tok.encode("the cat", /*add_special=*/true, true);
  EXPECT_EQ(completion({{"prompt", "the cat"}}).request.prompt, want);
  EXPECT_EQ(completion({{"prompt", {"the cat"}}}).request.prompt, want);
  EXPECT_EQ(completion({{"prompt", {5, 6, 7}}}).request.prompt, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(completion({{"prompt", {{5, 6}}}}).request.prompt, (std::vector<int32_t>{5, 6}));
  const CompletionRequest r = completion({{"prompt", {5, 6, 7}}, {"logprobs", 2}, {"stop", "\n"}});
  EXPECT_EQ(r.request.logprobs, 2);
  EXPECT_EQ(r.request.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(r.request.max_tokens, 256 - 3);
  EXPECT_EQ(r.endpoint, Endpoint::kCompletions);
}

TEST_F(ProtocolTest, VllmTopKOffIsAccepted) {
  json body = kHello;
  body["top_k"] = -1;
  EXPECT_EQ(chat(body).request.sampling.top_k, 0);
}

struct BadCase {
  Endpoint endpoint;
  std::string body;
  int status;
  std::string param;  // "" = null
  std::string message;
};

TEST(ParseJsonObject, AnOverflowingNumberAnywhereIsA400NamingWhereItIs) {
  // Random nested bodies with one number too large for a double at a random place: always a
  // 400 whose message names the number and the path built while generating it.
  std::mt19937_64 rng(kdr_test::test_seed());
  for (int round = 0; round < 300; ++round) {
    std::string path;
    std::string body = "{\"prompt\": \"a\", ";
    std::string close = "}";
    const int depth = static_cast<int>(rng() % 6);
    std::string key = "k" + std::to_string(round);
    body += "\"" + key + "\": ";
    path = key;
    for (int d = 0; d < depth; ++d) {
      if (rng() % 2) {
        const std::string k = "f" + std::to_string(d);
        body += "{\"x\": 1, \"" + k + "\": ";
        path += "." + k;
        close = "}" + close;
      } else {
        const int before = static_cast<int>(rng() % 3);
        body += "[";
        for (int b = 0; b < before; ++b) body += "true, ";
        path += "[" + std::to_string(before) + "]";
        close = "]" + close;
      }
    }
    const std::string number =
        (rng() % 2 ? "-" : "") + std::string("9e") + std::to_string(309 + rng() % 5000);
    body += number + close;
    SCOPED_TRACE(body);
    try {
      parse_json_object(body);
      ADD_FAILURE() << "no error";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_NE(std::string(e.what()).find("'" + number + "' at '" + path + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST_F(ProtocolTest, TheRoutersPlaceholderModelNameMeansNoModel) {
  // sglang-router forwards a chat request that named no model as model "unknown".
  const json msgs = json::array({{{"role", "user"}, {"content", "hi"}}});
  const CompletionRequest named = chat({{"model", "unknown"}, {"messages", msgs}});
  const CompletionRequest none = chat({{"messages", msgs}});
  EXPECT_EQ(named.request.prompt, none.request.prompt);
}

TEST_F(ProtocolTest, EveryRefusalHasItsStatusParamAndMessage) {
  const auto C = Endpoint::kChatCompletions;
  const auto P = Endpoint::kCompletions;
  const std::string msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  auto with = [&](const std::string& extra) { return "{" + msgs + ", " + extra + "}"; };
  const std::vector<BadCase> cases = {
      {C, "{", 400, "", "invalid JSON body: parse error at line 1, column 2"},
      {C, "", 400, "", "invalid JSON body: "},
      {C, "[1, 2]", 400, "", "the request body must be a JSON object"},
      // Tools need a vocabulary to constrain calls with (tests/server/tool_calls_test.cc).
      {C, with(R"("functions": [{"name": "f", "parameters": {}}])"), 400, "functions",
       "tool calls are not available on this server"},
      {C, with(R"("function_call": "auto")"), 400, "function_call",
       "'function_call' needs the legacy 'functions'"},
      {C, with(R"("unknown": {"deep": [0, {"x": 1e400}]})"), 400, "",
       "invalid JSON body: the number '1e400' at 'unknown.deep[1].x' is too large for a double"},
      {P, R"({"prompt": "a", "temperature": -1e999})", 400, "",
       "invalid JSON body: the number '-1e999' at 'temperature' is too large for a double"},
      {C, "{\"messages\": \"caf\xc3\"}", 400, "",
       "request body is not valid UTF-8 (first bad byte at offset 17)"},
      {C, "{\"a\": \"\xff\"}", 400, "",
       "request body is not valid UTF-8 (first bad byte at offset 7)"},
      {C, with(R"("temperature": "hot")"), 400, "temperature", "'temperature' must be a number"},
      {C, with(R"("temperature": true)"), 400, "temperature", "'temperature' must be a number"},
      {C, with(R"("temperature": -1)"), 400, "temperature", "temperature must be >= 0"},
      {C, with(R"("top_p": 0)"), 400, "top_p", "top_p must be in (0, 1]"},
      {C, with(R"("min_p": 2)"), 400, "min_p", "min_p must be in [0, 1]"},
      {C, with(R"("presence_penalty": 3)"), 400, "presence_penalty",
       "presence_penalty must be in [-2, 2]"},
      {C, with(R"("frequency_penalty": "x")"), 400, "frequency_penalty",
       "'frequency_penalty' must be a number"},
      {C, with(R"("repetition_penalty": 0)"), 400, "repetition_penalty",
       "repetition_penalty must be > 0"},
      {C, with(R"("top_k": 1.5)"), 400, "top_k", "'top_k' must be an integer"},
      {C, with(R"("top_k": -2)"), 400, "top_k", "'top_k' must be in [-1, 1073741824], got -2"},
      {C, with(R"("max_tokens": "5")"), 400, "max_tokens", "'max_tokens' must be an integer"},
      {C, with(R"("max_tokens": 0)"), 400, "max_tokens", "'max_tokens' must be >= 1, got 0"},
      {C, with(R"("max_completion_tokens": 2.5)"), 400, "max_completion_tokens",
       "'max_completion_tokens' must be an integer"},
      {C, with(R"("seed": "x")"), 400, "seed", "'seed' must be an integer"},
      {C, with(R"("stop": 5)"), 400, "stop", "'stop' must be a string or an array of strings"},
      {C, with(R"("stop": ["a", 1])"), 400, "stop",
       "'stop' must be a string or an array of strings"},
      {C, with(R"("stop": ["a", "b", "c", "d", "e"])"), 400, "stop",
       "'stop' holds at most 4 strings, got 5"},
      {C, with(R"("stop": "")"), 400, "stop", "'stop' strings must not be empty"},
      {C, with(R"("stream": "yes")"), 400, "stream", "'stream' must be a boolean"},
      {C, with(R"("stream_options": 3)"), 400, "stream_options",
       "'stream_options' must be an object"},
      {C, with(R"("stream_options": {"include_usage": 1})"), 400, "include_usage",
       "'include_usage' must be a boolean"},
      {C, with(R"("ignore_eos": "no")"), 400, "ignore_eos", "'ignore_eos' must be a boolean"},
      {C, with(R"("model": 7)"), 400, "model", "'model' must be a string"},
      {C, with(R"("model": "gpt-4o")"), 404, "model",
       "model 'gpt-4o' does not exist; this server serves 'tiny'"},
      {C, with(R"("n": 0)"), 400, "n", "'n' must be in [1, 128], got 0"},
      {C, with(R"("n": 129)"), 400, "n", "'n' must be in [1, 128], got 129"},
      {C, with(R"("n": -3, "stream": true)"), 400, "n", "'n' must be in [1, 128], got -3"},
      {C, with(R"("n": 2.5)"), 400, "n", "'n' must be an integer"},
      {C, with(R"("n": "2")"), 400, "n", "'n' must be an integer"},
      {P, R"({"prompt": "a", "n": 1000, "stream": true})", 400, "n",
       "'n' must be in [1, 128], got 1000"},
      {C, with(R"("tools": [{"type": "function"}])"), 400, "tools[0].function",
       "'tools[0].function' is required"},
      {C, with(R"("logit_bias": {"5": 10})"), 400, "logit_bias", "'logit_bias' is not supported"},
      {C, with(R"("logprobs": 3)"), 400, "logprobs", "'logprobs' must be a boolean"},
      {C, with(R"("logprobs": true, "top_logprobs": 21)"), 400, "top_logprobs",
       "'top_logprobs' must be in [0, 20], got 21"},
      {C, with(R"("top_logprobs": 2)"), 400, "top_logprobs",
       "'top_logprobs' requires 'logprobs': true"},
      {C, with(R"("response_format": "json")"), 400, "response_format",
       "'response_format' must be an object with a string 'type'"},
      {C, with(R"("response_format": {"type": "xml"})"), 400, "response_format.type",
       "'response_format.type' must be text, json_object or json_schema, got 'xml'"},
      {C, with(R"("response_format": {"type": "json_object"})"), 400, "response_format",
       "response_format json_object is not available on this server"},
      {C, "{}", 400, "messages", "'messages' must be a non-empty array"},
      {C, R"({"messages": []})", 400, "messages", "'messages' must be a non-empty array"},
      {C, R"({"messages": [3]})", 400, "messages", "messages[0] must be an object"},
      {C, R"({"messages": [{"content": "x"}]})", 400, "messages",
       "messages[0].role must be a string"},
      {C, R"({"messages": [{"role": "tool", "content": "x"}]})", 400, "messages",
       "messages[0].tool_call_id is required"},
      {C, R"({"messages": [{"role": "robot", "content": "x"}]})", 400, "messages",
       "messages[0].role must be system, developer, user, assistant or tool, got 'robot'"},
      {C, R"({"messages": [{"role": "user"}]})", 400, "messages",
       "messages[0].content is required"},
      {C, R"({"messages": [{"role": "user", "content": 5}]})", 400, "messages",
       "messages[0].content must be a string or an array of text parts"},
      {C, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", 400,
       "messages", "messages[0].content[0].type 'image_url' is not supported"},
      {C, R"({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]})", 400,
       "messages", "messages[0].content[0].text must be a string"},
      {P, "{}", 400, "prompt", "'prompt' is required"},
      {P, R"({"prompt": {}})", 400, "prompt",
       "'prompt' must be a string, an array of token ids or an array of one string"},
      {P, R"({"prompt": []})", 400, "prompt",
       "'prompt' must be a string, an array of token ids or an array of one string"},
      {P, R"({"prompt": [1, 999999]})", 400, "prompt", "'prompt[1]' must be a token id in [0, "},
      {P, R"({"prompt": [1, -1]})", 400, "prompt", "'prompt[1]' must be a token id in [0, "},
      {P, R"({"prompt": ["a", "b"]})", 400, "prompt",
       "'prompt' holds 2 prompts; kdr answers one prompt per request"},
      {P, R"({"prompt": "a", "logprobs": 6})", 400, "logprobs",
       "'logprobs' must be in [0, 5], got 6"},
      {P, R"({"prompt": "a", "logprobs": true})", 400, "logprobs", "'logprobs' must be an integer"},
      {P, R"({"prompt": "a", "echo": true})", 400, "echo", "'echo' is not supported"},
      {P, R"({"prompt": "a", "suffix": "b"})", 400, "suffix", "'suffix' is not supported"},
      {P, R"({"prompt": "a", "best_of": 3})", 400, "best_of", "'best_of' must be 1"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.body);
    try {
      parse_completion_request(c.body, c.endpoint, served(), 0);
      ADD_FAILURE() << "accepted";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), c.status);
      EXPECT_EQ(e.param(), c.param);
      EXPECT_EQ(std::string(e.what()).rfind(c.message, 0), 0u) << e.what();
    }
  }
}

TEST_F(ProtocolTest, ContextOverflowStatesBothNumbersAndTheLimit) {
  const std::vector<int32_t> prompt(200, 5);
  try {
    completion({{"prompt", prompt}, {"max_tokens", 100}});
    FAIL() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "max_tokens");
    EXPECT_EQ(e.code(), "context_length_exceeded");
    EXPECT_EQ(std::string(e.what()),
              "this model's maximum context length is 256 tokens, but the request needs 300 (200 "
              "prompt tokens + 100 max_tokens); shorten the prompt or lower max_tokens");
  }
  // The largest max_tokens a JSON integer holds: refused the same way, the sum not computed
  // (found by request_fuzz_test under UBSan: it overflowed).
  try {
    completion({{"prompt", prompt}, {"max_tokens", std::numeric_limits<int64_t>::max()}});
    FAIL() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.code(), "context_length_exceeded");
    EXPECT_NE(std::string(e.what()).find("needs more than 256 (200 prompt tokens + " +
                                         std::to_string(std::numeric_limits<int64_t>::max())),
              std::string::npos)
        << e.what();
  }
  // Exactly the context is fine.
  EXPECT_EQ(completion({{"prompt", prompt}, {"max_tokens", 56}}).request.max_tokens, 56);
  try {
    completion({{"prompt", std::vector<int32_t>(256, 5)}});
    FAIL() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "prompt");
    EXPECT_EQ(std::string(e.what()),
              "this model's maximum context length is 256 tokens, but the prompt has 256 tokens, "
              "which leaves no room for a completion; shorten the prompt");
  }
}

TEST_F(ProtocolTest, ChatNeedsAChatTemplate) {
  ServedModel m = served();
  m.chat = nullptr;
  try {
    chat(kHello, m);
    FAIL() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(std::string(e.what()),
              "model 'tiny' has no chat template kdr knows (gemma3, llama3, chatml): use "
              "/v1/completions");
  }
}

TEST_F(ProtocolTest, ResponseFormatsCompileGrammars) {
  ServedModel m = served();
  m.vocabulary = engine::build_vocabulary(*lm_->tokenizer, lm_->stop_ids);
  json body = kHello;
  body["response_format"] = {{"type", "json_object"}};
  EXPECT_NE(chat(body, m).request.grammar, nullptr);
  body["response_format"] = {
      {"type", "json_schema"},
      {"json_schema",
       {{"name", "x"},
        {"schema",
         {{"type", "object"},
          {"properties", {{"a", {{"type", "string"}, {"enum", {"p", "q"}}}}}},
          {"required", {"a"}}}}}}};
  EXPECT_NE(chat(body, m).request.grammar, nullptr);
  body["response_format"] = {{"type", "json_schema"}};
  try {
    chat(body, m);
    FAIL() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "response_format.json_schema");
  }
  body["response_format"] = {{"type", "json_schema"},
                             {"json_schema", {{"schema", {{"type", "no-such-type"}}}}}};
  try {
    chat(body, m);
    FAIL() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "response_format.json_schema.schema");
  }
}

TEST_F(ProtocolTest, RandomBodiesAreRefusedWithApiErrorsOnly) {
  std::mt19937_64 rng(test_seed());
  const std::string valid =
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,)"
      R"( "temperature": 0.5, "stop": ["a"], "logprobs": true, "top_logprobs": 2})";
  int accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string body = valid;
    // Mutations of a valid body reach deeper than random bytes alone.
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % (body.size() + 1);
      switch (rng() % 3) {
        case 0:
          body.insert(at, 1, static_cast<char>(rng()));
          break;
        case 1:
          if (at < body.size()) body.erase(at, 1);
          break;
        default:
          if (at < body.size()) body[at] = "{}[]\",:0123456789-.etrufalsn \\"[rng() % 31];
      }
    }
    if (i % 3 == 0) {
      body.resize(rng() % 64);
      for (char& c : body) c = static_cast<char>(rng());
    }
    for (Endpoint ep : {Endpoint::kChatCompletions, Endpoint::kCompletions}) {
      try {
        parse_completion_request(body, ep, served(), 1);
        ++accepted;
      } catch (const ApiError& e) {
        EXPECT_GE(e.status(), 400);
        EXPECT_LT(e.status(), 500);
        EXPECT_FALSE(std::string(e.what()).empty());
        EXPECT_NO_THROW(dump_json(e.to_json()));
      }
    }
  }
  std::printf("accepted %d mutated bodies\n", accepted);
}

TEST(ApiError, HasOpenAIsShape) {
  EXPECT_EQ(ApiError(400, "'x' must be a number", "x").to_json(),
            json::parse(R"({"error": {"message": "'x' must be a number",
                             "type": "invalid_request_error", "param": "x", "code": null}})"));
  EXPECT_EQ(ApiError(404, "no such model", "model", "model_not_found").to_json(),
            json::parse(R"({"error": {"message": "no such model", "type": "not_found_error",
                             "param": "model", "code": "model_not_found"}})"));
  EXPECT_EQ(ApiError(401, "k").type(), "authentication_error");
  EXPECT_EQ(ApiError(503, "k").type(), "server_error");
  EXPECT_EQ(ApiError(413, "k").type(), "invalid_request_error");
}

TEST(DumpJson, ReplacesInvalidUtf8InsteadOfThrowing) {
  EXPECT_EQ(dump_json(json("a\xff")), "\"a\xEF\xBF\xBD\"");
}

TEST_F(ProtocolTest, TokenizeAndDetokenize) {
  const auto& tok = *lm_->tokenizer;
  const json t = tokenize_response(R"({"content": "hello world"})", tok);
  EXPECT_EQ(t, json({{"tokens", tok.encode("hello world", false, true)}}));
  const json ts = tokenize_response(R"({"content": "hello", "add_special": true})", tok);
  EXPECT_EQ(ts["tokens"].get<std::vector<int32_t>>(), tok.encode("hello", true, true));
  const json d = detokenize_response(json({{"tokens", t["tokens"]}}).dump(), tok);
  EXPECT_EQ(d, json({{"content", "hello world"}}));
  EXPECT_THROW(tokenize_response(R"({"content": 5})", tok), ApiError);
  EXPECT_THROW(detokenize_response(R"({"tokens": [1, "a"]})", tok), ApiError);
  EXPECT_THROW(detokenize_response(R"({"tokens": [99999999]})", tok), ApiError);
}

TEST(ModelsResponse, ListsTheServedModel) {
  EXPECT_EQ(models_response("m", 17, 256),
            json::parse(R"({"object": "list", "data": [{"id": "m", "object": "model",
                             "created": 17, "owned_by": "kdr", "max_model_len": 256}]})"));
}

engine::Output output(std::vector<int32_t> tokens, std::string text, bool finished = false,
                      std::string reason = "") {
  engine::Output o;
  o.request_id = 1;
  o.tokens = std::move(tokens);
  o.text = std::move(text);
  o.finished = finished;
  o.finish_reason = std::move(reason);
  o.prompt_tokens = 5;
  o.completion_tokens = 3;
  o.cached_tokens = 2;
  return o;
}

const json kUsage = {{"prompt_tokens", 5},
                     {"completion_tokens", 3},
                     {"total_tokens", 8},
                     {"prompt_tokens_details", {{"cached_tokens", 2}}}};

TEST_F(ProtocolTest, ChatCompletionObject) {
  CompletionRequest req = chat(kHello);
  CompletionResult res;
  res.add(output({1, 2}, "Hel"));
  res.add(output({3}, "lo", true, "stop"));
  const ResponseInfo info{"chatcmpl-1", 1700000000, "tiny"};
  EXPECT_EQ(completion_response(info, req, res, *lm_->tokenizer),
            json({{"id", "chatcmpl-1"},
                  {"object", "chat.completion"},
                  {"created", 1700000000},
                  {"model", "tiny"},
                  {"choices",
                   {{{"index", 0},
                     {"message", {{"role", "assistant"}, {"content", "Hello"}}},
                     {"logprobs", nullptr},
                     {"finish_reason", "stop"}}}},
                  {"usage", kUsage}}));
  EXPECT_EQ(res.choices[0].tokens, (std::vector<int32_t>{1, 2, 3}));
}

TEST_F(ProtocolTest, NChoosesTheNumberOfSamples) {
  EXPECT_EQ(chat(kHello).request.n, 1);
  json body = kHello;
  body["n"] = 3;
  EXPECT_EQ(chat(body).request.n, 3);
  body["n"] = 128;
  body["stream"] = true;
  EXPECT_EQ(chat(body).request.n, 128);
  EXPECT_EQ(completion({{"prompt", "a"}, {"n", 5}}).request.n, 5);
}

// Outputs of the samples of one request, interleaved as the engine sends them.
engine::Output sample(int32_t index, std::vector<int32_t> tokens, std::string text,
                      int32_t completion_tokens, std::string reason = "") {
  engine::Output o;
  o.request_id = 1;
  o.index = index;
  o.tokens = std::move(tokens);
  o.text = std::move(text);
  o.finished = !reason.empty();
  o.finish_reason = std::move(reason);
  o.prompt_tokens = 5;
  o.completion_tokens = completion_tokens;
  o.cached_tokens = 2;
  return o;
}

TEST_F(ProtocolTest, ChoicesByIndexWithUsageSummedOverThem) {
  CompletionRequest req = completion({{"prompt", "a"}, {"n", 3}, {"logprobs", 0}});
  CompletionResult res(3);
  auto with_lp = [](engine::Output o, std::vector<float> lp) {
    o.logprobs = std::move(lp);
    o.top_logprobs.assign(o.logprobs.size(), {});
    return o;
  };
  res.add(with_lp(sample(0, {40}, "x", 1), {-0.5f}));
  res.add(with_lp(sample(2, {41}, "y", 1), {-1.5f}));
  res.add(with_lp(sample(1, {42, 43}, "zw", 2, "length"), {-2.0f, -0.25f}));
  EXPECT_FALSE(res.finished());
  res.add(with_lp(sample(0, {44}, "", 2, "stop"), {-3.0f}));
  res.add(with_lp(sample(2, {}, "", 1, "stop"), {}));
  ASSERT_TRUE(res.finished());
  EXPECT_EQ(res.completion_tokens(), 5);
  EXPECT_EQ(res.failed(), nullptr);
  const json got = completion_response({"cmpl-1", 3, "tiny"}, req, res, *lm_->tokenizer);
  ASSERT_EQ(got["choices"].size(), 3u);
  const std::vector<std::string> texts = {"x", "zw", "y"};
  const std::vector<std::string> reasons = {"stop", "length", "stop"};
  const std::vector<std::vector<double>> lps = {{-0.5, -3.0}, {-2.0, -0.25}, {-1.5}};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got["choices"][i]["index"], i);
    EXPECT_EQ(got["choices"][i]["text"], texts[i]);
    EXPECT_EQ(got["choices"][i]["finish_reason"], reasons[i]);
    EXPECT_EQ(got["choices"][i]["logprobs"]["token_logprobs"], json(lps[i]));
    // Each choice's text offsets start at its own beginning.
    EXPECT_EQ(got["choices"][i]["logprobs"]["text_offset"][0], 0);
  }
  EXPECT_EQ(got["usage"], json({{"prompt_tokens", 5},
                                {"completion_tokens", 5},
                                {"total_tokens", 10},
                                {"prompt_tokens_details", {{"cached_tokens", 2}}}}));
  CompletionResult failed(2);
  failed.add(sample(1, {}, "", 0, "error"));
  ASSERT_NE(failed.failed(), nullptr);
  EXPECT_FALSE(failed.finished());
  EXPECT_THROW(failed.add(sample(2, {}, "", 0)), std::logic_error);
}

TEST_F(ProtocolTest, ChatLogprobsObject) {
  const auto& tok = *lm_->tokenizer;
  json body = kHello;
  body["logprobs"] = true;
  body["top_logprobs"] = 1;
  CompletionRequest req = chat(body);
  engine::Output o = output({40}, "x", true, "length");
  o.logprobs = {-0.5f};
  o.top_logprobs = {{{41, -0.25f}}};
  CompletionResult res;
  res.add(o);
  const json got = completion_response({"c", 1, "tiny"}, req, res, tok);
  auto bytes = [&](int32_t id) {
    json b = json::array();
    for (unsigned char c : tok.token_bytes(id, true)) b.push_back(c);
    return b;
  };
  auto text = [&](int32_t id) { return model::utf8_sanitize(tok.token_bytes(id, true)); };
  EXPECT_EQ(got["choices"][0]["logprobs"],
            json({{"content",
                   {{{"token", text(40)},
                     {"logprob", -0.5},
                     {"bytes", bytes(40)},
                     {"top_logprobs",
                      {{{"token", text(41)}, {"logprob", -0.25}, {"bytes", bytes(41)}}}}}}},
                  {"refusal", nullptr}}));
  EXPECT_EQ(got["choices"][0]["finish_reason"], "length");
}

TEST_F(ProtocolTest, PartialCharacterTokensAreWrittenAsBytes) {
  const auto& tok = *lm_->tokenizer;
  int32_t byte_token = -1;
  for (int32_t id = 0; id < tok.n_vocab() && byte_token < 0; ++id) {
    const std::string b = tok.token_bytes(id, true);
    if (b.size() == 1 && static_cast<unsigned char>(b[0]) == 0xE2) byte_token = id;
  }
  ASSERT_GE(byte_token, 0) << "the fixture has no token for the byte 0xE2";
  CompletionRequest req = completion({{"prompt", "a"}, {"logprobs", 1}});
  engine::Output o = output({byte_token}, "", true, "length");
  o.logprobs = {-1.0f};
  o.top_logprobs = {{{byte_token, -1.0f}}};
  CompletionResult res;
  res.add(o);
  const json lp = completion_response({"c", 1, "tiny"}, req, res, tok)["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"bytes:\\xe2"}));
  EXPECT_EQ(lp["top_logprobs"], json::parse(R"([{"bytes:\\xe2": -1.0}])"));
}

TEST_F(ProtocolTest, TextCompletionObjectWithLogprobs) {
  const auto& tok = *lm_->tokenizer;
  CompletionRequest req = completion({{"prompt", "a"}, {"logprobs", 1}});
  engine::Output o = output({40, 41}, "xy", true, "stop");
  o.logprobs = {-1.0f, -2.0f};
  o.top_logprobs = {{{40, -1.0f}}, {{42, -0.5f}}};
  CompletionResult res;
  res.add(o);
  const json got = completion_response({"cmpl-1", 3, "tiny"}, req, res, tok);
  auto text = [&](int32_t id) { return model::utf8_sanitize(tok.token_bytes(id, true)); };
  const int64_t first_len = static_cast<int64_t>(text(40).size());  // ASCII-only fixture tokens
  EXPECT_EQ(got, json({{"id", "cmpl-1"},
                       {"object", "text_completion"},
                       {"created", 3},
                       {"model", "tiny"},
                       {"choices",
                        {{{"index", 0},
                          {"text", "xy"},
                          {"logprobs",
                           {{"tokens", {text(40), text(41)}},
                            {"token_logprobs", {-1.0, -2.0}},
                            {"top_logprobs", {{{text(40), -1.0}}, {{text(42), -0.5}}}},
                            {"text_offset", {0, first_len}}}},
                          {"finish_reason", "stop"}}}},
                       {"usage", kUsage}}));
}

// The events of an SSE text, checking the framing: "data: <payload>\n\n" each.
std::vector<std::string> sse_payloads(const std::string& text) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    EXPECT_EQ(text.compare(at, 6, "data: "), 0) << text.substr(at);
    const size_t end = text.find("\n\n", at);
    EXPECT_NE(end, std::string::npos);
    if (end == std::string::npos) break;
    out.push_back(text.substr(at + 6, end - at - 6));
    at = end + 2;
  }
  return out;
}

TEST_F(ProtocolTest, ChatStreamEvents) {
  json body = kHello;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  StreamEncoder enc({"chatcmpl-9", 5, "tiny"}, chat(body), *lm_->tokenizer);
  std::string text = enc.encode(output({1}, "Hi"));
  text += enc.encode(output({2}, ""));  // an incomplete character: nothing to send
  text += enc.encode(output({3}, "!", true, "length"));
  const auto events = sse_payloads(text);
  ASSERT_EQ(events.size(), 6u) << text;
  auto chunk = [](json choices) {
    return json({{"id", "chatcmpl-9"},
                 {"object", "chat.completion.chunk"},
                 {"created", 5},
                 {"model", "tiny"},
                 {"usage", nullptr},
                 {"choices", std::move(choices)}});
  };
  auto choice = [](json delta, json finish) {
    return json::array({{{"index", 0},
                         {"delta", std::move(delta)},
                         {"logprobs", nullptr},
                         {"finish_reason", std::move(finish)}}});
  };
  EXPECT_EQ(json::parse(events[0]),
            chunk(choice({{"role", "assistant"}, {"content", ""}}, nullptr)));
  EXPECT_EQ(json::parse(events[1]), chunk(choice({{"content", "Hi"}}, nullptr)));
  EXPECT_EQ(json::parse(events[2]), chunk(choice({{"content", "!"}}, nullptr)));
  EXPECT_EQ(json::parse(events[3]), chunk(choice(json::object(), "length")));
  json usage_chunk = chunk(json::array());
  usage_chunk["usage"] = kUsage;
  EXPECT_EQ(json::parse(events[4]), usage_chunk);
  EXPECT_EQ(events[5], "[DONE]");
}

TEST_F(ProtocolTest, CompletionStreamEventsWithoutUsage) {
  StreamEncoder enc({"cmpl-2", 5, "tiny"}, completion({{"prompt", "a"}, {"stream", true}}),
                    *lm_->tokenizer);
  const std::string text = enc.encode(output({1}, "ab", true, "stop"));
  const auto events = sse_payloads(text);
  ASSERT_EQ(events.size(), 3u) << text;
  auto chunk = [](json t, json finish) {
    return json({{"id", "cmpl-2"},
                 {"object", "text_completion"},
                 {"created", 5},
                 {"model", "tiny"},
                 {"choices",
                  {{{"index", 0},
                    {"text", std::move(t)},
                    {"logprobs", nullptr},
                    {"finish_reason", std::move(finish)}}}}});
  };
  EXPECT_EQ(json::parse(events[0]), chunk("ab", nullptr));
  EXPECT_EQ(json::parse(events[1]), chunk("", "stop"));
  EXPECT_EQ(events[2], "[DONE]");
}

TEST_F(ProtocolTest, ChatStreamOfTwoChoicesEndsAfterBoth) {
  json body = kHello;
  body["stream"] = true;
  body["n"] = 2;
  body["stream_options"] = {{"include_usage", true}};
  StreamEncoder enc({"chatcmpl-9", 5, "tiny"}, chat(body), *lm_->tokenizer);
  std::string text = enc.encode(sample(1, {1}, "B", 1));
  text += enc.encode(sample(0, {2}, "A", 1));
  text += enc.encode(sample(1, {3}, "b", 2, "length"));
  EXPECT_FALSE(enc.done());
  EXPECT_EQ(sse_payloads(text).back().find("[DONE]"), std::string::npos);
  text += enc.encode(sample(0, {4}, "a", 3, "stop"));
  EXPECT_TRUE(enc.done());
  const auto events = sse_payloads(text);
  ASSERT_EQ(events.size(), 10u) << text;
  auto choice = [&](size_t e) { return json::parse(events[e])["choices"][0]; };
  auto delta = [](int index, json d, json finish) {
    return json({{"index", index},
                 {"delta", std::move(d)},
                 {"logprobs", nullptr},
                 {"finish_reason", std::move(finish)}});
  };
  // The role of every choice first, then each choice's pieces under its own index.
  EXPECT_EQ(choice(0), delta(0, {{"role", "assistant"}, {"content", ""}}, nullptr));
  EXPECT_EQ(choice(1), delta(1, {{"role", "assistant"}, {"content", ""}}, nullptr));
  EXPECT_EQ(choice(2), delta(1, {{"content", "B"}}, nullptr));
  EXPECT_EQ(choice(3), delta(0, {{"content", "A"}}, nullptr));
  EXPECT_EQ(choice(4), delta(1, {{"content", "b"}}, nullptr));
  EXPECT_EQ(choice(5), delta(1, json::object(), "length"));
  EXPECT_EQ(choice(6), delta(0, {{"content", "a"}}, nullptr));
  EXPECT_EQ(choice(7), delta(0, json::object(), "stop"));
  const json usage = json::parse(events[8]);
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"], json({{"prompt_tokens", 5},
                                  {"completion_tokens", 5},
                                  {"total_tokens", 10},
                                  {"prompt_tokens_details", {{"cached_tokens", 2}}}}));
  EXPECT_EQ(events[9], "[DONE]");
}

TEST_F(ProtocolTest, OneFailedChoiceEndsTheStream) {
  StreamEncoder enc({"cmpl-4", 5, "tiny"},
                    completion({{"prompt", "a"}, {"stream", true}, {"n", 3}}), *lm_->tokenizer);
  std::string text = enc.encode(sample(2, {1}, "x", 1));
  engine::Output bad = sample(1, {}, "", 0, "error");
  bad.error = "NaN logits";
  text += enc.encode(bad);
  EXPECT_TRUE(enc.done());
  EXPECT_EQ(enc.encode(sample(0, {2}, "late", 1)), "");
  const auto events = sse_payloads(text);
  ASSERT_EQ(events.size(), 3u) << text;
  EXPECT_EQ(json::parse(events[0])["choices"][0]["index"], 2);
  EXPECT_EQ(json::parse(events[1])["error"]["message"], "generation failed: NaN logits");
  EXPECT_EQ(events[2], "[DONE]");
}

TEST_F(ProtocolTest, StreamErrorsBecomeErrorEvents) {
  StreamEncoder enc({"cmpl-3", 5, "tiny"}, completion({{"prompt", "a"}, {"stream", true}}),
                    *lm_->tokenizer);
  engine::Output o = output({}, "", true, "error");
  o.error = "out of memory";
  const auto events = sse_payloads(enc.encode(o));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(json::parse(events[0]),
            json::parse(R"({"error": {"message": "generation failed: out of memory",
                             "type": "server_error", "param": null, "code": null}})"));
  EXPECT_EQ(events[1], "[DONE]");
}

TEST(Metrics, PrometheusText) {
  engine::EngineStats s;
  s.running = 2;
  s.waiting = 1;
  s.kv_blocks_total = 8;
  s.kv_blocks_used = 2;
  s.kv_blocks_cached = 3;
  s.kv_blocks_shared = 2;
  s.samples_forked = 5;
  s.prefix_query_tokens = 100;
  s.prefix_hit_tokens = 48;
  s.preemptions = 4;
  s.prompt_tokens = 52;
  s.generation_tokens = 30;
  s.requests_finished = 6;
  s.requests_cancelled = 1;
  s.time_to_first_token.bounds = {0.01, 0.1};
  s.time_to_first_token.counts = {1, 2, 3};
  s.time_to_first_token.sum = 1.25;
  s.time_to_first_token.count = 6;
  s.inter_token_latency.bounds = {0.005};
  s.inter_token_latency.counts = {0, 0};
  s.e2e_latency.bounds = {1};
  s.e2e_latency.counts = {1, 0};
  s.e2e_latency.sum = 0.5;
  s.e2e_latency.count = 1;
  const std::string text = format_metrics(s, {{200, 7}, {400, 2}}, "m\"1");
  const char* want_lines[] = {
      "# TYPE kdr_requests_running gauge\nkdr_requests_running 2\n",
      "kdr_requests_waiting 1\n",
      "kdr_kv_blocks_total 8\n",
      "kdr_kv_blocks_used 2\n",
      "kdr_kv_blocks_cached 3\n",
      "# TYPE kdr_kv_blocks_shared gauge\nkdr_kv_blocks_shared 2\n",
      "# TYPE kdr_kv_usage_ratio gauge\nkdr_kv_usage_ratio 0.25\n",
      "# TYPE kdr_prefix_cache_query_tokens_total counter\nkdr_prefix_cache_query_tokens_total "
      "100\n",
      "kdr_prefix_cache_hit_tokens_total 48\n",
      "kdr_preemptions_total 4\n",
      "kdr_prompt_tokens_total 52\n",
      "kdr_generation_tokens_total 30\n",
      "# TYPE kdr_samples_forked_total counter\nkdr_samples_forked_total 5\n",
      "kdr_requests_finished_total 6\n",
      "kdr_requests_cancelled_total 1\n",
      "# TYPE kdr_time_to_first_token_seconds histogram\n"
      "kdr_time_to_first_token_seconds_bucket{le=\"0.01\"} 1\n"
      "kdr_time_to_first_token_seconds_bucket{le=\"0.1\"} 3\n"
      "kdr_time_to_first_token_seconds_bucket{le=\"+Inf\"} 6\n"
      "kdr_time_to_first_token_seconds_sum 1.25\n"
      "kdr_time_to_first_token_seconds_count 6\n",
      "kdr_inter_token_latency_seconds_bucket{le=\"0.005\"} 0\n"
      "kdr_inter_token_latency_seconds_bucket{le=\"+Inf\"} 0\n"
      "kdr_inter_token_latency_seconds_sum 0\n"
      "kdr_inter_token_latency_seconds_count 0\n",
      "kdr_e2e_request_latency_seconds_bucket{le=\"1\"} 1\n"
      "kdr_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 1\n"
      "kdr_e2e_request_latency_seconds_sum 0.5\n",
      "# TYPE kdr_http_responses_total counter\n"
      "kdr_http_responses_total{code=\"200\"} 7\n"
      "kdr_http_responses_total{code=\"400\"} 2\n",
      // vLLM's names, labelled with the model (its quote escaped).
      "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\\\"1\"} "
      "2\n",
      "vllm:num_requests_waiting{model_name=\"m\\\"1\"} 1\n",
      "vllm:kv_cache_usage_perc{model_name=\"m\\\"1\"} 0.25\n",
      "vllm:prefix_cache_hits_total{model_name=\"m\\\"1\"} 48\n",
      "vllm:time_to_first_token_seconds_bucket{model_name=\"m\\\"1\",le=\"0.1\"} 3\n"
      "vllm:time_to_first_token_seconds_bucket{model_name=\"m\\\"1\",le=\"+Inf\"} 6\n"
      "vllm:time_to_first_token_seconds_sum{model_name=\"m\\\"1\"} 1.25\n"
      "vllm:time_to_first_token_seconds_count{model_name=\"m\\\"1\"} 6\n",
      "# TYPE vllm:inter_token_latency_seconds histogram\n",
      "# TYPE kdr_step_seconds histogram\n",
  };
  for (const char* line : want_lines) EXPECT_NE(text.find(line), std::string::npos) << line;
  // Every line is a comment or "name{labels} value".
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    ASSERT_NE(end, std::string::npos);
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
    const size_t space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    EXPECT_TRUE(line.rfind("kdr_", 0) == 0 || line.rfind("vllm:", 0) == 0) << line;
    size_t used = 0;
    std::stod(line.substr(space + 1), &used);
    EXPECT_EQ(used, line.size() - space - 1) << line;
  }
}

TEST(Metrics, NumbersRoundTrip) {
  EXPECT_EQ(prometheus_number(0.1), "0.1");
  EXPECT_EQ(prometheus_number(12345), "12345");
  EXPECT_EQ(prometheus_number(1.0 / 0.0), "+Inf");
  EXPECT_EQ(std::stod(prometheus_number(1.0 / 3.0)), 1.0 / 3.0);
}

}  // namespace
}  // namespace kdr::server
