#include "server/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/json_grammar.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace kdr::server {

using nlohmann::json;

ApiError::ApiError(int status, const std::string& message, std::string param, std::string code)
    : std::runtime_error(message),
      status_(status),
      param_(std::move(param)),
      code_(std::move(code)) {}

std::string ApiError::type() const {
  switch (status_) {
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    default:
      return status_ >= 500 ? "server_error" : "invalid_request_error";
  }
}

json ApiError::to_json() const {
  json e = {{"message", what()}, {"type", type()}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) e["param"] = param_;
  if (!code_.empty()) e["code"] = code_;
  return {{"error", std::move(e)}};
}

std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

ApiError bad_request(const std::string& param, const std::string& message) {
  return ApiError(400, message, param);
}

const json* optional_field(const json& obj, const char* name) {
  const auto it = obj.find(name);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

namespace {

double get_number(const json& obj, const char* name, double fallback) {
  const json* v = optional_field(obj, name);
  if (!v) return fallback;
  if (!v->is_number()) throw bad_request(name, std::string("'") + name + "' must be a number");
  return v->get<double>();
}

int64_t get_integer(const json& obj, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const json* v = optional_field(obj, name);
  if (!v) return fallback;
  if (!v->is_number_integer())
    throw bad_request(name, std::string("'") + name + "' must be an integer");
  const bool too_big = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi);
  const int64_t x = too_big ? hi : v->get<int64_t>();
  if (too_big || x < lo || x > hi) {
    const std::string range = hi == std::numeric_limits<int64_t>::max()
                                  ? ">= " + std::to_string(lo)
                                  : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    throw bad_request(name, std::string("'") + name + "' must be " + range + ", got " + v->dump());
  }
  return x;
}

bool get_bool(const json& obj, const char* name, bool fallback) {
  const json* v = optional_field(obj, name);
  if (!v) return fallback;
  if (!v->is_boolean()) throw bad_request(name, std::string("'") + name + "' must be a boolean");
  return v->get<bool>();
}

// Rejects options whose silent omission would change what the client gets.
void reject_unsupported(const json& body) {
  if (const json* b = optional_field(body, "logit_bias"); b && !(b->is_object() && b->empty()))
    throw bad_request("logit_bias", "'logit_bias' is not supported");
  if (get_bool(body, "echo", false)) throw bad_request("echo", "'echo' is not supported");
  if (const json* s = optional_field(body, "suffix");
      s && !(s->is_string() && s->get_ref<const std::string&>().empty()))
    throw bad_request("suffix", "'suffix' is not supported");
  if (get_integer(body, "best_of", 1, 1, std::numeric_limits<int64_t>::max()) != 1)
    throw bad_request("best_of",
                      "'best_of' must be 1: kdr returns every sample it draws (ask with 'n')");
}

engine::SamplingParams parse_sampling(const json& body, uint64_t default_seed) {
  engine::SamplingParams s;
  s.temperature = static_cast<float>(get_number(body, "temperature", 1.0));
  s.top_p = static_cast<float>(get_number(body, "top_p", 1.0));
  // vLLM spells "off" as -1, kdr as 0.
  s.top_k = static_cast<int32_t>(get_integer(body, "top_k", 0, -1, 1 << 30));
  if (s.top_k < 0) s.top_k = 0;
  s.min_p = static_cast<float>(get_number(body, "min_p", 0.0));
  s.presence_penalty = static_cast<float>(get_number(body, "presence_penalty", 0.0));
  s.frequency_penalty = static_cast<float>(get_number(body, "frequency_penalty", 0.0));
  s.repetition_penalty = static_cast<float>(get_number(body, "repetition_penalty", 1.0));
  s.seed = default_seed;
  if (const json* seed = optional_field(body, "seed")) {
    if (!seed->is_number_integer()) throw bad_request("seed", "'seed' must be an integer");
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                        : static_cast<uint64_t>(seed->get<int64_t>());
  }
  try {
    s.validate();
  } catch (const std::invalid_argument& e) {
    // validate() starts its message with the field's name.
    const std::string msg = e.what();
    throw bad_request(msg.substr(0, msg.find(' ')), msg);
  }
  return s;
}

std::vector<std::string> parse_stop(const json& body) {
  const json* v = optional_field(body, "stop");
  if (!v) return {};
  std::vector<std::string> stop;
  if (v->is_string()) {
    stop.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > 4)
      throw bad_request("stop", "'stop' holds at most 4 strings, got " + std::to_string(v->size()));
    for (const json& s : *v) {
      if (!s.is_string())
        throw bad_request("stop", "'stop' must be a string or an array of strings");
      stop.push_back(s.get<std::string>());
    }
  } else {
    throw bad_request("stop", "'stop' must be a string or an array of strings");
  }
  for (const std::string& s : stop)
    if (s.empty()) throw bad_request("stop", "'stop' strings must not be empty");
  return stop;
}

