// Tool calling on the OpenAI wire: tools / tool_choice / parallel_tool_calls (and the legacy
// functions) parsed into a grammar and the prompt, every refusal with its param, calls split
// out of generated text (whole, in random pieces, and as stream deltas the SDK assembles),
// and tool history messages rendered as the chat template says.
#include "server/tool_calls.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "../base/seed.h"
#include "engine/json_grammar.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "server/openai_protocol.h"

namespace kdr::server {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;
using kdr_test::test_seed;

const std::string kModelPath = std::string(KDR_SOURCE_DIR) + "/tests/data/models/qwen3.gguf";

class ToolCallsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lm_ = new engine::LoadedModel(engine::LoadedModel::load(kModelPath));
    vocab_ = new std::shared_ptr<const engine::Vocabulary>(
        engine::build_vocabulary(*lm_->tokenizer, lm_->stop_ids));
  }
  static void TearDownTestSuite() {
    delete vocab_;
    delete lm_;
  }

  static ServedModel served() {
    ServedModel m;
    m.id = "tiny";
    m.tokenizer = lm_->tokenizer.get();
    m.chat = lm_->chat ? &*lm_->chat : nullptr;
    m.max_model_len = 1 << 20;  // tool prompts are long in a 384-token vocabulary
    m.vocabulary = *vocab_;
    return m;
  }

  static CompletionRequest chat(const json& body) {
    return parse_completion_request(body.dump(), Endpoint::kChatCompletions, served(), 42);
  }

  static engine::LoadedModel* lm_;
  static std::shared_ptr<const engine::Vocabulary>* vocab_;
};

engine::LoadedModel* ToolCallsTest::lm_ = nullptr;
std::shared_ptr<const engine::Vocabulary>* ToolCallsTest::vocab_ = nullptr;

const ojson kWeather = ojson::parse(R"({"type": "function", "function": {
  "name": "get_weather", "description": "Weather of a city",
  "parameters": {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"]}}})");
const ojson kTime = ojson::parse(R"({"type": "function", "function": {
  "name": "get_time", "parameters": {"type": "object", "properties": {
    "zone": {"type": "integer", "minimum": -12, "maximum": 14}}, "required": ["zone"]}}})");

// The tools as a server receives them from with_tools(), whose json sorts keys.
std::vector<ojson> sorted_tools() { return {ojson(json(kWeather)), ojson(json(kTime))}; }

json with_tools(json extra = json::object()) {
  json body = {{"messages", {{{"role", "user"}, {"content", "weather?"}}}},
               {"tools", json::array({json(kWeather), json(kTime)})}};
  for (auto& [k, v] : extra.items()) body[k] = v;
  return body;
}

