// Constrained JSON decoding against nlohmann::json and a small JSON Schema validator: documents
// fed byte by byte and as multi-byte tokens, random walks through the mask that must end in
// valid values, schema errors, JsonGrammar::violation against the matcher on random values,
// and the mask time on the real model's vocabulary.
#include "engine/json_grammar.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "../base/seed.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

namespace kdr::engine {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

using kdr_test::test_seed;

// ---- a small vocabulary: every byte, some multi-byte pieces, control and stop tokens -------

// Pieces that span grammar elements (a key's end and the colon, a close and a comma...).
const std::vector<std::string> kPieces = {
    "{\"",      "\":",    "\":\"", "},",    "\"}",  "\"},", "\",\"", "]}",
    "[{",       "}]",     "true",  "false", "null", " \"",  ", \"",  ": ",
    "\n  ",     "\n    ", "12",    ".5",    "e+",   "-0",   "abc",   "name",
    "\xC3\xA9",  // é
    "\\u00",    "\\\"",   "\"a\"", "ab\":", "}\n",  "  ",   "a",     "{"};

struct TinyVocab {
  std::unique_ptr<model::Tokenizer> tok;
  std::shared_ptr<const Vocabulary> vocab;
  int32_t unk = 0, bos = 1, eos = 2, eot = 3;
  std::vector<int32_t> byte_token;
  std::vector<std::pair<std::string, int32_t>> pieces;  // bytes, id

  TinyVocab() {
    model::TokenizerSpec s;
    s.model = model::TokenizerModel::kSpm;
    s.tokens = {"<unk>", "<bos>", "<eos>", "<end_of_turn>"};
    s.token_types = {model::TokenType::kUnknown, model::TokenType::kControl,
                     model::TokenType::kControl, model::TokenType::kControl};
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      byte_token.push_back(static_cast<int32_t>(s.tokens.size()));
      s.tokens.push_back(name);
      s.token_types.push_back(model::TokenType::kByte);
    }
    for (const std::string& p : kPieces) {
      std::string text;  // SentencePiece writes spaces as U+2581
      for (char ch : p) text += ch == ' ' ? std::string("\xE2\x96\x81") : std::string(1, ch);
      pieces.emplace_back(p, static_cast<int32_t>(s.tokens.size()));
      s.tokens.push_back(text);
      s.token_types.push_back(model::TokenType::kNormal);
    }
    s.scores.assign(s.tokens.size(), 0.0f);
    s.unk_id = unk;
    s.bos_id = bos;
    s.eos_id = eos;
    tok = std::make_unique<model::Tokenizer>(std::move(s));
    vocab = build_vocabulary(*tok, {eos, eot});
  }

  int32_t n_vocab() const { return tok->n_vocab(); }
  bool is_stop(int32_t id) const { return id == eos || id == eot; }

  std::vector<int32_t> single_bytes(std::string_view doc) const {
    std::vector<int32_t> ids;
    for (char ch : doc) ids.push_back(byte_token[static_cast<uint8_t>(ch)]);
    return ids;
  }

  // Longest piece first, else the byte: tokens that cross grammar boundaries.
  std::vector<int32_t> greedy(std::string_view doc) const {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < doc.size();) {
      size_t best = 0;
      int32_t id = byte_token[static_cast<uint8_t>(doc[i])];
      for (const auto& [bytes, pid] : pieces) {
        if (bytes.size() > best && doc.substr(i, bytes.size()) == bytes) {
          best = bytes.size();
          id = pid;
        }
      }
      ids.push_back(id);
      i += std::max<size_t>(best, 1);
    }
    return ids;
  }

  std::string text(const std::vector<int32_t>& ids) const {
    std::string out;
    for (int32_t id : ids) out += tok->token_bytes(id);
    return out;
  }
};

const TinyVocab& tiny() {
  static const TinyVocab v;
  return v;
}

bool feed(JsonMatcher& m, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    if (!m.accept(id)) return false;
  }
  return true;
}

// The whole document is a value: every token accepted, then complete or ended by a stop token.
bool accepts(const std::shared_ptr<const JsonGrammar>& g, const std::vector<int32_t>& ids) {
  JsonMatcher m(g);
  if (!feed(m, ids)) return false;
  if (m.complete()) return true;
  return m.accept(tiny().eos) && m.complete();
}

std::vector<uint8_t> allowed_set(const JsonMatcher& m, int32_t n_vocab) {
  std::vector<float> logits(n_vocab, 0.0f);
  m.mask_logits(logits);
  std::vector<uint8_t> allowed(n_vocab);
  for (int32_t i = 0; i < n_vocab; ++i) {
    EXPECT_TRUE(logits[i] == 0.0f || logits[i] == -INFINITY) << "token " << i;
    allowed[i] = logits[i] == 0.0f;
  }
  return allowed;
}

std::shared_ptr<const JsonGrammar> schema_grammar(std::string_view schema) {
  return JsonGrammar::from_schema(ojson::parse(schema), tiny().vocab);
}

// ---- a validator for the subset of JSON Schema the grammar supports -----------------------

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (char ch : s) n += (static_cast<uint8_t>(ch) & 0xC0) != 0x80;
  return n;
}

// "" when `v` is valid under `s`, else the reason. Objects with properties must list their keys
// in the schema's order (the grammar's promise), which is why `v` is an ordered_json.
std::string why_invalid(const ojson& v, const ojson& s, const ojson& root) {
  if (s.is_boolean()) return s.get<bool>() ? "" : "false schema";
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    return why_invalid(v, root.at(ojson::json_pointer(ref.substr(1))), root);
  }
  if (s.contains("const") && json(v) != json(s["const"])) return "not the const";
  if (s.contains("enum")) {
    bool found = false;
    for (const ojson& e : s["enum"]) found = found || json(v) == json(e);
    if (!found) return "not in enum";
  }
  if (s.contains("anyOf")) {
    bool any = false;
    for (const ojson& alt : s["anyOf"]) any = any || why_invalid(v, alt, root).empty();
    if (!any) return "no anyOf alternative";
  }
  if (s.contains("oneOf")) {
    int count = 0;
    for (const ojson& alt : s["oneOf"]) count += why_invalid(v, alt, root).empty();
    if (count != 1) return "oneOf matched " + std::to_string(count);
  }
  if (s.contains("allOf")) {
    for (const ojson& alt : s["allOf"]) {
      if (std::string why = why_invalid(v, alt, root); !why.empty()) return why;
    }
  }
  if (s.contains("type")) {
    const ojson types = s["type"].is_array() ? s["type"] : ojson::array({s["type"]});
    bool ok = false;
    for (const ojson& t : types) {
      const std::string n = t;
      ok = ok || (n == "string" && v.is_string()) || (n == "integer" && v.is_number_integer()) ||
           (n == "number" && v.is_number()) || (n == "boolean" && v.is_boolean()) ||
           (n == "null" && v.is_null()) || (n == "object" && v.is_object()) ||
           (n == "array" && v.is_array());
    }
    if (!ok) return "wrong type " + std::string(v.type_name());
  }
  if (v.is_string()) {
    const size_t len = code_points(v.get<std::string>());
    if (s.contains("minLength") && len < s["minLength"].get<size_t>()) return "too short";
    if (s.contains("maxLength") && len > s["maxLength"].get<size_t>()) return "too long";
  }
  if (v.is_number()) {
    const double x = v.get<double>();
    if (s.contains("minimum") && x < s["minimum"].get<double>()) return "below minimum";
    if (s.contains("maximum") && x > s["maximum"].get<double>()) return "above maximum";
    if (s.contains("exclusiveMinimum") && x <= s["exclusiveMinimum"].get<double>())
      return "not above exclusiveMinimum";
    if (s.contains("exclusiveMaximum") && x >= s["exclusiveMaximum"].get<double>())
      return "not below exclusiveMaximum";
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return "too few items";
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return "too many items";
    if (s.contains("items")) {
      for (const ojson& item : v) {
        if (std::string why = why_invalid(item, s["items"], root); !why.empty()) {
          return "item: " + why;
        }
      }
    }
  }
  if (v.is_object()) {
    if (s.contains("properties")) {
      const ojson& props = s["properties"];
      auto order = props.begin();
      for (const auto& [key, value] : v.items()) {
        while (order != props.end() && order.key() != key) ++order;
        if (order == props.end()) return "property '" + key + "' unknown or out of order";
        if (std::string why = why_invalid(value, order.value(), root); !why.empty()) {
          return key + ": " + why;
        }
      }
      for (const ojson& r : s.value("required", ojson::array())) {
        if (!v.contains(r.get<std::string>())) return "missing " + r.get<std::string>();
      }
    } else if (s.contains("additionalProperties")) {
      for (const auto& [key, value] : v.items()) {
        if (std::string why = why_invalid(value, s["additionalProperties"], root); !why.empty()) {
          return key + ": " + why;
        }
      }
    }
  }
  return "";
}

// ---- documents fed byte by byte and as pieces --------------------------------------------

struct Case {
  std::string doc;
  bool accept;
  const char* why = "";  // for documents nlohmann accepts but our rules refuse
};

// Every case byte by byte and greedily tokenized: the grammar accepts exactly the expected ones,
// and never a document nlohmann rejects.
void check_cases(const std::shared_ptr<const JsonGrammar>& g, const std::vector<Case>& cases,
                 const ojson* schema) {
  for (const Case& c : cases) {
    SCOPED_TRACE("document: " + json(c.doc).dump(-1, ' ', false, json::error_handler_t::replace));
    const bool parses = json::accept(c.doc);
    if (c.accept) {
      ASSERT_TRUE(parses) << "a case expected to pass must be JSON";
      if (schema) {
        EXPECT_EQ(why_invalid(ojson::parse(c.doc), *schema, *schema), "");
      }
    }
    EXPECT_EQ(accepts(g, tiny().single_bytes(c.doc)), c.accept) << "byte by byte " << c.why;
    const std::vector<int32_t> ids = tiny().greedy(c.doc);
    ASSERT_EQ(tiny().text(ids), c.doc);
    EXPECT_EQ(accepts(g, ids), c.accept) << "as " << ids.size() << " pieces " << c.why;
  }
}

