// Language-model backends: the OpenAI-compatible HTTP client (libcurl), the scripted backend
// for tests, the tolerant JSON reader, and the schema check the pipeline runs on replies (the
// engine's JsonGrammar, compiled without a vocabulary).
// The in-process engine backend lives in engine_backend.cc.
#include "hka/llm/llm.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/base64.h"
#include "engine/json_grammar.h"

namespace kdr::hka {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int64_t estimate_tokens(size_t bytes) { return static_cast<int64_t>(bytes / 4); }

int64_t estimate_prompt_tokens(const std::vector<ChatMessage>& messages) {
  size_t bytes = 0;
  for (const ChatMessage& m : messages) bytes += m.content.size();
  return estimate_tokens(bytes);
}

std::string clip(const std::string& s, size_t n) {
  return s.size() <= n ? s : s.substr(0, n) + "...";
}

// ---- OpenAI-compatible backend -----------------------------------------------------------------

struct HttpResult {
  CURLcode code = CURLE_OK;
  std::string transport_error;  // when code != CURLE_OK
  long status = 0;
  std::string body;
  double retry_after_s = -1.0;  // from a Retry-After header in seconds; -1 when absent
};

size_t append_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t read_header(char* data, size_t size, size_t n, void* user) {
  const std::string line(data, size * n);
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (name == "retry-after") {
      // Only the delay-seconds form; an HTTP date falls back on the backoff.
      const std::string value = line.substr(colon + 1);
      char* end = nullptr;
      const double s = std::strtod(value.c_str(), &end);
      if (end != value.c_str() && std::isfinite(s) && s >= 0)
        static_cast<HttpResult*>(user)->retry_after_s = s;
    }
  }
  return size * n;
}

// The server's own words for an error: error.message, error (a string) or message; else the
// start of the body.
std::string server_error_text(const std::string& body) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    if (j.contains("error")) {
      const json& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string())
        return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
    }
    if (j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
  }
  return clip(body, 300);
}

bool retryable_status(long status) {
  return status == 408 || status == 409 || status == 429 || (status >= 500 && status <= 599);
}

class OpenAiBackend : public LlmBackend {
 public:
  explicit OpenAiBackend(OpenAiConfig config) : config_(std::move(config)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    while (!config_.base_url.empty() && config_.base_url.back() == '/') config_.base_url.pop_back();
    url_ = config_.base_url + "/chat/completions";
    curl_ = curl_easy_init();
    if (!curl_) throw LlmError("openai backend: curl_easy_init failed");
  }
  ~OpenAiBackend() override { curl_easy_cleanup(curl_); }
  OpenAiBackend(const OpenAiBackend&) = delete;
  OpenAiBackend& operator=(const OpenAiBackend&) = delete;