TEST_F(ToolCallsTest, ToolsBecomeAGrammarAndTheirDefinitionsThePrompt) {
  const CompletionRequest r = chat(with_tools());
  EXPECT_EQ(r.tools.choice, ToolChoice::kAuto);
  EXPECT_TRUE(r.tools.parallel);
  EXPECT_EQ(r.tools.names, (std::vector<std::string>{"get_weather", "get_time"}));
  ASSERT_NE(r.request.grammar, nullptr);
  EXPECT_EQ(r.request.grammar, r.tools.grammar);
  // auto + parallel: an array of calls, or text that does not start with '['.
  EXPECT_TRUE(r.request.grammar->value_starts_with('['));
  EXPECT_FALSE(r.request.grammar->value_starts_with('{'));
  const std::vector<ojson> tools = sorted_tools();
  const std::vector<model::ChatMessage> messages = {{"user", "weather?"}};
  EXPECT_EQ(r.request.prompt,
            model::encode_chat(*lm_->chat, *lm_->tokenizer, messages, true, false, tools));
  const std::string text = lm_->chat->render(messages, true, tools);
  EXPECT_NE(text.find("<tools>\n{\"function\": {\"description\": \"Weather of a city\", "
                      "\"name\": \"get_weather\""),
            std::string::npos)
      << text;

  // The grammar takes exactly the calls valid under their tool's schema.
  const auto& g = *r.request.grammar;
  EXPECT_EQ(g.violation(json::parse(R"([{"name": "get_time", "arguments": {"zone": 3}}])")), "");
  EXPECT_EQ(g.violation(json::parse(R"([{"name": "get_time", "arguments": {"zone": 30}}])")),
            "/0/arguments/zone: above maximum 14");
  EXPECT_EQ(g.violation(json::parse(R"([{"name": "get_weather", "arguments": {"zone": 3}}])")),
            "/0/arguments: missing required property 'city'");
  EXPECT_EQ(g.violation(json::parse(R"([{"name": "nope", "arguments": {}}])")),
            R"(/0/name: "nope" is not one of ["get_weather","get_time"])");

  // parallel false: one call object; required: no text; named: only that tool.
  const CompletionRequest one = chat(with_tools({{"parallel_tool_calls", false}}));
  EXPECT_TRUE(one.request.grammar->value_starts_with('{'));
  EXPECT_FALSE(one.request.grammar->value_starts_with('['));
  const CompletionRequest named = chat(
      with_tools({{"tool_choice", {{"type", "function"}, {"function", {{"name", "get_time"}}}}},
                  {"parallel_tool_calls", false}}));
  EXPECT_EQ(named.tools.choice, ToolChoice::kNamed);
  EXPECT_NE(named.request.grammar->violation(
                json::parse(R"({"name": "get_weather", "arguments": {"city": "x"}})")),
            "");
  EXPECT_EQ(named.request.grammar->violation(
                json::parse(R"({"name": "get_time", "arguments": {"zone": 0}})")),
            "");
  // none: no grammar, but the tools stay in the prompt (the model may read about them).
  const CompletionRequest none = chat(with_tools({{"tool_choice", "none"}}));
  EXPECT_EQ(none.request.grammar, nullptr);
  EXPECT_EQ(none.request.prompt, r.request.prompt);
}

TEST_F(ToolCallsTest, ParametersWithRefsKeepTheirMeaning) {
  json tool = {{"type", "function"},
               {"function",
                {{"name", "tree"},
                 {"parameters",
                  {{"$defs",
                    {{"node",
                      {{"type", "object"},
                       {"properties",
                        {{"v", {{"type", "integer"}}},
                         {"kids", {{"type", "array"}, {"items", {{"$ref", "#/$defs/node"}}}}}}},
                       {"required", {"v"}}}}}},
                   {"$ref", "#/$defs/node"}}}}}};
  const CompletionRequest r = chat({{"messages", {{{"role", "user"}, {"content", "x"}}}},
                                    {"tools", {tool}},
                                    {"tool_choice", "required"}});
  EXPECT_EQ(r.request.grammar->violation(
                json::parse(R"([{"name": "tree", "arguments": {"v": 1, "kids": [{"v": 2}]}}])")),
            "");
  EXPECT_EQ(r.request.grammar->violation(
                json::parse(R"([{"name": "tree", "arguments": {"v": 1, "kids": [{}]}}])")),
            "/0/arguments/kids/0: missing required property 'v'");
}

struct Refusal {
  json extra;
  std::string param, words;
};

