#include "server/tool_calls.h"

#include <algorithm>
#include <cctype>
#include <random>

#include "engine/json_grammar.h"
#include "server/openai_protocol.h"

namespace kdr::server {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// Points the schema's own references ("#/...") at where it now sits, under `prefix`.
void rebase_refs(ojson& s, const std::string& prefix) {
  if (s.is_object()) {
    for (auto& [key, value] : s.items()) {
      if (key == "$ref" && value.is_string()) {
        const std::string r = value.get<std::string>();
        if (!r.empty() && r[0] == '#') value = "#" + prefix + r.substr(1);
      } else {
        rebase_refs(value, prefix);
      }
    }
  } else if (s.is_array()) {
    for (ojson& v : s) rebase_refs(v, prefix);
  }
}

// One tool's definition checked; returns its parameters schema (an object schema of no
// properties when none is given, as OpenAI reads it).
ojson checked_function(const json& f, const ojson& of, const std::string& at,
                       std::vector<std::string>& names) {
  if (!f.is_object()) throw bad_request(at, "'" + at + "' must be an object");
  const json* name = optional_field(f, "name");
  if (!name || !name->is_string())
    throw bad_request(at + ".name", "'" + at + ".name' must be a string");
  const std::string n = name->get<std::string>();
  if (!valid_tool_name(n))
    throw bad_request(
        at + ".name",
        "'" + at + ".name' is '" + n + "': a function name is 1 to 64 letters, digits, '_' or '-'");
  if (std::find(names.begin(), names.end(), n) != names.end())
    throw bad_request(at + ".name", "'" + at + ".name': the function '" + n + "' is defined twice");
  names.push_back(n);
  if (const json* d = optional_field(f, "description"); d && !d->is_string())
    throw bad_request(at + ".description", "'" + at + ".description' must be a string");
  if (const json* s = optional_field(f, "strict"); s && !s->is_boolean())
    throw bad_request(at + ".strict", "'" + at + ".strict' must be a boolean");
  const json* p = optional_field(f, "parameters");
  if (!p) return ojson{{"type", "object"}, {"properties", ojson::object()}};
  if (!p->is_object())
    throw bad_request(at + ".parameters", "'" + at + ".parameters' must be a JSON Schema object");
  const ojson& params = of["parameters"];
  try {
    engine::JsonGrammar::from_schema(params, nullptr);
  } catch (const engine::GrammarError& e) {
    throw bad_request(at + ".parameters",
                      "'" + at + ".parameters' of function '" + n + "': " + std::string(e.what()));
  }
  return params;
}

}  // namespace

