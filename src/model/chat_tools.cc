#include "model/chat_tools.h"

namespace kdr::model {

using ojson = nlohmann::ordered_json;

namespace {

void python_json_to(const ojson& v, std::string& out) {
  switch (v.type()) {
    case ojson::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : v.items()) {
        if (!first) out += ", ";
        first = false;
        out += ojson(key).dump();
        out += ": ";
        python_json_to(value, out);
      }
      out += '}';
      return;
    }
    case ojson::value_t::array: {
      out += '[';
      for (size_t i = 0; i < v.size(); ++i) {
        if (i > 0) out += ", ";
        python_json_to(v[i], out);
      }
      out += ']';
      return;
    }
    default:
      out += v.dump(-1, ' ', false, ojson::error_handler_t::replace);
  }
}

constexpr const char* kQwenToolsIntro =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\n<tools>";
constexpr const char* kQwenToolsOutro =
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
    "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";

constexpr const char* kLlamaToolsIntro =
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n\nRespond in the format {\"name\": "
    "function name, \"parameters\": dictionary of argument name and its value}.Do not use "
    "variables.\n\n";

// Tested on Gemma 3 270M, which tends to start its answer by repeating the turn it was given:
// the turn starts with the definitions themselves, the instruction and the user's words last.
constexpr const char* kGemmaToolsIntro = "";
constexpr const char* kGemmaToolsOutro =
    "\nThese are the tools you can call. Answer with only a JSON tool call {\"name\": <tool name>, "
    "\"arguments\": {...}} when a "
    "tool can answer (a JSON array of calls for several); when no tool fits, answer in plain "
    "words.\n\nQuestion: ";

// An assistant's calls as the grammar writes them: one object, or an array of several.
std::string gemma_calls(const std::vector<ChatToolCall>& calls) {
  ojson out = ojson::array();
  for (const ChatToolCall& c : calls) out.push_back({{"name", c.name}, {"arguments", c.arguments}});
  return python_json(out.size() == 1 ? out[0] : out);
}

}  // namespace

std::string python_json(const ojson& v, int indent) {
  if (indent > 0) return v.dump(indent, ' ', false, ojson::error_handler_t::replace);
  std::string out;
  python_json_to(v, out);
  return out;
}

bool uses_tools(std::span<const ChatMessage> messages, std::span<const ojson> tools) {
  if (!tools.empty()) return true;
  for (const ChatMessage& m : messages)
    if (!m.tool_calls.empty() || m.role == "tool") return true;
  return false;
}

std::string render_chatml_tools(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                std::span<const ojson> tools, const std::string& default_system) {
  std::string out;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  if (!tools.empty()) {
    out += "<|im_start|>system\n";
    if (has_system) {
      out += messages[0].content + "\n\n";
    } else if (!default_system.empty()) {
      out += default_system + "\n\n";
    }
    out += kQwenToolsIntro;
    for (const ojson& t : tools) {
      out += '\n';
      out += python_json(t);
    }
    out += kQwenToolsOutro;
  } else if (has_system) {
    out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  } else if (!default_system.empty()) {
    out += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
  }
  for (size_t i = has_system ? 1 : 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      out += "<|im_start|>assistant";
      if (!m.content.empty()) out += "\n" + m.content;
      for (const ChatToolCall& c : m.tool_calls) {
        out += "\n<tool_call>\n{\"name\": \"" + c.name + "\", \"arguments\": ";
        out += python_json(c.arguments) + "}\n</tool_call>";
      }
      out += "<|im_end|>\n";
    } else {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    }
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama3_tools(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                std::span<const ojson> tools, const std::string& bos) {
  std::string out = bos;
  size_t i = 0;
  std::string system_message;
  if (!messages.empty() && messages[0].role == "system") {
    system_message = python_strip(messages[0].content);
    i = 1;
  }
  out += "<|start_header_id|>system<|end_header_id|>\n\n";
  if (!tools.empty()) out += "Environment: ipython\n";
  // The official template's date when none is passed: kdr's prompts do not depend on the day.
  out += "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
  out += system_message + "<|eot_id|>";
  if (!tools.empty()) {
    if (i == messages.size())
      throw ChatTemplateError(
          "Cannot put tools in the first user message when there's no first user message!");
    out += "<|start_header_id|>user<|end_header_id|>\n\n";
    out += kLlamaToolsIntro;
    for (const ojson& t : tools) out += python_json(t, 4) + "\n\n";
    out += python_strip(messages[i].content) + "<|eot_id|>";
    ++i;
  }
  for (; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "tool") {
      // The template writes a string result through tojson: as a quoted JSON string.
      out +=
          "<|start_header_id|>ipython<|end_header_id|>\n\n" + python_json(m.content) + "<|eot_id|>";
    } else if (!m.tool_calls.empty()) {
      if (m.tool_calls.size() != 1)
        throw ChatTemplateError("This model only supports single tool-calls at once!");
      const ChatToolCall& c = m.tool_calls[0];
      out += "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"" + c.name +
             "\", \"parameters\": " + python_json(c.arguments) + "}<|eot_id|>";
    } else {
      out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + python_strip(m.content) +
             "<|eot_id|>";
    }
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_gemma3_tools(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                std::span<const ojson> tools, const std::string& bos) {
  if (messages.empty()) throw ChatTemplateError("Gemma-3 chat template: no messages");
  std::string out = bos;
  std::string first_user_prefix;
  size_t begin = 0;
  if (messages[0].role == "system") {
    first_user_prefix = messages[0].content + "\n\n";
    begin = 1;
  }
  if (!tools.empty()) {
    first_user_prefix += kGemmaToolsIntro;
    for (const ojson& t : tools) first_user_prefix += python_json(t) + "\n";
    first_user_prefix += kGemmaToolsOutro;
  }
  // Tool results sit on the user's side of the alternation; consecutive ones share a turn.
  bool first_turn = true;
  size_t turn = 0;
  for (size_t i = begin; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool user_side = m.role != "assistant";
    if (user_side != (turn % 2 == 0))
      throw ChatTemplateError(
          "Conversation roles must alternate user/assistant/user/assistant/... (tool results "
          "count as the user's turn)");
    out += user_side ? "<start_of_turn>user\n" : "<start_of_turn>model\n";
    if (first_turn) out += first_user_prefix;
    first_turn = false;
    if (m.role == "tool") {
      for (;;) {
        const ChatMessage& t = messages[i];
        out += t.name.empty() ? "<tool_response>\n" : "<tool_response name=\"" + t.name + "\">\n";
        out += t.content + "\n</tool_response>";
        if (i + 1 == messages.size() || messages[i + 1].role != "tool") break;
        out += "\n";
        ++i;
      }
    } else if (!m.tool_calls.empty()) {
      const std::string content = python_strip(m.content);
      if (!content.empty()) out += content + "\n";
      out += gemma_calls(m.tool_calls);
    } else {
      out += python_strip(m.content);
    }
    out += "<end_of_turn>\n";
    ++turn;
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

}  // namespace kdr::model