TEST(JsonObjectGrammar, AcceptsExactlyTheObjectsWithinTheRules) {
  const auto g = JsonGrammar::any_object(tiny().vocab);
  // Each object is one frame on a stack of at most 64, the root and the number included.
  const auto nested = [](int levels) {
    std::string doc;
    for (int i = 0; i < levels; ++i) doc += "{\"a\":";
    return doc + "1" + std::string(levels, '}');
  };
  check_cases(g,
              {
                  {"{}", true},
                  {"{\"a\":1}", true},
                  {"{\"a\": 1, \"b\": [true, false, null]}", true},
                  {"{\"nested\":{\"x\":{\"y\":[]}},\"z\":[[],[{}]]}", true},
                  {R"({"s":"esc \" \\ \/ \b \f \n \r \t"})", true},
                  {R"({"u":"\u00e9\u20AC\u0000"})", true},
                  {R"({"pair":"\uD83D\uDE00 \ud83d\ude00"})", true},
                  {"{\"utf8\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\"}", true},
                  {"{\"n\":[0,-0,1.5,-2.25e10,3E-2,1e+5,123456789012345,0.123456789012345]}", true},
                  {"{\"e\":\"\",\"\":\"\"}", true},
                  {"{\n  \"a\": 1,\n  \"b\": {\n    \"c\": 2\n  }\n}", true},
                  {"{ \"a\" : 1 }", true},
                  {"{\"del\":\"\x7f\"}", true},
                  {"{\"a\":{},\"a\":[]}", true},
                  {"{\n                \"a\":1}", true},
                  // Not JSON.
                  {"{", false},
                  {"{\"a\"}", false},
                  {"{\"a\":}", false},
                  {"{\"a\":1,}", false},
                  {"{,}", false},
                  {"{\"a\":01}", false},
                  {"{\"a\":1.}", false},
                  {"{\"a\":.5}", false},
                  {"{\"a\":+1}", false},
                  {"{\"a\":-}", false},
                  {"{\"a\":1e}", false},
                  {"{\"a\":1e+}", false},
                  {"{\"a\":tru}", false},
                  {"{\"a\":True}", false},
                  {"{'a':1}", false},
                  {"{a:1}", false},
                  {"{\"a\":\"\x01\"}", false},
                  {"{\"a\":\"\n\"}", false},
                  {R"({"a":"\q"})", false},
                  {R"({"a":"\u12"})", false},
                  {R"({"a":"\u12G4"})", false},
                  {R"({"a":"\uD800"})", false},
                  {R"({"a":"\uDC00"})", false},
                  {R"({"a":"\uD800\u0041"})", false},
                  {R"({"a":"\uD800x"})", false},
                  {"{\"a\":\"\xC0\x80\"}", false},
                  {"{\"a\":\"\xC1\xBF\"}", false},
                  {"{\"a\":\"\xE0\x80\x80\"}", false},
                  {"{\"a\":\"\xED\xA0\x80\"}", false},
                  {"{\"a\":\"\xF0\x80\x80\x80\"}", false},
                  {"{\"a\":\"\xF4\x90\x80\x80\"}", false},
                  {"{\"a\":\"\xF5\x80\x80\x80\"}", false},
                  {"{\"a\":\"\x80\"}", false},
                  {"{\"a\":\"\xC3\"}", false},
                  {"{\"a\":\"abc", false},
                  {"{\"a\":1}x", false},
                  {"{\"a\":1}}", false},
                  {"{\"a\" 1}", false},
                  {"{\"a\":[1 2]}", false},
                  {"{\"a\":[1,]}", false},
                  {"{\"a\":[,1]}", false},
                  {"", false},
                  // JSON, but not an object.
                  {"[1]", false, "not an object"},
                  {"\"s\"", false, "not an object"},
                  {"1", false, "not an object"},
                  {"null", false, "not an object"},
                  // JSON, but outside the whitespace, digit and depth bounds.
                  {" {}", false, "leading whitespace"},
                  {"{} ", false, "trailing whitespace"},
                  {"{}\n", false, "trailing whitespace"},
                  {"{\"a\":\t1}", false, "tab"},
                  {"{\"a\":\r\n1}", false, "carriage return"},
                  {"{\"a\":  1}", false, "two spaces"},
                  {"{\"a\": \n1}", false, "space then newline"},
                  {"{\"a\":\n\n1}", false, "two newlines"},
                  {"{\n                 \"a\":1}", false, "17 spaces of indent"},
                  {"{\"a\":1234567890123456}", false, "16 integer digits"},
                  {"{\"a\":0.1234567890123456}", false, "16 fraction digits"},
                  {"{\"a\":1e100}", false, "3 exponent digits"},
                  {nested(62), true},
                  {nested(63), false, "nested beyond the depth limit"},
              },
              nullptr);
}

// Our rules beyond RFC 8259 for a text nlohmann accepts, checked independently of the grammar:
// no outer whitespace, each gap " " or "\n" plus at most 16 spaces, 15/15/2 digits per number.
bool within_rules(const std::string& text) {
  const auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  if (text.empty() || is_space(text.front()) || is_space(text.back())) return false;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '"') {
      for (++i; text[i] != '"'; ++i) i += text[i] == '\\';
      ++i;
    } else if (is_space(c)) {
      size_t j = i;
      while (j < text.size() && is_space(text[j])) ++j;
      const std::string run = text.substr(i, j - i);
      const bool ok = run == " " || (run[0] == '\n' && run.size() <= 17 &&
                                     run.find_first_not_of(' ', 1) == std::string::npos);
      if (!ok) return false;
      i = j;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t j = i + (c == '-');
      const auto digits = [&] {
        const size_t from = j;
        while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
        return j - from;
      };
      if (digits() > 15) return false;
      if (j < text.size() && text[j] == '.' && (++j, digits() > 15)) return false;
      if (j < text.size() && (text[j] == 'e' || text[j] == 'E')) {
        ++j;
        if (text[j] == '+' || text[j] == '-') ++j;
        if (digits() > 2) return false;
      }
      i = j;
    } else {
      ++i;
    }
  }
  return true;
}

// Random JSON-ish texts: values with random whitespace, numbers, escapes and UTF-8, some of
// them then mutated a byte at a time.
class RandomJsonText {
 public:
  explicit RandomJsonText(uint64_t seed) : rng_(seed) {}

  std::string object() {
    std::string out;
    write_object(out, 0);
    if (pick(3) == 0) mutate(out);
    return out;
  }

 private:
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  // Mostly what the rules allow, sometimes what they do not.
  std::string gap() {
    static const std::vector<std::string> kGood = {
        "", "", "", " ", "\n", "\n  ", "\n                "};
    static const std::vector<std::string> kBad = {"\n                 ", "  ", "\t", "\r\n", " \n"};
    return pick(12) == 0 ? kBad[pick(kBad.size())] : kGood[pick(kGood.size())];
  }

  // Separate appends: GCC 12 warns falsely (-Wrestrict) on char + std::string.
  void separator(std::string& out, char c) {
    out += gap();
    out += c;
    out += gap();
  }

  std::string digits(size_t max) {
    std::string d;
    const size_t n = 1 + pick(max);
    for (size_t i = 0; i < n; ++i) d += static_cast<char>('0' + pick(10));
    return d;
  }

  void write_number(std::string& out) {
    if (pick(3) == 0) out += '-';
    if (pick(4) == 0) {
      out += '0';
    } else {
      out += static_cast<char>('1' + pick(9));
      if (pick(2)) out += digits(pick(8) == 0 ? 16 : 5);
    }
    if (pick(3) == 0) {
      out += '.';
      out += digits(pick(8) == 0 ? 17 : 5);
    }
    if (pick(4) == 0) {
      out += pick(2) ? "e" : "E";
      if (pick(2)) out += pick(2) ? "+" : "-";
      out += digits(pick(8) == 0 ? 3 : 2);
    }
  }

  void write_string(std::string& out) {
    static const std::vector<std::string> kGood = {"a",
                                                   "Z",
                                                   " ",
                                                   "\\\"",
                                                   "\\\\",
                                                   "\\/",
                                                   "\\n",
                                                   "\\t",
                                                   "\\u00e9",
                                                   "\\uD83D\\uDE00",
                                                   "\xC3\xA9",
                                                   "\xE2\x82\xAC",
                                                   "\xF0\x9F\x98\x80",
                                                   "\x7F",
                                                   "'"};
    static const std::vector<std::string> kBad = {"\\uDE00", "\\uD83Dx", "\xED\xA0\x80", "\xC0\xAF",
                                                  "\x01",    "\xFF",     "\\x"};
    out += '"';
    const size_t n = pick(5);
    for (size_t i = 0; i < n; ++i) {
      out += pick(16) == 0 ? kBad[pick(kBad.size())] : kGood[pick(kGood.size())];
    }
    out += '"';
  }

  void write_value(std::string& out, int depth) {
    switch (pick(depth < 4 ? 7 : 5)) {
      case 0:
        write_string(out);
        break;
      case 1:
        write_number(out);
        break;
      case 2:
        out += pick(2) ? "true" : "false";
        break;
      case 3:
        out += "null";
        break;
      case 4:
        write_string(out);
        break;
      case 5:
        write_object(out, depth + 1);
        break;
      default: {
        out += '[';
        out += gap();
        const size_t n = pick(4);
        for (size_t i = 0; i < n; ++i) {
          if (i > 0) separator(out, ',');
          write_value(out, depth + 1);
        }
        out += gap();
        out += ']';
      }
    }
  }

  void write_object(std::string& out, int depth) {
    out += '{';
    out += gap();
    const size_t n = pick(4);
    for (size_t i = 0; i < n; ++i) {
      if (i > 0) separator(out, ',');
      write_string(out);
      separator(out, ':');
      write_value(out, depth);
    }
    out += gap();
    out += '}';
  }

  void mutate(std::string& out) {
    static const std::string kBytes = "{}[],:\"\\ \n0123456789.-+eEtrufalsn\x01\x80\xC3";
    const size_t at = pick(out.size() + 1);
    switch (pick(3)) {
      case 0:
        out.insert(at, 1, kBytes[pick(kBytes.size())]);
        break;
      case 1:
        if (at < out.size()) out.erase(at, 1);
        break;
      default:
        if (at < out.size()) out[at] = kBytes[pick(kBytes.size())];
    }
  }

  std::mt19937_64 rng_;
};