  LlmReply complete(const LlmCall& call) override {
    const Clock::time_point start = Clock::now();
    const std::string model = model_for(call.role);
    bool with_schema = call.json_schema.has_value() && config_.json_schema && !schema_refused_;
    std::string body = request_body(call, model, with_schema);
    double backoff = config_.backoff_s;
    int32_t retries = 0;
    int32_t attempts = 0;
    for (;;) {
      ++attempts;
      const HttpResult r = post(body);
      std::string failure;
      if (r.code != CURLE_OK) {
        failure = r.transport_error;
      } else if (r.status == 200) {
        LlmReply reply = parse_reply(r.body, call);
        reply.attempts = attempts;
        reply.latency_s = seconds_since(start);
        if (reply.model.empty()) reply.model = model;
        return reply;
      } else {
        const std::string text = server_error_text(r.body);
        failure = "HTTP " + std::to_string(r.status) + ": " + text;
        if (r.status == 400 && with_schema && mentions_response_format(r.body)) {
          // The endpoint refuses structured output: ask without it from now on; the caller
          // reads the reply tolerantly and repairs it against the schema.
          schema_refused_ = true;
          with_schema = false;
          body = request_body(call, model, with_schema);
          continue;
        }
        if (!retryable_status(r.status))
          throw LlmError("openai backend: POST " + url_ + " (model " + model + "): " + failure);
      }
      if (retries >= config_.max_retries)
        throw LlmError("openai backend: POST " + url_ + " (model " + model + "): " + failure +
                       " (after " + std::to_string(attempts) + " attempts)");
      ++retries;
      double wait = backoff;
      if (r.retry_after_s >= 0) wait = std::min(r.retry_after_s, 30.0);
      backoff *= 2;
      if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
  }

  bool accepts_images(const std::string& role) const override {
    return std::find(config_.vision_roles.begin(), config_.vision_roles.end(), role) !=
           config_.vision_roles.end();
  }

  std::string describe() const override { return "openai:" + config_.base_url; }

 private:
  std::string model_for(const std::string& role) const {
    if (auto it = config_.models.find(role); it != config_.models.end()) return it->second;
    if (auto it = config_.models.find("default"); it != config_.models.end()) return it->second;
    return "default";
  }

  static bool mentions_response_format(const std::string& body) {
    return body.find("response_format") != std::string::npos ||
           body.find("json_schema") != std::string::npos;
  }

  std::string request_body(const LlmCall& call, const std::string& model, bool with_schema) const {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    for (const ChatMessage& m : call.messages) {
      if (m.image_png.empty()) {
        messages.push_back({{"role", m.role}, {"content", m.content}});
        continue;
      }
      nlohmann::ordered_json parts = nlohmann::ordered_json::array();
      parts.push_back({{"type", "text"}, {"text", m.content}});
      parts.push_back(
          {{"type", "image_url"},
           {"image_url", {{"url", "data:image/png;base64," + base64_encode(m.image_png)}}}});
      messages.push_back({{"role", m.role}, {"content", std::move(parts)}});
    }
    nlohmann::ordered_json body = {{"model", model},
                                   {"messages", std::move(messages)},
                                   {"max_tokens", call.max_tokens},
                                   {"temperature", call.temperature},
                                   {"seed", call.seed}};
    if (with_schema) {
      body["response_format"] = {
          {"type", "json_schema"},
          {"json_schema",
           {{"name", call.schema_name}, {"schema", *call.json_schema}, {"strict", true}}}};
    }
    // Text that is not valid UTF-8 is replaced rather than refused: a prompt built from
    // extracted documents may carry broken bytes.
    return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }

  HttpResult post(const std::string& body) {
    HttpResult r;
    curl_easy_reset(curl_);
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    // No "Expect: 100-continue" round trip for large bodies (images).
    headers = curl_slist_append(headers, "Expect:");
    std::string auth;
    if (!config_.api_key.empty()) {
      auth = "Authorization: Bearer " + config_.api_key;
      headers = curl_slist_append(headers, auth.c_str());
    }
    const long timeout_ms = std::max(1L, std::lround(config_.timeout_s * 1000.0));
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl_, CURLOPT_POST, 1L);
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 10000L));
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, read_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r);
    r.code = curl_easy_perform(curl_);
    if (r.code != CURLE_OK) {
      r.transport_error = errbuf[0] ? std::string(errbuf) : curl_easy_strerror(r.code);
    } else {
      curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    }
    curl_slist_free_all(headers);
    return r;
  }

  LlmReply parse_reply(const std::string& text, const LlmCall& call) const {
    auto fail = [&](const std::string& why) {
      return LlmError("openai backend: POST " + url_ + ": HTTP 200 but " + why);
    };
    const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) throw fail("the body is not a JSON object: " + clip(text, 200));
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty())
      throw fail("the answer has no choices: " + clip(text, 200));
    const json& choice = j["choices"][0];
    if (!choice.is_object() || !choice.contains("message") || !choice["message"].is_object())
      throw fail("choices[0] has no message");
    const json& message = choice["message"];
    if (!message.contains("content") || !message["content"].is_string()) {
      std::string why = "choices[0].message.content is null or missing";
      if (message.contains("refusal") && message["refusal"].is_string())
        why += " (refusal: " + message["refusal"].get<std::string>() + ")";
      throw fail(why);
    }
    LlmReply reply;
    reply.text = message["content"].get<std::string>();
    if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
      reply.finish_reason = choice["finish_reason"].get<std::string>();
    if (j.contains("model") && j["model"].is_string()) reply.model = j["model"].get<std::string>();
    reply.prompt_tokens = estimate_prompt_tokens(call.messages);
    reply.completion_tokens = estimate_tokens(reply.text.size());
    if (j.contains("usage") && j["usage"].is_object()) {
      const json& u = j["usage"];
      if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
        reply.prompt_tokens = u["prompt_tokens"].get<int64_t>();
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
        reply.completion_tokens = u["completion_tokens"].get<int64_t>();
    }
    return reply;
  }

  OpenAiConfig config_;
  std::string url_;
  CURL* curl_ = nullptr;
  bool schema_refused_ = false;  // the endpoint answered 400 to response_format once
};

