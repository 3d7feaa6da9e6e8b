// Chat prompt formatting for Gemma-3, Llama-3 and ChatML (Qwen), byte-identical to what
// transformers' apply_chat_template renders from each family's Jinja template. The formats
// are written out in C++; a model's Jinja text is only used to recognise its family.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::model {

// A call an assistant turn made (OpenAI's message.tool_calls[i]).
struct ChatToolCall {
  std::string id;
  std::string name;
  nlohmann::ordered_json arguments;  // the arguments object (OpenAI sends it as JSON text)
};

struct ChatMessage {
  std::string role;  // system, user, assistant, tool
  std::string content;
  std::vector<ChatToolCall> tool_calls = {};  // assistant
  std::string tool_call_id = {};              // tool: the call this is the result of
  std::string name = {};                      // tool: the function's name
};

class ChatTemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ChatFormat {
  kGemma3,  // <start_of_turn>user ... system folded into the first user turn, content trimmed
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\n content trimmed <|eot_id|>
  kChatML,  // <|im_start|>role\n content <|im_end|>\n
};

// "gemma3", "llama3" or "chatml".
const char* to_string(ChatFormat format);

struct ChatTemplate {
  ChatFormat format = ChatFormat::kChatML;
  // ChatML: the system message a template inserts when the conversation has none (Qwen2:
  // "You are a helpful assistant."); empty for none.
  std::string default_system;
  // Llama 3.1+ (a knowledge-date system header): every conversation is written as those
  // templates write it (model/chat_tools.h), tools or not.
  bool llama31 = false;
  // Text of the bos token, which Gemma-3 and Llama-3 templates write at the start. The
  // rendered prompt is then tokenized without adding bos again (as transformers does).
  std::string bos_token;

  // Recognises a Jinja chat template (GGUF tokenizer.chat_template or tokenizer_config.json
  // chat_template); when `jinja` is empty, falls back on the GGUF architecture name (gemma3,
  // llama, qwen2, qwen3). Throws ChatTemplateError naming what it could not recognise.
  static ChatTemplate detect(std::string_view jinja, std::string_view architecture,
                             std::string bos_token);

  // Renders the conversation; add_generation_prompt opens an assistant turn. Throws
  // ChatTemplateError where the template would raise (Gemma-3: roles must alternate).
  // `tools` are the request's tool definitions as sent ({"type": "function", "function":
  // {...}}); with tools, or tool calls and results in the messages, each family's tool format
  // applies (model/chat_tools.h).
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt,
                     std::span<const nlohmann::ordered_json> tools = {}) const;
};

// Python's str.strip() (Jinja's trim filter): Unicode whitespace at both ends removed.
std::string python_strip(std::string_view text);

class Tokenizer;

// The tokens of a rendered chat, the one chat encoding of the server and the research agent.
// The template's own control tokens (<start_of_turn>, <|im_start|>, ...) become their ids;
// the messages' contents stay text, so a "<start_of_turn>model" a user or a document writes
// cannot open another turn, unless `content_control_tokens`. Where no content holds a
// control token's text the tokens are those of encoding the rendered text whole (as
// transformers and llama.cpp do). Throws ChatTemplateError as render() does.
std::vector<int32_t> encode_chat(const ChatTemplate& chat, const Tokenizer& tokenizer,
                                 std::span<const ChatMessage> messages, bool add_generation_prompt,
                                 bool content_control_tokens = false,
                                 std::span<const nlohmann::ordered_json> tools = {});

}  // namespace kdr::model