// Random texts, valid and not: the grammar accepts exactly those nlohmann parses as an object
// that also keep our whitespace and digit rules.
TEST(JsonObjectGrammar, AgreesWithNlohmannOnRandomTexts) {
  const uint64_t seed = test_seed();
  RandomJsonText gen(seed);
  const auto g = JsonGrammar::any_object(tiny().vocab);
  int valid = 0, invalid = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string text = gen.object();
    const json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
    const bool expected = !parsed.is_discarded() && parsed.is_object() && within_rules(text);
    (expected ? valid : invalid) += 1;
    const std::string shown = json(text).dump(-1, ' ', false, json::error_handler_t::replace);
    EXPECT_EQ(accepts(g, tiny().single_bytes(text)), expected) << shown;
    EXPECT_EQ(accepts(g, tiny().greedy(text)), expected) << "as pieces: " << shown;
  }
  std::printf("[ texts    ] %d accepted, %d refused\n", valid, invalid);
  EXPECT_GT(valid, 300);
  EXPECT_GT(invalid, 300);
}

TEST(JsonSchemaGrammar, AcceptsExactlyTheValuesOfTheSchema) {
  const ojson person = ojson::parse(R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "maxLength": 5},
      "age": {"type": "integer", "minimum": 0, "maximum": 150},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
      "ok": {"type": "boolean"}
    },
    "required": ["name", "age"]
  })");
  check_cases(JsonGrammar::from_schema(person, tiny().vocab),
              {
                  {R"({"name":"Bob","age":42})", true},
                  {R"({"name":"","age":0,"tags":[]})", true},
                  {"{\"name\":\"h\xC3\xA9llo\",\"age\":150,\"tags\":[\"a\",\"b\"]}", true},
                  {R"({"name":"\u00e9\ud83d\ude00abc","age":1})", true},
                  {R"({ "name": "x", "age": 7, "ok": true })", true},
                  {R"({"name":"x","age":7,"ok":false})", true},
                  {R"({"name":"x","age":7,"tags":["a"],"ok":false})", true},
                  {R"({"age":42,"name":"Bob"})", false, "schema order"},
                  {R"({"name":"Bob"})", false},
                  {R"({"age":1})", false},
                  {R"({})", false},
                  {R"({"name":"toolong","age":1})", false},
                  {R"({"name":"Bob","age":151})", false},
                  {R"({"name":"Bob","age":-1})", false},
                  {R"({"name":"Bob","age":4.5})", false},
                  {R"({"name":"Bob","age":1e2})", false},
                  {R"({"name":"Bob","age":042})", false},
                  {R"({"name":"Bob","age":42,"extra":1})", false, "additionalProperties"},
                  {R"({"name":"Bob","age":42,"tags":["a","b","c"]})", false},
                  {R"({"name":"Bob","age":42,"tags":[1]})", false},
                  {R"({"name":"Bob","age":42,"ok":null})", false},
                  {R"({"name":"Bob","age":42,"ok":true,"tags":[]})", false, "schema order"},
                  {R"({"name":1,"age":42})", false},
              },
              &person);

  const ojson numbers = ojson::parse(R"({
    "type": "object",
    "properties": {
      "x": {"type": "number", "minimum": -1.5, "maximum": 2.25},
      "z": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 1000},
      "w": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.001}
    },
    "required": ["x", "z", "w"]
  })");
  check_cases(JsonGrammar::from_schema(numbers, tiny().vocab),
              {
                  {R"({"x":-1.5,"z":-2,"w":0.001})", true},
                  {R"({"x":2.25,"z":999,"w":0.000000000000001})", true},
                  {R"({"x":0,"z":0,"w":0.0005})", true},
                  {R"({"x":-0.0,"z":5,"w":0.0010})", true},
                  {R"({"x":2.2500,"z":5,"w":0.001})", true},
                  {R"({"x":-1.51,"z":0,"w":0.001})", false},
                  {R"({"x":2.26,"z":0,"w":0.001})", false},
                  {R"({"x":3,"z":0,"w":0.001})", false},
                  {R"({"x":0,"z":-3,"w":0.001})", false},
                  {R"({"x":0,"z":1000,"w":0.001})", false},
                  {R"({"x":0,"z":0,"w":0})", false},
                  {R"({"x":0,"z":0,"w":0.0})", false},
                  {R"({"x":0,"z":0,"w":0.0011})", false},
                  {R"({"x":0,"z":0,"w":0.0000000000000001})", false, "16 fraction digits"},
                  {R"({"x":1e0,"z":0,"w":0.001})", false, "no exponent with bounds"},
                  {R"({"x":0,"z":-0,"w":0.001})", false, "-0 is not generated for integers"},
              },
              &numbers);

  const ojson alternatives = ojson::parse(R"({
    "type": "object",
    "properties": {
      "v": {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}, {"type": "null"},
                      {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}]},
      "kind": {"enum": ["x", "y", 1, 12, null, {"k": [true]}]},
      "opt": {"type": ["string", "null"], "minLength": 1}
    },
    "required": ["v", "kind"]
  })");
  check_cases(JsonGrammar::from_schema(alternatives, tiny().vocab),
              {
                  {R"({"v":"ab","kind":"x"})", true},
                  {R"({"v":-7,"kind":1})", true},
                  {R"({"v":null,"kind":12})", true},
                  {R"({"v":[true,false],"kind":null})", true},
                  {R"({"v":[],"kind":{"k":[true]},"opt":null})", true},
                  {R"({"v":[],"kind":"y","opt":"s"})", true},
                  {R"({"v":"abc","kind":"x"})", false},
                  {R"({"v":1.5,"kind":"x"})", false},
                  {R"({"v":true,"kind":"x"})", false},
                  {R"({"v":[1],"kind":"x"})", false},
                  {R"({"v":1,"kind":"z"})", false},
                  {R"({"v":1,"kind":123})", false},
                  {R"({"v":1,"kind":{"k":[false]}})", false},
                  {R"({"v":1,"kind":{"k": [true]}})", false, "enum values are compact"},
                  {R"({"v":1,"kind":1,"opt":""})", false},
              },
              &alternatives);

  const ojson tree = ojson::parse(R"({
    "$defs": {"node": {"type": "object", "properties": {
      "value": {"type": "integer"},
      "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
      "required": ["value"]}},
    "$ref": "#/$defs/node"
  })");
  check_cases(
      JsonGrammar::from_schema(tree, tiny().vocab),
      {
          {R"({"value":1})", true},
          {R"({"value":1,"children":[{"value":2,"children":[{"value":3}]},{"value":4}]})", true},
          {R"({"value":1,"children":[{"children":[]}]})", false},
          {R"({"value":1,"children":[1]})", false},
      },
      &tree);

  const ojson map =
      ojson::parse(R"({"type": "object", "additionalProperties": {"type": "integer"}})");
  check_cases(JsonGrammar::from_schema(map, tiny().vocab),
              {
                  {R"({})", true},
                  {R"({"a":1,"b":-2})", true},
                  {R"({"a":"x"})", false},
              },
              &map);

  const ojson closed = ojson::parse(R"({"type": "object", "properties": {}})");
  check_cases(JsonGrammar::from_schema(closed, tiny().vocab),
              {{"{}", true}, {"{ }", true}, {R"({"a":1})", false}}, &closed);
}

TEST(JsonSchemaGrammar, TopLevelScalarsEndWithAStopToken) {
  const auto g = schema_grammar(R"({"type": "integer", "minimum": 10, "maximum": 20})");
  check_cases(g,
              {{"10", true},
               {"15", true},
               {"20", true},
               {"9", false},
               {"21", false},
               {"100", false},
               {"-10", false}},
              nullptr);
  JsonMatcher m(g);
  EXPECT_FALSE(m.accept(tiny().eos)) << "nothing generated yet";
  ASSERT_TRUE(feed(m, tiny().single_bytes("1")));
  EXPECT_FALSE(m.accept(tiny().eos)) << "1 is below the minimum";
  ASSERT_TRUE(feed(m, tiny().single_bytes("2")));
  EXPECT_FALSE(m.complete()) << "a top-level number ends only with a stop token";
  const std::vector<uint8_t> allowed = allowed_set(m, tiny().n_vocab());
  EXPECT_TRUE(allowed[tiny().eos]);
  EXPECT_TRUE(allowed[tiny().eot]);
  for (int d = 0; d <= 9; ++d) EXPECT_FALSE(allowed[tiny().byte_token['0' + d]]) << d;
  EXPECT_TRUE(m.accept(tiny().eot));
  EXPECT_TRUE(m.complete());

  check_cases(schema_grammar(R"({"enum": [1, 12, 123]})"),
              {{"1", true}, {"12", true}, {"123", true}, {"13", false}, {"1234", false}}, nullptr);
  check_cases(schema_grammar(R"({"type": ["string", "null"], "maxLength": 2})"),
              {{"\"ab\"", true}, {"null", true}, {"\"abc\"", false}, {"nul", false}}, nullptr);
  check_cases(schema_grammar(R"({"const": {"a": [1, 2]}})"),
              {{R"({"a":[1,2]})", true}, {R"({"a":[1, 2]})", false}}, nullptr);
  check_cases(schema_grammar(R"({"type": "number"})"),
              {{"0", true}, {"-1.25e-7", true}, {"1E+99", true}, {"00", false}}, nullptr);
}

// ---- the mask agrees with accept ----------------------------------------------------------

// At every prefix of each document, the mask allows a token exactly when accept takes it.
TEST(JsonMatcher, MaskAllowsExactlyTheTokensAcceptTakes) {
  const auto g = schema_grammar(R"({
    "type": "object",
    "properties": {"name": {"type": "string"}, "short": {"type": "string", "maxLength": 3},
                   "n": {"type": "number", "maximum": 12.5},
                   "list": {"type": "array", "items": {"enum": ["a", true, 12]}}},
    "required": ["name"]})");
  const auto any = JsonGrammar::any_object(tiny().vocab);
  const TinyVocab& v = tiny();
  for (const auto& [grammar, doc] :
       std::vector<std::pair<std::shared_ptr<const JsonGrammar>, std::string>>{
           {g, R"({"name": "a\u00e9\"b", "short": "\u00e9x\"", "n": -1.5, "list": ["a", 12]})"},
           {any, "{\"k\":[true, {\"x\":\"\xC3\xA9\\ud83d\\ude00\"}],\n  \"n\":-0.5e+3}"}}) {
    SCOPED_TRACE(doc);
    const std::vector<int32_t> ids = v.single_bytes(doc);
    for (size_t prefix = 0; prefix <= ids.size(); ++prefix) {
      JsonMatcher m(grammar);
      ASSERT_TRUE(feed(m, std::vector<int32_t>(ids.begin(), ids.begin() + prefix)));
      const std::vector<uint8_t> allowed = allowed_set(m, v.n_vocab());
      for (int32_t t = 0; t < v.n_vocab(); ++t) {
        JsonMatcher probe(grammar);
        feed(probe, std::vector<int32_t>(ids.begin(), ids.begin() + prefix));
        EXPECT_EQ(probe.accept(t), allowed[t] != 0)
            << "after " << json(doc.substr(0, prefix)).dump() << " token " << t << " "
            << json(v.tok->token_bytes(t, true))
                   .dump(-1, ' ', false, json::error_handler_t::replace);
      }
    }
  }
}

