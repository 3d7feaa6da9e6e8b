// The OpenAI wire format, apart from HTTP: request bodies of /v1/chat/completions and
// /v1/completions parsed and validated into an engine::Request, and the JSON (or Server-Sent
// Events text) of the answers. Every refusal is an ApiError carrying the HTTP status and the
// body OpenAI's clients expect: {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "server/tool_calls.h"

namespace kdr::model {
class Tokenizer;
struct ChatTemplate;
}  // namespace kdr::model

namespace kdr::engine {
class Vocabulary;
}

namespace kdr::server {

// A request refused with an HTTP status. `param` names the offending field ("" = null);
// `code` is OpenAI's machine-readable reason ("" = null).
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "");
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // OpenAI's error type for the status: invalid_request_error, authentication_error, ...
  std::string type() const;
  // {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
  nlohmann::json to_json() const;

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// A 400 refusal naming the field `param`.
ApiError bad_request(const std::string& param, const std::string& message);
// A field of a request object, or null when absent or null: OpenAI's API treats an explicit
// null as "not given".
const nlohmann::json* optional_field(const nlohmann::json& obj, const char* name);

// Serializes for the wire. Invalid UTF-8 (never expected: engine text is whole characters)
// becomes U+FFFD rather than an exception in the middle of a response.
std::string dump_json(const nlohmann::json& j);

// What request parsing needs to know about the model being served.
struct ServedModel {
  std::string id;  // the name clients send as "model" and /v1/models lists
  const model::Tokenizer* tokenizer = nullptr;
  const model::ChatTemplate* chat = nullptr;  // null: chat completions are refused
  int32_t max_model_len = 0;                  // prompt + completion tokens at most
  // For response_format json_object / json_schema; null: those formats are refused.
  std::shared_ptr<const engine::Vocabulary> vocabulary;
  // For the discovery routes of routers (/server_info, /model_info).
  std::string path;
  std::string arch;              // model::arch_name
  int32_t max_running = 0;       // --max-num-seqs
  int64_t max_total_tokens = 0;  // tokens the KV pool holds
  int32_t max_step_tokens = 0;   // --max-batched-tokens
  std::string version;           // "kdr 0.1.0"
};

// GET /server_info and /model_info (and their older /get_* names): what sglang-router and
// vllm-router read from a worker to register it under the served model's name.
nlohmann::json server_info_response(const ServedModel& model);
nlohmann::json model_info_response(const ServedModel& model);

enum class Endpoint { kChatCompletions, kCompletions };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChatCompletions;
  engine::Request request;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  ToolRequest tools;           // chat: tools, tool_choice, parallel_tool_calls
};

// Parses a request body. `seed` is used when the body has none (OpenAI samples afresh on
// every request without one). Throws ApiError: 400 for malformed or invalid requests
// (the message and param name the field), 404 for a model other than the served one.
CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint,
                                           const ServedModel& model, uint64_t seed);

// Parses the body as a JSON object; 400 naming the parser's complaint otherwise. Bodies that
// are not UTF-8 are refused with the offset of the first bad byte.
nlohmann::json parse_json_object(std::string_view body);

// POST /tokenize {"content": str, "add_special": bool = false} -> {"tokens": [...]}.
nlohmann::json tokenize_response(std::string_view body, const model::Tokenizer& tokenizer);
// POST /detokenize {"tokens": [int, ...]} -> {"content": str}.
nlohmann::json detokenize_response(std::string_view body, const model::Tokenizer& tokenizer);

// GET /v1/models.
nlohmann::json models_response(const std::string& model_id, int64_t created, int32_t max_model_len);

// The identity every chunk of one response repeats.
struct ResponseInfo {
  std::string id;  // chatcmpl-... or cmpl-...
  int64_t created = 0;
  std::string model;
};

// One choice (sample) of a request, gathered for a non-streaming answer.
struct ChoiceResult {
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<engine::TopLogprob>> top_logprobs;
  bool finished = false;
  std::string finish_reason;
  std::string error;  // finish_reason == "error"
  int32_t completion_tokens = 0;
};

// A whole request's outputs, its n choices by sample index.
struct CompletionResult {
  explicit CompletionResult(int32_t n = 1) : choices(static_cast<size_t>(n)) {}
  std::vector<ChoiceResult> choices;
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;
  void add(const engine::Output& out);
  bool finished() const;               // every choice has ended
  int32_t completion_tokens() const;   // over all choices, as OpenAI's usage counts them
  const ChoiceResult* failed() const;  // the first choice that ended in "error", or null
};

// chat.completion or text_completion object for a finished request.
nlohmann::json completion_response(const ResponseInfo& info, const CompletionRequest& request,
                                   const CompletionResult& result,
                                   const model::Tokenizer& tokenizer);

// Turns a request's Outputs into Server-Sent Events: "data: {chunk}\n\n" per chunk. Each
// chunk carries one choice, by its index: the role chunks of every choice first (chat), content
// chunks, a chunk with a choice's finish_reason when it ends; when every choice has ended, the
// usage chunk when asked for, then "data: [DONE]\n\n". A choice that fails (or a request
// cancelled by the server stopping) ends the whole stream with an error event.
class StreamEncoder {
 public:
  StreamEncoder(ResponseInfo info, const CompletionRequest& request,
                const model::Tokenizer& tokenizer);
  // The events `out` produces (possibly none), and the stream's end after the last one.
  std::string encode(const engine::Output& out);
  bool done() const { return done_; }  // the stream's end has been encoded

 private:
  struct Choice {
    bool finished = false;
    int32_t completion_tokens = 0;
    int64_t text_offset = 0;  // completions logprobs: characters emitted so far
    ToolDeltas tools;         // chat: content or tool_calls deltas
  };
  nlohmann::json chunk() const;
  std::string event(const nlohmann::json& chunk) const;
  ResponseInfo info_;
  Endpoint endpoint_;
  int32_t logprobs_;
  bool include_usage_;
  const model::Tokenizer* tokenizer_;
  std::vector<Choice> choices_;
  int32_t open_;  // choices not finished yet
  bool started_ = false;
  bool done_ = false;
};

}  // namespace kdr::server
