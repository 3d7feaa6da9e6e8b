// The in-process backend: the research agent's calls run on an engine::Engine over a local
// model, formatted with the model's chat template; a JSON schema becomes a JsonGrammar, so the
// reply follows it token by token.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include "base/thread_pool.h"
#include "engine/engine.h"
#include "engine/json_grammar.h"
#include "hka/llm/llm.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace kdr::hka {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kCutMark = "\n[...]\n";

class EngineBackend : public LlmBackend {
 public:
  explicit EngineBackend(const EngineBackendOptions& options) {
    std::string path = options.model_path;
    try {
      if (path.empty()) path = engine::default_model_path();
      model_ = engine::LoadedModel::load(path);
    } catch (const std::exception& e) {
      throw LlmError("engine backend: cannot load the model" +
                     (path.empty() ? std::string() : " " + path) + ": " + e.what());
    }
    name_ = std::filesystem::path(path).filename().string();
    pool_ = std::make_unique<ThreadPool>(options.threads > 0 ? options.threads
                                                             : ThreadPool::hardware_threads());
    engine::EngineOptions eo;
    eo.kv_memory_bytes = options.kv_memory_bytes;
    // A small model's context may be shorter than the default 8192: take what it has.
    eo.max_model_len = std::min(options.max_model_len, model_.model->config().context_length);
    // Prefix caching stays on: every call of a role repeats the same system prompt.
    eo.prefix_caching = true;
    try {
      engine_ = std::make_unique<engine::Engine>(model_, *pool_, eo);
    } catch (const engine::EngineConfigError& e) {
      throw LlmError("engine backend (" + name_ + "): " + e.what());
    }
    engine_->start();
  }

  ~EngineBackend() override { engine_->stop(); }

  std::string note() const override { return model_.chat_note(); }

  LlmReply complete(const LlmCall& call) override {
    const Clock::time_point start = Clock::now();
    engine::Request request;
    if (call.json_schema) request.grammar = grammar(*call.json_schema, call.schema_name);
    const int32_t limit = engine_->max_model_len();
    // The reply keeps at least this much room when the prompt has to be shortened.
    const int32_t reply_room = std::max(1, std::min(call.max_tokens, limit / 4));
    request.prompt = fitted_prompt(call.messages, limit - reply_room);
    const int32_t n_prompt = static_cast<int32_t>(request.prompt.size());
    request.max_tokens = std::max(1, std::min(call.max_tokens, limit - n_prompt));
    request.sampling.temperature = static_cast<float>(call.temperature);
    request.sampling.seed = call.seed;

    std::shared_ptr<engine::RequestStream> stream;
    try {
      stream = engine_->submit_stream(std::move(request));
    } catch (const std::exception& e) {
      throw LlmError("engine backend (" + name_ + "): request refused: " + e.what());
    }
    LlmReply reply;
    reply.model = name_;
    engine::Output out;
    for (;;) {
      if (!stream->next(out, std::chrono::milliseconds(1000))) continue;
      reply.text += out.text;
      reply.prompt_tokens = out.prompt_tokens;
      reply.completion_tokens = out.completion_tokens;
      if (out.finished) break;
    }
    if (out.finish_reason == "error" || out.finish_reason == "cancelled")
      throw LlmError("engine backend (" + name_ + "): generation " + out.finish_reason +
                     (out.error.empty() ? "" : ": " + out.error));
    reply.finish_reason = out.finish_reason;
    reply.latency_s = std::chrono::duration<double>(Clock::now() - start).count();
    return reply;
  }

  bool accepts_images(const std::string&) const override { return false; }
  std::string describe() const override { return "engine:" + name_; }