// ---- tolerant JSON -----------------------------------------------------------------------------

constexpr size_t kMaxDepth = 512;

bool is_word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$';
}

// Rewrites the bracketed value that starts at text[start] into strict JSON, stopping where its
// brackets balance. `end` receives the offset after the last byte read.
enum class Scan { kComplete, kUnterminated, kBroken };

struct Scanner {
  const std::string& in;
  std::string out;
  std::string error;
  size_t pos = 0;

  void drop_trailing_comma() {
    size_t i = out.size();
    while (i > 0 && std::isspace(static_cast<unsigned char>(out[i - 1]))) --i;
    if (i > 0 && out[i - 1] == ',') out.erase(i - 1, 1);
  }

  // Copies the string whose opening quote is at `pos` as a double-quoted JSON string.
  bool string() {
    const char quote = in[pos++];
    out += '"';
    while (pos < in.size()) {
      const char c = in[pos];
      const auto u = static_cast<unsigned char>(c);
      if (c == quote) {
        ++pos;
        out += '"';
        return true;
      }
      if (c == '\\') {
        if (pos + 1 >= in.size()) break;
        const char e = in[pos + 1];
        if (e == '\'' && quote == '\'') {
          out += '\'';
          pos += 2;
        } else if (e == 'u') {
          bool hex4 = pos + 6 <= in.size();
          for (size_t k = 2; hex4 && k < 6; ++k)
            hex4 = pos + k < in.size() && std::isxdigit(static_cast<unsigned char>(in[pos + k]));
          if (hex4) {
            out.append(in, pos, 6);
            pos += 6;
          } else {
            out += "\\\\";
            ++pos;
          }
        } else if (std::string_view("\"\\/bfnrt").find(e) != std::string_view::npos) {
          out += c;
          out += e;
          pos += 2;
        } else {
          // An escape JSON does not know (\x, \', \a ...): keep the backslash literally.
          out += "\\\\";
          ++pos;
        }
        continue;
      }
      if (c == '"') {  // inside a single-quoted string
        out += "\\\"";
      } else if (u < 0x20) {
        static const char* kHex = "0123456789abcdef";
        switch (c) {
          case '\n':
            out += "\\n";
            break;
          case '\r':
            out += "\\r";
            break;
          case '\t':
            out += "\\t";
            break;
          default:
            out += "\\u00";
            out += kHex[u >> 4];
            out += kHex[u & 15];
        }
      } else {
        out += c;
      }
      ++pos;
    }
    return false;
  }

  Scan value(size_t start) {
    std::vector<char> stack;
    pos = start;
    while (pos < in.size()) {
      const char c = in[pos];
      if (c == '"' || c == '\'') {
        if (!string()) {
          error = "unterminated string";
          return Scan::kUnterminated;
        }
        continue;
      }
      if (c == '/' && pos + 1 < in.size() && in[pos + 1] == '/') {
        while (pos < in.size() && in[pos] != '\n') ++pos;
        continue;
      }
      if (c == '/' && pos + 1 < in.size() && in[pos + 1] == '*') {
        const size_t close = in.find("*/", pos + 2);
        if (close == std::string::npos) {
          error = "unterminated /* comment";
          return Scan::kUnterminated;
        }
        pos = close + 2;
        out += ' ';
        continue;
      }
      if (c == '{' || c == '[') {
        if (stack.size() >= kMaxDepth) {
          error = "nesting deeper than " + std::to_string(kMaxDepth);
          return Scan::kBroken;
        }
        stack.push_back(c == '{' ? '}' : ']');
        out += c;
        ++pos;
        continue;
      }
      if (c == '}' || c == ']') {
        if (stack.empty() || stack.back() != c) {
          error = std::string("mismatched '") + c + "' at offset " + std::to_string(pos);
          ++pos;
          return Scan::kBroken;
        }
        stack.pop_back();
        drop_trailing_comma();
        out += c;
        ++pos;
        if (stack.empty()) return Scan::kComplete;
        continue;
      }
      if (is_word_char(c)) {
        size_t e = pos;
        while (e < in.size() && is_word_char(in[e])) ++e;
        const std::string_view word(in.data() + pos, e - pos);
        if (word == "True") {
          out += "true";
        } else if (word == "False") {
          out += "false";
        } else if (word == "None") {
          out += "null";
        } else {
          out.append(word);
        }
        pos = e;
        continue;
      }
      out += c;
      ++pos;
    }
    error = std::to_string(stack.size()) + " bracket(s) still open at the end of the text";
    return Scan::kUnterminated;
  }
};