// `text` is the body again: the schema is re-read from it as ordered_json, because json sorts
// object keys and the grammar emits properties in the schema's order.
std::shared_ptr<const engine::JsonGrammar> parse_response_format(const json& body,
                                                                 std::string_view text,
                                                                 const ServedModel& model) {
  const json* rf = optional_field(body, "response_format");
  if (!rf) return nullptr;
  if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
    throw bad_request("response_format",
                      "'response_format' must be an object with a string 'type'");
  const std::string type = (*rf)["type"].get<std::string>();
  if (type == "text") return nullptr;
  if (type != "json_object" && type != "json_schema")
    throw bad_request("response_format.type",
                      "'response_format.type' must be text, json_object or "
                      "json_schema, got '" +
                          type + "'");
  if (!model.vocabulary)
    throw bad_request("response_format",
                      "response_format " + type + " is not available on this server");
  if (type == "json_object") return engine::JsonGrammar::any_object(model.vocabulary);
  const json* js = optional_field(*rf, "json_schema");
  if (!js || !js->is_object())
    throw bad_request("response_format.json_schema",
                      "response_format json_schema needs a 'json_schema' object");
  const json* schema = optional_field(*js, "schema");
  if (!schema || !(schema->is_object() || schema->is_boolean()))
    throw bad_request("response_format.json_schema.schema",
                      "'response_format.json_schema.schema' must be a JSON Schema object");
  try {
    const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(text);
    return engine::JsonGrammar::from_schema(ordered["response_format"]["json_schema"]["schema"],
                                            model.vocabulary);
  } catch (const engine::GrammarError& e) {
    throw bad_request("response_format.json_schema.schema", e.what());
  }
}

std::string message_content(const json& m, const std::string& where) {
  const json* c = optional_field(m, "content");
  if (!c) throw bad_request("messages", where + ".content is required");
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array())
    throw bad_request("messages", where + ".content must be a string or an array of text parts");
  std::string text;
  for (size_t i = 0; i < c->size(); ++i) {
    const json& part = (*c)[i];
    const std::string at = where + ".content[" + std::to_string(i) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      throw bad_request("messages", at + " must be an object with a string 'type'");
    const std::string type = part["type"].get<std::string>();
    if (type != "text")
      throw bad_request("messages",
                        at + ".type '" + type + "' is not supported: kdr serves text models");
    if (!part.contains("text") || !part["text"].is_string())
      throw bad_request("messages", at + ".text must be a string");
    // Parts are joined by newlines, as vLLM does.
    if (i > 0) text += '\n';
    text += part["text"].get<std::string>();
  }
  return text;
}

