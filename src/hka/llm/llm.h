// Language-model backends of the research agent.
//
// Every role of the pipeline (planner, supervisor, rerank, coder, insight, vision, extract,
// writer) talks to an LlmBackend through one call shape: chat messages in, text out, with an
// optional JSON schema the reply must follow. Three backends:
//   - the in-process engine on a local model (the default; the schema becomes a token mask,
//     so the reply always parses),
//   - any OpenAI-compatible endpoint over HTTP (a model per role from a config file, the key
//     from an environment variable, timeouts, retries with exponential backoff on 429/5xx
//     and transport errors, response_format json_schema with a fallback for endpoints that
//     refuse it),
//   - a scripted backend for tests: deterministic answers per role.
// Backends count tokens and time; the caller writes them to trace.jsonl.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace kdr::hka {

// The backend could not produce an answer (transport failure after every retry, an HTTP
// error that retrying cannot fix, a refused request). The message names the endpoint or
// model, the HTTP status and the server's error text when there is one.
class LlmError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ChatMessage {
  std::string role;       // "system", "user" or "assistant"
  std::string content;    // text
  std::string image_png;  // optional raw PNG bytes shown with a user message (vision roles)
};

struct LlmCall {
  std::string role;  // pipeline role, selects the model (OpenAI config) and the script (tests)
  std::vector<ChatMessage> messages;
  // When set, the reply must be one JSON value valid under this schema (the subset that
  // engine::JsonGrammar accepts: type, properties, required, items, enum, min/maxItems ...).
  std::optional<nlohmann::ordered_json> json_schema;
  std::string schema_name = "answer";  // response_format.json_schema.name
  int32_t max_tokens = 512;
  double temperature = 0.0;
  uint64_t seed = 0;
};

struct LlmReply {
  std::string text;
  int64_t prompt_tokens = 0;  // from the endpoint's usage, else estimated (bytes / 4)
  int64_t completion_tokens = 0;
  double latency_s = 0.0;     // wall time of the whole call, retries included
  int32_t attempts = 1;       // HTTP attempts made (1 when no retry was needed)
  std::string model;          // the model that answered
  std::string finish_reason;  // "stop", "length", ...
};

class LlmBackend {
 public:
  virtual ~LlmBackend() = default;
  // Thread-compatible: the pipeline calls it from one thread. Throws LlmError.
  virtual LlmReply complete(const LlmCall& call) = 0;
  // Whether `role` may be sent an image (ChatMessage::image_png).
  virtual bool accepts_images(const std::string& role) const = 0;
  // "engine:<model file>", "openai:<url>" or "scripted": for the trace and the report.
  virtual std::string describe() const = 0;
  // Something the user should know about the model ("" for nothing): the engine backend on a
  // model file without a chat template, whose turns follow its architecture's format.
  virtual std::string note() const { return ""; }
};

// The OpenAI-compatible backend's settings. A config file (JSON) looks like
//   {"url": "http://127.0.0.1:8080/v1", "api_key_env": "OPENAI_API_KEY",
//    "models": {"default": "qwen3", "coder": "qwen3-coder", "vision": "qwen3-vl"},
//    "vision_roles": ["vision"], "timeout_s": 120, "max_retries": 3, "backoff_s": 1.0,
//    "json_schema": true}
// Every key is optional except a model for "default" (or per role).
struct OpenAiConfig {
  std::string base_url = "http://127.0.0.1:8080/v1";  // the part before /chat/completions
  std::string api_key;                        // sent as "Authorization: Bearer KEY" when not empty
  std::map<std::string, std::string> models;  // role -> model; "default" for the rest
  std::vector<std::string> vision_roles;      // roles whose model accepts images
  double timeout_s = 120.0;                   // per HTTP attempt
  int32_t max_retries = 3;                    // attempts after the first
  double backoff_s = 1.0;                     // first wait; doubles each retry
  bool json_schema = true;  // send response_format json_schema (false: prompt + repair only)
};

// Reads a config file; the key is read from the environment variable the file names
// (api_key_env, default OPENAI_API_KEY). Throws LlmError naming the file and the key that is
// wrong (not JSON, a field of the wrong type, no model for "default").
OpenAiConfig load_openai_config(const std::filesystem::path& file);

std::unique_ptr<LlmBackend> make_openai_backend(const OpenAiConfig& config);

struct EngineBackendOptions {
  std::string model_path;  // empty: the embedded default model
  int32_t threads = 0;     // 0: all cores
  int64_t kv_memory_bytes = int64_t{512} << 20;
  int32_t max_model_len = 8192;  // prompt + reply tokens at most
};

// Loads the model once; each call formats the messages with the model's chat template and
// runs them on an engine::Engine, the schema (if any) compiled to a JsonGrammar.
std::unique_ptr<LlmBackend> make_engine_backend(const EngineBackendOptions& options);

// Deterministic answers for tests: a handler per role (or "*" for any role). Every call is
// recorded. A handler may throw LlmError to simulate a failing endpoint.
class ScriptedBackend : public LlmBackend {
 public:
  using Handler = std::function<std::string(const LlmCall&)>;
  void on(const std::string& role, Handler handler);
  void set_accepts_images(bool accepts) { images_ = accepts; }
  LlmReply complete(const LlmCall& call) override;
  bool accepts_images(const std::string&) const override { return images_; }
  std::string describe() const override { return "scripted"; }
  std::vector<LlmCall> calls() const;
  // Calls made so far with `role`.
  int32_t count(const std::string& role) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, Handler> handlers_;
  std::vector<LlmCall> calls_;
  bool images_ = false;
};

// The JSON value a model meant, from text that may wrap it in prose or ``` fences, or bend
// JSON a little: trailing commas, // and /* */ comments, single-quoted strings, Python's
// True/False/None, raw newlines inside strings. The first complete object or array in the
// text wins. Returns nullopt (and the reason in *error) when nothing usable is there.
std::optional<nlohmann::json> parse_tolerant_json(const std::string& text,
                                                  std::string* error = nullptr);

// The first way `value` breaks `schema` (same subset as LlmCall::json_schema), as
// "<json pointer>: <problem>", e.g. "/subtasks/0/goal: expected a string"; empty when valid.
// Valid means what the engine would generate under the schema (engine::JsonGrammar::violation):
// properties the schema does not list are refused, as are numbers past its digit limits. A
// schema the grammar cannot compile gives "schema not supported: <why>".
std::string schema_violation(const nlohmann::json& value, const nlohmann::ordered_json& schema);

}  // namespace kdr::hka