// The first complete object or array in `text`; a value that is opened and never closed ends
// the search (a reply cut off by max_tokens: an inner piece of it would mislead).
// `span` receives where the value found starts and ends.
std::optional<json> first_value(const std::string& text, std::string& error,
                                std::pair<size_t, size_t>* span = nullptr) {
  size_t from = 0;
  for (;;) {
    const size_t start = text.find_first_of("{[", from);
    if (start == std::string::npos) break;
    Scanner scanner{text, {}, {}, 0};
    const Scan result = scanner.value(start);
    if (result == Scan::kComplete) {
      json j = json::parse(scanner.out, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) {
        if (span) *span = {start, scanner.pos};
        return j;
      }
      if (error.empty()) error = "not JSON even after repair: " + clip(scanner.out, 120);
    } else {
      if (error.empty()) error = scanner.error;
      if (result == Scan::kUnterminated) return std::nullopt;
    }
    from = std::max(scanner.pos, start + 1);
  }
  return std::nullopt;
}

// The body of the first ``` fence (its language tag skipped), when there is one.
std::optional<std::string> fenced(const std::string& text) {
  const size_t open = text.find("```");
  if (open == std::string::npos) return std::nullopt;
  size_t body = text.find('\n', open + 3);
  if (body == std::string::npos) return std::nullopt;
  ++body;
  const size_t close = text.find("```", body);
  return text.substr(body, close == std::string::npos ? std::string::npos : close - body);
}

}  // namespace

// ---- public functions ---------------------------------------------------------------------------

OpenAiConfig load_openai_config(const std::filesystem::path& file) {
  const std::string where = "openai config " + file.string();
  std::ifstream in(file, std::ios::binary);
  if (!in) throw LlmError(where + ": cannot be read");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const json j = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw LlmError(where + ": not valid JSON");
  if (!j.is_object()) throw LlmError(where + ": must be a JSON object");
  auto wrong = [&](const std::string& key, const std::string& want) {
    return LlmError(where + ": '" + key + "' must be " + want);
  };
  OpenAiConfig c;
  std::string key_env = "OPENAI_API_KEY";
  for (const auto& [key, v] : j.items()) {
    if (key == "url") {
      if (!v.is_string() || v.get<std::string>().empty()) throw wrong(key, "a non-empty string");
      c.base_url = v.get<std::string>();
    } else if (key == "api_key_env") {
      if (!v.is_string()) throw wrong(key, "a string (an environment variable's name)");
      key_env = v.get<std::string>();
    } else if (key == "models") {
      if (!v.is_object()) throw wrong(key, "an object mapping roles to model names");
      for (const auto& [role, m] : v.items()) {
        if (!m.is_string() || m.get<std::string>().empty())
          throw wrong("models." + role, "a non-empty string");
        c.models[role] = m.get<std::string>();
      }
    } else if (key == "vision_roles") {
      if (!v.is_array()) throw wrong(key, "an array of role names");
      for (const json& r : v) {
        if (!r.is_string()) throw wrong(key, "an array of role names");
        c.vision_roles.push_back(r.get<std::string>());
      }
    } else if (key == "timeout_s") {
      if (!v.is_number() || !(v.get<double>() > 0)) throw wrong(key, "a positive number");
      c.timeout_s = v.get<double>();
    } else if (key == "max_retries") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 100)
        throw wrong(key, "an integer in [0, 100]");
      c.max_retries = static_cast<int32_t>(v.get<int64_t>());
    } else if (key == "backoff_s") {
      if (!v.is_number() || !(v.get<double>() >= 0) || v.get<double>() > 600)
        throw wrong(key, "a number in [0, 600]");
      c.backoff_s = v.get<double>();
    } else if (key == "json_schema") {
      if (!v.is_boolean()) throw wrong(key, "true or false");
      c.json_schema = v.get<bool>();
    } else {
      // A misspelt key would otherwise be silently ignored.
      throw LlmError(where + ": unknown key '" + key +
                     "' (known: url, api_key_env, models, vision_roles, timeout_s, max_retries, "
                     "backoff_s, json_schema)");
    }
  }
  if (c.models.empty())
    throw LlmError(where + ": 'models' needs a model for \"default\" (or one per role)");
  if (const char* k = std::getenv(key_env.c_str())) c.api_key = k;
  return c;
}