// An assistant message's tool_calls (or legacy function_call), arguments parsed.
std::vector<model::ChatToolCall> message_tool_calls(const json& m, const std::string& where) {
  std::vector<model::ChatToolCall> calls;
  const auto call = [&](const json& f, const std::string& at, std::string id) {
    if (!f.is_object()) throw bad_request("messages", at + " must be an object");
    const json* name = optional_field(f, "name");
    if (!name || !name->is_string() || !valid_tool_name(name->get<std::string>()))
      throw bad_request("messages",
                        at + ".name must be a function name (1 to 64 letters, digits, '_' "
                             "or '-')");
    const json* args = optional_field(f, "arguments");
    if (!args || !args->is_string())
      throw bad_request("messages", at + ".arguments must be a string of JSON");
    const nlohmann::ordered_json parsed =
        nlohmann::ordered_json::parse(args->get<std::string>(), nullptr, false);
    if (parsed.is_discarded()) throw bad_request("messages", at + ".arguments is not valid JSON");
    calls.push_back({std::move(id), name->get<std::string>(), parsed});
  };
  if (const json* tc = optional_field(m, "tool_calls")) {
    if (!tc->is_array()) throw bad_request("messages", where + ".tool_calls must be an array");
    for (size_t j = 0; j < tc->size(); ++j) {
      const std::string at = where + ".tool_calls[" + std::to_string(j) + "]";
      const json& c = (*tc)[j];
      if (!c.is_object() || !optional_field(c, "function"))
        throw bad_request("messages", at + " must be an object with a 'function'");
      const json* id = optional_field(c, "id");
      if (id && !id->is_string()) throw bad_request("messages", at + ".id must be a string");
      call(c["function"], at + ".function", id ? id->get<std::string>() : "");
    }
  } else if (const json* fc = optional_field(m, "function_call")) {
    call(*fc, where + ".function_call", "");
  }
  return calls;
}

std::vector<int32_t> chat_prompt(const json& body, const ServedModel& model,
                                 const ToolRequest& tools) {
  if (!model.chat)
    throw bad_request("messages",
                      "model '" + model.id +
                          "' has no chat template kdr knows (gemma3, llama3, chatml): use "
                          "/v1/completions");
  const json* ms = optional_field(body, "messages");
  if (!ms || !ms->is_array() || ms->empty())
    throw bad_request("messages", "'messages' must be a non-empty array");
  std::vector<model::ChatMessage> messages;
  for (size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw bad_request("messages", where + " must be an object");
    const json* role = optional_field(m, "role");
    if (!role || !role->is_string())
      throw bad_request("messages", where + ".role must be a string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r == "function") r = "tool";     // the legacy functions' result
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      throw bad_request("messages",
                        where + ".role must be system, developer, user, assistant or tool, got '" +
                            role->get<std::string>() + "'");
    model::ChatMessage message{r, ""};
    if (r == "assistant") message.tool_calls = message_tool_calls(m, where);
    // An assistant turn that made calls may have no content.
    if (!(message.tool_calls.size() > 0 && !optional_field(m, "content")))
      message.content = message_content(m, where);
    if (r == "tool") {
      // The call it answers names the function; the legacy form names it itself.
      const json* id = optional_field(m, "tool_call_id");
      const json* name = optional_field(m, "name");
      if (!id && !name) throw bad_request("messages", where + ".tool_call_id is required");
      if (id && !id->is_string())
        throw bad_request("messages", where + ".tool_call_id must be a string");
      if (id) message.tool_call_id = id->get<std::string>();
      for (const model::ChatMessage& earlier : messages)
        for (const model::ChatToolCall& c : earlier.tool_calls)
          if (!message.tool_call_id.empty() && c.id == message.tool_call_id) message.name = c.name;
      if (message.name.empty() && name && name->is_string() &&
          valid_tool_name(name->get<std::string>()))
        message.name = name->get<std::string>();
    }
    messages.push_back(std::move(message));
  }
  // The template writes bos itself where the family wants it; contents stay text (a user
  // cannot write another role's turn marker).
  try {
    return model::encode_chat(*model.chat, *model.tokenizer, messages,
                              /*add_generation_prompt=*/true, /*content_control_tokens=*/false,
                              tools.tools);
  } catch (const model::ChatTemplateError& e) {
    const std::string what = e.what();
    throw bad_request(what.rfind("tools[", 0) == 0 ? "tools" : "messages", what);
  }
}

std::vector<int32_t> token_ids(const json& arr, int32_t n_vocab, const char* param) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& t = arr[i];
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= n_vocab ||
        (t.is_number_unsigned() && t.get<uint64_t>() >= static_cast<uint64_t>(n_vocab)))
      throw bad_request(param, std::string("'") + param + "[" + std::to_string(i) +
                                   "]' must be a token id in [0, " + std::to_string(n_vocab) +
                                   "), got " + t.dump());
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return ids;
}