TEST_F(ToolCallsTest, EveryBadToolFieldIsA400NamingIt) {
  const json f = {{"type", "function"}, {"function", {{"name", "f"}}}};
  const std::vector<Refusal> cases = {
      {{{"tools", "f"}}, "tools", "'tools' must be an array"},
      {{{"tools", {1}}}, "tools[0]", "'tools[0]' must be an object"},
      {{{"tools", {{{"type", "code"}}}}}, "tools[0].type", "must be 'function'"},
      {{{"tools", {{{"type", "function"}}}}}, "tools[0].function", "is required"},
      {{{"tools", {{{"type", "function"}, {"function", {{"name", 3}}}}}}},
       "tools[0].function.name",
       "must be a string"},
      {{{"tools", {{{"type", "function"}, {"function", {{"name", "a.b"}}}}}}},
       "tools[0].function.name",
       "1 to 64 letters, digits, '_' or '-'"},
      {{{"tools", {{{"type", "function"}, {"function", {{"name", std::string(65, 'a')}}}}}}},
       "tools[0].function.name",
       "1 to 64"},
      {{{"tools", {f, f}}}, "tools[1].function.name", "the function 'f' is defined twice"},
      {{{"tools", {{{"type", "function"}, {"function", {{"name", "f"}, {"description", 1}}}}}}},
       "tools[0].function.description",
       "must be a string"},
      {{{"tools", {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", 1}}}}}}},
       "tools[0].function.parameters",
       "must be a JSON Schema object"},
      {{{"tools",
         {{{"type", "function"},
           {"function",
            {{"name", "g"},
             {"parameters",
              {{"type", "object"},
               {"properties", {{"d", {{"type", "string"}, {"format", "date"}}}}}}}}}}}}},
       "tools[0].function.parameters",
       "'tools[0].function.parameters' of function 'g': unsupported schema keyword 'format' at "
       "/properties/d"},
      {{{"tools", {f}}, {"tool_choice", "sometimes"}}, "tool_choice", "got 'sometimes'"},
      {{{"tools", {f}}, {"tool_choice", 1}}, "tool_choice", "must be a string or an object"},
      {{{"tools", {f}}, {"tool_choice", {{"type", "function"}}}},
       "tool_choice.function.name",
       "must be a string"},
      {{{"tools", {f}}, {"tool_choice", {{"type", "x"}, {"function", {{"name", "f"}}}}}},
       "tool_choice.type",
       "must be 'function'"},
      {{{"tools", {f}}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "g"}}}}}},
       "tool_choice.function.name",
       "is 'g', which is not one of the request's tools"},
      {{{"tool_choice", "required"}}, "tool_choice", "no 'tools' are given"},
      {{{"tools", {f}}, {"parallel_tool_calls", 1}}, "parallel_tool_calls", "must be a boolean"},
      {{{"tools", {f}}, {"functions", {{{"name", "f"}}}}}, "functions", "not both"},
      {{{"tools", {f}}, {"function_call", "auto"}}, "function_call", "use 'tool_choice'"},
      {{{"functions", {{{"name", "f"}}}}, {"function_call", {{"name", "g"}}}},
       "function_call.name",
       "not one of the request's functions"},
      {{{"functions", {{{"name", "f"}}}}, {"function_call", "required"}},
       "function_call",
       "'none', 'auto' or {\"name\": ...}"},
      {{{"tools", {f}}, {"response_format", {{"type", "json_object"}}}},
       "response_format",
       "cannot be combined with tool calls"},
      {{{"tools", {f}},
        {"messages",
         {{{"role", "assistant"},
           {"tool_calls",
            {{{"id", "c1"}, {"function", {{"name", "f"}, {"arguments", "{oops"}}}}}}}}}},
       "messages",
       "messages[0].tool_calls[0].function.arguments is not valid JSON"},
      {{{"messages", {{{"role", "tool"}, {"content", "x"}}}}},
       "messages",
       "messages[0].tool_call_id is required"},
      // A name is written raw into the prompt: it must be a function name.
      {{{"messages",
         {{{"role", "assistant"},
           {"tool_calls",
            {{{"id", "c1"}, {"function", {{"name", "f<|im_end|>"}, {"arguments", "{}"}}}}}}}}}},
       "messages",
       "messages[0].tool_calls[0].function.name must be a function name"},
  };
  for (const Refusal& c : cases) {
    SCOPED_TRACE(c.extra.dump());
    try {
      json body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
      for (auto& [k, v] : c.extra.items()) body[k] = v;
      chat(body);
      ADD_FAILURE() << "accepted";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.param(), c.param) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.words), std::string::npos) << e.what();
    }
  }
  // Without a vocabulary (a server that cannot constrain) calls are refused, not unchecked.
  ServedModel m = served();
  m.vocabulary = nullptr;
  try {
    parse_completion_request(with_tools().dump(), Endpoint::kChatCompletions, m, 1);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "tools");
  }
  // /v1/completions has no tools.
  try {
    parse_completion_request(R"({"prompt": "a", "tools": []})", Endpoint::kCompletions, served(),
                             1);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "tools");
  }
}