TEST(JsonMatcher, PiecesSpanningGrammarElementsAreAllowedExactlyWhenValid) {
  const TinyVocab& v = tiny();
  const auto any = JsonGrammar::any_object(v.vocab);
  const auto piece = [&](const std::string& bytes) {
    for (const auto& [b, id] : v.pieces) {
      if (b == bytes) return id;
    }
    ADD_FAILURE() << "no piece " << bytes;
    return 0;
  };
  struct Span {
    std::string prefix, piece;
    bool allowed;
  };
  for (const Span& s : std::vector<Span>{
           {"", "{\"", true},
           {"", "[{", false},
           {"{", "\":", true},  // a key may hold ':'
           {"{\"a", "\":", true},
           {"{\"a", "\":\"", true},
           {"{\"a\"", "\":", false},
           {"{\"a\":1", "},", false},  // the top-level object ends at '}'
           {"{\"a\":{\"b\":1", "},", true},
           {"{\"a\":1", "}\n", false},
           {"{\"a\":\"x", "\"}", true},
           {"{\"a\":\"x", "\"},", false},
           {"{\"a\":[{\"b\":\"x", "\"},", true},
           {"{\"a\":[{\"b\":\"x", "\"}", true},
           {"{\"a\":[1", "]}", true},
           {"{\"a\":[{}", "]}", true},
           {"{\"a\":[{", "}]", true},
           {"{\"a\":\"x", "\",\"", true},
           {"{\"a\":\"x\"", ", \"", true},
           {"{\"a\":\"x\",", " \"", true},
           {"{\"a\":\"x\", ", " \"", false},  // a second space in one gap
           {"{\"a\":", "\n    ", true},
           {"{\"a\":", "  ", false},
           {"{\"a\":", "-0", true},
           {"{\"a\":-0", "12", false},
           {"{\"a\":1", "12", true},
           {"{\"a\":1", ".5", true},
           {"{\"a\":1.5", ".5", false},
           {"{\"a\":1", "e+", true},
           {"{\"a\":1e+", "12", true},
           {"{\"a\":1e+1", "12", false},  // three exponent digits
           {"{\"a\":", "true", true},
           {"{\"a\":t", "true", false},
           {"{\"a\":\"", "\\u00", true},
           {"{\"a\":\"\\u00", "\\u00", false},
           {"{\"a\":\"", "\\\"", true},
           {"{\"a\":\"", "\xC3\xA9", true},
           {"{\"", "ab\":", true},
           {"{\"a\":\"", "ab\":", false},  // '"' ends the value; ':' cannot follow it
       }) {
    SCOPED_TRACE(json(s.prefix).dump() + " then " + json(s.piece).dump());
    JsonMatcher m(any);
    ASSERT_TRUE(feed(m, v.single_bytes(s.prefix)));
    const int32_t id = piece(s.piece);
    EXPECT_EQ(allowed_set(m, v.n_vocab())[id] != 0, s.allowed);
    EXPECT_EQ(m.accept(id), s.allowed);
  }
}

TEST(JsonMatcher, StopTokensOnlyWhenCompleteAndControlTokensNever) {
  const TinyVocab& v = tiny();
  JsonMatcher m(JsonGrammar::any_object(v.vocab));
  const std::vector<int32_t> ids = v.greedy("{\"a\": [1, {\"b\": null}]}");
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::vector<uint8_t> allowed = allowed_set(m, v.n_vocab());
    EXPECT_FALSE(allowed[v.eos]) << "step " << i;
    EXPECT_FALSE(allowed[v.eot]) << "step " << i;
    EXPECT_FALSE(allowed[v.bos]) << "step " << i;
    EXPECT_FALSE(allowed[v.unk]) << "step " << i;
    EXPECT_FALSE(m.accept(v.eos));
    EXPECT_FALSE(m.accept(v.bos));
    EXPECT_FALSE(m.complete());
    ASSERT_TRUE(m.accept(ids[i])) << "step " << i;
  }
  EXPECT_TRUE(m.complete());
  const std::vector<uint8_t> allowed = allowed_set(m, v.n_vocab());
  for (int32_t t = 0; t < v.n_vocab(); ++t) {
    EXPECT_EQ(allowed[t] != 0, v.is_stop(t)) << "token " << t << " after completion";
  }
  EXPECT_FALSE(m.accept(v.byte_token['}']));
  EXPECT_FALSE(m.accept(v.bos));
  EXPECT_FALSE(m.accept(-1));
  EXPECT_FALSE(m.accept(v.n_vocab()));
  EXPECT_TRUE(m.accept(v.eos));
  EXPECT_TRUE(m.complete());

  // Logits past the vocabulary (padded output rows) are never sampled.
  JsonMatcher fresh(JsonGrammar::any_object(v.vocab));
  std::vector<float> logits(v.n_vocab() + 8, 1.0f);
  fresh.mask_logits(logits);
  for (size_t i = v.n_vocab(); i < logits.size(); ++i) EXPECT_EQ(logits[i], -INFINITY);
  EXPECT_EQ(logits[v.byte_token['{']], 1.0f);
  EXPECT_EQ(logits[v.byte_token['[']], -INFINITY);
}

TEST(JsonMatcher, RejectedTokensLeaveTheStateUnchanged) {
  const TinyVocab& v = tiny();
  JsonMatcher m(schema_grammar(R"({"type":"object","properties":{"a":{"type":"integer"}}})"));
  ASSERT_TRUE(feed(m, v.single_bytes("{\"a\":1")));
  EXPECT_FALSE(m.accept(v.byte_token['x']));
  EXPECT_FALSE(m.accept(v.byte_token[',']));  // no property after "a"
  EXPECT_FALSE(m.accept(v.pieces[0].second));
  ASSERT_TRUE(m.accept(v.byte_token['2']));
  ASSERT_TRUE(m.accept(v.byte_token['}']));
  EXPECT_TRUE(m.complete());
}

// ---- random walks through the mask end in valid values -------------------------------------

struct WalkResult {
  std::string text;
  bool ended = false;
};

// Picks uniformly among the allowed tokens until the value is complete or a stop token is
// chosen. Checks on the way: a masked token is refused, and a stop token is allowed only when
// the text so far is a whole value.
WalkResult random_walk(const std::shared_ptr<const JsonGrammar>& g, std::mt19937_64& rng,
                       int max_steps) {
  const TinyVocab& v = tiny();
  JsonMatcher m(g);
  WalkResult r;
  std::vector<float> logits(v.n_vocab());
  for (int step = 0; step < max_steps; ++step) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    m.mask_logits(logits);
    std::vector<int32_t> allowed, masked;
    for (int32_t t = 0; t < v.n_vocab(); ++t) (logits[t] == 0.0f ? allowed : masked).push_back(t);
    if (allowed.empty()) {
      ADD_FAILURE() << "no token allowed after " << json(r.text).dump();
      return r;
    }
    if (m.complete()) {
      for (int32_t t : allowed) EXPECT_TRUE(v.is_stop(t)) << "token " << t << " after the end";
      r.ended = true;
      return r;
    }
    if (logits[v.eos] == 0.0f) {
      EXPECT_TRUE(json::accept(r.text)) << "stop allowed after " << json(r.text).dump();
    }
    const int32_t bad = masked[std::uniform_int_distribution<size_t>(0, masked.size() - 1)(rng)];
    EXPECT_FALSE(m.accept(bad)) << "masked token " << bad << " accepted";
    const int32_t t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    EXPECT_TRUE(m.accept(t));
    if (v.is_stop(t)) {
      EXPECT_TRUE(m.complete());
      r.ended = true;
      return r;
    }
    r.text += v.tok->token_bytes(t);
  }
  return r;
}

void walk_schema(const std::string& schema_text, uint64_t seed, int walks = 40) {
  SCOPED_TRACE(schema_text);
  const ojson schema = schema_text.empty() ? ojson{{"type", "object"}} : ojson::parse(schema_text);
  const auto g = schema_text.empty() ? JsonGrammar::any_object(tiny().vocab)
                                     : JsonGrammar::from_schema(schema, tiny().vocab);
  std::mt19937_64 rng(seed);
  int ended = 0;
  for (int w = 0; w < walks; ++w) {
    const WalkResult r = random_walk(g, rng, 1500);
    if (!r.ended) continue;
    ++ended;
    const ojson value = ojson::parse(r.text, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(value.is_discarded()) << "not JSON: " << json(r.text).dump();
    EXPECT_EQ(why_invalid(value, schema, schema), "") << r.text;
    EXPECT_EQ(g->violation(json(value)), "") << r.text;
  }
  // Unbounded strings and arrays can run past the step cap, but most walks end.
  EXPECT_GE(ended, walks / 2);
  std::printf("[ walks    ] %d of %d ended\n", ended, walks);
}

TEST(JsonMatcher, RandomWalksProduceValidObjects) { walk_schema("", test_seed()); }

TEST(JsonMatcher, RandomWalksProduceValuesOfTheSchema) {
  const uint64_t seed = test_seed();
  walk_schema(R"({"type": "object",
    "properties": {
      "name": {"type": "string", "maxLength": 8},
      "age": {"type": "integer", "minimum": 0, "maximum": 120},
      "email": {"type": "string", "minLength": 3, "maxLength": 6},
      "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 3},
      "address": {"type": "object", "properties": {
        "street": {"type": "string", "maxLength": 4},
        "zip": {"type": "string", "minLength": 5, "maxLength": 5}}, "required": ["zip"]},
      "ok": {"type": "boolean"},
      "none": {"type": "null"}
    },
    "required": ["name", "age", "tags"]})",
              seed);
  walk_schema(R"({"type": "object",
    "properties": {
      "x": {"type": "number", "minimum": -1.5, "maximum": 2.25},
      "y": {"type": "number"},
      "z": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 1000},
      "w": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.001}
    },
    "required": ["x", "y", "z", "w"]})",
              seed + 1);
  walk_schema(R"({"type": "object",
    "properties": {
      "v": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}, {"type": "null"},
                      {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}]},
      "kind": {"oneOf": [{"const": "x"}, {"enum": [1, 12, null]}]},
      "opt": {"type": ["string", "null"], "maxLength": 2}
    },
    "required": ["v", "kind"]})",
              seed + 2);
  walk_schema(R"({
    "$defs": {"node": {"type": "object", "properties": {
      "value": {"type": "integer", "minimum": 0, "maximum": 9},
      "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
      "required": ["value"]}},
    "$ref": "#/$defs/node"})",
              seed + 3);
  walk_schema(R"({"type": "object", "additionalProperties": {"type": "integer"}})", seed + 4);
  walk_schema(R"({"type": "array", "items": {"type": "string", "maxLength": 2}, "minItems": 2,
                  "maxItems": 4})",
              seed + 5);
  walk_schema(R"({"type": "integer", "minimum": -20, "maximum": 20})", seed + 6);
  walk_schema(R"({"type": "number"})", seed + 7);
  walk_schema(R"({"enum": [1, 12, 123, "x", [true]]})", seed + 8);
  walk_schema(R"({"type": ["boolean", "null"]})", seed + 9);
  walk_schema(R"({"type": "string", "minLength": 2, "maxLength": 3})", seed + 10);
  walk_schema(R"({"type": "object", "properties": {"free": {}, "any": true}})", seed + 11);
  walk_schema(R"({"type": "array", "items": {"anyOf": [{"type": "string", "maxLength": 3},
                  {"type": "integer"}, {"type": "array", "maxItems": 2},
                  {"type": "object", "additionalProperties": {"type": ["boolean", "null"]}}]},
                  "maxItems": 4})",
              seed + 12);
}

