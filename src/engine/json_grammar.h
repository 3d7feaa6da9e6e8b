// Constrained decoding for response_format json_object and json_schema.
//
// A schema is compiled once, off the hot path, into a grammar over bytes; a per-request
// JsonMatcher tracks where generation is in it and, each step, masks every token whose bytes
// cannot come next (a walk of a byte trie of the vocabulary). Schema features we do not
// support are rejected with GrammarError naming the keyword and where it is, never ignored.
// The same grammar validates values that came from elsewhere (JsonGrammar::violation), so
// generation and checking read a schema one way. anyOf/oneOf alternatives must differ in their
// first byte, except objects told apart by a discriminator: a first property that is required
// and a distinct string const in each (tool calls' "name"), after which the rest of the object
// follows the chosen alternative.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace kdr::model {
class Tokenizer;
}

namespace kdr::engine {

class GrammarError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A model's vocabulary prepared for masking: each token's bytes in a trie. Built once per
// model (it is shared by every grammar).
class Vocabulary;
std::shared_ptr<const Vocabulary> build_vocabulary(const model::Tokenizer& tokenizer,
                                                   std::vector<int32_t> stop_ids);

// `vocab` may be null for a grammar that only validates (violation()); a JsonMatcher needs one.
class JsonGrammar {
 public:
  // response_format {"type": "json_object"}: any JSON object.
  static std::shared_ptr<const JsonGrammar> any_object(std::shared_ptr<const Vocabulary> vocab);
  // response_format {"type": "json_schema", "json_schema": {"schema": ...}}: values valid
  // under `schema`. Throws GrammarError for malformed or unsupported schemas.
  static std::shared_ptr<const JsonGrammar> from_schema(const nlohmann::json& schema,
                                                        std::shared_ptr<const Vocabulary> vocab);
  // The same; properties are generated in the order the schema lists them, which only an
  // ordered_json keeps (nlohmann::json sorts keys, so the overload above emits them sorted).
  static std::shared_ptr<const JsonGrammar> from_schema(const nlohmann::ordered_json& schema,
                                                        std::shared_ptr<const Vocabulary> vocab);
  // What a generation under the grammar is.
  enum class Output {
    kValue,        // one value of the schema
    kValueOrText,  // that, or plain text: any bytes that do not start the way a value can
  };
  // The same, with the choice of output. kValueOrText is tool_choice "auto": every output is
  // either content (text) or calls that match their schemas, told apart by the first byte.
  static std::shared_ptr<const JsonGrammar> from_schema(const nlohmann::ordered_json& schema,
                                                        std::shared_ptr<const Vocabulary> vocab,
                                                        Output output);
  ~JsonGrammar();

  // Whether a value of the schema can start with `byte` (an output that starts otherwise is
  // the text of kValueOrText).
  bool value_starts_with(uint8_t byte) const;

  // The first way `value` falls outside the grammar, as "<json pointer>: <problem>" ("/" for
  // the root), e.g. "/subtasks/0/goal: expected a string" or "/n: below minimum 0"; empty when
  // the grammar generates a text that reads as `value`. Property order and whitespace do not
  // matter; a number passes when some number text within the grammar's digit limits (15
  // integer and 15 fraction digits, 2 exponent digits, no exponent with bounds) parses to it.
  std::string violation(const nlohmann::json& value) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  JsonGrammar() = default;
  std::unique_ptr<Impl> impl_;
};

// One request's position in a grammar.
class JsonMatcher {
 public:
  explicit JsonMatcher(std::shared_ptr<const JsonGrammar> grammar);
  ~JsonMatcher();
  JsonMatcher(JsonMatcher&&) noexcept;
  JsonMatcher& operator=(JsonMatcher&&) noexcept;

  // Sets the logit of every token that cannot come next to -infinity. Stop tokens are
  // allowed only when the value is complete.
  void mask_logits(std::span<float> logits) const;
  // Advances over the chosen token. Returns false (state unchanged) when it is not allowed.
  bool accept(int32_t token);
  // A whole value has been generated; nothing but the end may follow.
  bool complete() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace kdr::engine