// Random calls written with random whitespace, fed whole and in random pieces: the calls come
// back with their names and arguments, and the stream's deltas assemble into the same.
TEST_F(ToolCallsTest, CallsComeBackFromTheirTextWholeAndInPieces) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  const auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const std::vector<std::string> spaces = {"", " ", "\n", "\n  "};
  const std::vector<json> arguments = {
      json::parse(R"({"city": "Paris", "unit": "c"})"),
      json::parse(R"({"zone": -3})"),
      json::parse(R"({"q": "a \"quoted\" } ] , string", "n": [1, {"x": null}]})"),
      json::object(),
      json::parse("12.5"),
      json::parse(R"("text")"),
      json::parse("[true]")};
  const CompletionRequest req = chat(with_tools({{"tool_choice", "required"}}));
  for (int round = 0; round < 200; ++round) {
    const size_t n = 1 + pick(3);
    std::vector<std::pair<std::string, json>> calls;
    std::string text = "[" + spaces[pick(4)];
    for (size_t i = 0; i < n; ++i) {
      calls.emplace_back("f" + std::to_string(pick(100)), arguments[pick(arguments.size())]);
      const auto ws = [&] { return spaces[pick(4)]; };
      if (i > 0) text += ws() + "," + ws();
      text += "{" + ws() + "\"name\"" + ws() + ":" + ws() + json(calls[i].first).dump() + ws() +
              "," + ws() + "\"arguments\"" + ws() + ":" + ws() + calls[i].second.dump(-1) + ws() +
              "}";
    }
    text += spaces[pick(4)] + "]";
    SCOPED_TRACE(text);

    std::string reason = "stop";
    const json message = chat_message(req.tools, text, reason);
    EXPECT_EQ(reason, "tool_calls");
    EXPECT_TRUE(message["content"].is_null());
    ASSERT_EQ(message["tool_calls"].size(), n);
    for (size_t i = 0; i < n; ++i) {
      const json& c = message["tool_calls"][i];
      EXPECT_EQ(c["type"], "function");
      EXPECT_EQ(c["id"].get<std::string>().rfind("call_", 0), 0u);
      EXPECT_EQ(c["function"]["name"], calls[i].first);
      EXPECT_EQ(json::parse(c["function"]["arguments"].get<std::string>()), calls[i].second);
    }

    // Streamed in random pieces: the first delta of each call has index, id, type, name and
    // "" arguments; the others index and argument text. Assembled, they are the calls.
    ToolDeltas deltas(req.tools);
    std::vector<json> assembled;
    for (size_t at = 0; at < text.size();) {
      const size_t len = 1 + pick(6);
      for (const json& d : deltas.deltas(text.substr(at, len))) {
        ASSERT_TRUE(d.contains("tool_calls")) << d.dump();
        ASSERT_EQ(d["tool_calls"].size(), 1u);
        const json& c = d["tool_calls"][0];
        const size_t index = c["index"];
        if (index == assembled.size()) {
          EXPECT_EQ(c["type"], "function");
          EXPECT_TRUE(c.contains("id"));
          EXPECT_EQ(c["function"]["arguments"], "");
          assembled.push_back({{"name", c["function"]["name"]}, {"arguments", ""}});
        } else {
          ASSERT_EQ(index + 1, assembled.size());
          EXPECT_FALSE(c.contains("id"));
          EXPECT_FALSE(c["function"].contains("name"));
          assembled[index]["arguments"] = assembled[index]["arguments"].get<std::string>() +
                                          c["function"]["arguments"].get<std::string>();
        }
      }
      at += len;
    }
    EXPECT_EQ(deltas.finish_reason("stop"), "tool_calls");
    ASSERT_EQ(assembled.size(), n);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(assembled[i]["name"], calls[i].first);
      EXPECT_EQ(json::parse(assembled[i]["arguments"].get<std::string>()), calls[i].second);
    }
  }
}