ToolRequest parse_tools(const json& body, const ojson& ordered,
                        std::shared_ptr<const engine::Vocabulary> vocabulary,
                        std::string call_key) {
  ToolRequest r;
  r.call_key = std::move(call_key);
  std::vector<ojson> params;
  const json* tools = optional_field(body, "tools");
  const json* functions = optional_field(body, "functions");
  if (tools && functions)
    throw bad_request("functions", "give 'tools' or the legacy 'functions', not both");
  if (tools) {
    if (!tools->is_array()) throw bad_request("tools", "'tools' must be an array");
    for (size_t i = 0; i < tools->size(); ++i) {
      const std::string at = "tools[" + std::to_string(i) + "]";
      const json& t = (*tools)[i];
      if (!t.is_object()) throw bad_request(at, "'" + at + "' must be an object");
      const json* type = optional_field(t, "type");
      if (!type || *type != "function")
        throw bad_request(at + ".type", "'" + at + ".type' must be 'function'");
      const json* f = optional_field(t, "function");
      if (!f) throw bad_request(at + ".function", "'" + at + ".function' is required");
      params.push_back(
          checked_function(*f, ordered["tools"][i]["function"], at + ".function", r.names));
      r.tools.push_back(ordered["tools"][i]);
    }
  } else if (functions) {
    if (!functions->is_array()) throw bad_request("functions", "'functions' must be an array");
    r.legacy = true;
    r.parallel = false;
    for (size_t i = 0; i < functions->size(); ++i) {
      const std::string at = "functions[" + std::to_string(i) + "]";
      params.push_back(checked_function((*functions)[i], ordered["functions"][i], at, r.names));
      r.tools.push_back({{"type", "function"}, {"function", ordered["functions"][i]}});
    }
  }

  // tool_choice (legacy: function_call), "auto" by default when there are tools.
  const char* choice_param = r.legacy ? "function_call" : "tool_choice";
  if (!r.legacy && optional_field(body, "function_call"))
    throw bad_request("function_call",
                      "'function_call' needs the legacy 'functions'; with 'tools' use "
                      "'tool_choice'");
  if (r.legacy && optional_field(body, "tool_choice"))
    throw bad_request("tool_choice",
                      "'tool_choice' needs 'tools'; with 'functions' use 'function_call'");
  r.choice = r.tools.empty() ? ToolChoice::kNone : ToolChoice::kAuto;
  if (const json* c = optional_field(body, choice_param)) {
    const std::string p = choice_param;
    if (c->is_string()) {
      const std::string s = c->get<std::string>();
      if (s == "none") {
        r.choice = ToolChoice::kNone;
      } else if (s == "auto") {
        r.choice = r.tools.empty() ? ToolChoice::kNone : ToolChoice::kAuto;
      } else if (s == "required" && !r.legacy) {
        r.choice = ToolChoice::kRequired;
      } else {
        throw bad_request(p,
                          "'" + p + "' must be " +
                              (r.legacy ? "'none', 'auto' or {\"name\": ...}"
                                        : "'none', 'auto', 'required' or {\"type\": \"function\", "
                                          "\"function\": {\"name\": ...}}") +
                              ", got '" + s + "'");
      }
    } else if (c->is_object()) {
      const json* name = nullptr;
      if (r.legacy) {
        name = optional_field(*c, "name");
      } else {
        const json* type = optional_field(*c, "type");
        if (!type || *type != "function")
          throw bad_request(p + ".type", "'" + p + ".type' must be 'function'");
        const json* f = optional_field(*c, "function");
        if (f && f->is_object()) name = optional_field(*f, "name");
      }
      const std::string name_param = r.legacy ? p + ".name" : p + ".function.name";
      if (!name || !name->is_string())
        throw bad_request(name_param, "'" + name_param + "' must be a string");
      r.named = name->get<std::string>();
      if (std::find(r.names.begin(), r.names.end(), r.named) == r.names.end())
        throw bad_request(name_param, "'" + name_param + "' is '" + r.named +
                                          "', which is not one of the request's " +
                                          (r.legacy ? "functions" : "tools"));
      r.choice = ToolChoice::kNamed;
    } else {
      throw bad_request(p, "'" + p + "' must be a string or an object");
    }
  }
  if (r.choice == ToolChoice::kRequired && r.tools.empty())
    throw bad_request("tool_choice", "'tool_choice' is 'required' but no 'tools' are given");
  if (const json* pc = optional_field(body, "parallel_tool_calls")) {
    if (!pc->is_boolean())
      throw bad_request("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    if (!r.legacy) r.parallel = pc->get<bool>();
  }
  if (r.choice == ToolChoice::kNone) return r;
  if (!vocabulary)
    throw bad_request(r.legacy ? "functions" : "tools",
                      "tool calls are not available on this server");
  if (optional_field(body, "response_format") &&
      (*optional_field(body, "response_format")).value("type", "") != "text")
    throw bad_request("response_format",
                      "'response_format' cannot be combined with tool calls; give "
                      "tool_choice 'none' or leave response_format out");

  // The calls' schema: a union of {"name": const, <key>: parameters}, told apart by the name.
  ojson root = {{"$defs", ojson::object()}};
  ojson alternatives = ojson::array();
  for (size_t i = 0; i < r.names.size(); ++i) {
    if (r.choice == ToolChoice::kNamed && r.names[i] != r.named) continue;
    const std::string def = "kdr_tool_" + std::to_string(i);
    ojson p = params[i];
    rebase_refs(p, "/$defs/" + def);
    root["$defs"][def] = std::move(p);
    alternatives.push_back(
        {{"type", "object"},
         {"properties",
          {{"name", {{"const", r.names[i]}}}, {r.call_key, {{"$ref", "#/$defs/" + def}}}}},
         {"required", {"name", r.call_key}}});
  }
  if (r.parallel) {
    root["type"] = "array";
    root["minItems"] = 1;
    root["items"] = {{"anyOf", std::move(alternatives)}};
  } else {
    root["anyOf"] = std::move(alternatives);
  }
  const auto output = r.choice == ToolChoice::kAuto ? engine::JsonGrammar::Output::kValueOrText
                                                    : engine::JsonGrammar::Output::kValue;
  try {
    r.grammar = engine::JsonGrammar::from_schema(root, std::move(vocabulary), output);
  } catch (const engine::GrammarError& e) {
    throw bad_request(r.legacy ? "functions" : "tools",
                      "the tools cannot be called together: " + std::string(e.what()));
  }
  return r;
}

bool valid_tool_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

std::string new_tool_call_id() {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return id;
}

ToolCallStream::ToolCallStream(std::string call_key) : call_key_(std::move(call_key)) {}

bool ToolCallStream::complete() const {
  return !calls_.empty() && !open_ && state_ != State::kBroken;
}

std::vector<ToolCallDelta> ToolCallStream::feed(std::string_view text) {
  std::vector<ToolCallDelta> out;
  for (char ch : text) byte(ch, out);
  return out;
}

void ToolCallStream::byte(char ch, std::vector<ToolCallDelta>& out) {
  const bool space = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
  const auto emit = [&] {
    calls_.back().arguments += ch;
    // A call's first delta carries "" arguments; its text follows in the next ones.
    if (out.empty() || out.back().index != calls_.size() - 1 || out.back().opens) {
      ToolCallDelta d;
      d.index = calls_.size() - 1;
      out.push_back(std::move(d));
    }
    out.back().arguments += ch;
  };
  switch (state_) {
    case State::kBetween:
      if (space || ch == '[' || ch == ',' || ch == ']') return;
      if (ch != '{') break;
      head_ = "{";
      state_ = State::kHead;
      return;
    case State::kHead: {
      head_ += ch;
      if (ch != ':' || head_.find("\"" + call_key_ + "\"") == std::string::npos) return;
      const json h = json::parse(head_ + "0}", nullptr, /*allow_exceptions=*/false);
      if (h.is_discarded() || !h.contains("name") || !h["name"].is_string()) break;
      calls_.push_back({new_tool_call_id(), h["name"].get<std::string>(), ""});
      open_ = true;
      ToolCallDelta d;
      d.index = calls_.size() - 1;
      d.opens = true;
      d.id = calls_.back().id;
      d.name = calls_.back().name;
      out.push_back(std::move(d));
      state_ = State::kArgsStart;
      return;
    }
    case State::kArgsStart:
      if (space) return;
      depth_ = 0;
      in_string_ = escaped_ = scalar_ = false;
      state_ = State::kArgs;
      if (ch == '{' || ch == '[') {
        depth_ = 1;
      } else if (ch == '"') {
        in_string_ = true;
      } else {
        scalar_ = true;
      }
      emit();
      return;
    case State::kArgs:
      if (scalar_) {
        if (space || ch == ',' || ch == '}' || ch == ']') {
          state_ = State::kAfterArgs;
          byte(ch, out);
          return;
        }
        emit();
        return;
      }
      emit();
      if (in_string_) {
        if (escaped_) {
          escaped_ = false;
        } else if (ch == '\\') {
          escaped_ = true;
        } else if (ch == '"') {
          in_string_ = false;
          if (depth_ == 0) state_ = State::kAfterArgs;
        }
      } else if (ch == '"') {
        in_string_ = true;
      } else if (ch == '{' || ch == '[') {
        ++depth_;
      } else if ((ch == '}' || ch == ']') && --depth_ == 0) {
        state_ = State::kAfterArgs;
      }
      return;
    case State::kAfterArgs:
      if (space) return;
      if (ch != '}') break;
      open_ = false;
      state_ = State::kBetween;
      return;
    case State::kBroken:
      return;
  }
  state_ = State::kBroken;
}

namespace {

bool is_calls(const engine::JsonGrammar* grammar, std::string_view text) {
  return grammar && !text.empty() && grammar->value_starts_with(static_cast<uint8_t>(text[0]));
}

std::string calls_reason(bool legacy) { return legacy ? "function_call" : "tool_calls"; }

}  // namespace

json chat_message(const ToolRequest& tools, const std::string& text, std::string& finish_reason) {
  json message = {{"role", "assistant"}, {"content", text}};
  if (!is_calls(tools.grammar.get(), text)) return message;
  ToolCallStream stream(tools.call_key);
  stream.feed(text);
  if (!stream.complete()) return message;
  message["content"] = nullptr;
  if (tools.legacy) {
    const ToolCallStream::Call& c = stream.calls()[0];
    message["function_call"] = {{"name", c.name}, {"arguments", c.arguments}};
  } else {
    json calls = json::array();
    for (const ToolCallStream::Call& c : stream.calls())
      calls.push_back({{"id", c.id},
                       {"type", "function"},
                       {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    message["tool_calls"] = std::move(calls);
  }
  if (finish_reason == "stop") finish_reason = calls_reason(tools.legacy);
  return message;
}

ToolDeltas::ToolDeltas(const ToolRequest& tools)
    : grammar_(tools.grammar), legacy_(tools.legacy), call_key_(tools.call_key) {}

std::vector<json> ToolDeltas::deltas(std::string_view text) {
  if (text.empty()) return {};
  if (mode_ == Mode::kUndecided) {
    mode_ = is_calls(grammar_.get(), text) ? Mode::kCalls : Mode::kText;
    if (mode_ == Mode::kCalls) calls_ = std::make_shared<ToolCallStream>(call_key_);
  }
  if (mode_ == Mode::kText) return {{{"content", std::string(text)}}};
  std::vector<json> out;
  for (const ToolCallDelta& d : calls_->feed(text)) {
    if (legacy_) {
      json f = {{"arguments", d.arguments}};
      if (d.opens) f["name"] = d.name;
      out.push_back({{"function_call", std::move(f)}});
      continue;
    }
    json call = {{"index", d.index}};
    if (d.opens) {
      call["id"] = d.id;
      call["type"] = "function";
      call["function"] = {{"name", d.name}, {"arguments", d.arguments}};
    } else {
      call["function"] = {{"arguments", d.arguments}};
    }
    out.push_back({{"tool_calls", json::array({std::move(call)})}});
  }
  return out;
}

std::string ToolDeltas::finish_reason(const std::string& engine_reason) const {
  if (mode_ == Mode::kCalls && engine_reason == "stop" && calls_->complete())
    return calls_reason(legacy_);
  return engine_reason;
}

}  // namespace kdr::server
