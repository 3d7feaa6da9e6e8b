// Tool calling in chat prompts: conversations with tools, calls and results rendered byte for
// byte as the official Qwen 2.5 and Llama 3.2 templates render them with jinja2 (fixtures from
// scripts/gen_tool_chat_fixtures.py), Gemma 3's convention written out, and tool text kept
// out of control tokens.
#include "model/chat_tools.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/chat_template.h"

namespace kdr::model {
namespace {

using ojson = nlohmann::ordered_json;

ojson fixtures() {
  const auto path = std::filesystem::path(KDR_SOURCE_DIR) / "tests" / "data" / "tokenizer" /
                    "tool_chat_templates.expected.json";
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return ojson::parse(s.str());
}

std::vector<ChatMessage> messages_of(const ojson& ms) {
  std::vector<ChatMessage> out;
  for (const ojson& m : ms) {
    ChatMessage c{m.at("role"), m.value("content", "")};
    for (const ojson& call : m.value("tool_calls", ojson::array()))
      c.tool_calls.push_back(
          {call.at("id"), call.at("function").at("name"), call.at("function").at("arguments")});
    c.tool_call_id = m.value("tool_call_id", "");
    out.push_back(std::move(c));
  }
  return out;
}

TEST(ChatTools, RendersByteForByteLikeTheOfficialTemplates) {
  const ojson f = fixtures();
  const ChatTemplate qwen =
      ChatTemplate::detect(f["templates"]["qwen2.5"].get<std::string>(), "", "");
  EXPECT_EQ(qwen.format, ChatFormat::kChatML);
  const ChatTemplate llama =
      ChatTemplate::detect(f["templates"]["llama3.2"].get<std::string>(), "", "<|begin_of_text|>");
  EXPECT_EQ(llama.format, ChatFormat::kLlama3);
  EXPECT_TRUE(llama.llama31);
  int n = 0;
  for (const ojson& c : f["cases"]) {
    const ChatTemplate& t = c["template"] == "qwen2.5" ? qwen : llama;
    const std::vector<ChatMessage> messages = messages_of(c["messages"]);
    const std::vector<ojson> tools(c["tools"].begin(), c["tools"].end());
    SCOPED_TRACE(c["template"].get<std::string>() + " " + c["messages"].dump());
    EXPECT_EQ(t.render(messages, c["add_generation_prompt"].get<bool>(), tools),
              c["expected"].get<std::string>());
    ++n;
  }
  EXPECT_EQ(n, 22);
}

TEST(ChatTools, PythonJsonIsJsonDumps) {
  const ojson v = ojson::parse(R"({"b": [1, 2.5, null, true, "x\"\n\u00e9"], "a": {}, "c": []})");
  EXPECT_EQ(python_json(v), R"({"b": [1, 2.5, null, true, "x\"\n)"
                            "\xC3\xA9"
                            R"("], "a": {}, "c": []})");
  EXPECT_EQ(python_json(ojson::parse(R"({"a": [1]})"), 2), "{\n  \"a\": [\n    1\n  ]\n}");
}

// Gemma 3 has no official tool format: kdr's convention, written out.
TEST(ChatTools, GemmaConvention) {
  const ChatTemplate gemma = ChatTemplate::detect("", "gemma3", "<bos>");
  std::vector<ChatMessage> m = {{"system", "Be brief."},
                                {"user", " Weather? "},
                                {"assistant", ""},
                                {"tool", "-3 C"},
                                {"tool", "noon"}};
  m[2].tool_calls = {{"call_1", "get_weather", ojson{{"city", "Oslo"}}},
                     {"call_2", "get_time", ojson::object()}};
  m[3].name = "get_weather";
  m[4].name = "get_time";
  const std::vector<ojson> tools = {ojson{{"type", "function"}, {"function", {{"name", "f"}}}}};
  EXPECT_EQ(gemma.render(m, true, tools),
            "<bos><start_of_turn>user\nBe brief.\n\n{\"type\": \"function\", "
            "\"function\": {\"name\": \"f\"}}\n\nThese are the tools you can call. Answer with "
            "only a JSON tool call {\"name\": "
            "<tool name>, \"arguments\": {...}} when a tool can answer (a JSON array of calls for "
            "several); when no tool fits, answer in plain words.\n\nQuestion: Weather?"
            "<end_of_turn>\n<start_of_turn>model\n[{\"name\": \"get_weather\", \"arguments\": "
            "{\"city\": \"Oslo\"}}, {\"name\": \"get_time\", \"arguments\": {}}]<end_of_turn>\n"
            "<start_of_turn>user\n<tool_response name=\"get_weather\">\n-3 C\n</tool_response>\n"
            "<tool_response name=\"get_time\">\nnoon\n</tool_response><end_of_turn>\n"
            "<start_of_turn>model\n");
  // Results are the user's side of the alternation.
  m.push_back({"tool", "again"});
  m.push_back({"user", "x"});
  EXPECT_THROW(gemma.render(m, true, tools), ChatTemplateError);
}

}  // namespace
}  // namespace kdr::model