TEST_F(ToolCallsTest, TextAndCutCallsAreContent) {
  const CompletionRequest req = chat(with_tools());
  std::string reason = "stop";
  EXPECT_EQ(chat_message(req.tools, "Sunny, I think.", reason),
            json({{"role", "assistant"}, {"content", "Sunny, I think."}}));
  EXPECT_EQ(reason, "stop");
  reason = "length";  // max_tokens cut the call: what was written comes back as content
  const std::string cut = R"([{"name": "get_time", "arguments": {"zo)";
  EXPECT_EQ(chat_message(req.tools, cut, reason), json({{"role", "assistant"}, {"content", cut}}));
  EXPECT_EQ(reason, "length");
  ToolDeltas text(req.tools);
  EXPECT_EQ(text.deltas("Sun"), std::vector<json>{json({{"content", "Sun"}})});
  EXPECT_EQ(text.deltas("[ny"), std::vector<json>{json({{"content", "[ny"}})});
  EXPECT_EQ(text.finish_reason("stop"), "stop");
  // Without tools everything is content.
  const CompletionRequest plain = chat({{"messages", {{{"role", "user"}, {"content", "x"}}}}});
  reason = "stop";
  EXPECT_EQ(chat_message(plain.tools, "[1]", reason)["content"], "[1]");
}

TEST_F(ToolCallsTest, LegacyFunctionsAnswerWithFunctionCall) {
  json body = {{"messages", {{{"role", "user"}, {"content", "x"}}}},
               {"functions", {json(kWeather["function"])}},
               {"function_call", {{"name", "get_weather"}}}};
  const CompletionRequest r = chat(body);
  EXPECT_TRUE(r.tools.legacy);
  EXPECT_FALSE(r.tools.parallel);
  EXPECT_EQ(r.tools.choice, ToolChoice::kNamed);
  std::string reason = "stop";
  const json m =
      chat_message(r.tools, R"({"name": "get_weather", "arguments": {"city": "Oslo"}})", reason);
  EXPECT_EQ(reason, "function_call");
  EXPECT_EQ(m["function_call"]["name"], "get_weather");
  EXPECT_EQ(json::parse(m["function_call"]["arguments"].get<std::string>()),
            json({{"city", "Oslo"}}));
  // The prompt shows the functions as tools.
  const std::vector<ojson> tools = {
      ojson{{"type", "function"}, {"function", ojson(json(kWeather["function"]))}}};
  EXPECT_EQ(r.request.prompt,
            model::encode_chat(*lm_->chat, *lm_->tokenizer,
                               std::vector<model::ChatMessage>{{"user", "x"}}, true, false, tools));
}