// ---- schema errors name the keyword and the place ------------------------------------------

TEST(JsonSchemaGrammar, UnsupportedAndMalformedSchemasNameTheKeywordAndPlace) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"type": "string", "pattern": "^a"})",
       "unsupported schema keyword 'pattern' at the root"},
      {R"({"type": "object", "properties": {"name": {"type": "string", "pattern": "x"}}})",
       "unsupported schema keyword 'pattern' at /properties/name"},
      {R"({"type": "object", "properties": {"a/b~": {"type": "string", "pattern": "x"}}})",
       "unsupported schema keyword 'pattern' at /properties/a~1b~0"},
      {R"({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}})",
       "unsupported schema keyword 'format' at /properties/d"},
      {R"({"type": "array", "items": {"type": "integer", "multipleOf": 2}})",
       "unsupported schema keyword 'multipleOf' at /items"},
      {R"({"type": "array", "uniqueItems": true})",
       "unsupported schema keyword 'uniqueItems' at the root"},
      {R"({"not": {"type": "string"}})", "unsupported schema keyword 'not' at the root"},
      {R"({"type": "object", "patternProperties": {}})",
       "unsupported schema keyword 'patternProperties' at the root"},
      {R"({"type": "object", "minProperties": 1})",
       "unsupported schema keyword 'minProperties' at the root"},
      {R"({"type": "array", "prefixItems": []})",
       "unsupported schema keyword 'prefixItems' at the root"},
      {R"({"if": {}, "then": {}})", "unsupported schema keyword 'if' at the root"},
      {R"({"$defs": {"a": {"type": "string", "format": "email"}}, "$ref": "#/$defs/a"})",
       "unsupported schema keyword 'format' at /$defs/a"},
      {R"({"type": "object", "properties": {"a": {}}, "additionalProperties": true})",
       "'additionalProperties' other than false beside 'properties' at the root"},
      {R"({"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "string"}})",
       "'additionalProperties' other than false beside 'properties' at the root"},
      {R"({"type": 5})", "'type' at the root must be a type name or a list of them, not 5"},
      {R"({"type": "strng"})", "'type' at the root names unknown type 'strng'"},
      {R"({"type": []})", "'type' at the root is an empty list"},
      {R"({"type": ["string", "string"]})", "'type' at the root names 'string' twice"},
      {R"({"type": "object", "properties": []})",
       "'properties' at the root must be an object, not array"},
      {R"({"type": "object", "properties": {"a": 3}})",
       "schema at /properties/a must be an object or a boolean, not number"},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})",
       "'required' at the root names 'b', which is not in 'properties'"},
      {R"({"type": "object", "properties": {"a": {}}, "required": "a"})",
       "'required' at the root must be an array of names"},
      {R"({"type": "object", "required": ["a"]})",
       "'required' at the root names properties of an object without 'properties'"},
      {R"({"$ref": "#/$defs/missing"})",
       "'$ref' at the root is '#/$defs/missing', which does not exist"},
      {R"({"$ref": "http://example.com/s.json"})",
       "'$ref' at the root is 'http://example.com/s.json': only references into this schema"},
      {R"({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}})",
       "which leads back to itself through $ref alone"},
      {R"({"$ref": "#/$defs/a", "type": "string", "$defs": {"a": {}}})",
       "keyword 'type' beside '$ref' at the root is not supported"},
      {R"({"anyOf": [{"type": "object"}, {"type": "object", "properties": {}}]})",
       "alternatives at the root cannot be told apart: /anyOf/0 and /anyOf/1 can both start "
       "with '{'"},
      {R"({"anyOf": [{"type": "integer"}, {"type": "number"}]})", "can both start with '-'"},
      // Discriminated objects need a required first property, one name, distinct string consts.
      {R"({"anyOf": [{"type": "object", "properties": {"n": {"const": "a"}}},
                     {"type": "object", "properties": {"n": {"const": "b"}}, "required": ["n"]}]})",
       "can both start with '{'"},
      {R"({"anyOf": [{"type": "object", "properties": {"n": {"const": "a"}}, "required": ["n"]},
                     {"type": "object", "properties": {"m": {"const": "b"}}, "required": ["m"]}]})",
       "can both start with '{'"},
      {R"({"oneOf": [{"type": "object", "properties": {"n": {"const": "a"}}, "required": ["n"]},
                     {"type": "object", "properties": {"n": {"const": "a"}}, "required": ["n"]}]})",
       "can both start with '{'"},
      {R"({"anyOf": [{"type": "object", "properties": {"n": {"const": 1}}, "required": ["n"]},
                     {"type": "object", "properties": {"n": {"const": 2}}, "required": ["n"]}]})",
       "or be objects whose first property is required and a distinct string const"},
      {R"({"anyOf": [{"enum": ["a"]}, {"type": "string"}]})", "can both start with '\"'"},
      {R"({"anyOf": []})", "'anyOf' at the root must be a non-empty array of schemas"},
      {R"({"oneOf": [{"type": "string"}], "type": "string"})",
       "keyword 'type' beside 'oneOf' at the root is not supported"},
      {R"({"allOf": [{"type": "string"}, {"maxLength": 3}]})",
       "'allOf' at the root is supported only as an array of one schema"},
      {R"({"type": "string", "minLength": 4, "maxLength": 3})",
       "'minLength' at the root exceeds 'maxLength'"},
      {R"({"type": "string", "maxLength": -1})",
       "'maxLength' at the root must be a non-negative integer, not -1"},
      {R"({"type": "array", "minItems": 1.5})",
       "'minItems' at the root must be a non-negative integer, not 1.5"},
      {R"({"type": "array", "minItems": 3, "maxItems": 2})",
       "'minItems' at the root exceeds 'maxItems'"},
      {R"({"type": "array", "items": [{"type": "string"}]})",
       "'items' at the root is an array (tuple validation), which is not supported"},
      {R"({"type": "integer", "minimum": 5, "maximum": 4})",
       "no integer at the root satisfies its minimum and maximum"},
      {R"({"type": "integer", "minimum": 1.2, "maximum": 1.8})",
       "no integer at the root satisfies its minimum and maximum"},
      {R"({"type": "integer", "minimum": 1e20})",
       "no integer at the root satisfies its minimum and maximum with at most 15 integer digits"},
      {R"({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1})",
       "no number at the root satisfies its minimum and maximum"},
      {R"({"type": "number", "minimum": "1"})",
       "'minimum' at the root must be a finite number, not \"1\""},
      {R"({"type": "number", "exclusiveMinimum": true})",
       "'exclusiveMinimum' at the root is true but 'minimum' is missing"},
      {R"({"enum": []})", "'enum' at the root must be a non-empty array"},
      {R"({"enum": ["a"], "const": "b"})", "'const' at the root is not one of its 'enum' values"},
      {R"({"enum": ["abc"], "maxLength": 2})",
       "keyword 'maxLength' beside 'enum' at the root is not supported"},
      {R"({"enum": [1, 2], "type": "string"})",
       "no 'enum' or 'const' value at the root has the type that 'type' names"},
      {R"({"type": "integer", "minLength": 1})",
       "keyword 'minLength' at the root does not apply to type 'integer' (it needs type "
       "'string')"},
      {R"({"type": ["integer", "null"], "items": {}})",
       "keyword 'items' at the root does not apply to type list"},
      {R"({"type": "object", "properties": {"a": false}})",
       "schema false at /properties/a admits no value"},
      {R"([1])", "schema at the root must be an object or a boolean, not array"},
  };
  for (const auto& [schema, message] : cases) {
    SCOPED_TRACE(schema);
    try {
      JsonGrammar::from_schema(ojson::parse(schema), tiny().vocab);
      ADD_FAILURE() << "no GrammarError";
    } catch (const GrammarError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos)
          << "got:  " << e.what() << "\nwant: " << message;
    }
  }
}

TEST(JsonSchemaGrammar, DeepOrHugeSchemasAreRefusedNotAStackOverflow) {
  // A hostile body: 1,100 levels of items (a segfault before the limit), a $ref chain of
  // 5,000 definitions, and 64 levels (the limit) which still compile.
  auto nested = [](int levels) {
    std::string s;
    for (int i = 0; i < levels; ++i) s += R"({"type": "array", "items": )";
    s += R"({"type": "integer"})";
    for (int i = 0; i < levels; ++i) s += "}";
    return s;
  };
  std::string chain = R"({"$ref": "#/$defs/d0", "$defs": {)";
  for (int i = 0; i < 5000; ++i)
    chain +=
        "\"d" + std::to_string(i) + "\": {\"$ref\": \"#/$defs/d" + std::to_string(i + 1) + "\"}, ";
  chain += R"("d5000": {"type": "integer"}}})";
  for (const std::string& schema : {nested(1100), chain}) {
    try {
      JsonGrammar::from_schema(ojson::parse(schema), tiny().vocab);
      ADD_FAILURE() << "no GrammarError";
    } catch (const GrammarError& e) {
      EXPECT_NE(std::string(e.what()).find("deeper than 64 levels"), std::string::npos) << e.what();
    }
  }
  check_cases(JsonGrammar::from_schema(ojson::parse(nested(62)), tiny().vocab),
              {{std::string(62, '[') + "1" + std::string(62, ']'), true},
               {std::string(61, '[') + "1" + std::string(61, ']'), false}},
              nullptr);
}