std::vector<int32_t> completion_prompt(const json& body, const ServedModel& model) {
  const json* p = optional_field(body, "prompt");
  const char* shapes = "'prompt' must be a string, an array of token ids or an array of one string";
  if (!p) throw bad_request("prompt", "'prompt' is required");
  auto encode = [&](const json& s) {
    return model.tokenizer->encode(s.get<std::string>(), /*add_special=*/true,
                                   /*parse_special=*/true);
  };
  if (p->is_string()) return encode(*p);
  if (!p->is_array() || p->empty()) throw bad_request("prompt", shapes);
  if ((*p)[0].is_number()) return token_ids(*p, model.tokenizer->n_vocab(), "prompt");
  if (p->size() > 1)
    throw bad_request("prompt", "'prompt' holds " + std::to_string(p->size()) +
                                    " prompts; kdr answers one prompt per request");
  if ((*p)[0].is_string()) return encode((*p)[0]);
  if ((*p)[0].is_array()) return token_ids((*p)[0], model.tokenizer->n_vocab(), "prompt");
  throw bad_request("prompt", shapes);
}

// The key path (`a.b[2]`) of the value at which a SAX parse fails: names the field of a
// number too large for a double, which nlohmann reports only by its text.
class FailurePath final : public nlohmann::json_sax<json> {
 public:
  std::string path;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override { return open(false); }
  bool key(string_t& k) override {
    frames_.back().key = k;
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(true); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    for (const Frame& f : frames_) {
      if (f.array) {
        path += "[" + std::to_string(f.index) + "]";
      } else {
        if (!path.empty()) path += ".";
        path += f.key;
      }
    }
    return false;
  }

 private:
  struct Frame {
    bool array = false;
    std::string key;
    size_t index = 0;
  };
  bool value() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
    return true;
  }
  bool open(bool array) {
    frames_.push_back({array, "", 0});
    return true;
  }
  bool close() {
    frames_.pop_back();
    return value();
  }
  std::vector<Frame> frames_;
};

}  // namespace

