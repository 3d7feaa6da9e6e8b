// Tool calling (function calling) on the OpenAI wire: the request's tools, tool_choice and
// parallel_tool_calls (or the legacy functions / function_call) validated, the grammar every
// generation follows, and the generated calls split out of the text as they arrive.
//
// The model writes calls as JSON the grammar constrains: {"name": <a tool's name>,
// "arguments": <that tool's parameters schema>} ("parameters" for Llama 3, as its prompt
// says), an array of one or more of them when parallel calls are allowed. With tool_choice
// "auto" the output may instead be text, which then cannot start with the call's first byte.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::engine {
class JsonGrammar;
class Vocabulary;
}  // namespace kdr::engine

namespace kdr::server {

enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

struct ToolRequest {
  // Each tool as the request sent it ({"type": "function", "function": {...}}; legacy
  // functions are wrapped so), for the prompt.
  std::vector<nlohmann::ordered_json> tools;
  std::vector<std::string> names;  // tools[i].function.name
  ToolChoice choice = ToolChoice::kNone;
  std::string named;     // kNamed: the tool that must be called
  bool parallel = true;  // parallel_tool_calls: an array of calls
  bool legacy = false;   // functions / function_call: answered as message.function_call
  std::string call_key = "arguments";  // the key of a call's arguments in what the model writes
  std::shared_ptr<const engine::JsonGrammar> grammar;  // null when no call can be made

  // Calls may be generated (tools given and tool_choice is not "none").
  bool active() const { return grammar != nullptr; }
};

// Reads tools / tool_choice / parallel_tool_calls, or functions / function_call, from `body`
// (`ordered` is the same body read as ordered_json, which keeps the schemas' property order).
// `call_key` is the family's name for a call's arguments. Without a vocabulary calls are
// refused. Throws ApiError (400, naming the field; a schema the grammar cannot compile names
// the tool and the GrammarError's text).
ToolRequest parse_tools(const nlohmann::json& body, const nlohmann::ordered_json& ordered,
                        std::shared_ptr<const engine::Vocabulary> vocabulary, std::string call_key);

// OpenAI's rule for function names: 1 to 64 letters, digits, '_' or '-' (which also keeps
// names, written raw into prompts, from holding a template's control tokens).
bool valid_tool_name(const std::string& name);

// "call_" and 24 random letters and digits.
std::string new_tool_call_id();

// A piece of the calls for the stream: a call opens with its id and name (arguments "" then),
// then its arguments' text follows in pieces.
struct ToolCallDelta {
  size_t index = 0;
  bool opens = false;
  std::string id, name;  // when it opens
  std::string arguments;
};

// Splits the text of generated calls into calls as it arrives; the arguments' text is passed
// on as written (the SDKs concatenate it). Text that does not follow the grammar's call form
// (never expected under it) leaves the calls incomplete.
class ToolCallStream {
 public:
  explicit ToolCallStream(std::string call_key);
  std::vector<ToolCallDelta> feed(std::string_view text);
  // Every call opened has been closed, and at least one was made.
  bool complete() const;

  struct Call {
    std::string id, name, arguments;
  };
  const std::vector<Call>& calls() const { return calls_; }

 private:
  enum class State { kBetween, kHead, kArgsStart, kArgs, kAfterArgs, kBroken };
  void byte(char ch, std::vector<ToolCallDelta>& out);
  std::string call_key_;
  State state_ = State::kBetween;
  std::string head_;  // the call object's text from '{' up to its arguments
  int depth_ = 0;     // nesting inside the arguments
  bool in_string_ = false, escaped_ = false, scalar_ = false;
  bool open_ = false;  // a call has opened and not closed
  std::vector<Call> calls_;
};

// A choice's message for a non-streaming answer: content, or (when the text is calls) content
// null and tool_calls (legacy: function_call). A finish_reason "stop" becomes "tool_calls"
// ("function_call") for calls; calls cut short (max_tokens) come back as content.
nlohmann::json chat_message(const ToolRequest& tools, const std::string& text,
                            std::string& finish_reason);

// One choice's stream: content deltas until the text shows itself to be calls (its first byte),
// then tool_calls deltas as the OpenAI SDK assembles them.
class ToolDeltas {
 public:
  ToolDeltas() = default;
  explicit ToolDeltas(const ToolRequest& tools);
  // The delta objects for the next piece of text ({"content": ...} or {"tool_calls": [...]}).
  std::vector<nlohmann::json> deltas(std::string_view text);
  // The finish_reason to send for the engine's.
  std::string finish_reason(const std::string& engine_reason) const;

 private:
  enum class Mode { kUndecided, kText, kCalls };
  std::shared_ptr<const engine::JsonGrammar> grammar_;  // null: no calls, all text
  bool legacy_ = false;
  std::string call_key_;
  Mode mode_ = Mode::kUndecided;
  std::shared_ptr<ToolCallStream> calls_;
};

}  // namespace kdr::server