TEST(JsonSchemaGrammar, DescriptiveKeywordsAreIgnoredAndDraft4BoundsAccepted) {
  const auto g = schema_grammar(R"({
    "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "T", "description": "d",
    "type": "object", "default": {}, "examples": [{}],
    "properties": {"n": {"type": "integer", "minimum": 0, "exclusiveMinimum": true,
                         "maximum": 3, "exclusiveMaximum": true, "description": "n"},
                   "u": {"type": "array", "uniqueItems": false, "maxItems": 1}},
    "required": ["n"]})");
  check_cases(g,
              {{R"({"n":1})", true},
               {R"({"n":2,"u":[]})", true},
               {R"({"n":0})", false},
               {R"({"n":3})", false}},
              nullptr);
}

TEST(JsonSchemaGrammar, UnorderedJsonSchemasEmitPropertiesSorted) {
  // nlohmann::json keeps object keys sorted, so that is the order this overload can honour.
  const auto g = JsonGrammar::from_schema(
      json::parse(R"({"type": "object", "properties": {"b": {"type": "integer"},
                      "a": {"type": "integer"}}, "required": ["a", "b"]})"),
      tiny().vocab);
  EXPECT_TRUE(accepts(g, tiny().single_bytes(R"({"a":1,"b":2})")));
  EXPECT_FALSE(accepts(g, tiny().single_bytes(R"({"b":2,"a":1})")));
}

// ---- the validator reads a schema as the grammar does ------------------------------------

// Random values for a schema: drawn from its keywords (near their bounds), then often broken
// at one random place (another type, a key added or dropped, an item too many, a bound
// crossed, a string lengthened). Objects keep the schema's property order, so that a value's
// compact dump is a text the matcher may take; numbers are ones whose dump is their shortest
// text, with exponents of two digits or of three (1e+200, never writable).
class RandomSchemaValue {
 public:
  RandomSchemaValue(const ojson& root, uint64_t seed) : root_(root), rng_(seed) {}

  ojson value() {
    ojson v = draw(root_, 0);
    if (pick(3) != 0) mutate(v, 0);
    return v;
  }

 private:
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  int64_t between(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

  const ojson& resolved(const ojson& s) const {
    if (!s.is_object() || !s.contains("$ref")) return s;
    return resolved(root_.at(ojson::json_pointer(s["$ref"].get<std::string>().substr(1))));
  }

  std::string text(size_t code_points) {
    static const std::vector<std::string> kChars = {
        "a", "Z", " ", "\"", "\\", "\n", "\x01", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    std::string s;
    for (size_t i = 0; i < code_points; ++i) s += kChars[pick(kChars.size())];
    return s;
  }

  // Any value, none of them an integral double (an integer schema would take its value but
  // not its dump, "3.0").
  ojson wild(int depth) {
    switch (pick(depth < 3 ? 9 : 7)) {
      case 0:
        return text(pick(4));
      case 1:
        return between(-200, 200);
      case 2:
        return static_cast<double>(between(-200, 200)) + 0.5;
      case 3:
        return pick(2) == 0;
      case 4:
        return nullptr;
      case 5:
        return decimal(std::to_string(between(-99, 99) * 10 + 5) + "e-4");
      case 6:
        return pick(2) ? 1e200 : -2.5e-200;
      case 7:
        return ojson::array({wild(depth + 1)});
      default:
        return ojson{{"w", wild(depth + 1)}};
    }
  }

  // The closed range a number schema allows, on a grid of 1/1000 (integers: of 1).
  std::pair<int64_t, int64_t> range(const ojson& s, int64_t grid) const {
    int64_t lo = -50 * grid, hi = 50 * grid;
    const auto at = [&](const char* key) { return std::llround(s[key].get<double>() * grid); };
    if (s.contains("minimum")) lo = at("minimum");
    if (s.contains("exclusiveMinimum")) lo = at("exclusiveMinimum") + 1;
    if (s.contains("maximum")) hi = at("maximum");
    if (s.contains("exclusiveMaximum")) hi = at("exclusiveMaximum") - 1;
    return {lo, hi};
  }

  ojson number(const ojson& s, bool integer) {
    if (integer) {
      const auto [lo, hi] = range(s, 1);
      return between(lo, hi);
    }
    const bool bounded = s.contains("minimum") || s.contains("maximum") ||
                         s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum");
    if (!bounded && pick(3) == 0) {
      // Exponents of two digits, up to either end of the range they reach. Short dumps only:
      // nlohmann's Grisu2 writes a few of these doubles with 17 digits (1.4000000000000001e+23).
      for (;;) {
        const double x =
            decimal(std::to_string(between(1, 99)) + "e" + std::to_string(between(-98, 97)));
        if (ojson(x).dump().size() <= 8) return x;
      }
    }
    const auto [lo, hi] = range(s, 1000);
    return decimal(std::to_string(between(lo, hi)) + "e-3");
  }

  // The double nearest a decimal text, whose dump is then that decimal (shortest).
  static double decimal(const std::string& text) { return std::stod(text); }

  // A double moved by a few thousandths, or its sign flipped where thousandths are lost.
  double nudged(double x) {
    if (std::fabs(x) > 1e6 || std::fabs(x) < 1e-3) return -x;
    return decimal(std::to_string(std::llround(x * 1000) + between(-3, 3)) + "e-3");
  }

  ojson draw(const ojson& schema, int depth) {
    const ojson& s = resolved(schema);
    if (s.is_boolean() || s.empty()) return wild(depth);
    if (s.contains("enum")) return s["enum"][pick(s["enum"].size())];
    if (s.contains("const")) return s["const"];
    for (const char* kw : {"anyOf", "oneOf"}) {
      if (s.contains(kw)) return draw(s[kw][pick(s[kw].size())], depth);
    }
    const ojson types = s["type"].is_array() ? s["type"] : ojson::array({s["type"]});
    const std::string type = types[pick(types.size())];
    if (type == "string") {
      const size_t lo = s.value("minLength", 0u);
      return text(lo + pick(std::min<size_t>(s.value("maxLength", lo + 4u), lo + 4u) - lo + 1));
    }
    if (type == "integer" || type == "number") return number(s, type == "integer");
    if (type == "boolean") return pick(2) == 0;
    if (type == "null") return nullptr;
    if (type == "array") {
      const size_t lo = s.value("minItems", 0u);
      const size_t hi = depth > 3 ? lo : std::min<size_t>(s.value("maxItems", lo + 3u), lo + 3u);
      ojson a = ojson::array();
      for (size_t n = lo + pick(hi - lo + 1); n > 0; --n) {
        a.push_back(s.contains("items") ? draw(s["items"], depth + 1) : wild(depth + 1));
      }
      return a;
    }
    ojson o = ojson::object();
    if (s.contains("properties")) {
      const ojson required = s.value("required", ojson::array());
      for (const auto& [name, sub] : s["properties"].items()) {
        const bool needed = std::find(required.begin(), required.end(), name) != required.end();
        if (needed || pick(2) == 0) o[name] = draw(sub, depth + 1);
      }
    } else if (s.contains("additionalProperties")) {
      for (size_t n = pick(depth > 3 ? 1 : 4); n > 0; --n) {
        o["k" + std::to_string(n)] = draw(s["additionalProperties"], depth + 1);
      }
    }
    return o;
  }

  // Breaks `v` at a random place below it (it may stay valid: a key dropped may be optional).
  void mutate(ojson& v, int depth) {
    const bool container = (v.is_array() || v.is_object()) && !v.empty();
    if (container && pick(3) != 0) {
      auto it = v.begin();
      std::advance(it, pick(v.size()));
      mutate(*it, depth + 1);
      return;
    }
    switch (pick(4)) {
      case 0:
        v = wild(depth);
        return;
      case 1:
        if (v.is_object()) {
          if (!v.empty() && pick(2) == 0) {
            const std::string key =
                std::next(v.begin(), static_cast<ptrdiff_t>(pick(v.size()))).key();
            v.erase(key);
          } else {
            v[pick(2) ? "extra" : "zz"] = wild(depth + 1);  // names no schema here lists
          }
        } else if (v.is_array()) {
          if (!v.empty() && pick(2) == 0) {
            v.push_back(v[pick(v.size())]);
          } else if (!v.empty()) {
            v.erase(pick(v.size()));
          }
        }
        return;
      case 2:
        if (v.is_string()) v = v.get<std::string>() + text(1 + pick(3));
        if (v.is_number_integer()) v = v.get<int64_t>() + between(-3, 3);
        if (v.is_number_float()) v = nudged(v.get<double>());
        return;
      default:
        if (v.is_number_integer()) v = v.get<int64_t>() * 1000;
        if (v.is_string()) v = "";
        return;
    }
  }

  const ojson& root_;
  std::mt19937_64 rng_;
};

// A discriminated union as tool calls write it: {"name": <const>, "arguments": <its schema>}.
constexpr const char* kToolCalls = R"({"anyOf": [
    {"type": "object", "properties": {"name": {"const": "get_weather"},
      "arguments": {"type": "object", "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 4},
        "unit": {"enum": ["c", "f"]}}, "required": ["city"]}},
     "required": ["name", "arguments"]},
    {"type": "object", "properties": {"name": {"const": "get_time"},
      "arguments": {"type": "object", "properties": {
        "zone": {"type": "integer", "minimum": -12, "maximum": 14}}, "required": []}},
     "required": ["name", "arguments"]},
    {"type": "object", "properties": {"name": {"const": "get"},
      "arguments": {"type": "object", "properties": {
        "ids": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                "maxItems": 3},
        "deep": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                 "required": ["ok"]}},
        "required": ["ids", "deep"]}},
     "required": ["name", "arguments"]},
    {"type": "string", "maxLength": 2}]})";

