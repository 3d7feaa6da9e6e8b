#include "model/chat_template.h"

#include <algorithm>
#include <cstdint>

#include "model/chat_tools.h"
#include "model/tokenizer.h"

namespace kdr::model {
namespace {

// Decodes the code point at s[i] (s is assumed UTF-8; stray bytes decode as themselves).
uint32_t code_point_at(std::string_view s, size_t i, size_t* len) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t lead = b(i);
  size_t n = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;
  if (lead >= 0x80 && (lead & 0xC0) == 0x80) n = 1;
  if (i + n > s.size()) n = 1;
  *len = n;
  switch (n) {
    case 1:
      return lead;
    case 2:
      return ((lead & 0x1Fu) << 6) | (b(i + 1) & 0x3Fu);
    case 3:
      return ((lead & 0x0Fu) << 12) | ((b(i + 1) & 0x3Fu) << 6) | (b(i + 2) & 0x3Fu);
    default:
      return ((lead & 0x07u) << 18) | ((b(i + 1) & 0x3Fu) << 12) | ((b(i + 2) & 0x3Fu) << 6) |
             (b(i + 3) & 0x3Fu);
  }
}

// Python's str.isspace(): bidirectional class WS, B or S, or category Zs.
bool python_isspace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

constexpr std::string_view kQwen25System =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
constexpr std::string_view kQwen2System = "You are a helpful assistant.";

std::string render_gemma3(std::span<const ChatMessage> messages, bool add_generation_prompt,
                          const std::string& bos) {
  if (messages.empty()) throw ChatTemplateError("Gemma-3 chat template: no messages");
  std::string out = bos;
  std::string first_user_prefix;
  size_t begin = 0;
  if (messages[0].role == "system") {
    first_user_prefix = messages[0].content + "\n\n";  // not trimmed, as the template does
    begin = 1;
  }
  for (size_t i = begin; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if ((m.role == "user") != ((i - begin) % 2 == 0)) {
      throw ChatTemplateError(
          "Conversation roles must alternate user/assistant/user/assistant/...");
    }
    out += "<start_of_turn>";
    out += m.role == "assistant" ? "model" : m.role;
    out += '\n';
    if (i == begin) out += first_user_prefix;
    out += python_strip(m.content);
    out += "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

std::string render_llama3(std::span<const ChatMessage> messages, bool add_generation_prompt,
                          const std::string& bos) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += bos;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n";
    out += python_strip(messages[i].content);
    out += "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_chatml(std::span<const ChatMessage> messages, bool add_generation_prompt,
                          const std::string& default_system) {
  std::string out;
  if (!default_system.empty() && !messages.empty() && messages[0].role != "system") {
    out += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
  }
  for (const ChatMessage& m : messages) {
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace

std::string python_strip(std::string_view text) {
  size_t begin = 0, end = text.size();
  while (begin < end) {
    size_t len = 0;
    if (!python_isspace(code_point_at(text, begin, &len))) break;
    begin += len;
  }
  while (end > begin) {
    // Step back to the start of the last character.
    size_t start = end - 1;
    while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    size_t len = 0;
    const uint32_t cp = code_point_at(text, start, &len);
    if (start + len != end || !python_isspace(cp)) break;
    end = start;
  }
  return std::string(text.substr(begin, end - begin));
}

const char* to_string(ChatFormat format) {
  switch (format) {
    case ChatFormat::kGemma3:
      return "gemma3";
    case ChatFormat::kLlama3:
      return "llama3";
    case ChatFormat::kChatML:
      break;
  }
  return "chatml";
}

ChatTemplate ChatTemplate::detect(std::string_view jinja, std::string_view architecture,
                                  std::string bos_token) {
  ChatTemplate t;
  t.bos_token = std::move(bos_token);
  if (!jinja.empty()) {
    if (contains(jinja, "<start_of_turn>")) {
      t.format = ChatFormat::kGemma3;
    } else if (contains(jinja, "<|start_header_id|>")) {
      t.format = ChatFormat::kLlama3;
      t.llama31 = contains(jinja, "Cutting Knowledge Date");
    } else if (contains(jinja, "<|im_start|>")) {
      t.format = ChatFormat::kChatML;
      if (contains(jinja, kQwen25System)) {
        t.default_system = kQwen25System;
      } else if (contains(jinja, kQwen2System)) {
        t.default_system = kQwen2System;
      }
    } else {
      throw ChatTemplateError(
          "chat template not recognised (known: Gemma-3 <start_of_turn>, Llama-3 "
          "<|start_header_id|>, ChatML <|im_start|>)");
    }
    return t;
  }
  if (architecture == "gemma3" || architecture == "gemma2" || architecture == "gemma") {
    t.format = ChatFormat::kGemma3;
  } else if (architecture == "llama") {
    t.format = ChatFormat::kLlama3;
  } else if (architecture == "qwen2") {
    t.format = ChatFormat::kChatML;
    t.default_system = kQwen2System;
  } else if (architecture == "qwen3" || architecture == "qwen2moe" || architecture == "qwen3moe") {
    t.format = ChatFormat::kChatML;
  } else {
    throw ChatTemplateError("no chat template and no default for architecture '" +
                            std::string(architecture) + "'");
  }
  return t;
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                 std::span<const nlohmann::ordered_json> tools) const {
  if (uses_tools(messages, tools) || (format == ChatFormat::kLlama3 && llama31)) {
    switch (format) {
      case ChatFormat::kGemma3:
        return render_gemma3_tools(messages, add_generation_prompt, tools, bos_token);
      case ChatFormat::kLlama3:
        return render_llama3_tools(messages, add_generation_prompt, tools, bos_token);
      case ChatFormat::kChatML:
        return render_chatml_tools(messages, add_generation_prompt, tools, default_system);
    }
  }
  switch (format) {
    case ChatFormat::kGemma3:
      return render_gemma3(messages, add_generation_prompt, bos_token);
    case ChatFormat::kLlama3:
      return render_llama3(messages, add_generation_prompt, bos_token);
    case ChatFormat::kChatML:
      return render_chatml(messages, add_generation_prompt, default_system);
  }
  throw ChatTemplateError("chat template: unknown format");
}

std::vector<int32_t> encode_chat(const ChatTemplate& chat, const Tokenizer& tokenizer,
                                 std::span<const ChatMessage> messages, bool add_generation_prompt,
                                 bool content_control_tokens,
                                 std::span<const nlohmann::ordered_json> tools) {
  const std::string text = chat.render(messages, add_generation_prompt, tools);
  if (content_control_tokens) return tokenizer.encode(text, /*add_special=*/false, true);
  // Tool definitions and calls are written as JSON around the contents; text in them that
  // would read as a control token is refused rather than located.
  const auto plain = [&](const std::string& s) {
    return tokenizer.encode(s, false, true) == tokenizer.encode(s, false, false);
  };
  for (size_t t = 0; t < tools.size(); ++t)
    if (!plain(python_json(tools[t])))
      throw ChatTemplateError("tools[" + std::to_string(t) +
                              "] holds the text of a control token of this model");
  for (size_t i = 0; i < messages.size(); ++i)
    for (size_t c = 0; c < messages[i].tool_calls.size(); ++c)
      if (!plain(python_json(messages[i].tool_calls[c].arguments)))
        throw ChatTemplateError("messages[" + std::to_string(i) + "].tool_calls[" +
                                std::to_string(c) +
                                "].function.arguments holds the text of a control token");
  // Where each content landed: render again with a marker in place of every content; the
  // template's text between markers is the same, and each content is written raw or trimmed.
  auto marker = [](size_t i) { return "\x01kdr-content-" + std::to_string(i) + "\x01"; };
  // Empty contents stay empty (templates test them: Qwen writes no newline before the calls of
  // an assistant turn without content); they hold no text to protect.
  std::vector<ChatMessage> marked(messages.begin(), messages.end());
  for (size_t i = 0; i < marked.size(); ++i)
    if (!marked[i].content.empty()) marked[i].content = marker(i);
  const std::string skeleton = chat.render(marked, add_generation_prompt, tools);
  std::vector<Tokenizer::ByteRange> literal;
  size_t sk = 0, at = 0;  // positions in skeleton and text
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].content.empty()) continue;
    // A content is written raw or trimmed, or (Llama's tool results) as a JSON string, where
    // its marker shows escaped: "\u0001kdr-content-3\u0001".
    const std::string raw = marker(i), quoted = python_json(marker(i));
    size_t found = skeleton.find(raw, sk), marker_len = raw.size();
    if (const size_t q = skeleton.find(quoted, sk); q < found) {
      found = q;
      marker_len = quoted.size();
    }
    if (found == std::string::npos)
      throw ChatTemplateError("chat template dropped message " + std::to_string(i) + " (" +
                              messages[i].role + ")");
    at += found - sk;  // the template's text before this content
    const size_t next_sk = found + marker_len;
    const size_t next_marker = std::min(skeleton.find("\x01kdr-content-", next_sk),
                                        skeleton.find("\"\\u0001kdr-content-", next_sk));
    const std::string_view after = std::string_view(skeleton).substr(
        next_sk, (next_marker == std::string::npos ? skeleton.size() : next_marker) - next_sk);
    size_t len = std::string::npos;
    for (const std::string& c :
         {messages[i].content, python_strip(messages[i].content), python_json(messages[i].content)})
      if (text.compare(at, c.size(), c) == 0 &&
          text.compare(at + c.size(), after.size(), after) == 0) {
        len = c.size();
        break;
      }
    if (len == std::string::npos)
      throw ChatTemplateError("cannot locate message " + std::to_string(i) +
                              " in the rendered chat");
    if (len > 0) literal.push_back({at, at + len});
    at += len;
    sk = next_sk;
  }
  return tokenizer.encode(text, /*add_special=*/false, /*parse_special=*/true, literal);
}

}  // namespace kdr::model