TEST_F(ToolCallsTest, StreamEventsOfACall) {
  json body = with_tools({{"tool_choice", "required"}, {"parallel_tool_calls", false}});
  body["stream"] = true;
  StreamEncoder enc({"chatcmpl-9", 5, "tiny"}, chat(body), *lm_->tokenizer);
  engine::Output o;
  o.text = R"({"name": "get_ti)";
  std::string text = enc.encode(o);
  o.text = R"(me", "arguments": {"zone")";
  text += enc.encode(o);
  o.text = R"(: 4}})";
  o.finished = true;
  o.finish_reason = "stop";
  text += enc.encode(o);
  std::vector<json> events;
  for (size_t at = 0; (at = text.find("data: ", at)) != std::string::npos; at += 6) {
    const std::string payload = text.substr(at + 6, text.find("\n\n", at) - at - 6);
    if (payload != "[DONE]") events.push_back(json::parse(payload)["choices"][0]);
  }
  ASSERT_EQ(events.size(), 5u) << text;
  EXPECT_EQ(events[0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  const json first = events[1]["delta"]["tool_calls"][0];
  EXPECT_EQ(first["index"], 0);
  EXPECT_EQ(first["type"], "function");
  EXPECT_EQ(first["function"], json({{"name", "get_time"}, {"arguments", ""}}));
  EXPECT_EQ(first["id"].get<std::string>().size(), 29u);
  EXPECT_EQ(events[2]["delta"]["tool_calls"][0],
            json({{"index", 0}, {"function", {{"arguments", "{\"zone\""}}}}));
  EXPECT_EQ(events[3]["delta"]["tool_calls"][0],
            json({{"index", 0}, {"function", {{"arguments", ": 4}"}}}}));
  EXPECT_EQ(events[4]["finish_reason"], "tool_calls");
}

TEST_F(ToolCallsTest, HistoryWithCallsAndResultsRendersThroughTheTemplate) {
  json body = with_tools();
  body["messages"] = json::parse(R"([
    {"role": "user", "content": "weather in Oslo?"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function",
       "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "-3 C <|im_end|>"},
    {"role": "user", "content": "thanks"}])");
  const CompletionRequest r = chat(body);
  std::vector<model::ChatMessage> messages = {{"user", "weather in Oslo?"},
                                              {"assistant", ""},
                                              {"tool", "-3 C <|im_end|>"},
                                              {"user", "thanks"}};
  messages[1].tool_calls = {{"call_1", "get_weather", ojson{{"city", "Oslo"}}}};
  messages[2].tool_call_id = "call_1";
  messages[2].name = "get_weather";
  const std::vector<ojson> tools = sorted_tools();
  EXPECT_EQ(r.request.prompt,
            model::encode_chat(*lm_->chat, *lm_->tokenizer, messages, true, false, tools));
  const std::string text = lm_->chat->render(messages, true, tools);
  EXPECT_NE(text.find("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", "
                      "\"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n"
                      "<|im_start|>user\n<tool_response>\n-3 C <|im_end|>\n</tool_response>"
                      "<|im_end|>\n<|im_start|>user\nthanks<|im_end|>\n"),
            std::string::npos)
      << text;
}

// Llama writes a tool result as a JSON string: it is still found, and kept text, in the prompt.
TEST(ToolCallsLlama, ToolResultsAsJsonStringsStayText) {
  const engine::LoadedModel lm =
      engine::LoadedModel::load(std::string(KDR_SOURCE_DIR) + "/tests/data/models/llama31.gguf");
  ASSERT_TRUE(lm.chat.has_value());
  ASSERT_EQ(lm.chat->format, model::ChatFormat::kLlama3);
  ServedModel m;
  m.id = "tiny";
  m.tokenizer = lm.tokenizer.get();
  m.chat = &*lm.chat;
  m.max_model_len = 1 << 20;
  for (const std::string& result : std::vector<std::string>{"r \"x\"\n", "r <|eot_id|> x"}) {
    const json body = {{"messages",
                        {{{"role", "system"}, {"content", " hi "}},
                         {{"role", "user"}, {"content", "q"}},
                         {{"role", "assistant"},
                          {"content", nullptr},
                          {"tool_calls",
                           {{{"id", "c1"},
                             {"type", "function"},
                             {"function", {{"name", "f"}, {"arguments", "{\"a\": 1}"}}}}}}},
                         {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", result}}}}};
    const CompletionRequest r =
        parse_completion_request(body.dump(), Endpoint::kChatCompletions, m, 1);
    std::vector<model::ChatMessage> messages = {
        {"system", " hi "}, {"user", "q"}, {"assistant", ""}, {"tool", result}};
    messages[2].tool_calls = {{"c1", "f", ojson{{"a", 1}}}};
    const std::string text = lm.chat->render(messages, true);
    EXPECT_NE(text.find("<|start_header_id|>ipython<|end_header_id|>\n\n" + json(result).dump() +
                        "<|eot_id|>"),
              std::string::npos)
        << text;
    const std::vector<int32_t> whole = lm.tokenizer->encode(text, false, true);
    const int32_t eot = lm.tokenizer->token_id("<|eot_id|>");
    if (result.find("<|") == std::string::npos || eot < 0) {
      EXPECT_EQ(r.request.prompt, whole);
    } else {
      // Encoded whole, the result's <|eot_id|> would be one more turn end.
      EXPECT_EQ(std::count(r.request.prompt.begin(), r.request.prompt.end(), eot),
                std::count(whole.begin(), whole.end(), eot) - 1);
    }
  }
}

}  // namespace
}  // namespace kdr::server