// For random values, valid and broken: violation() finds nothing exactly when the matcher takes
// the value's compact text, and the grammar compiled without a vocabulary is the one asked.
TEST(JsonGrammarViolation, AgreesWithTheMatcherOnRandomValues) {
  const uint64_t seed = test_seed();
  const std::vector<std::string> schemas = {
      R"({"type": "object",
          "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 5},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]},
                     "minItems": 1, "maxItems": 3},
            "ok": {"type": "boolean"},
            "note": {"type": ["string", "null"], "maxLength": 4}
          },
          "required": ["name", "age"]})",
      R"({"type": "object",
          "properties": {
            "x": {"type": "number", "minimum": -1.5, "maximum": 2.25},
            "z": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 1000},
            "w": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.001},
            "y": {"type": "number"},
            "i": {"type": "integer"}
          },
          "required": ["x", "z"]})",
      R"({"type": "object",
          "properties": {
            "v": {"anyOf": [{"type": "string", "maxLength": 2},
                            {"anyOf": [{"type": "integer", "minimum": -5, "maximum": 5},
                                       {"type": "null"}]},
                            {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
                            {"type": "object", "properties": {"k": {"type": "integer"}},
                             "required": ["k"]}]},
            "kind": {"enum": ["x", "y", 1, 12, null, {"k": [true]}]},
            "c": {"const": "fixed"}
          },
          "required": ["v", "kind"]})",
      R"({"$defs": {"node": {"type": "object", "properties": {
            "value": {"type": "integer", "minimum": 0, "maximum": 9},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
            "required": ["value"]}},
          "$ref": "#/$defs/node"})",
      R"({"type": "object", "additionalProperties": {"type": "integer", "minimum": 0,
          "maximum": 9}})",
      R"({"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 3},
          "minItems": 1, "maxItems": 3})",
      R"({"type": "integer", "minimum": -20, "maximum": 20})",
      kToolCalls,
      R"({"type": "array", "minItems": 1, "items": )" + std::string(kToolCalls) + "}",
      R"({})",
  };
  for (size_t k = 0; k < schemas.size(); ++k) {
    SCOPED_TRACE(schemas[k]);
    const ojson schema = ojson::parse(schemas[k]);
    const auto checker = JsonGrammar::from_schema(schema, nullptr);
    const auto generator = JsonGrammar::from_schema(schema, tiny().vocab);
    RandomSchemaValue values(schema, seed + k);
    int valid = 0, invalid = 0;
    for (int i = 0; i < 400; ++i) {
      const ojson v = values.value();
      const std::string text = v.dump();
      const std::string why = checker->violation(json(v));
      EXPECT_EQ(why.empty(), accepts(generator, tiny().single_bytes(text)))
          << text << "\nviolation: " << why;
      (why.empty() ? valid : invalid) += 1;
    }
    std::printf("[ values   ] schema %zu: %d valid, %d invalid\n", k, valid, invalid);
    EXPECT_GT(valid, 40);
    if (k + 1 < schemas.size()) {
      EXPECT_GT(invalid, 40);  // {} refuses only the numbers it cannot write
    }
  }
}

TEST(JsonGrammarViolation, NamesThePointerAndTheProblem) {
  const auto g = JsonGrammar::from_schema(ojson::parse(R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "minLength": 1, "maxLength": 5},
      "age": {"type": "integer", "minimum": 0, "maximum": 150},
      "z": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 1000},
      "x": {"type": "number", "minimum": 0, "maximum": 1},
      "y": {"type": "number"},
      "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1,
               "maxItems": 3},
      "note": {"type": ["string", "null"]},
      "c": {"const": 5},
      "v": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"},
                      {"type": "array"}, {"type": "object"}]},
      "a/b": {"type": "boolean"},
      "m": {"type": "object", "additionalProperties": {"type": "integer"}}
    },
    "required": ["name"]})"),
                                          nullptr);
  const auto v = [&](const std::string& text) { return g->violation(json::parse(text)); };
  EXPECT_EQ(v(R"({"name": "Bob", "age": 42, "tags": ["a"], "note": null, "c": 5})"), "");
  EXPECT_EQ(v(R"([1])"), "/: expected an object");
  EXPECT_EQ(v(R"({})"), "/: missing required property 'name'");
  EXPECT_EQ(v(R"({"name": "x", "extra": 1})"), "/: unexpected property 'extra'");
  EXPECT_EQ(v(R"({"name": 7})"), "/name: expected a string");
  EXPECT_EQ(v(R"({"name": ""})"), "/name: shorter than minLength 1");
  EXPECT_EQ(v(R"({"name": "h\u00e9llo!"})"), "/name: longer than maxLength 5");
  EXPECT_EQ(v(R"({"name": "x", "age": -1})"), "/age: below minimum 0");
  EXPECT_EQ(v(R"({"name": "x", "age": 151})"), "/age: above maximum 150");
  EXPECT_EQ(v(R"({"name": "x", "age": 4.5})"), "/age: expected an integer");
  EXPECT_EQ(v(R"({"name": "x", "age": 42.0})"), "") << "an integral double is an integer";
  EXPECT_EQ(v(R"({"name": "x", "z": -3})"), "/z: not above exclusiveMinimum -3");
  EXPECT_EQ(v(R"({"name": "x", "z": 1000})"), "/z: not below exclusiveMaximum 1000");
  EXPECT_EQ(v(R"({"name": "x", "z": 10000000000000000})"),
            "/z: 10000000000000000 has more than 15 integer digits");
  EXPECT_EQ(v(R"({"name": "x", "x": 0.1234567890123456})"),
            "/x: 0.1234567890123456 has more than 15 fraction digits");
  EXPECT_EQ(v(R"({"name": "x", "x": 0.123456789012345})"), "");
  EXPECT_EQ(v(R"({"name": "x", "y": 1e+200})"),
            "/y: 1e+200 needs an exponent of more than 2 digits");
  EXPECT_EQ(v(R"({"name": "x", "y": 1.5e+105})"), "") << "written 150000000000000e91";
  EXPECT_EQ(v(R"({"name": "x", "tags": []})"), "/tags: 0 items, fewer than minItems 1");
  EXPECT_EQ(v(R"({"name": "x", "tags": ["a", "a", "b", "c"]})"),
            "/tags: 4 items, more than maxItems 3");
  EXPECT_EQ(v(R"({"name": "x", "tags": ["a", "d"]})"),
            R"(/tags/1: "d" is not one of ["a","b","c"])");
  EXPECT_EQ(v(R"({"name": "x", "note": 3})"), "/note: expected a string or null");
  EXPECT_EQ(v(R"({"name": "x", "c": 6})"), "/c: expected 5");
  EXPECT_EQ(v(R"({"name": "x", "v": true})"),
            "/v: matches none of the anyOf alternatives (expected a string, an integer, null, "
            "an array or an object)");
  EXPECT_EQ(v(R"({"name": "x", "v": 2.5})"), "/v: expected an integer");
  EXPECT_EQ(v(R"({"name": "x", "a/b": 1})"), "/a~1b: expected a boolean");
  EXPECT_EQ(v(R"({"name": "x", "m": {"k": "1"}})"), "/m/k: expected an integer");

  json bad_utf8 = {{"name", "\xFF"}};
  EXPECT_EQ(g->violation(bad_utf8), "/name: not valid UTF-8");
  bad_utf8 = {{"name", "\xED\xA0\x80"}};  // a surrogate, which JSON text cannot carry as UTF-8
  EXPECT_EQ(g->violation(bad_utf8), "/name: not valid UTF-8");
  EXPECT_EQ(g->violation(json{{"name", "x"}, {"x", NAN}}), "/x: not a finite number");
}

TEST(JsonGrammarViolation, NestingDeeperThanTheMatcherTakesIsRefused) {
  const auto g = JsonGrammar::from_schema(ojson::object(), tiny().vocab);
  for (const int levels : {62, 63, 64}) {
    const std::string text = std::string(levels, '[') + std::string(levels, ']');
    const std::string why = g->violation(json::parse(text));
    EXPECT_EQ(why.empty(), accepts(g, tiny().single_bytes(text))) << levels << ": " << why;
    EXPECT_EQ(why.empty(), levels <= 63) << levels;
  }
  std::string pointer;
  for (int i = 0; i < 63; ++i) pointer += "/0";
  EXPECT_EQ(g->violation(json::parse(std::string(64, '[') + std::string(64, ']'))),
            pointer + ": nested deeper than 63 levels");
}

TEST(JsonGrammarViolation, AGrammarWithoutAVocabularyOnlyValidates) {
  const auto g = JsonGrammar::from_schema(ojson::parse(R"({"type": "integer"})"), nullptr);
  EXPECT_EQ(g->violation(json(3)), "");
  EXPECT_EQ(g->violation(json("3")), "/: expected an integer");
  EXPECT_THROW(JsonMatcher{g}, std::invalid_argument);
  EXPECT_THROW(
      JsonGrammar::from_schema(ojson::parse(R"({"type": "string", "pattern": "a"})"), nullptr),
      GrammarError);
}

// ---- the real vocabulary -----------------------------------------------------------------