std::unique_ptr<LlmBackend> make_openai_backend(const OpenAiConfig& config) {
  return std::make_unique<OpenAiBackend>(config);
}

void ScriptedBackend::on(const std::string& role, Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  handlers_[role] = std::move(handler);
}

LlmReply ScriptedBackend::complete(const LlmCall& call) {
  const Clock::time_point start = Clock::now();
  Handler handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(call);
    auto it = handlers_.find(call.role);
    if (it == handlers_.end()) it = handlers_.find("*");
    if (it == handlers_.end()) throw LlmError("scripted backend: no answer for role " + call.role);
    handler = it->second;
  }
  LlmReply reply;
  reply.text = handler(call);
  reply.prompt_tokens = estimate_prompt_tokens(call.messages);
  reply.completion_tokens = estimate_tokens(reply.text.size());
  reply.model = "scripted";
  reply.finish_reason = "stop";
  reply.latency_s = seconds_since(start);
  return reply;
}

std::vector<LlmCall> ScriptedBackend::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

int32_t ScriptedBackend::count(const std::string& role) const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int32_t>(std::count_if(calls_.begin(), calls_.end(),
                                            [&](const LlmCall& c) { return c.role == role; }));
}

std::optional<nlohmann::json> parse_tolerant_json(const std::string& text, std::string* error) {
  std::string why;
  try {
    std::pair<size_t, size_t> span;
    std::optional<json> whole = first_value(text, why, &span);
    // A fenced block is what the model meant even when the prose around it has brackets,
    // unless the fence lies inside the value found (code in a JSON string).
    const size_t fence = text.find("```");
    const bool fence_inside = whole && fence > span.first && fence < span.second;
    if (!fence_inside) {
      if (const std::optional<std::string> body = fenced(text)) {
        std::string fence_error;
        if (std::optional<json> j = first_value(*body, fence_error)) return j;
      }
    }
    if (whole) return whole;
    if (why.empty()) {
      // No object or array: a bare scalar answer ("42", "\"yes\"") is still a value.
      json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) return j;
      why = "no JSON object or array in the text";
    }
  } catch (const std::exception& e) {
    why = std::string("unreadable: ") + e.what();
  } catch (...) {
    why = "unreadable";
  }
  if (error) *error = why;
  return std::nullopt;
}

std::string schema_violation(const nlohmann::json& value, const nlohmann::ordered_json& schema) {
  // The engine's grammar is the one reading of the schema language: what it would generate
  // passes. Compiled once per schema text, since every answer of a role repeats its schema.
  struct Compiled {
    std::shared_ptr<const engine::JsonGrammar> grammar;
    std::string error;  // the GrammarError when the schema is not supported
  };
  static std::mutex mu;
  static std::map<std::string, Compiled> cache;
  std::shared_ptr<const engine::JsonGrammar> grammar;
  {
    std::lock_guard<std::mutex> lock(mu);
    const std::string key = schema.dump();
    auto it = cache.find(key);
    if (it == cache.end()) {
      if (cache.size() >= 256) cache.clear();  // schemas are few; this only bounds a leak
      Compiled c;
      try {
        c.grammar = engine::JsonGrammar::from_schema(schema, nullptr);
      } catch (const engine::GrammarError& e) {
        c.error = e.what();
      }
      it = cache.emplace(key, std::move(c)).first;
    }
    if (!it->second.grammar) return "schema not supported: " + it->second.error;
    grammar = it->second.grammar;
  }
  return grammar->violation(value);
}

}  // namespace kdr::hka