json parse_json_object(std::string_view body) {
  const std::string clean = model::utf8_sanitize(body);
  if (clean != body) {
    const size_t at = static_cast<size_t>(
        std::mismatch(body.begin(), body.end(), clean.begin(), clean.end()).first - body.begin());
    throw ApiError(400, "request body is not valid UTF-8 (first bad byte at offset " +
                            std::to_string(at) + ")");
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    // nlohmann prefixes "[json.exception.parse_error.101] ": the rest is for people.
    std::string what = e.what();
    if (const size_t close = what.find("] ");
        what.rfind("[json.", 0) == 0 && close != std::string::npos)
      what = what.substr(close + 2);
    throw ApiError(400, "invalid JSON body: " + what);
  } catch (const json::out_of_range& e) {
    // A number beyond a double's range (1e400): nlohmann names only the number's text.
    FailurePath where;
    json::sax_parse(body, &where);
    std::string what = e.what();
    const size_t quote = what.find('\'');
    const std::string number = quote == std::string::npos
                                   ? what
                                   : what.substr(quote, std::min<size_t>(what.size() - quote, 64));
    throw ApiError(400, "invalid JSON body: the number " + number +
                            (where.path.empty() ? std::string() : " at '" + where.path + "'") +
                            " is too large for a double");
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

CompletionRequest parse_completion_request(std::string_view text, Endpoint endpoint,
                                           const ServedModel& model, uint64_t seed) {
  const json body = parse_json_object(text);
  CompletionRequest req;
  req.endpoint = endpoint;
  if (const json* m = optional_field(body, "model")) {
    if (!m->is_string()) throw bad_request("model", "'model' must be a string");
    // "unknown" is what sglang-router forwards for a request that named no model: as if
    // none were named.
    if (m->get<std::string>() != model.id && m->get<std::string>() != "unknown")
      throw ApiError(404,
                     "model '" + m->get<std::string>() +
                         "' does not exist; this server "
                         "serves '" +
                         model.id + "'",
                     "model", "model_not_found");
  }
  reject_unsupported(body);
  engine::Request& r = req.request;
  r.sampling = parse_sampling(body, seed);
  r.stop = parse_stop(body);
  r.ignore_eos = get_bool(body, "ignore_eos", false);
  // Choices drawn from the one prompt; sample i is seeded with seed + i.
  r.n = static_cast<int32_t>(get_integer(body, "n", 1, 1, engine::kMaxSamples));
  req.stream = get_bool(body, "stream", false);
  if (const json* so = optional_field(body, "stream_options")) {
    if (!so->is_object()) throw bad_request("stream_options", "'stream_options' must be an object");
    req.include_usage = get_bool(*so, "include_usage", false);
  }
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (endpoint == Endpoint::kChatCompletions) {
    const bool logprobs = get_bool(body, "logprobs", false);
    const int64_t top = get_integer(body, "top_logprobs", -1, 0, 20);
    if (top >= 0 && !logprobs)
      throw bad_request("top_logprobs", "'top_logprobs' requires 'logprobs': true");
    r.logprobs = logprobs ? static_cast<int32_t>(std::max<int64_t>(top, 0)) : -1;
  } else {
    r.logprobs = static_cast<int32_t>(get_integer(body, "logprobs", -1, 0, 5));
  }
  // max_completion_tokens is OpenAI's newer name; it wins when both are given.
  int64_t max_tokens = get_integer(body, "max_tokens", -1, 1, kMax);
  const char* max_param = "max_tokens";
  if (optional_field(body, "max_completion_tokens")) {
    max_tokens = get_integer(body, "max_completion_tokens", -1, 1, kMax);
    max_param = "max_completion_tokens";
  }
  r.grammar = parse_response_format(body, text, model);
  if (endpoint == Endpoint::kChatCompletions) {
    // Llama 3's prompt asks for a call's arguments under "parameters".
    const bool llama = model.chat && model.chat->format == model::ChatFormat::kLlama3;
    // The schemas are read again as ordered_json (properties in the order written), only
    // when there are any.
    const bool defined = optional_field(body, "tools") || optional_field(body, "functions");
    req.tools =
        parse_tools(body, defined ? nlohmann::ordered_json::parse(text) : nlohmann::ordered_json(),
                    model.vocabulary, llama ? "parameters" : "arguments");
    if (req.tools.active()) r.grammar = req.tools.grammar;
  } else {
    for (const char* t : {"tools", "tool_choice", "functions", "function_call"})
      if (optional_field(body, t))
        throw bad_request(t, std::string("'") + t + "' needs /v1/chat/completions");
  }

  r.prompt = endpoint == Endpoint::kChatCompletions ? chat_prompt(body, model, req.tools)
                                                    : completion_prompt(body, model);
  const char* prompt_param = endpoint == Endpoint::kChatCompletions ? "messages" : "prompt";
  const int64_t n_prompt = static_cast<int64_t>(r.prompt.size());
  if (n_prompt == 0)
    throw bad_request(prompt_param, std::string("'") + prompt_param + "' is empty");
  const int64_t limit = model.max_model_len;
  if (max_tokens < 0) {
    if (n_prompt >= limit)
      throw ApiError(400,
                     "this model's maximum context length is " + std::to_string(limit) +
                         " tokens, but the prompt has " + std::to_string(n_prompt) +
                         " tokens, which leaves no room for a completion; shorten the prompt",
                     prompt_param, "context_length_exceeded");
    max_tokens = limit - n_prompt;
  } else if (max_tokens > limit - n_prompt) {  // n_prompt + max_tokens could overflow
    const std::string needs = max_tokens <= std::numeric_limits<int64_t>::max() - n_prompt
                                  ? std::to_string(n_prompt + max_tokens)
                                  : "more than " + std::to_string(limit);
    throw ApiError(400,
                   "this model's maximum context length is " + std::to_string(limit) +
                       " tokens, but the request needs " + needs + " (" + std::to_string(n_prompt) +
                       " prompt tokens + " + std::to_string(max_tokens) + " " + max_param +
                       "); shorten the prompt or lower " + max_param,
                   max_param, "context_length_exceeded");
  }
  r.max_tokens = static_cast<int32_t>(max_tokens);
  return req;
}

json tokenize_response(std::string_view text, const model::Tokenizer& tokenizer) {
  const json body = parse_json_object(text);
  const json* content = optional_field(body, "content");
  if (!content || !content->is_string()) throw bad_request("content", "'content' must be a string");
  const bool add_special = get_bool(body, "add_special", false);
  return {{"tokens", tokenizer.encode(content->get<std::string>(), add_special,
                                      /*parse_special=*/true)}};
}

json detokenize_response(std::string_view text, const model::Tokenizer& tokenizer) {
  const json body = parse_json_object(text);
  const json* tokens = optional_field(body, "tokens");
  if (!tokens || !tokens->is_array())
    throw bad_request("tokens", "'tokens' must be an array of token ids");
  const std::vector<int32_t> ids = token_ids(*tokens, tokenizer.n_vocab(), "tokens");
  return {{"content", tokenizer.decode(ids, /*skip_special=*/false)}};
}

json models_response(const std::string& model_id, int64_t created, int32_t max_model_len) {
  return {{"object", "list"},
          {"data",
           {{{"id", model_id},
             {"object", "model"},
             {"created", created},
             {"owned_by", "kdr"},
             {"max_model_len", max_model_len}}}}};
}

void CompletionResult::add(const engine::Output& out) {
  if (out.index < 0 || static_cast<size_t>(out.index) >= choices.size())
    throw std::logic_error("an output for choice " + std::to_string(out.index) + " of " +
                           std::to_string(choices.size()));
  ChoiceResult& c = choices[static_cast<size_t>(out.index)];
  c.text += out.text;
  c.tokens.insert(c.tokens.end(), out.tokens.begin(), out.tokens.end());
  c.logprobs.insert(c.logprobs.end(), out.logprobs.begin(), out.logprobs.end());
  c.top_logprobs.insert(c.top_logprobs.end(), out.top_logprobs.begin(), out.top_logprobs.end());
  c.completion_tokens = out.completion_tokens;
  prompt_tokens = out.prompt_tokens;
  cached_tokens = out.cached_tokens;
  if (out.finished) {
    c.finished = true;
    c.finish_reason = out.finish_reason;
    c.error = out.error;
  }
}

bool CompletionResult::finished() const {
  return std::all_of(choices.begin(), choices.end(),
                     [](const ChoiceResult& c) { return c.finished; });
}

int32_t CompletionResult::completion_tokens() const {
  int32_t n = 0;
  for (const ChoiceResult& c : choices) n += c.completion_tokens;
  return n;
}

const ChoiceResult* CompletionResult::failed() const {
  for (const ChoiceResult& c : choices)
    if (c.finish_reason == "error") return &c;
  return nullptr;
}

namespace {

json usage(int32_t prompt, int32_t completion, int32_t cached) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

// A token as text for logprobs. A token that is not whole UTF-8 characters is written
// bytes:\xe2\x80 as OpenAI does, so distinct byte tokens stay distinct keys of the
// completions' top_logprobs objects.
std::string token_string(const model::Tokenizer& tok, int32_t id) {
  const std::string bytes = tok.token_bytes(id, /*render_special=*/true);
  if (model::utf8_sanitize(bytes) == bytes) return bytes;
  std::string escaped = "bytes:";
  for (unsigned char c : bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    escaped += {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
  }
  return escaped;
}

json token_bytes_array(const model::Tokenizer& tok, int32_t id) {
  json bytes = json::array();
  for (unsigned char c : tok.token_bytes(id, /*render_special=*/true)) bytes.push_back(c);
  return bytes;
}

// Chat logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}.
json chat_logprobs(const model::Tokenizer& tok, const std::vector<int32_t>& tokens,
                   const std::vector<float>& logprobs,
                   const std::vector<std::vector<engine::TopLogprob>>& top) {
  json content = json::array();
  for (size_t i = 0; i < tokens.size() && i < logprobs.size(); ++i) {
    json alternatives = json::array();
    if (i < top.size())
      for (const engine::TopLogprob& t : top[i])
        alternatives.push_back({{"token", token_string(tok, t.token)},
                                {"logprob", t.logprob},
                                {"bytes", token_bytes_array(tok, t.token)}});
    content.push_back({{"token", token_string(tok, tokens[i])},
                       {"logprob", logprobs[i]},
                       {"bytes", token_bytes_array(tok, tokens[i])},
                       {"top_logprobs", std::move(alternatives)}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

// Characters (code points) in UTF-8 text, the unit of completions' text_offset.
int64_t count_chars(const std::string& s) {
  return std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; });
}

// Completions logprobs: parallel arrays tokens / token_logprobs / top_logprobs / text_offset.
json completion_logprobs(const model::Tokenizer& tok, const std::vector<int32_t>& tokens,
                         const std::vector<float>& logprobs,
                         const std::vector<std::vector<engine::TopLogprob>>& top, int32_t n_top,
                         int64_t& text_offset) {
  json strings = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (size_t i = 0; i < tokens.size() && i < logprobs.size(); ++i) {
    const std::string s = token_string(tok, tokens[i]);
    strings.push_back(s);
    lps.push_back(logprobs[i]);
    offsets.push_back(text_offset);
    text_offset += count_chars(s);
    json alternatives = json::object();
    if (i < top.size())
      for (const engine::TopLogprob& t : top[i])
        alternatives[token_string(tok, t.token)] = t.logprob;
    tops.push_back(std::move(alternatives));
  }
  return {{"tokens", std::move(strings)},
          {"token_logprobs", std::move(lps)},
          {"top_logprobs", n_top > 0 ? std::move(tops) : json(nullptr)},
          {"text_offset", std::move(offsets)}};
}

}  // namespace

json completion_response(const ResponseInfo& info, const CompletionRequest& request,
                         const CompletionResult& result, const model::Tokenizer& tokenizer) {
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  const int32_t n_top = request.request.logprobs;
  json choices = json::array();
  for (size_t i = 0; i < result.choices.size(); ++i) {
    const ChoiceResult& r = result.choices[i];
    json choice = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", r.finish_reason}};
    if (chat) {
      std::string finish_reason = r.finish_reason;
      choice["message"] = chat_message(request.tools, r.text, finish_reason);
      choice["finish_reason"] = finish_reason;
      if (n_top >= 0)
        choice["logprobs"] = chat_logprobs(tokenizer, r.tokens, r.logprobs, r.top_logprobs);
    } else {
      choice["text"] = r.text;
      int64_t offset = 0;
      if (n_top >= 0)
        choice["logprobs"] =
            completion_logprobs(tokenizer, r.tokens, r.logprobs, r.top_logprobs, n_top, offset);
    }
    choices.push_back(std::move(choice));
  }
  // The prompt is counted once, the completions of every choice together (as OpenAI does).
  return {{"id", info.id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", info.created},
          {"model", info.model},
          {"choices", std::move(choices)},
          {"usage", usage(result.prompt_tokens, result.completion_tokens(), result.cached_tokens)}};
}

StreamEncoder::StreamEncoder(ResponseInfo info, const CompletionRequest& request,
                             const model::Tokenizer& tokenizer)
    : info_(std::move(info)),
      endpoint_(request.endpoint),
      logprobs_(request.request.logprobs),
      include_usage_(request.include_usage),
      tokenizer_(&tokenizer),
      choices_(static_cast<size_t>(std::max(1, request.request.n))),
      open_(std::max(1, request.request.n)) {
  for (Choice& c : choices_) c.tools = ToolDeltas(request.tools);
}

json StreamEncoder::chunk() const {
  const bool chat = endpoint_ == Endpoint::kChatCompletions;
  json c = {{"id", info_.id},
            {"object", chat ? "chat.completion.chunk" : "text_completion"},
            {"created", info_.created},
            {"model", info_.model}};
  // OpenAI writes "usage": null in every chunk but the last when usage was asked for.
  if (include_usage_) c["usage"] = nullptr;
  return c;
}

std::string StreamEncoder::event(const json& chunk) const {
  return "data: " + dump_json(chunk) + "\n\n";
}

std::string StreamEncoder::encode(const engine::Output& out) {
  const bool chat = endpoint_ == Endpoint::kChatCompletions;
  std::string events;
  if (done_) return events;
  if (out.index < 0 || static_cast<size_t>(out.index) >= choices_.size())
    throw std::logic_error("an output for choice " + std::to_string(out.index) + " of " +
                           std::to_string(choices_.size()));
  auto choice_chunk = [&](int32_t index, json delta_or_text, json logprobs, json finish_reason) {
    json choice = {{"index", index},
                   {"logprobs", std::move(logprobs)},
                   {"finish_reason", std::move(finish_reason)}};
    choice[chat ? "delta" : "text"] = std::move(delta_or_text);
    json c = chunk();
    c["choices"] = json::array({std::move(choice)});
    events += event(c);
  };
  if (!started_ && chat)
    for (size_t i = 0; i < choices_.size(); ++i)
      choice_chunk(static_cast<int32_t>(i), {{"role", "assistant"}, {"content", ""}}, nullptr,
                   nullptr);
  started_ = true;

  Choice& choice = choices_[static_cast<size_t>(out.index)];
  const bool with_logprobs = logprobs_ >= 0 && !out.tokens.empty();
  if (!out.text.empty() || with_logprobs) {
    json lp = nullptr;
    if (with_logprobs)
      lp = chat ? chat_logprobs(*tokenizer_, out.tokens, out.logprobs, out.top_logprobs)
                : completion_logprobs(*tokenizer_, out.tokens, out.logprobs, out.top_logprobs,
                                      logprobs_, choice.text_offset);
    if (chat) {
      std::vector<json> deltas = choice.tools.deltas(out.text);
      if (deltas.empty() && with_logprobs) deltas.push_back({{"content", ""}});
      for (json& d : deltas) {
        choice_chunk(out.index, std::move(d), std::move(lp), nullptr);
        lp = nullptr;
      }
    } else
      choice_chunk(out.index, out.text, std::move(lp), nullptr);
  }
  choice.completion_tokens = out.completion_tokens;
  if (!out.finished || choice.finished) return events;
  choice.finished = true;
  --open_;

  if (out.finish_reason == "error" || out.finish_reason == "cancelled") {
    // Headers (200) are gone already: the failure travels as an event, as vLLM does, and
    // ends the stream (the other choices are cancelled with the request).
    const ApiError e = out.finish_reason == "error"
                           ? ApiError(500, "generation failed: " + out.error)
                           : ApiError(503, "the request was cancelled: the server is stopping");
    events += event(e.to_json());
  } else {
    choice_chunk(out.index, chat ? json::object() : json(""), nullptr,
                 chat ? choice.tools.finish_reason(out.finish_reason) : out.finish_reason);
    if (open_ > 0) return events;
    if (include_usage_) {
      int32_t completion = 0;
      for (const Choice& c : choices_) completion += c.completion_tokens;
      json c = chunk();
      c["choices"] = json::array();
      c["usage"] = usage(out.prompt_tokens, completion, out.cached_tokens);
      events += event(c);
    }
  }
  events += "data: [DONE]\n\n";
  done_ = true;
  return events;
}

namespace {
// Hugging Face's names for each architecture (config.json model_type and architectures).
std::pair<const char*, const char*> hf_names(const std::string& arch) {
  if (arch == "gemma3") return {"gemma3_text", "Gemma3ForCausalLM"};
  if (arch == "qwen3") return {"qwen3", "Qwen3ForCausalLM"};
  if (arch == "qwen2") return {"qwen2", "Qwen2ForCausalLM"};
  return {"llama", "LlamaForCausalLM"};
}
}  // namespace

json server_info_response(const ServedModel& model) {
  return {{"model_path", model.path},
          {"served_model_name", model.id},
          {"model", model.id},
          {"tokenizer_path", model.path},
          {"context_length", model.max_model_len},
          {"max_model_len", model.max_model_len},
          {"max_total_tokens", model.max_total_tokens},
          {"max_running_requests", model.max_running},
          {"max_prefill_tokens", model.max_step_tokens},
          {"tp_size", 1},
          {"dp_size", 1},
          {"version", model.version}};
}

json model_info_response(const ServedModel& model) {
  const auto [type, architecture] = hf_names(model.arch);
  return {{"model_path", model.path},
          {"tokenizer_path", model.path},
          {"served_model_name", model.id},
          {"is_generation", true},
          {"model_type", type},
          {"architectures", json::array({architecture})},
          {"context_length", model.max_model_len}};
}

}  // namespace kdr::server