 private:
  std::shared_ptr<const engine::JsonGrammar> grammar(const nlohmann::ordered_json& schema,
                                                     const std::string& name) {
    const std::string key = schema.dump();
    if (auto it = grammars_.find(key); it != grammars_.end()) return it->second;
    if (!vocabulary_) vocabulary_ = engine::build_vocabulary(*model_.tokenizer, model_.stop_ids);
    try {
      auto g = engine::JsonGrammar::from_schema(schema, vocabulary_);
      grammars_.emplace(key, g);
      return g;
    } catch (const engine::GrammarError& e) {
      // The message names the keyword and where it is in the schema.
      throw LlmError("engine backend (" + name_ + "): json_schema '" + name +
                     "' is not supported: " + e.what());
    }
  }

  std::vector<int32_t> tokenize(const std::vector<ChatMessage>& messages) const {
    if (model_.chat) {
      // Message contents are data (table cells, document passages): a "<start_of_turn>"
      // written in a document stays text, not a turn marker (model::encode_chat, the
      // server's chat encoding too).
      std::vector<model::ChatMessage> chat;
      for (const ChatMessage& m : messages) chat.push_back({m.role, m.content});
      try {
        return model::encode_chat(*model_.chat, *model_.tokenizer, chat,
                                  /*add_generation_prompt=*/true);
      } catch (const model::ChatTemplateError& e) {
        throw LlmError("engine backend (" + name_ + "): " + e.what());
      }
    }
    // A model without a known chat format: a plain transcript ending in the assistant's turn.
    std::string text;
    for (const ChatMessage& m : messages) text += m.role + ": " + m.content + "\n";
    text += "assistant: ";
    return model_.tokenizer->encode(text, /*add_special=*/true, /*parse_special=*/false);
  }

  // The prompt in at most `budget` tokens. A prompt that is too long loses the middle of its
  // longest user message (documents pasted into the prompt), marked with "\n[...]\n": its
  // start says what it is and its end is usually the question; the system message, which
  // holds the instructions and the schema, is never cut.
  std::vector<int32_t> fitted_prompt(std::vector<ChatMessage> messages, int32_t budget) const {
    std::vector<int32_t> prompt = tokenize(messages);
    for (int round = 0; round < 4 && static_cast<int32_t>(prompt.size()) > budget; ++round) {
      ChatMessage* longest = nullptr;
      for (ChatMessage& m : messages)
        if (m.role == "user" && (!longest || m.content.size() > longest->content.size()))
          longest = &m;
      if (!longest) break;
      const std::vector<int32_t> ids = model_.tokenizer->encode(
          longest->content, /*add_special=*/false, /*parse_special=*/false);
      // Retokenizing the joined text may cost a few tokens more: keep a little less.
      const int64_t excess = static_cast<int64_t>(prompt.size()) - budget;
      const int64_t target = static_cast<int64_t>(ids.size()) - excess;
      const int64_t keep = target - 8 - std::max<int64_t>(target, 0) / 16 - round * 32;
      if (keep < 2) break;
      const size_t head = static_cast<size_t>(keep / 2);
      const size_t tail = static_cast<size_t>(keep) - head;
      const std::span<const int32_t> all(ids);
      longest->content = model_.tokenizer->decode(all.first(head)) + kCutMark +
                         model_.tokenizer->decode(all.last(tail));
      prompt = tokenize(messages);
    }
    if (static_cast<int32_t>(prompt.size()) > budget)
      throw LlmError("engine backend (" + name_ + "): the prompt has " +
                     std::to_string(prompt.size()) + " tokens and cannot be cut to " +
                     std::to_string(budget) + " (max_model_len " +
                     std::to_string(engine_->max_model_len()) + " minus room for the reply)");
    return prompt;
  }

  engine::LoadedModel model_;
  std::string name_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<engine::Engine> engine_;
  std::shared_ptr<const engine::Vocabulary> vocabulary_;
  std::map<std::string, std::shared_ptr<const engine::JsonGrammar>> grammars_;
};

}  // namespace

std::unique_ptr<LlmBackend> make_engine_backend(const EngineBackendOptions& options) {
  return std::make_unique<EngineBackend>(options);
}

}  // namespace kdr::hka