TEST(JsonMatcher, MaskTimeOnTheDefaultModelsVocabulary) {
  const fs::path path_file = fs::path(KDR_SOURCE_DIR) / "models" / "default.path";
  std::string model_path;
  if (std::ifstream in(path_file); in) std::getline(in, model_path);
  if (model_path.empty() || !fs::exists(model_path)) {
    GTEST_SKIP() << "no default model (" << path_file << " names no existing file)";
  }
  const model::GgufFile gguf = model::GgufFile::open(model_path);
  const model::Tokenizer tok(model::spec_from_gguf(gguf));
  std::vector<int32_t> stops = {tok.eos_id()};
  if (const int32_t eot = tok.token_id("<end_of_turn>"); eot >= 0) stops.push_back(eot);

  using Clock = std::chrono::steady_clock;
  const auto ms = [](Clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
  };
  auto t0 = Clock::now();
  const auto vocab = build_vocabulary(tok, stops);
  std::printf("[ vocab    ] %d tokens, trie built in %.1f ms\n", tok.n_vocab(),
              ms(Clock::now() - t0));

  const auto any = JsonGrammar::any_object(vocab);
  const auto person = JsonGrammar::from_schema(ojson::parse(R"({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0},
        "city": {"type": "string"}}, "required": ["name", "age"]})"),
                                               vocab);
  struct State {
    const char* name;
    std::shared_ptr<const JsonGrammar> grammar;
    std::string prefix;
  };
  std::vector<float> logits(tok.n_vocab());
  for (const State& s : std::vector<State>{
           {"json_object start", any, ""},
           {"json_object inside a string", any, "{\"text\": \"Hello wor"},
           {"json_object after a colon", any, "{\"a\":"},
           {"json_object in a number", any, "{\"a\": 12"},
           {"json_object after a value", any, "{\"a\": [1, {\"b\": true}"},
           {"schema at a key", person, "{\"name\": \"Ann\", "},
           {"schema in a bounded string", person, "{\"name\": \"Ann"},
       }) {
    JsonMatcher m(s.grammar);
    for (int32_t id : tok.encode(s.prefix, false, false)) ASSERT_TRUE(m.accept(id)) << s.name;
    constexpr int kRuns = 10;
    t0 = Clock::now();
    for (int i = 0; i < kRuns; ++i) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      m.mask_logits(logits);
    }
    const double each = ms(Clock::now() - t0) / kRuns;
    // The mask agrees with accept: every allowed token and every 16th masked one.
    const std::vector<int32_t> prefix_ids = tok.encode(s.prefix, false, false);
    int allowed = 0;
    for (int32_t t = 0; t < tok.n_vocab(); ++t) {
      const bool is_allowed = logits[t] == 0.0f;
      allowed += is_allowed;
      if (!is_allowed && t % 16 != 0) continue;
      JsonMatcher probe(s.grammar);
      for (int32_t id : prefix_ids) probe.accept(id);
      ASSERT_EQ(probe.accept(t), is_allowed)
          << s.name << ": token " << t << " " << json(tok.token_bytes(t)).dump();
    }
    EXPECT_GT(allowed, 0) << s.name;
    std::printf("[ mask     ] %-32s %7d allowed, %.2f ms\n", s.name, allowed, each);
  }

  // A random walk on the real vocabulary ends in an object.
  std::mt19937_64 rng(test_seed());
  JsonMatcher m(any);
  std::string text;
  for (int step = 0; step < 400 && !m.complete(); ++step) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    m.mask_logits(logits);
    // After 20 free steps, steer the walk to its end: a uniform pick over 262k tokens mostly
    // extends strings, and a token like `", "` closes one value only to open the next key.
    // Prefer a token that only ends a string (inside one, brackets are plain text), then one
    // that only closes brackets, then any token with a closing character.
    std::vector<int32_t> allowed, closers, string_enders, closing;
    for (int32_t t = 0; t < tok.n_vocab(); ++t) {
      if (logits[t] != 0.0f) continue;
      allowed.push_back(t);
      const std::string b = tok.token_bytes(t);
      if (b.find_first_of("{[") != std::string::npos) continue;
      if (b.find_first_of("}]") != std::string::npos &&
          b.find_first_of("\",:") == std::string::npos)
        closers.push_back(t);
      if (!b.empty() && b.back() == '"' && b.find_first_of("\",:}]") == b.size() - 1)
        string_enders.push_back(t);
      if (b.find_first_of("\"}]") != std::string::npos) closing.push_back(t);
    }
    ASSERT_FALSE(allowed.empty()) << text;
    const std::vector<int32_t>& pool = step <= 20               ? allowed
                                       : !string_enders.empty() ? string_enders
                                       : !closers.empty()       ? closers
                                       : !closing.empty()       ? closing
                                                                : allowed;
    const int32_t t = pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
    ASSERT_TRUE(m.accept(t));
    text += tok.token_bytes(t);
  }
  ASSERT_TRUE(m.complete()) << text;
  const json value = json::parse(text);
  EXPECT_TRUE(value.is_object()) << text;
  std::printf("[ walk     ] %zu bytes: %.120s...\n", text.size(), text.c_str());
}

// ---- discriminated unions and text-or-value roots ----------------------------------------

// Random walks through a discriminated union: every ended walk is a value of the schema, the
// matcher and violation() agree, and each alternative (tag) is reached.
TEST(JsonMatcher, RandomWalksThroughDiscriminatedObjectsFollowTheTagsSchema) {
  const uint64_t seed = test_seed();
  walk_schema(kToolCalls, seed, 60);
  walk_schema(R"({"type": "array", "minItems": 1, "maxItems": 3, "items": )" +
                  std::string(kToolCalls) + "}",
              seed + 1, 60);
  // The tag fixes the rest: after "get_time" only "zone" may follow, after "get" only "ids".
  const auto g = schema_grammar(kToolCalls);
  const TinyVocab& v = tiny();
  EXPECT_TRUE(accepts(g, v.single_bytes(R"({"name":"get_time","arguments":{"zone":-3}})")));
  EXPECT_FALSE(accepts(g, v.single_bytes(R"({"name":"get_time","arguments":{"city":"a"}})")));
  EXPECT_TRUE(accepts(
      g, v.greedy(R"({"name": "get", "arguments": {"ids": [1, 2], "deep": {"ok": true}}})")));
  EXPECT_FALSE(accepts(g, v.single_bytes(R"({"name":"get","arguments":{"deep":{"ok":true}}})")));
  EXPECT_FALSE(accepts(g, v.single_bytes(R"({"name":"get_x","arguments":{}})")));
  EXPECT_FALSE(accepts(g, v.single_bytes(R"({"arguments":{},"name":"get"})")));
  EXPECT_TRUE(accepts(g, v.single_bytes(R"("ab")")));
}

TEST(JsonGrammarViolation, DiscriminatedObjectsNameTheTagOrTheAlternativesProblem) {
  const auto g = JsonGrammar::from_schema(ojson::parse(kToolCalls), nullptr);
  EXPECT_EQ(g->violation(json::parse(R"({"arguments": {"zone": 3}, "name": "get_time"})")), "");
  EXPECT_EQ(g->violation(json::parse(R"({"name": "nope", "arguments": {}})")),
            R"(/name: "nope" is not one of ["get_weather","get_time","get"])");
  EXPECT_EQ(g->violation(json::parse(R"({"arguments": {}})")),
            "/: missing required property 'name'");
  EXPECT_EQ(g->violation(json::parse(R"({"name": "get_time", "arguments": {"zone": 20}})")),
            "/arguments/zone: above maximum 14");
  EXPECT_EQ(g->violation(json::parse(R"({"name": "get_weather", "arguments": {}})")),
            "/arguments: missing required property 'city'");
  EXPECT_EQ(g->violation(json::parse("[1]")),
            "/: matches none of the anyOf alternatives (expected an object or a string)");
}

// kValueOrText: text that starts with a byte no value starts with, or a value of the schema.
TEST(JsonMatcher, TextOrValueRootTakesTextOrAValidValue) {
  const TinyVocab& v = tiny();
  const auto schema =
      ojson::parse(R"({"type": "array", "minItems": 1, "items": )" + std::string(kToolCalls) + "}");
  const auto g = JsonGrammar::from_schema(schema, v.vocab, JsonGrammar::Output::kValueOrText);
  EXPECT_TRUE(g->value_starts_with('['));
  EXPECT_FALSE(g->value_starts_with('{'));
  EXPECT_FALSE(g->value_starts_with(' '));
  for (const std::string& text :
       std::vector<std::string>{"hello {\"name\": 1}", " [x", "{}", "\xC3\xA9t\xC3\xA9", "]"}) {
    JsonMatcher m(g);
    EXPECT_TRUE(feed(m, v.greedy(text))) << text;
    EXPECT_FALSE(m.complete()) << text;  // text ends only with a stop token
    EXPECT_TRUE(m.accept(v.eos)) << text;
  }
  EXPECT_TRUE(accepts(g, v.single_bytes(R"([{"name":"get_time","arguments":{}}])")));
  EXPECT_FALSE(accepts(g, v.single_bytes(R"([{"name":"get_tim","arguments":{}}])")));
  EXPECT_FALSE(accepts(g, v.single_bytes("[")));
  {
    JsonMatcher m(g);  // no empty output: a stop token first is refused
    EXPECT_FALSE(m.accept(v.eos));
  }

  // Mask and accept() agree at every prefix of a text and of a call, and random walks end in
  // text that starts otherwise than a value, or in a value of the schema.
  for (const std::string& doc :
       {std::string("ab [\"x"), std::string(R"([{"name":"get","arguments":{"ids":[1],)")}) {
    const std::vector<int32_t> ids = v.single_bytes(doc);
    for (size_t prefix = 0; prefix <= ids.size(); ++prefix) {
      JsonMatcher m(g);
      ASSERT_TRUE(feed(m, std::vector<int32_t>(ids.begin(), ids.begin() + prefix)))
          << doc.substr(0, prefix);
      const std::vector<uint8_t> allowed = allowed_set(m, v.n_vocab());
      for (int32_t t = 0; t < v.n_vocab(); ++t) {
        JsonMatcher probe(g);
        feed(probe, std::vector<int32_t>(ids.begin(), ids.begin() + prefix));
        EXPECT_EQ(probe.accept(t), allowed[t] != 0)
            << "after " << json(doc.substr(0, prefix)).dump() << " token " << t;
      }
    }
  }
  std::mt19937_64 rng(test_seed());
  int texts = 0, values = 0;
  std::vector<float> logits(v.n_vocab());
  for (int w = 0; w < 200; ++w) {
    JsonMatcher m(g);
    std::string out;
    bool ended = false;
    for (int step = 0; step < 400 && !ended; ++step) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      m.mask_logits(logits);
      std::vector<int32_t> allowed;
      for (int32_t t = 0; t < v.n_vocab(); ++t)
        if (logits[t] == 0.0f) allowed.push_back(t);
      ASSERT_FALSE(allowed.empty()) << out;
      // Half the walks are pushed towards a value: its first byte comes first.
      int32_t t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
      if (step == 0 && w % 2 == 0) t = v.byte_token['['];
      ASSERT_TRUE(m.accept(t));
      ended = v.is_stop(t) || m.complete();
      if (!v.is_stop(t)) out += v.tok->token_bytes(t);
    }
    if (!ended || out.empty()) continue;
    if (!g->value_starts_with(static_cast<uint8_t>(out[0]))) {
      ++texts;
      continue;
    }
    ++values;
    const ojson value = ojson::parse(out, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(value.is_discarded()) << "not JSON: " << json(out).dump();
    EXPECT_EQ(why_invalid(value, schema, schema), "") << out;
    EXPECT_EQ(g->violation(json(value)), "") << out;
  }
  std::printf("[ walks    ] %d texts, %d values\n", texts, values);
  EXPECT_GT(texts, 50);
  EXPECT_GT(values, 20);
}

}  // namespace
}  // namespace kdr::engine
