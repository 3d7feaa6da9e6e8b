// Constrained JSON decoding: a schema compiled into a graph of nodes, a pushdown automaton over
// bytes that walks it, and a vocabulary trie that lets masking share work between tokens with
// a common prefix.
//
// Rules beyond RFC 8259 that keep every generation finite:
//  - Whitespace: none before or after the top-level value. Each gap between two JSON tokens
//    (after '{' '[' ',' ':' and before '}' ']' ',' ':') holds at most one run: a single space,
//    or a newline followed by at most 16 spaces (kMaxIndent). No tabs or carriage returns.
//  - Numbers: at most 15 integer digits, 15 fraction digits and 2 exponent digits; no exponent
//    when bounds apply; integers are never written "-0".
//  - Nesting: at most 64 frames on the stack (kMaxDepth): the root, each open container, and
//    the string or scalar being written.
//
// JSON Schema support:
//  - type (a name or a list), enum and const (any values, generated as compact JSON).
//  - object: properties are generated in the schema's order; required ones must appear,
//    optional ones may be skipped, and no others: additionalProperties false is the default.
//    Without "properties" an object is any object, or a map when additionalProperties is a
//    schema; additionalProperties true or a schema beside "properties" is an error.
//  - array: items, minItems, maxItems. string: minLength, maxLength (in code points).
//  - integer / number: minimum, maximum, exclusiveMinimum, exclusiveMaximum (draft 4's boolean
//    form too), enforced digit by digit and exactly (decimal, to 15 fraction digits).
//  - anyOf / oneOf and type lists whose alternatives differ in their first byte (object, array,
//    string, number, or literals, which are merged), except that several objects may share
//    '{' when each one's first property is required, has one name across them, and is a
//    distinct string const (a discriminated union: kTagged); allOf of one schema; $ref to "#/...".
//  - Output::kValueOrText: the root is the value or plain text that starts with a byte no value
//    starts with (tool_choice auto: content or calls).
//  - title, description, $schema, $id, $comment, default, examples, deprecated, readOnly,
//    writeOnly, $defs, definitions (and uniqueItems false) describe and are ignored. Every
//    other keyword is a GrammarError naming it and the JSON pointer of its schema.
//
// JsonGrammar::violation checks a parsed value against the same compiled nodes, so the schema
// language has one reading: a value passes exactly when the matcher would take its text.
#include "engine/json_grammar.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string_view>

#include "model/tokenizer.h"

namespace kdr::engine {

// Schemas are read as ordered_json, so that properties keep the order they are written in.
using json = nlohmann::ordered_json;

// ---- states of the automaton -----------------------------------------------------------------

namespace {

using i128 = __int128;

constexpr int kMaxIntDigits = 15;
constexpr int kMaxFracDigits = 15;
constexpr int kMaxExpDigits = 2;
constexpr int kMaxIndent = 16;
constexpr int32_t kMaxDepth = 64;

constexpr std::array<i128, 38> make_pow10() {
  std::array<i128, 38> p{};
  p[0] = 1;
  for (size_t i = 1; i < p.size(); ++i) p[i] = p[i - 1] * 10;
  return p;
}
constexpr std::array<i128, 38> kPow10 = make_pow10();
// Bounds beyond any generated number stand for "no bound".
constexpr i128 kUnbounded = kPow10[36];

enum class Kind : uint8_t {
  kRoot,     // the bottom frame: one value, then nothing
  kObject,   // "properties": fixed keys in schema order
  kMap,      // any keys (strings), values of one schema
  kArray,    // items of one schema
  kString,   // with a length range in characters
  kNumber,   // integer or number, possibly bounded
  kLiteral,  // one of a set of compact JSON texts (enum, const, booleans, null)
  kUnion,    // alternatives told apart by their first byte; never a frame
  kTagged,   // objects told apart by a string const in their first property (see resolve_unions)
};

struct KeyTrieNode {
  std::vector<std::pair<uint8_t, uint32_t>> children;
  std::vector<uint32_t> props;  // ascending indices of the properties whose key passes here
  int32_t prop = -1;            // the property whose key, closing quote included, ends here
};

struct Property {
  std::string name;
  uint32_t node = 0;
  bool required = false;
};

struct Node {
  Kind kind = Kind::kUnion;
  std::string path;  // JSON pointer of the schema, for errors found after compiling it
  // kRoot: the value; kArray: the items; kMap: the values.
  uint32_t child = 0;
  // kMap: the node of its keys (any string).
  uint32_t key = 0;
  // kObject.
  std::vector<Property> props;
  std::vector<uint32_t> next_required;  // [i]: first required property at or after i, or size
  std::vector<KeyTrieNode> keys;        // keys as JSON text after the opening quote
  // kArray: items; kString: characters.
  uint32_t min_count = 0, max_count = UINT32_MAX;
  // kNumber. When bounded, values are compared as integers in units of 1/scale.
  bool integer = false, bounded = false;
  i128 scale = 1, lo = -kUnbounded, hi = kUnbounded;
  // kNumber, for messages: the schema's bounds that lo and hi come from, as the problem of a
  // value beyond them ("below minimum 0").
  std::string below_lo, above_hi;
  // kLiteral: sorted, unique.
  std::vector<std::string> literals;
  // kLiteral, for messages: the values in the schema's order, and whether they come from enum
  // or const (else they are the booleans or null of a type).
  std::vector<std::string> listed;
  bool enumerated = false;
  // kUnion.
  std::vector<uint32_t> alts;
  std::array<int32_t, 256> by_byte{};
  std::string keyword;  // "anyOf" or "oneOf" when the union comes from one, for messages
  // kTagged: an object frame starts here with one property, the discriminator, whose value is a
  // literal of every alternative's tag; once the tag is written the frame becomes the object of
  // tag_alts[tag's index among the literals] and goes on after its first property.
  std::vector<uint32_t> tag_alts;
  // kRoot: plain text is an alternative to the value (a first byte no value starts with).
  bool text_alternative = false;
  std::array<uint8_t, 256> value_starts{};  // kRoot: the bytes a value starts with
};

// Positions of container and root frames.
enum Pos : uint8_t {
  kBegin,       // before the opening byte (root: before the value)
  kOpen,        // after '{' or '[': gap, then a key, an item or the close
  kInKey,       // object: inside a key (Frame::b is the key trie node); map: key frame above
  kAfterKey,    // gap, then ':'
  kAfterColon,  // gap, then the value
  kInValue,     // the value's frame is above
  kAfterValue,  // gap, then ',' or the close (root: done)
  kAfterComma,  // gap, then the next key or item
  kInText,      // root with a text alternative: plain text, any byte, until a stop token
};

// Positions inside a string.
enum StrPos : uint8_t {
  kStrBegin,
  kStrChar,       // a character, '\\' or the closing quote
  kStrEscape,     // after '\\'
  kHex0,          // \u: first hex digit
  kHex1,          // second hex digit of a code point that is not U+Dxxx
  kHex1AfterD,    // second hex digit after 'D': 0-7 plain, 8-B high surrogate, C-F refused
  kHex2,          // third and fourth digits of a plain code point
  kHex3,          //
  kHighHex2,      // third and fourth digits of a high surrogate
  kHighHex3,      //
  kLowBackslash,  // the low surrogate that must follow: '\\' 'u' 'D' [C-F] hex hex
  kLowU,
  kLowD,
  kLowHex1,
  kLowHex2,
  kLowHex3,
  kCont1,  // UTF-8: that many continuation bytes 80-BF to go
  kCont2,
  kCont3,
  kContE0,  // E0: A0-BF (no overlong forms)
  kContED,  // ED: 80-9F (no surrogates)
  kContF0,  // F0: 90-BF (no overlong forms)
  kContF4,  // F4: 80-8F (nothing above U+10FFFF)
};

// Positions inside a number.
enum NumPos : uint8_t {
  kNumStart,
  kNumMinus,  // after '-'
  kNumZero,   // integer part "0"
  kNumInt,    // integer part of Frame::a digits
  kNumDot,    // after '.'
  kNumFrac,   // Frame::b fraction digits
  kNumExp,    // after 'e'
  kNumExpSign,
  kNumExpDigits,  // Frame::b exponent digits
};

struct Frame {
  uint32_t node = 0;
  uint8_t pos = 0;  // Pos, StrPos or NumPos
  uint8_t ws = 0;   // whitespace in the current gap: 0 none, 1 a space, 2 + k newline, k spaces
  uint8_t negative = 0;
  // object: property index; array: items so far; string: characters; number: integer digits;
  // literal: bytes matched.
  uint32_t a = 0;
  // object: key trie node; number: fraction or exponent digits; literal: first candidate.
  uint32_t b = 0;
  // number: the magnitude so far (the integer part; in units of 1/scale from '.' on);
  // literal: one past the last candidate.
  i128 value = 0;
};

// Stacks during masking are persistent lists in an arena, so that copying a state is copying
// its top frame: frames below the top are never written, only replaced by pushes and pops.
struct Link {
  Frame frame;
  int32_t parent;
};
using Arena = std::vector<Link>;

struct Cursor {
  Frame top;
  int32_t parent = -1;  // arena index of the frame below, -1 at the root
  int32_t depth = 1;    // frames on the stack, top included
};

enum class Step { kReject, kAccept, kAgain };  // kAgain: the byte goes to the new top frame

enum class Gap { kNotSpace, kTaken, kRefused };

// The bounded whitespace rule (see the top of the file).
Gap take_space(Frame& f, uint8_t byte) {
  if (byte == ' ') {
    if (f.ws == 0) {
      f.ws = 1;
      return Gap::kTaken;
    }
    if (f.ws >= 2 && f.ws < 2 + kMaxIndent) {
      ++f.ws;
      return Gap::kTaken;
    }
    return Gap::kRefused;
  }
  if (byte == '\n') {
    if (f.ws == 0) {
      f.ws = 2;
      return Gap::kTaken;
    }
    return Gap::kRefused;
  }
  if (byte == '\t' || byte == '\r') return Gap::kRefused;
  return Gap::kNotSpace;
}

bool is_hex(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// What one byte does inside a string, length bounds aside.
enum class StrByte { kReject, kClose, kCharStart, kInside };

// The string automaton from kStrChar on: advances `pos` over `byte`.
StrByte string_byte(uint8_t& pos, uint8_t byte) {
  const auto to = [&](uint8_t next) {
    pos = next;
    return StrByte::kInside;
  };
  const auto to_if = [&](bool ok, uint8_t next) { return ok ? to(next) : StrByte::kReject; };
  const bool cont = byte >= 0x80 && byte <= 0xBF;
  switch (pos) {
    case kStrChar: {
      if (byte == '"') return StrByte::kClose;
      if (byte < 0x20) return StrByte::kReject;
      uint8_t next = kStrChar;
      if (byte == '\\') {
        next = kStrEscape;
      } else if (byte < 0x80) {
        next = kStrChar;
      } else if (byte < 0xC2) {
        return StrByte::kReject;
      } else if (byte < 0xE0) {
        next = kCont1;
      } else if (byte == 0xE0) {
        next = kContE0;
      } else if (byte == 0xED) {
        next = kContED;
      } else if (byte < 0xF0) {
        next = kCont2;
      } else if (byte == 0xF0) {
        next = kContF0;
      } else if (byte < 0xF4) {
        next = kCont3;
      } else if (byte == 0xF4) {
        next = kContF4;
      } else {
        return StrByte::kReject;
      }
      pos = next;
      return StrByte::kCharStart;
    }
    case kStrEscape:
      switch (byte) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          return to(kStrChar);
        case 'u':
          return to(kHex0);
        default:
          return StrByte::kReject;
      }
    case kHex0:
      return to_if(is_hex(byte), byte == 'd' || byte == 'D' ? kHex1AfterD : kHex1);
    case kHex1AfterD:
      if (byte >= '0' && byte <= '7') return to(kHex2);
      // 8-B start a high surrogate; C-F would be a low surrogate without a high one.
      return to_if(
          byte == '8' || byte == '9' || byte == 'a' || byte == 'b' || byte == 'A' || byte == 'B',
          kHighHex2);
    case kHex1:
      return to_if(is_hex(byte), kHex2);
    case kHex2:
      return to_if(is_hex(byte), kHex3);
    case kHex3:
      return to_if(is_hex(byte), kStrChar);
    case kHighHex2:
      return to_if(is_hex(byte), kHighHex3);
    case kHighHex3:
      return to_if(is_hex(byte), kLowBackslash);
    case kLowBackslash:
      return to_if(byte == '\\', kLowU);
    case kLowU:
      return to_if(byte == 'u', kLowD);
    case kLowD:
      return to_if(byte == 'd' || byte == 'D', kLowHex1);
    case kLowHex1:
      return to_if((byte >= 'c' && byte <= 'f') || (byte >= 'C' && byte <= 'F'), kLowHex2);
    case kLowHex2:
      return to_if(is_hex(byte), kLowHex3);
    case kLowHex3:
      return to_if(is_hex(byte), kStrChar);
    case kCont1:
      return to_if(cont, kStrChar);
    case kCont2:
      return to_if(cont, kCont1);
    case kCont3:
      return to_if(cont, kCont2);
    case kContE0:
      return to_if(byte >= 0xA0 && byte <= 0xBF, kCont1);
    case kContED:
      return to_if(byte >= 0x80 && byte <= 0x9F, kCont1);
    case kContF0:
      return to_if(byte >= 0x90 && byte <= 0xBF, kCont2);
    case kContF4:
      return to_if(byte >= 0x80 && byte <= 0x8F, kCont2);
    default:
      return StrByte::kReject;
  }
}

}  // namespace

// ---- the vocabulary ---------------------------------------------------------------------------

namespace {

// Token bytes in a trie stored in preorder: a node's subtree is [i, end), so a walk that rejects
// a byte skips the whole subtree at once.
struct ByteTrie {
  struct Node {
    uint32_t end;        // one past the last node of this node's subtree
    uint32_t tok_begin;  // this node's tokens are tokens[tok_begin, next node's tok_begin)
    uint16_t depth;      // bytes from the root; a token's first byte is at depth 1
    uint8_t byte;
  };
  std::vector<Node> nodes;  // preorder, then a sentinel whose tok_begin ends the last range
  std::vector<int32_t> tokens;
  uint16_t max_depth = 0;
};

}  // namespace

class Vocabulary {
 public:
  int32_t n_vocab = 0;
  std::vector<int32_t> stop_ids;  // sorted
  // Each token's bytes, for accept(): bytes[offsets[id], offsets[id + 1]).
  std::string bytes;
  std::vector<uint32_t> offsets;

  // Every token with bytes except the stop tokens (which completeness allows, not bytes).
  ByteTrie all;
  // Inside a string most tokens are allowed and a walk of `all` would visit nearly every node.
  // Tokens without '"' never leave the string, so whether one fits depends only on the string
  // automaton: that is worked out here once, from the plain position kStrChar. The tokens with
  // '"' are walked through the grammar in a trie of their own.
  ByteTrie with_quote;
  std::vector<std::pair<uint32_t, int32_t>> in_string;  // (characters, id), fewest first
  std::vector<uint8_t> in_string_mask;                  // by id: in in_string
  uint32_t in_string_max_chars = 0;
  // By id: a token plain text may hold (one with bytes) or a stop token; control tokens are
  // never text.
  std::vector<uint8_t> text_mask;

  bool is_stop(int32_t id) const {
    return std::binary_search(stop_ids.begin(), stop_ids.end(), id);
  }
  std::string_view token(int32_t id) const {
    return std::string_view(bytes).substr(offsets[id], offsets[id + 1] - offsets[id]);
  }

  ByteTrie build_trie(std::vector<int32_t> ids) const {
    ByteTrie t;
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
      const std::string_view x = token(a), y = token(b);
      return x != y ? x < y : a < b;
    });
    // Sorted strings make the trie in preorder: each string shares a prefix with the previous
    // one and adds its remaining bytes as new nodes.
    std::vector<uint32_t> path;
    std::string_view prev;
    for (int32_t id : ids) {
      const std::string_view s = token(id);
      size_t common = 0;
      while (common < prev.size() && common < s.size() && prev[common] == s[common]) ++common;
      while (path.size() > common) {
        t.nodes[path.back()].end = static_cast<uint32_t>(t.nodes.size());
        path.pop_back();
      }
      for (size_t k = common; k < s.size(); ++k) {
        path.push_back(static_cast<uint32_t>(t.nodes.size()));
        t.nodes.push_back({0, static_cast<uint32_t>(t.tokens.size()), static_cast<uint16_t>(k + 1),
                           static_cast<uint8_t>(s[k])});
      }
      t.tokens.push_back(id);
      t.max_depth = std::max(t.max_depth, static_cast<uint16_t>(s.size()));
      prev = s;
    }
    while (!path.empty()) {
      t.nodes[path.back()].end = static_cast<uint32_t>(t.nodes.size());
      path.pop_back();
    }
    const uint32_t n = static_cast<uint32_t>(t.nodes.size());
    t.nodes.push_back({n, static_cast<uint32_t>(t.tokens.size()), 0, 0});
    return t;
  }
};

std::shared_ptr<const Vocabulary> build_vocabulary(const model::Tokenizer& tokenizer,
                                                   std::vector<int32_t> stop_ids) {
  auto v = std::make_shared<Vocabulary>();
  v->n_vocab = tokenizer.n_vocab();
  for (int32_t id : stop_ids) {
    if (id < 0 || id >= v->n_vocab) {
      throw std::invalid_argument("build_vocabulary: stop id " + std::to_string(id) +
                                  " outside the vocabulary of " + std::to_string(v->n_vocab));
    }
  }
  std::sort(stop_ids.begin(), stop_ids.end());
  stop_ids.erase(std::unique(stop_ids.begin(), stop_ids.end()), stop_ids.end());
  v->stop_ids = std::move(stop_ids);

  v->offsets.reserve(v->n_vocab + 1);
  for (int32_t id = 0; id < v->n_vocab; ++id) {
    v->offsets.push_back(static_cast<uint32_t>(v->bytes.size()));
    v->bytes += tokenizer.token_bytes(id);
  }
  v->offsets.push_back(static_cast<uint32_t>(v->bytes.size()));

  std::vector<int32_t> all, with_quote;
  v->in_string_mask.assign(v->n_vocab, 0);
  for (int32_t id = 0; id < v->n_vocab; ++id) {
    const std::string_view s = v->token(id);
    if (s.empty() || s.size() > UINT16_MAX || v->is_stop(id)) continue;
    all.push_back(id);
    if (s.find('"') != std::string_view::npos) {
      with_quote.push_back(id);
      continue;
    }
    uint8_t pos = kStrChar;
    uint32_t chars = 0;
    bool fits = true;
    for (char ch : s) {
      const StrByte r = string_byte(pos, static_cast<uint8_t>(ch));
      fits = r != StrByte::kReject;
      if (!fits) break;
      chars += r == StrByte::kCharStart;
    }
    if (!fits) continue;
    v->in_string.emplace_back(chars, id);
    v->in_string_mask[id] = 1;
    v->in_string_max_chars = std::max(v->in_string_max_chars, chars);
  }
  std::sort(v->in_string.begin(), v->in_string.end());
  v->text_mask.assign(v->n_vocab, 0);
  for (int32_t id : all) v->text_mask[id] = 1;
  for (int32_t id : v->stop_ids) v->text_mask[id] = 1;
  v->all = v->build_trie(std::move(all));
  v->with_quote = v->build_trie(std::move(with_quote));
  return v;
}

// ---- the automaton ---------------------------------------------------------------------------

struct JsonGrammar::Impl {
  std::shared_ptr<const Vocabulary> vocab;
  std::vector<Node> nodes;  // nodes[0] is the root

  // Advances `c` over one byte; false when the byte cannot come next (c is then unspecified).
  bool step(Cursor& c, Arena& arena, uint8_t byte) const {
    for (;;) {
      const Node& n = nodes[c.top.node];
      Step r = Step::kReject;
      switch (n.kind) {
        case Kind::kRoot:
          r = step_root(c, arena, n, byte);
          break;
        case Kind::kObject:
        case Kind::kTagged:
          r = step_object(c, arena, n, byte);
          break;
        case Kind::kMap:
          r = step_map(c, arena, n, byte);
          break;
        case Kind::kArray:
          r = step_array(c, arena, n, byte);
          break;
        case Kind::kString:
          r = step_string(c, arena, n, byte);
          break;
        case Kind::kNumber:
          r = step_number(c, arena, n, byte);
          break;
        case Kind::kLiteral:
          r = step_literal(c, arena, n, byte);
          break;
        case Kind::kUnion:
          break;
      }
      if (r != Step::kAgain) return r == Step::kAccept;
    }
  }

  static bool is_done(const Frame& root) { return root.pos == kAfterValue; }
  static bool in_text(const Frame& root) { return root.pos == kInText; }

  // A scalar at the top level that may end here (a stop token may come) though it could go on.
  bool value_can_end(const Frame& f) const {
    const Node& n = nodes[f.node];
    if (n.kind == Kind::kNumber) return number_can_end(n, f);
    if (n.kind == Kind::kLiteral) return f.a > 0 && n.literals[f.b].size() == f.a;
    return false;
  }

 private:
  bool push(Cursor& c, Arena& arena, uint32_t node, uint8_t byte) const {
    if (nodes[node].kind == Kind::kUnion) {
      const int32_t alt = nodes[node].by_byte[byte];
      if (alt < 0) return false;
      node = static_cast<uint32_t>(alt);
    }
    if (c.depth >= kMaxDepth) return false;
    arena.push_back({c.top, c.parent});
    c.parent = static_cast<int32_t>(arena.size() - 1);
    ++c.depth;
    c.top = Frame{};
    c.top.node = node;
    if (nodes[node].kind == Kind::kLiteral) c.top.value = nodes[node].literals.size();
    return true;
  }

  // Returns to the frame below, which moves past the value (or key) just finished.
  void pop(Cursor& c, const Arena& arena) const {
    const Link& below = arena[c.parent];
    const uint32_t done_literal = c.top.b;  // a literal's candidate once it is complete
    c.top = below.frame;
    c.parent = below.parent;
    --c.depth;
    Frame& p = c.top;
    p.ws = 0;
    if (p.pos == kInKey) {
      p.pos = kAfterKey;
    } else {
      // The discriminator's value is written: the object is now that tag's alternative.
      if (nodes[p.node].kind == Kind::kTagged) p.node = nodes[p.node].tag_alts[done_literal];
      p.pos = kAfterValue;
      ++p.a;  // object: the next property; array: one more item
    }
  }

  Step step_root(Cursor& c, Arena& arena, const Node& n, uint8_t byte) const {
    if (c.top.pos == kInText) return Step::kAccept;
    if (c.top.pos != kBegin) return Step::kReject;
    if (n.text_alternative && !n.value_starts[byte]) {
      c.top.pos = kInText;
      return Step::kAccept;
    }
    c.top.pos = kInValue;
    return push(c, arena, n.child, byte) ? Step::kAgain : Step::kReject;
  }

  Step step_object(Cursor& c, Arena& arena, const Node& n, uint8_t byte) const {
    Frame& f = c.top;
    const uint32_t n_props = static_cast<uint32_t>(n.props.size());
    if (f.pos == kBegin) {
      if (byte != '{') return Step::kReject;
      f.pos = kOpen;
      return Step::kAccept;
    }
    if (f.pos == kInKey) {
      const KeyTrieNode& k = n.keys[f.b];
      int32_t child = -1;
      for (const auto& [b, to] : k.children) {
        if (b == byte) {
          child = static_cast<int32_t>(to);
          break;
        }
      }
      if (child < 0) return Step::kReject;
      // The key may name any property from f.a up to the next required one.
      const KeyTrieNode& next = n.keys[child];
      const uint32_t last = std::min(n.next_required[f.a], n_props - 1);
      const auto it = std::lower_bound(next.props.begin(), next.props.end(), f.a);
      if (it == next.props.end() || *it > last) return Step::kReject;
      if (next.prop >= 0) {
        f.a = static_cast<uint32_t>(next.prop);
        f.pos = kAfterKey;
        f.ws = 0;
      } else {
        f.b = static_cast<uint32_t>(child);
      }
      return Step::kAccept;
    }
    if (const Gap g = take_space(f, byte); g != Gap::kNotSpace) {
      return g == Gap::kTaken ? Step::kAccept : Step::kReject;
    }
    f.ws = 0;
    switch (f.pos) {
      case kOpen:
      case kAfterComma:
        if (byte == '"' && f.a < n_props) {
          f.pos = kInKey;
          f.b = 0;
          return Step::kAccept;
        }
        if (byte == '}' && f.pos == kOpen && n.next_required[f.a] == n_props) {
          pop(c, arena);
          return Step::kAccept;
        }
        return Step::kReject;
      case kAfterKey:
        if (byte != ':') return Step::kReject;
        f.pos = kAfterColon;
        return Step::kAccept;
      case kAfterColon:
        f.pos = kInValue;
        return push(c, arena, n.props[f.a].node, byte) ? Step::kAgain : Step::kReject;
      case kAfterValue:
        if (byte == ',' && f.a < n_props) {
          f.pos = kAfterComma;
          return Step::kAccept;
        }
        if (byte == '}' && n.next_required[f.a] == n_props) {
          pop(c, arena);
          return Step::kAccept;
        }
        return Step::kReject;
      default:
        return Step::kReject;
    }
  }

  Step step_map(Cursor& c, Arena& arena, const Node& n, uint8_t byte) const {
    Frame& f = c.top;
    if (f.pos == kBegin) {
      if (byte != '{') return Step::kReject;
      f.pos = kOpen;
      return Step::kAccept;
    }
    if (const Gap g = take_space(f, byte); g != Gap::kNotSpace) {
      return g == Gap::kTaken ? Step::kAccept : Step::kReject;
    }
    f.ws = 0;
    switch (f.pos) {
      case kOpen:
      case kAfterComma:
        if (byte == '"') {
          f.pos = kInKey;
          return push(c, arena, n.key, byte) ? Step::kAgain : Step::kReject;
        }
        if (byte == '}' && f.pos == kOpen) {
          pop(c, arena);
          return Step::kAccept;
        }
        return Step::kReject;
      case kAfterKey:
        if (byte != ':') return Step::kReject;
        f.pos = kAfterColon;
        return Step::kAccept;
      case kAfterColon:
        f.pos = kInValue;
        return push(c, arena, n.child, byte) ? Step::kAgain : Step::kReject;
      case kAfterValue:
        if (byte == ',') {
          f.pos = kAfterComma;
          return Step::kAccept;
        }
        if (byte == '}') {
          pop(c, arena);
          return Step::kAccept;
        }
        return Step::kReject;
      default:
        return Step::kReject;
    }
  }

  Step step_array(Cursor& c, Arena& arena, const Node& n, uint8_t byte) const {
    Frame& f = c.top;
    if (f.pos == kBegin) {
      if (byte != '[') return Step::kReject;
      f.pos = kOpen;
      return Step::kAccept;
    }
    if (const Gap g = take_space(f, byte); g != Gap::kNotSpace) {
      return g == Gap::kTaken ? Step::kAccept : Step::kReject;
    }
    f.ws = 0;
    switch (f.pos) {
      case kOpen:
        if (byte == ']') {
          if (n.min_count > 0) return Step::kReject;
          pop(c, arena);
          return Step::kAccept;
        }
        if (n.max_count == 0) return Step::kReject;
        f.pos = kInValue;
        return push(c, arena, n.child, byte) ? Step::kAgain : Step::kReject;
      case kAfterComma:
        f.pos = kInValue;
        return push(c, arena, n.child, byte) ? Step::kAgain : Step::kReject;
      case kAfterValue:
        if (byte == ',' && f.a < n.max_count) {
          f.pos = kAfterComma;
          return Step::kAccept;
        }
        if (byte == ']' && f.a >= n.min_count) {
          pop(c, arena);
          return Step::kAccept;
        }
        return Step::kReject;
      default:
        return Step::kReject;
    }
  }

  static Step to(Frame& f, uint8_t pos) {
    f.pos = pos;
    return Step::kAccept;
  }

  Step step_string(Cursor& c, const Arena& arena, const Node& n, uint8_t byte) const {
    Frame& f = c.top;
    if (f.pos == kStrBegin) return byte == '"' ? to(f, kStrChar) : Step::kReject;
    switch (string_byte(f.pos, byte)) {
      case StrByte::kReject:
        return Step::kReject;
      case StrByte::kClose:
        if (f.a < n.min_count) return Step::kReject;
        pop(c, arena);
        return Step::kAccept;
      case StrByte::kCharStart:
        // A character counts from its first byte (an escaped surrogate pair counts once).
        if (f.a >= n.max_count) return Step::kReject;
        ++f.a;
        return Step::kAccept;
      case StrByte::kInside:
        return Step::kAccept;
    }
    return Step::kReject;
  }

  // For bounded numbers: some completion of the digits so far lies within [lo, hi]. Every value
  // on the grid of 1/scale inside the intervals below can still be written, so this is exact.
  bool number_feasible(const Node& n, const Frame& f) const {
    if (!n.bounded) return true;
    // [a, b] are magnitudes; the sign maps them to [-b, -a].
    const auto hits = [&](i128 a, i128 b) {
      return f.negative ? (-b <= n.hi && -a >= n.lo) : (a <= n.hi && b >= n.lo);
    };
    switch (f.pos) {
      case kNumMinus:  // "-0" is no integer we generate
        return hits(n.integer ? 1 : 0, kPow10[kMaxIntDigits] * n.scale - 1);
      case kNumZero:
        return hits(0, n.scale - 1);
      case kNumInt:
        for (uint32_t j = 0; j + f.a <= kMaxIntDigits; ++j) {
          const i128 base = f.value * kPow10[j];
          if (hits(base * n.scale, (base + kPow10[j]) * n.scale - 1)) return true;
        }
        return false;
      case kNumDot:
      case kNumFrac:
        return hits(f.value, f.value + kPow10[kMaxFracDigits - f.b] - 1);
      default:
        return true;
    }
  }

  bool number_can_end(const Node& n, const Frame& f) const {
    i128 v = 0;
    switch (f.pos) {
      case kNumZero:
      case kNumInt:
        v = f.value * n.scale;
        break;
      case kNumFrac:
        v = f.value;
        break;
      case kNumExpDigits:
        return true;  // exponents only appear in unbounded numbers
      default:
        return false;
    }
    if (!n.bounded) return true;
    if (f.negative) v = -v;
    return v >= n.lo && v <= n.hi;
  }

  Step step_number(Cursor& c, const Arena& arena, const Node& n, uint8_t byte) const {
    Frame& f = c.top;
    const bool digit = byte >= '0' && byte <= '9';
    const int d = byte - '0';
    const bool exp = (byte == 'e' || byte == 'E') && !n.integer && !n.bounded;
    const auto checked = [&] { return number_feasible(n, f) ? Step::kAccept : Step::kReject; };
    switch (f.pos) {
      case kNumStart:
        if (byte == '-') {
          f.negative = 1;
          f.pos = kNumMinus;
          return checked();
        }
        [[fallthrough]];
      case kNumMinus:
        if (!digit) return Step::kReject;
        if (d == 0 && f.negative && n.integer) return Step::kReject;
        f.pos = d == 0 ? kNumZero : kNumInt;
        f.a = 1;
        f.value = d;
        return checked();
      case kNumInt:
        if (digit && f.a < kMaxIntDigits) {
          f.value = f.value * 10 + d;
          ++f.a;
          return checked();
        }
        [[fallthrough]];
      case kNumZero:
        if (byte == '.' && !n.integer) {
          f.pos = kNumDot;
          f.b = 0;
          f.value *= n.scale;
          return checked();
        }
        if (exp) return to(f, kNumExp);
        break;
      case kNumDot:
      case kNumFrac:
        if (digit && f.b < kMaxFracDigits) {
          if (n.bounded) f.value += d * kPow10[kMaxFracDigits - 1 - f.b];
          ++f.b;
          f.pos = kNumFrac;
          return checked();
        }
        if (f.pos == kNumDot) return Step::kReject;
        if (exp) return to(f, kNumExp);
        break;
      case kNumExp:
        if (byte == '+' || byte == '-') return to(f, kNumExpSign);
        [[fallthrough]];
      case kNumExpSign:
        if (!digit) return Step::kReject;
        f.b = 1;
        return to(f, kNumExpDigits);
      case kNumExpDigits:
        if (digit && f.b < kMaxExpDigits) {
          ++f.b;
          return Step::kAccept;
        }
        break;
      default:
        return Step::kReject;
    }
    // The byte does not continue the number: it ends here and the byte goes to the container.
    if (!number_can_end(n, f)) return Step::kReject;
    pop(c, arena);
    return Step::kAgain;
  }

  Step step_literal(Cursor& c, const Arena& arena, const Node& n, uint8_t byte) const {
    Frame& f = c.top;
    const uint32_t offset = f.a, lo = f.b, hi = static_cast<uint32_t>(f.value);
    // Candidates share the bytes matched so far, so those continuing with `byte` are adjacent.
    uint32_t first = hi, last = hi;
    for (uint32_t i = lo; i < hi; ++i) {
      const std::string& s = n.literals[i];
      if (s.size() > offset && static_cast<uint8_t>(s[offset]) == byte) {
        if (first == hi) first = i;
        last = i + 1;
      } else if (first != hi) {
        break;
      }
    }
    if (first == hi) {
      // A literal that is a prefix of others (a number) ends lazily, on the byte after it.
      if (offset > 0 && n.literals[lo].size() == offset) {
        pop(c, arena);
        return Step::kAgain;
      }
      return Step::kReject;
    }
    f.a = offset + 1;
    f.b = first;
    f.value = last;
    if (last - first == 1 && n.literals[first].size() == offset + 1) pop(c, arena);
    return Step::kAccept;
  }
};

// ---- compiling schemas ------------------------------------------------------------------------

namespace {

// JSON pointers name places in errors; the root's pointer is empty.
std::string where(const std::string& path) { return path.empty() ? "the root" : path; }

std::string pointer_token(const std::string& key) {
  std::string out;
  for (char ch : key) {
    if (ch == '~') {
      out += "~0";
    } else if (ch == '/') {
      out += "~1";
    } else {
      out += ch;
    }
  }
  return out;
}

// Keywords that describe without constraining.
const std::set<std::string>& ignored_keywords() {
  static const std::set<std::string> k = {"title",       "description", "$schema",   "$id",
                                          "$comment",    "default",     "examples",  "$defs",
                                          "definitions", "readOnly",    "writeOnly", "deprecated"};
  return k;
}

// Keywords that apply to one JSON type only, with that type.
const std::map<std::string, std::vector<std::string>>& typed_keywords() {
  static const std::map<std::string, std::vector<std::string>> k = {
      {"properties", {"object"}},
      {"required", {"object"}},
      {"additionalProperties", {"object"}},
      {"items", {"array"}},
      {"minItems", {"array"}},
      {"maxItems", {"array"}},
      {"minLength", {"string"}},
      {"maxLength", {"string"}},
      {"minimum", {"integer", "number"}},
      {"maximum", {"integer", "number"}},
      {"exclusiveMinimum", {"integer", "number"}},
      {"exclusiveMaximum", {"integer", "number"}},
  };
  return k;
}

const std::set<std::string>& combining_keywords() {
  static const std::set<std::string> k = {"type",  "enum",  "const", "anyOf",
                                          "oneOf", "allOf", "$ref"};
  return k;
}

const std::vector<std::string>& type_names() {
  static const std::vector<std::string> k = {"string", "integer", "number", "boolean",
                                             "null",   "object",  "array"};
  return k;
}

bool is_type(const json& v, const std::string& type) {
  if (type == "string") return v.is_string();
  if (type == "integer") {
    return v.is_number_integer() || (v.is_number_float() && std::isfinite(v.get<double>()) &&
                                     std::floor(v.get<double>()) == v.get<double>());
  }
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  if (type == "object") return v.is_object();
  return v.is_array();
}

// floor and ceil of x * 10^digits, clamped to +-kUnbounded. Works on the shortest decimal text
// of x (its dump), so 0.1 is exactly one tenth, not the nearest double.
void scaled_floor_ceil(const std::string& text, int digits, i128& floor_out, i128& ceil_out) {
  const bool negative = text[0] == '-';
  const size_t e = std::min(text.find_first_of("eE"), text.size());
  const size_t point = std::min(text.find('.'), e);
  // x * 10^digits = mantissa * 10^exponent, the decimal point taken out of the mantissa.
  std::string mantissa = text.substr(negative ? 1 : 0, point - (negative ? 1 : 0));
  if (point < e) mantissa += text.substr(point + 1, e - point - 1);
  int exponent = e < text.size() ? std::stoi(text.substr(e + 1)) : 0;
  exponent += digits - static_cast<int>(point < e ? e - point - 1 : 0);
  mantissa.erase(0, std::min(mantissa.find_first_not_of('0'), mantissa.size()));
  i128 magnitude = 0;
  bool remainder = false;
  if (mantissa.empty()) {
    magnitude = 0;
  } else if (exponent >= 0) {
    if (static_cast<int>(mantissa.size()) + exponent > 36) {
      magnitude = kUnbounded;
    } else {
      for (char ch : mantissa) magnitude = magnitude * 10 + (ch - '0');
      magnitude *= kPow10[exponent];
    }
  } else {
    const int keep = static_cast<int>(mantissa.size()) + exponent;
    for (int k = 0; k < static_cast<int>(mantissa.size()); ++k) {
      if (k < keep) {
        magnitude = magnitude * 10 + (mantissa[k] - '0');
      } else if (mantissa[k] != '0') {
        remainder = true;
      }
    }
  }
  magnitude = std::min(magnitude, kUnbounded);
  if (negative) {
    floor_out = -(magnitude + (remainder ? 1 : 0));
    ceil_out = -magnitude;
  } else {
    floor_out = magnitude;
    ceil_out = magnitude + (remainder ? 1 : 0);
  }
}

class SchemaCompiler {
 public:
  static constexpr int32_t kMaxSchemaDepth = 64;
  static constexpr size_t kMaxSchemaNodes = 20000;

  SchemaCompiler(const json& root, std::vector<Node>& nodes) : root_(root), nodes_(nodes) {}

  // Any JSON object: a map of any values.
  uint32_t any_object() {
    any_value();
    return any_object_;
  }

  uint32_t compile(const json& s, const std::string& path) {
    // Nesting (through properties, items, alternatives and $ref alike) and size are bounded
    // before anything recurses further: a 1,100-level schema or a 5,000-step $ref chain is
    // refused, not a stack overflow.
    if (depth_ >= kMaxSchemaDepth)
      throw GrammarError("schema nesting at " + where(path) + " is deeper than " +
                         std::to_string(kMaxSchemaDepth) + " levels");
    if (nodes_.size() >= kMaxSchemaNodes)
      throw GrammarError("the schema has more than " + std::to_string(kMaxSchemaNodes) +
                         " sub-schemas");
    struct Nested {
      int32_t& d;
      explicit Nested(int32_t& depth) : d(depth) { ++d; }
      ~Nested() { --d; }
    } nested(depth_);
    if (s.is_boolean()) {
      if (s.get<bool>()) return any_value();
      throw GrammarError("schema false at " + where(path) + " admits no value");
    }
    if (!s.is_object()) {
      throw GrammarError("schema at " + where(path) + " must be an object or a boolean, not " +
                         std::string(s.type_name()));
    }
    for (const auto& [key, value] : s.items()) {
      if (ignored_keywords().count(key) || combining_keywords().count(key) ||
          typed_keywords().count(key)) {
        continue;
      }
      // uniqueItems false says nothing; true is a constraint we cannot enforce.
      if (key == "uniqueItems" && value.is_boolean() && !value.get<bool>()) continue;
      throw GrammarError("unsupported schema keyword '" + key + "' at " + where(path));
    }
    if (s.contains("$ref")) {
      only_beside(s, "$ref", {}, path);
      return compile_ref(s["$ref"], path);
    }
    if (const auto it = done_.find(path); it != done_.end()) return it->second;
    // Reserved before the body so that a $ref back to this schema finds it (recursion).
    const uint32_t id = add(Node{});
    done_[path] = id;
    Node n = build(s, path);
    n.path = path;
    nodes_[id] = std::move(n);
    return id;
  }

  // Fills every union's first-byte table; throws when alternatives could start alike.
  void resolve_unions() {
    for (uint32_t u = 0; u < nodes_.size(); ++u) {
      if (nodes_[u].kind != Kind::kUnion) continue;
      std::vector<Alternative> flat;
      std::set<uint32_t> visiting;
      flatten(u, flat, visiting, nullptr);
      // enum / const alternatives become one set of literals.
      const auto is_literal = [&](const Alternative& a) {
        return nodes_[a.node].kind == Kind::kLiteral;
      };
      if (std::count_if(flat.begin(), flat.end(), is_literal) > 1) {
        Node merged;
        merged.kind = Kind::kLiteral;
        merged.path = nodes_[u].path;
        for (const Alternative& a : flat) {
          if (!is_literal(a)) continue;
          const Node& lit = nodes_[a.node];
          merged.literals.insert(merged.literals.end(), lit.literals.begin(), lit.literals.end());
          for (const std::string& v : lit.listed) {
            if (std::find(merged.listed.begin(), merged.listed.end(), v) == merged.listed.end()) {
              merged.listed.push_back(v);
            }
          }
          merged.enumerated = merged.enumerated || lit.enumerated;
        }
        std::sort(merged.literals.begin(), merged.literals.end());
        merged.literals.erase(std::unique(merged.literals.begin(), merged.literals.end()),
                              merged.literals.end());
        std::erase_if(flat, is_literal);
        const std::string path = nodes_[u].path;
        flat.push_back({add(std::move(merged)), path});
      }
      merge_tagged(flat, std::string(nodes_[u].path));
      std::array<int32_t, 256> by_byte;
      by_byte.fill(-1);
      std::array<const Alternative*, 256> owner{};
      for (const Alternative& a : flat) {
        for (int b : first_bytes(a.node)) {
          if (owner[b] && owner[b]->node != a.node) {
            char shown[8];
            std::snprintf(shown, sizeof(shown), b >= 0x20 && b < 0x7F ? "%c" : "\\x%02X", b);
            throw GrammarError("alternatives at " + where(nodes_[u].path) +
                               " cannot be told apart: " + where(owner[b]->from) + " and " +
                               where(a.from) + " can both start with '" + std::string(shown) +
                               "' (alternatives must differ in JSON type, or be objects whose "
                               "first property is required and a distinct string const)");
          }
          owner[b] = &a;
          by_byte[b] = static_cast<int32_t>(a.node);
        }
      }
      nodes_[u].by_byte = by_byte;
    }
  }

  // The bytes a value of `node` can start with (after resolve_unions).
  std::array<uint8_t, 256> value_starts(uint32_t node) const {
    std::array<uint8_t, 256> out{};
    if (nodes_[node].kind == Kind::kUnion) {
      for (int b = 0; b < 256; ++b) out[b] = nodes_[node].by_byte[b] >= 0;
    } else {
      for (int b : first_bytes(node)) out[b] = 1;
    }
    return out;
  }

 private:
  uint32_t add(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<uint32_t>(nodes_.size() - 1);
  }

  uint32_t any_value() {
    if (any_ >= 0) return static_cast<uint32_t>(any_);
    any_ = static_cast<int32_t>(add(Node{}));  // a union, filled below
    Node str;
    str.kind = Kind::kString;
    const uint32_t s = add(std::move(str));
    Node num;
    num.kind = Kind::kNumber;
    const uint32_t n = add(std::move(num));
    Node lit;
    lit.kind = Kind::kLiteral;
    lit.literals = {"false", "null", "true"};
    lit.listed = lit.literals;
    const uint32_t l = add(std::move(lit));
    Node arr;
    arr.kind = Kind::kArray;
    arr.child = static_cast<uint32_t>(any_);
    const uint32_t a = add(std::move(arr));
    Node map;
    map.kind = Kind::kMap;
    map.child = static_cast<uint32_t>(any_);
    map.key = s;
    any_object_ = add(std::move(map));
    nodes_[any_].alts = {any_object_, a, s, n, l};
    return static_cast<uint32_t>(any_);
  }

  uint32_t union_of(std::vector<uint32_t> alts) {
    Node u;
    u.kind = Kind::kUnion;
    u.alts = std::move(alts);
    return add(std::move(u));
  }

  // Throws when `s` has a constraining keyword besides `keyword` and `allowed`.
  static void only_beside(const json& s, const std::string& keyword,
                          const std::set<std::string>& allowed, const std::string& path) {
    for (const auto& [key, value] : s.items()) {
      if (key == keyword || ignored_keywords().count(key) || allowed.count(key)) continue;
      if (key == "uniqueItems" && value.is_boolean() && !value.get<bool>()) continue;
      throw GrammarError("keyword '" + key + "' beside '" + keyword + "' at " + where(path) +
                         " is not supported");
    }
  }

  uint32_t compile_ref(const json& ref, const std::string& path) {
    if (!ref.is_string()) throw GrammarError("'$ref' at " + where(path) + " must be a string");
    const std::string r = ref.get<std::string>();
    if (r.empty() || r[0] != '#' || (r.size() > 1 && r[1] != '/')) {
      throw GrammarError("'$ref' at " + where(path) + " is '" + r +
                         "': only references into this schema (#/...) are supported");
    }
    const std::string pointer = r.substr(1);
    if (const auto it = done_.find(pointer); it != done_.end()) return it->second;
    const json* target = nullptr;
    try {
      const json::json_pointer jp(pointer);
      if (root_.contains(jp)) target = &root_.at(jp);
    } catch (const json::exception&) {
      target = nullptr;
    }
    if (!target) {
      throw GrammarError("'$ref' at " + where(path) + " is '" + r + "', which does not exist");
    }
    if (!resolving_.insert(pointer).second) {
      throw GrammarError("'$ref' at " + where(path) + " is '" + r +
                         "', which leads back to itself through $ref alone");
    }
    const uint32_t id = compile(*target, pointer);
    resolving_.erase(pointer);
    return id;
  }

  // The alternatives of union `u`, nested unions expanded.
  // A union's alternative with nested unions expanded; `from` names the schema it came from.
  struct Alternative {
    uint32_t node;
    std::string from;
  };

  void flatten(uint32_t u, std::vector<Alternative>& out, std::set<uint32_t>& visiting,
               const std::string* from) {
    if (!visiting.insert(u).second) {
      throw GrammarError("schema at " + where(nodes_[u].path) +
                         " is an alternative of itself before any value starts");
    }
    for (uint32_t a : nodes_[u].alts) {
      const std::string& origin = from ? *from : nodes_[a].path;
      if (nodes_[a].kind == Kind::kUnion) {
        flatten(a, out, visiting, &origin);
      } else if (std::none_of(out.begin(), out.end(),
                              [&](const Alternative& x) { return x.node == a; })) {
        out.push_back({a, origin});
      }
    }
    visiting.erase(u);
  }

  std::vector<int> first_bytes(uint32_t node) const {
    const Node& n = nodes_[node];
    switch (n.kind) {
      case Kind::kObject:
      case Kind::kMap:
      case Kind::kTagged:
        return {'{'};
      case Kind::kArray:
        return {'['};
      case Kind::kString:
        return {'"'};
      case Kind::kNumber:
        return {'-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'};
      case Kind::kLiteral: {
        std::vector<int> out;
        for (const std::string& s : n.literals) {
          const int b = static_cast<uint8_t>(s[0]);
          if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
        }
        return out;
      }
      default:
        return {};
    }
  }

  Node build(const json& s, const std::string& path) {
    if (s.contains("enum") || s.contains("const")) return build_literals(s, path);
    for (const char* kw : {"anyOf", "oneOf"}) {
      if (!s.contains(kw)) continue;
      only_beside(s, kw, {}, path);
      const json& alts = s[kw];
      if (!alts.is_array() || alts.empty()) {
        throw GrammarError(std::string("'") + kw + "' at " + where(path) +
                           " must be a non-empty array of schemas");
      }
      Node u;
      u.kind = Kind::kUnion;
      u.keyword = kw;
      for (size_t i = 0; i < alts.size(); ++i) {
        u.alts.push_back(compile(alts[i], path + "/" + kw + "/" + std::to_string(i)));
      }
      return u;
    }
    if (s.contains("allOf")) {
      only_beside(s, "allOf", {}, path);
      const json& all = s["allOf"];
      if (!all.is_array() || all.size() != 1) {
        throw GrammarError("'allOf' at " + where(path) +
                           " is supported only as an array of one schema");
      }
      Node u;
      u.kind = Kind::kUnion;
      u.alts = {compile(all[0], path + "/allOf/0")};
      return u;
    }

    std::vector<std::string> types = declared_types(s, path);
    if (!s.contains("type")) {
      // No type: the types whose keywords appear, or any value.
      for (const std::string& t : type_names()) {
        for (const auto& [key, applies] : typed_keywords()) {
          if (s.contains(key) && applies[0] == t) {
            types.push_back(t);
            break;
          }
        }
      }
    }
    for (const auto& [key, applies] : typed_keywords()) {
      if (!s.contains(key)) continue;
      const bool used = std::any_of(applies.begin(), applies.end(), [&](const std::string& t) {
        return std::find(types.begin(), types.end(), t) != types.end();
      });
      if (!used) {
        throw GrammarError("keyword '" + key + "' at " + where(path) + " does not apply to type " +
                           (types.size() == 1 ? "'" + types[0] + "'" : "list") +
                           " (it needs type '" + applies[0] + "')");
      }
    }
    // Every integer is a number: a list with both is a number.
    if (std::find(types.begin(), types.end(), "number") != types.end()) {
      std::erase(types, "integer");
    }
    if (types.empty()) {
      Node u;
      u.kind = Kind::kUnion;
      u.alts = {any_value()};
      return u;
    }
    if (types.size() == 1) return build_type(types[0], s, path);
    Node u;
    u.kind = Kind::kUnion;
    for (const std::string& t : types) {
      Node n = build_type(t, s, path);
      n.path = path;
      u.alts.push_back(add(std::move(n)));
    }
    return u;
  }

  static std::vector<std::string> declared_types(const json& s, const std::string& path) {
    std::vector<std::string> types;
    if (!s.contains("type")) return types;
    const json& t = s["type"];
    const json list = t.is_array() ? t : json::array({t});
    if (list.empty()) throw GrammarError("'type' at " + where(path) + " is an empty list");
    for (const json& name : list) {
      if (!name.is_string()) {
        throw GrammarError("'type' at " + where(path) +
                           " must be a type name or a list of them, not " + name.dump());
      }
      const std::string n = name.get<std::string>();
      if (std::find(type_names().begin(), type_names().end(), n) == type_names().end()) {
        throw GrammarError("'type' at " + where(path) + " names unknown type '" + n + "'");
      }
      if (std::find(types.begin(), types.end(), n) != types.end()) {
        throw GrammarError("'type' at " + where(path) + " names '" + n + "' twice");
      }
      types.push_back(n);
    }
    return types;
  }

  Node build_literals(const json& s, const std::string& path) {
    only_beside(s, s.contains("enum") ? "enum" : "const", {"enum", "const", "type"}, path);
    std::vector<json> values;
    if (s.contains("enum")) {
      const json& e = s["enum"];
      if (!e.is_array() || e.empty()) {
        throw GrammarError("'enum' at " + where(path) + " must be a non-empty array");
      }
      values.assign(e.begin(), e.end());
      if (s.contains("const")) {
        if (std::find(values.begin(), values.end(), s["const"]) == values.end()) {
          throw GrammarError("'const' at " + where(path) + " is not one of its 'enum' values");
        }
        values = {s["const"]};
      }
    } else {
      values = {s["const"]};
    }
    const std::vector<std::string> types = declared_types(s, path);
    if (!types.empty()) {
      std::erase_if(values, [&](const json& v) {
        return std::none_of(types.begin(), types.end(),
                            [&](const std::string& t) { return is_type(v, t); });
      });
      if (values.empty()) {
        throw GrammarError("no 'enum' or 'const' value at " + where(path) +
                           " has the type that 'type' names");
      }
    }
    Node n;
    n.kind = Kind::kLiteral;
    n.enumerated = true;
    for (const json& v : values) {
      try {
        n.literals.push_back(v.dump());
      } catch (const json::type_error&) {
        throw GrammarError("an 'enum' or 'const' value at " + where(path) +
                           " holds a string that is not UTF-8");
      }
      if (n.literals.back() == "null" && !v.is_null()) {
        throw GrammarError("an 'enum' or 'const' value at " + where(path) +
                           " is a number that is not finite");
      }
    }
    for (const std::string& v : n.literals) {
      if (std::find(n.listed.begin(), n.listed.end(), v) == n.listed.end()) n.listed.push_back(v);
    }
    std::sort(n.literals.begin(), n.literals.end());
    n.literals.erase(std::unique(n.literals.begin(), n.literals.end()), n.literals.end());
    return n;
  }

  static uint32_t count_keyword(const json& s, const char* key, uint32_t fallback,
                                const std::string& path) {
    if (!s.contains(key)) return fallback;
    const json& v = s[key];
    const bool integral = v.is_number_unsigned() ||
                          (v.is_number_integer() && v.get<int64_t>() >= 0) ||
                          (v.is_number_float() && v.get<double>() >= 0 &&
                           std::floor(v.get<double>()) == v.get<double>());
    if (!integral) {
      throw GrammarError(std::string("'") + key + "' at " + where(path) +
                         " must be a non-negative integer, not " + v.dump());
    }
    const double d = v.get<double>();
    return d >= UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(d);
  }

  Node build_type(const std::string& type, const json& s, const std::string& path) {
    Node n;
    if (type == "boolean" || type == "null") {
      n.kind = Kind::kLiteral;
      n.literals = type == "null" ? std::vector<std::string>{"null"}
                                  : std::vector<std::string>{"false", "true"};
      n.listed = n.literals;
      return n;
    }
    if (type == "string") {
      n.kind = Kind::kString;
      n.min_count = count_keyword(s, "minLength", 0, path);
      n.max_count = count_keyword(s, "maxLength", UINT32_MAX, path);
      if (n.min_count > n.max_count) {
        throw GrammarError("'minLength' at " + where(path) + " exceeds 'maxLength'");
      }
      return n;
    }
    if (type == "integer" || type == "number") return build_number(type == "integer", s, path);
    if (type == "array") {
      n.kind = Kind::kArray;
      n.min_count = count_keyword(s, "minItems", 0, path);
      n.max_count = count_keyword(s, "maxItems", UINT32_MAX, path);
      if (n.min_count > n.max_count) {
        throw GrammarError("'minItems' at " + where(path) + " exceeds 'maxItems'");
      }
      if (!s.contains("items")) {
        n.child = any_value();
      } else if (s["items"].is_array()) {
        throw GrammarError("'items' at " + where(path) +
                           " is an array (tuple validation), which is not supported");
      } else {
        n.child = compile(s["items"], path + "/items");
      }
      return n;
    }
    return build_object(s, path);
  }

  Node build_number(bool integer, const json& s, const std::string& path) {
    Node n;
    n.kind = Kind::kNumber;
    n.integer = integer;
    const int digits = integer ? 0 : kMaxFracDigits;
    n.scale = kPow10[digits];
    const auto bound = [&](const char* key, bool lower, bool exclusive) {
      const json& v = s[key];
      if (!v.is_number() || (v.is_number_float() && !std::isfinite(v.get<double>()))) {
        throw GrammarError(std::string("'") + key + "' at " + where(path) +
                           " must be a finite number, not " + v.dump());
      }
      i128 floor_v = 0, ceil_v = 0;
      scaled_floor_ceil(v.dump(), digits, floor_v, ceil_v);
      n.bounded = true;
      // Draft 4's exclusiveMinimum: true beside minimum means what exclusiveMinimum means now.
      if (lower) {
        const i128 lo = exclusive ? floor_v + 1 : ceil_v;
        if (lo > n.lo) {
          n.lo = lo;
          n.below_lo = (exclusive ? "not above exclusiveMinimum " : "below minimum ") + v.dump();
        }
      } else {
        const i128 hi = exclusive ? ceil_v - 1 : floor_v;
        if (hi < n.hi) {
          n.hi = hi;
          n.above_hi = (exclusive ? "not below exclusiveMaximum " : "above maximum ") + v.dump();
        }
      }
    };
    // Draft 4 writes exclusiveMinimum: true beside minimum.
    const auto draft4 = [&](const char* key, const char* base) {
      if (!s.contains(key) || !s[key].is_boolean()) return false;
      if (s[key].get<bool>() && !s.contains(base)) {
        throw GrammarError(std::string("'") + key + "' at " + where(path) + " is true but '" +
                           base + "' is missing");
      }
      return s[key].get<bool>();
    };
    const bool min_exclusive = draft4("exclusiveMinimum", "minimum");
    const bool max_exclusive = draft4("exclusiveMaximum", "maximum");
    if (s.contains("minimum")) bound("minimum", true, min_exclusive);
    if (s.contains("maximum")) bound("maximum", false, max_exclusive);
    if (s.contains("exclusiveMinimum") && !s["exclusiveMinimum"].is_boolean())
      bound("exclusiveMinimum", true, true);
    if (s.contains("exclusiveMaximum") && !s["exclusiveMaximum"].is_boolean())
      bound("exclusiveMaximum", false, true);
    if (n.bounded) {
      // Some number of at most kMaxIntDigits integer digits must lie within the bounds.
      const i128 max = kPow10[kMaxIntDigits] * n.scale - 1;
      const bool reachable =
          n.lo <= n.hi && ((n.lo <= max && n.hi >= 0) || (n.lo <= 0 && n.hi >= -max));
      if (!reachable) {
        throw GrammarError(std::string("no ") + (integer ? "integer" : "number") + " at " +
                           where(path) + " satisfies its minimum and maximum with at most " +
                           std::to_string(kMaxIntDigits) + " integer digits");
      }
    }
    return n;
  }

  Node build_object(const json& s, const std::string& path) {
    Node n;
    const bool has_props = s.contains("properties");
    if (s.contains("additionalProperties")) {
      const json& extra = s["additionalProperties"];
      const bool closed = extra.is_boolean() && !extra.get<bool>();
      if (!closed && has_props) {
        throw GrammarError("'additionalProperties' other than false beside 'properties' at " +
                           where(path) + " is not supported");
      }
      if (!closed) {
        if (s.contains("required")) {
          throw GrammarError("'required' at " + where(path) +
                             " names properties of an object without 'properties'");
        }
        n.kind = Kind::kMap;
        n.child = compile(extra, path + "/additionalProperties");
        any_value();
        n.key = nodes_[any_object_].key;
        return n;
      }
    }
    if (!has_props) {
      if (s.contains("required") && !(s["required"].is_array() && s["required"].empty())) {
        throw GrammarError("'required' at " + where(path) +
                           " names properties of an object without 'properties'");
      }
      if (s.contains("additionalProperties")) {
        // {"type": "object", "additionalProperties": false}: only the empty object.
        n.kind = Kind::kObject;
        n.next_required = {0};
        n.keys.emplace_back();
        return n;
      }
      n.kind = Kind::kUnion;
      n.alts = {any_object()};
      return n;
    }
    const json& props = s["properties"];
    if (!props.is_object()) {
      throw GrammarError("'properties' at " + where(path) + " must be an object, not " +
                         std::string(props.type_name()));
    }
    n.kind = Kind::kObject;
    for (const auto& [name, sub] : props.items()) {
      Property p;
      p.name = name;
      p.node = compile(sub, path + "/properties/" + pointer_token(name));
      n.props.push_back(std::move(p));
    }
    if (s.contains("required")) {
      const json& req = s["required"];
      if (!req.is_array()) {
        throw GrammarError("'required' at " + where(path) + " must be an array of names");
      }
      for (const json& name : req) {
        if (!name.is_string()) {
          throw GrammarError("'required' at " + where(path) + " holds " + name.dump() +
                             ", not a property name");
        }
        const auto it = std::find_if(n.props.begin(), n.props.end(),
                                     [&](const Property& p) { return p.name == name; });
        if (it == n.props.end()) {
          throw GrammarError("'required' at " + where(path) + " names '" + name.get<std::string>() +
                             "', which is not in 'properties'");
        }
        it->required = true;
      }
    }
    index_properties(n);
    return n;
  }

  // An object's next_required and key trie, from its properties.
  static void index_properties(Node& n) {
    const uint32_t n_props = static_cast<uint32_t>(n.props.size());
    n.next_required.assign(n_props + 1, n_props);
    for (uint32_t i = n_props; i-- > 0;) {
      n.next_required[i] = n.props[i].required ? i : n.next_required[i + 1];
    }
    n.keys.emplace_back();
    for (uint32_t i = 0; i < n_props; ++i) {
      const std::string key = json(n.props[i].name).dump().substr(1);  // closing quote kept
      uint32_t cur = 0;
      n.keys[0].props.push_back(i);
      for (char ch : key) {
        const uint8_t b = static_cast<uint8_t>(ch);
        uint32_t next = 0;
        for (const auto& [byte, child] : n.keys[cur].children) {
          if (byte == b) next = child;
        }
        if (next == 0) {
          next = static_cast<uint32_t>(n.keys.size());
          n.keys[cur].children.emplace_back(b, next);
          n.keys.emplace_back();
        }
        cur = next;
        n.keys[cur].props.push_back(i);
      }
      n.keys[cur].prop = static_cast<int32_t>(i);
    }
  }

  // Object alternatives whose first property is required and a distinct string const under one
  // name (a discriminator, as tool calls' "name") become one kTagged node. Returns false, and
  // leaves `flat` alone, when they are not all of that form.
  bool merge_tagged(std::vector<Alternative>& flat, const std::string& path) {
    std::vector<size_t> objects;
    for (size_t i = 0; i < flat.size(); ++i) {
      const Kind k = nodes_[flat[i].node].kind;
      if (k == Kind::kObject || k == Kind::kMap) objects.push_back(i);
    }
    if (objects.size() < 2) return false;
    std::vector<std::pair<std::string, uint32_t>> tags;  // (tag literal, alternative)
    const std::string& key = nodes_[flat[objects[0]].node].props.empty()
                                 ? std::string()
                                 : nodes_[flat[objects[0]].node].props[0].name;
    for (size_t i : objects) {
      const Node& o = nodes_[flat[i].node];
      if (o.kind != Kind::kObject || o.props.empty() || !o.props[0].required ||
          o.props[0].name != key) {
        return false;
      }
      const Node& tag = nodes_[o.props[0].node];
      if (tag.kind != Kind::kLiteral || tag.literals.size() != 1 || tag.literals[0][0] != '"') {
        return false;
      }
      tags.emplace_back(tag.literals[0], flat[i].node);
    }
    Node lit;
    lit.kind = Kind::kLiteral;
    lit.path = path;
    lit.enumerated = true;
    for (const auto& [t, alt] : tags) lit.listed.push_back(t);
    std::sort(tags.begin(), tags.end());
    for (size_t i = 1; i < tags.size(); ++i) {
      if (tags[i].first == tags[i - 1].first) return false;
    }
    Node tagged;
    tagged.kind = Kind::kTagged;
    tagged.path = path;
    for (const auto& [t, alt] : tags) {
      lit.literals.push_back(t);
      tagged.tag_alts.push_back(alt);
    }
    Property p;
    p.name = key;
    p.node = add(std::move(lit));
    p.required = true;
    tagged.props.push_back(std::move(p));
    index_properties(tagged);
    const uint32_t id = add(std::move(tagged));
    for (size_t k = objects.size(); k-- > 0;) flat.erase(flat.begin() + objects[k]);
    flat.push_back({id, path});
    return true;
  }

  const json& root_;
  std::vector<Node>& nodes_;
  int32_t depth_ = 0;                     // compile() calls on the stack
  std::map<std::string, uint32_t> done_;  // schema pointer -> node
  std::set<std::string> resolving_;       // $ref targets being compiled
  int32_t any_ = -1;
  uint32_t any_object_ = 0;
};

}  // namespace

// ---- validating values ------------------------------------------------------------------------
//
// A value is valid when the grammar generates a text that reads as it, whitespace and the order
// of properties aside (the grammar writes them in the schema's order; a parsed value has none):
// a double passes when some number within the rules on digits at the top of this file parses to
// it. The walk follows the compiled nodes, so it refuses what the matcher refuses, and names the
// JSON pointer of the first problem.

namespace {

using Value = nlohmann::json;

// The place of a problem as messages show it: "/" for the root.
std::string problem(const std::string& at, const std::string& what) {
  return (at.empty() ? "/" : at) + ": " + what;
}

// At most `n` bytes of `s`, cut at a character boundary (messages end up in JSON traces).
std::string clipped(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<uint8_t>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "...";
}

std::string shown(const Value& v) {
  return clipped(v.dump(-1, ' ', false, Value::error_handler_t::replace), 60);
}

std::string joined(const std::vector<std::string>& parts, const std::string& sep,
                   const std::string& last_sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += i + 1 == parts.size() ? last_sep : sep;
    out += parts[i];
  }
  return out;
}

// The byte a value's compact text starts with, which picks a union's alternative. Zero is
// written "0" whatever its sign or type, so -0.0 goes where 0 goes.
uint8_t first_byte(const Value& v) {
  switch (v.type()) {
    case Value::value_t::object:
      return '{';
    case Value::value_t::array:
      return '[';
    case Value::value_t::string:
      return '"';
    case Value::value_t::boolean:
      return v.get<bool>() ? 't' : 'f';
    case Value::value_t::null:
      return 'n';
    case Value::value_t::number_integer:
    case Value::value_t::number_unsigned:
    case Value::value_t::number_float:
      return v == 0 ? '0' : static_cast<uint8_t>(v.dump()[0]);
    default:
      return 0;  // binary and discarded values start no JSON text
  }
}

// A number's text as 0.<digits> * 10^point, digits without leading or trailing zeros (none for
// zero).
void decimal_digits(const std::string& text, std::string& digits, int& point) {
  const size_t start = text[0] == '-' ? 1 : 0;
  const size_t e = std::min(text.find_first_of("eE"), text.size());
  const size_t dot = std::min(text.find('.'), e);
  digits = text.substr(start, dot - start);
  if (dot < e) digits += text.substr(dot + 1, e - dot - 1);
  point = static_cast<int>(dot - start) + (e < text.size() ? std::stoi(text.substr(e + 1)) : 0);
  const size_t lead = std::min(digits.find_first_not_of('0'), digits.size());
  digits.erase(0, lead);
  point -= static_cast<int>(lead);
  digits.erase(std::min(digits.find_last_not_of('0') + 1, digits.size()));
}

class ValueChecker {
 public:
  explicit ValueChecker(const std::vector<Node>& nodes) : nodes_(nodes) {}

  // `depth` counts the matcher's frames once the value's own is pushed: the root's and one per
  // enclosing container.
  std::string check(uint32_t node, const Value& v, const std::string& at, int32_t depth) const {
    if (depth > kMaxDepth) {
      return problem(at, "nested deeper than " + std::to_string(kMaxDepth - 1) + " levels");
    }
    if (v.is_number_float() && !std::isfinite(v.get<double>())) {
      return problem(at, "not a finite number");
    }
    const Node& n = nodes_[node];
    switch (n.kind) {
      case Kind::kUnion: {
        // Alternatives differ in their first byte; a union is never a frame of its own.
        const int32_t alt = n.by_byte[first_byte(v)];
        if (alt >= 0) return check(static_cast<uint32_t>(alt), v, at, depth);
        const std::string want = phrase(n);
        return problem(at, n.keyword.empty() ? "expected " + want
                                             : "matches none of the " + n.keyword +
                                                   " alternatives (expected " + want + ")");
      }
      case Kind::kObject:
        return check_object(n, v, at, depth);
      case Kind::kTagged:
        return check_tagged(n, v, at, depth);
      case Kind::kMap:
        return check_map(n, v, at, depth);
      case Kind::kArray:
        return check_array(n, v, at, depth);
      case Kind::kString:
        if (!v.is_string()) return problem(at, "expected " + phrase(n));
        if (std::string p = string_problem(n, v.get_ref<const std::string&>()); !p.empty()) {
          return problem(at, p);
        }
        return "";
      case Kind::kNumber:
        if (!v.is_number()) return problem(at, "expected " + phrase(n));
        if (std::string p = number_problem(n, v); !p.empty()) return problem(at, p);
        return "";
      case Kind::kLiteral:
        return check_literal(n, v, at);
      case Kind::kRoot:
        break;
    }
    return problem(at, "no value is generated here");
  }

 private:
  // What a node generates, for "expected ..." (a union: each alternative's, "or" between).
  std::string phrase(const Node& n) const {
    switch (n.kind) {
      case Kind::kObject:
      case Kind::kMap:
      case Kind::kTagged:
        return "an object";
      case Kind::kArray:
        return "an array";
      case Kind::kString:
        return "a string";
      case Kind::kNumber:
        return n.integer ? "an integer" : "a number";
      case Kind::kLiteral: {
        if (n.enumerated) {
          return n.listed.size() == 1
                     ? clipped(n.listed[0], 120)
                     : "one of " + clipped("[" + joined(n.listed, ",", ",") + "]", 120);
        }
        const bool booleans = std::count(n.literals.begin(), n.literals.end(), "true") > 0;
        const bool null = std::count(n.literals.begin(), n.literals.end(), "null") > 0;
        return booleans && null ? "a boolean or null" : booleans ? "a boolean" : "null";
      }
      case Kind::kUnion: {
        std::vector<std::string> phrases;
        alternative_phrases(n, phrases);
        return joined(phrases, ", ", " or ");
      }
      case Kind::kRoot:
        break;
    }
    return "nothing";
  }

  // Unions of unions are flat to the matcher (resolve_unions checked they do not loop).
  void alternative_phrases(const Node& u, std::vector<std::string>& out) const {
    for (uint32_t a : u.alts) {
      const Node& alt = nodes_[a];
      if (alt.kind == Kind::kUnion) {
        alternative_phrases(alt, out);
        continue;
      }
      std::string p = phrase(alt);
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(std::move(p));
    }
  }

  // Strings are UTF-8 (no surrogates, no overlong forms) with a length in code points.
  static std::string string_problem(const Node& n, const std::string& s) {
    uint8_t pos = kStrChar;
    uint32_t chars = 0;
    for (char ch : s) {
      const uint8_t byte = static_cast<uint8_t>(ch);
      // Inside a string value every ASCII character is one (the text would escape it).
      if (pos == kStrChar && byte < 0x80) {
        ++chars;
        continue;
      }
      const StrByte r = string_byte(pos, byte);
      if (r == StrByte::kReject || r == StrByte::kClose) return "not valid UTF-8";
      chars += r == StrByte::kCharStart;
    }
    if (pos != kStrChar) return "not valid UTF-8";
    if (chars < n.min_count) return "shorter than minLength " + std::to_string(n.min_count);
    if (chars > n.max_count) return "longer than maxLength " + std::to_string(n.max_count);
    return "";
  }

  // Integers and bounded numbers are plain decimals of at most 15 integer and (for numbers) 15
  // fraction digits within [lo, hi]: a double passes when one of those texts reads as it.
  // Other numbers may take an exponent of up to 2 digits.
  static std::string number_problem(const Node& n, const Value& v) {
    const std::string text = shortest_text(v);
    if (!n.integer && !n.bounded) {
      // Digits d1..dk as 1 to 15 integer digits and the rest as fraction (at most 15), or as
      // "0." and up to 15 - k zeros before them, then times 10^e with |e| <= 99.
      std::string digits;
      int point = 0;
      decimal_digits(text, digits, point);
      const int k = static_cast<int>(digits.size());
      const int max_exp = static_cast<int>(kPow10[kMaxExpDigits] - 1);
      if (k > 0 && (point - kMaxIntDigits > max_exp || point + kMaxFracDigits - k < -max_exp)) {
        return text + " needs an exponent of more than " + std::to_string(kMaxExpDigits) +
               " digits";
      }
      return "";
    }
    const int digits = n.integer ? 0 : kMaxFracDigits;
    // The nearest decimal on the grid of 1/scale: exact for integer values and the shortest text,
    // the correctly rounded one (to_chars) for a double's fraction.
    std::string grid_text = text;
    if (v.is_number_float() && !n.integer) {
      char buf[512];
      const auto r = std::to_chars(buf, buf + sizeof(buf), v.get<double>(),
                                   std::chars_format::fixed, kMaxFracDigits);
      grid_text = r.ec == std::errc() ? std::string(buf, r.ptr) : text;
    }
    i128 floor_v = 0, ceil_v = 0;
    scaled_floor_ceil(grid_text, digits, floor_v, ceil_v);
    if (floor_v != ceil_v) return "expected an integer";  // only integers lose digits here
    const i128 limit = kPow10[kMaxIntDigits] * n.scale;
    const i128 lo = std::max(n.lo, -limit + 1), hi = std::min(n.hi, limit - 1);
    // Several grid decimals may read as one large double: the one nearest the range decides.
    const i128 nearest = std::clamp(floor_v, lo, std::max(lo, hi));
    if (!v.is_number_float()) {
      if (nearest == floor_v) return "";
    } else if (reads_as(nearest, digits, v.get<double>())) {
      return "";
    }
    if (floor_v >= limit || floor_v <= -limit) {
      return text + " has more than " + std::to_string(kMaxIntDigits) + " integer digits";
    }
    if (!n.integer && !reads_as(floor_v, digits, v.get<double>())) {
      return text + " has more than " + std::to_string(kMaxFracDigits) + " fraction digits";
    }
    return floor_v < n.lo ? n.below_lo : n.above_hi;
  }

  // The value's text: exact for integers, the shortest that reads back for doubles.
  static std::string shortest_text(const Value& v) {
    if (!v.is_number_float()) return v.dump();
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof(buf), v.get<double>());
    return std::string(buf, r.ptr);
  }

  // Whether the decimal scaled / 10^digits, written out, reads as x.
  static bool reads_as(i128 scaled, int digits, double x) {
    const bool negative = scaled < 0;
    i128 m = negative ? -scaled : scaled;
    std::string text;
    for (int i = 0; m > 0 || i <= digits; ++i) {
      if (i == digits && digits > 0) text += '.';
      text += static_cast<char>('0' + static_cast<int>(m % 10));
      m /= 10;
    }
    if (negative) text += '-';
    std::reverse(text.begin(), text.end());
    double y = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), y);
    return r.ec == std::errc() && y == x;
  }

  std::string check_literal(const Node& n, const Value& v, const std::string& at) const {
    for (const std::string& literal : n.literals) {
      if (Value::parse(literal) == v) return "";
    }
    if (n.enumerated && n.listed.size() > 1) {
      return problem(at, shown(v) + " is not " + phrase(n));
    }
    return problem(at, "expected " + phrase(n));
  }

  std::string check_object(const Node& n, const Value& v, const std::string& at,
                           int32_t depth) const {
    if (!v.is_object()) return problem(at, "expected " + phrase(n));
    for (const Property& p : n.props) {
      if (p.required && !v.contains(p.name)) {
        return problem(at, "missing required property '" + p.name + "'");
      }
    }
    for (const auto& [key, value] : v.items()) {
      const bool known = std::any_of(n.props.begin(), n.props.end(),
                                     [&](const Property& p) { return p.name == key; });
      if (!known) return problem(at, "unexpected property '" + clipped(key, 60) + "'");
    }
    for (const Property& p : n.props) {
      const auto it = v.find(p.name);
      if (it == v.end()) continue;
      if (std::string q = check(p.node, *it, at + "/" + pointer_token(p.name), depth + 1);
          !q.empty()) {
        return q;
      }
    }
    return "";
  }

  // The discriminator picks the alternative, whose schema then reads the whole object.
  std::string check_tagged(const Node& n, const Value& v, const std::string& at,
                           int32_t depth) const {
    if (!v.is_object()) return problem(at, "expected " + phrase(n));
    const std::string& key = n.props[0].name;
    const auto it = v.find(key);
    if (it == v.end()) return problem(at, "missing required property '" + key + "'");
    const Node& tags = nodes_[n.props[0].node];
    for (size_t i = 0; i < tags.literals.size(); ++i) {
      if (Value::parse(tags.literals[i]) == *it)
        return check_object(nodes_[n.tag_alts[i]], v, at, depth);
    }
    return problem(at + "/" + pointer_token(key), shown(*it) + " is not " + phrase(tags));
  }

  std::string check_map(const Node& n, const Value& v, const std::string& at, int32_t depth) const {
    if (!v.is_object()) return problem(at, "expected " + phrase(n));
    for (const auto& [key, value] : v.items()) {
      const std::string member = at + "/" + pointer_token(key);
      if (std::string p = string_problem(nodes_[n.key], key); !p.empty()) {
        return problem(member, "key " + p);
      }
      if (std::string p = check(n.child, value, member, depth + 1); !p.empty()) return p;
    }
    return "";
  }

  std::string check_array(const Node& n, const Value& v, const std::string& at,
                          int32_t depth) const {
    if (!v.is_array()) return problem(at, "expected " + phrase(n));
    const std::string count = std::to_string(v.size()) + " items";
    if (v.size() < n.min_count) {
      return problem(at, count + ", fewer than minItems " + std::to_string(n.min_count));
    }
    if (v.size() > n.max_count) {
      return problem(at, count + ", more than maxItems " + std::to_string(n.max_count));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      if (std::string p = check(n.child, v[i], at + "/" + std::to_string(i), depth + 1);
          !p.empty()) {
        return p;
      }
    }
    return "";
  }

  const std::vector<Node>& nodes_;
};

}  // namespace

JsonGrammar::~JsonGrammar() = default;

std::shared_ptr<const JsonGrammar> JsonGrammar::any_object(
    std::shared_ptr<const Vocabulary> vocab) {
  return from_schema(json{{"type", "object"}}, std::move(vocab));
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(
    const nlohmann::json& schema, std::shared_ptr<const Vocabulary> vocab) {
  return from_schema(json(schema), std::move(vocab));
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(
    const nlohmann::ordered_json& schema, std::shared_ptr<const Vocabulary> vocab) {
  return from_schema(schema, std::move(vocab), Output::kValue);
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(const nlohmann::ordered_json& schema,
                                                            std::shared_ptr<const Vocabulary> vocab,
                                                            Output output) {
  auto impl = std::make_unique<Impl>();
  impl->vocab = std::move(vocab);
  impl->nodes.emplace_back();
  impl->nodes[0].kind = Kind::kRoot;
  SchemaCompiler compiler(schema, impl->nodes);
  const uint32_t top = compiler.compile(schema, "");
  impl->nodes[0].child = top;
  compiler.resolve_unions();
  impl->nodes[0].value_starts = compiler.value_starts(top);
  impl->nodes[0].text_alternative = output == Output::kValueOrText;
  std::shared_ptr<JsonGrammar> g(new JsonGrammar());
  g->impl_ = std::move(impl);
  return g;
}

bool JsonGrammar::value_starts_with(uint8_t byte) const {
  return impl_->nodes[0].value_starts[byte] != 0;
}

std::string JsonGrammar::violation(const nlohmann::json& value) const {
  return ValueChecker(impl_->nodes).check(impl_->nodes[0].child, value, "", 2);
}

// ---- the matcher ------------------------------------------------------------------------------

struct JsonMatcher::State {
  std::shared_ptr<const JsonGrammar> grammar;
  std::vector<Frame> stack;  // stack[0] is the root frame
  // Scratch for mask_logits, kept to avoid allocating each step.
  mutable Arena arena;
  mutable std::vector<Cursor> cursors;
  mutable std::vector<size_t> arena_sizes;
  mutable std::vector<uint8_t> allowed;

  const JsonGrammar::Impl& g() const { return grammar->impl(); }

  Cursor cursor(Arena& a) const {
    a.clear();
    const int32_t n = static_cast<int32_t>(stack.size());
    for (int32_t i = 0; i + 1 < n; ++i) a.push_back({stack[i], i - 1});
    return {stack.back(), n - 2, n};
  }

  void commit(const Cursor& c, const Arena& a) {
    stack.resize(c.depth);
    stack[c.depth - 1] = c.top;
    int32_t p = c.parent;
    for (int32_t i = c.depth - 2; i >= 0; --i) {
      stack[i] = a[p].frame;
      p = a[p].parent;
    }
  }

  // Marks in `allowed` every token of `trie` whose bytes the grammar takes from here: depth
  // first, where cursors[d] is the state after a node's first d bytes and the arena holds
  // exactly the frames those states share, so a sibling truncates it back.
  // With `text_first`, at a root that may be text: a token whose first byte starts no value is
  // text whatever follows, so its whole subtree is allowed without a walk.
  void walk(const ByteTrie& trie, bool text_first = false) const {
    const JsonGrammar::Impl& grammar = g();
    const Node& root = grammar.nodes[0];
    cursors.resize(trie.max_depth + 1);
    arena_sizes.resize(trie.max_depth + 1);
    cursors[0] = cursor(arena);
    arena_sizes[0] = arena.size();
    const uint32_t n_nodes = static_cast<uint32_t>(trie.nodes.size() - 1);
    for (uint32_t i = 0; i < n_nodes;) {
      const ByteTrie::Node& t = trie.nodes[i];
      if (text_first && t.depth == 1 && !root.value_starts[t.byte]) {
        for (uint32_t k = t.tok_begin; k < trie.nodes[t.end].tok_begin; ++k) {
          allowed[trie.tokens[k]] = 1;
        }
        i = t.end;
        continue;
      }
      arena.resize(arena_sizes[t.depth - 1]);
      Cursor& c = cursors[t.depth];
      c = cursors[t.depth - 1];
      if (!grammar.step(c, arena, t.byte)) {
        i = t.end;
        continue;
      }
      arena_sizes[t.depth] = arena.size();
      for (uint32_t k = t.tok_begin; k < trie.nodes[i + 1].tok_begin; ++k) {
        allowed[trie.tokens[k]] = 1;
      }
      ++i;
    }
  }

  bool complete() const { return stack.size() == 1 && JsonGrammar::Impl::is_done(stack[0]); }
  bool in_text() const { return stack.size() == 1 && JsonGrammar::Impl::in_text(stack[0]); }
  bool can_end() const {
    return complete() || in_text() || (stack.size() == 2 && g().value_can_end(stack[1]));
  }
};

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonGrammar> grammar)
    : s_(std::make_unique<State>()) {
  if (!grammar) throw std::invalid_argument("JsonMatcher: no grammar");
  if (!grammar->impl().vocab) {
    throw std::invalid_argument("JsonMatcher: the grammar was compiled without a vocabulary");
  }
  s_->grammar = std::move(grammar);
  s_->stack.push_back(Frame{});
}

JsonMatcher::~JsonMatcher() = default;
JsonMatcher::JsonMatcher(JsonMatcher&&) noexcept = default;
JsonMatcher& JsonMatcher::operator=(JsonMatcher&&) noexcept = default;

void JsonMatcher::mask_logits(std::span<float> logits) const {
  const JsonGrammar::Impl& g = s_->g();
  const Vocabulary& v = *g.vocab;
  std::vector<uint8_t>& allowed = s_->allowed;
  const Frame& top = s_->stack.back();
  const Node& top_node = g.nodes[top.node];
  if (s_->in_text()) {
    allowed = v.text_mask;  // plain text: any token with bytes, and the end
  } else if (s_->complete()) {
    allowed.assign(v.n_vocab, 0);
  } else if (top_node.kind == Kind::kString && top.pos == kStrChar) {
    // The tokens that stay inside the string are known; only those with '"' need the grammar.
    const uint32_t room = top_node.max_count - top.a;
    if (room >= v.in_string_max_chars) {
      allowed = v.in_string_mask;
    } else {
      allowed.assign(v.n_vocab, 0);
      for (const auto& [chars, id] : v.in_string) {
        if (chars > room) break;
        allowed[id] = 1;
      }
    }
    s_->walk(v.with_quote);
  } else {
    allowed.assign(v.n_vocab, 0);
    s_->walk(v.all, g.nodes[0].text_alternative && s_->stack.size() == 1 && top.pos == kBegin);
  }
  if (s_->can_end()) {
    for (int32_t id : v.stop_ids) allowed[id] = 1;
  }
  for (size_t i = 0; i < logits.size(); ++i) {
    if (i >= allowed.size() || !allowed[i]) logits[i] = -INFINITY;
  }
}

bool JsonMatcher::accept(int32_t token) {
  const JsonGrammar::Impl& g = s_->g();
  const Vocabulary& v = *g.vocab;
  if (token < 0 || token >= v.n_vocab) return false;
  if (v.is_stop(token)) {
    if (!s_->can_end()) return false;
    s_->stack.resize(1);
    s_->stack[0].pos = kAfterValue;
    return true;
  }
  const std::string_view bytes = v.token(token);
  if (bytes.empty() || s_->complete()) return false;
  Cursor c = s_->cursor(s_->arena);
  for (char ch : bytes) {
    if (!g.step(c, s_->arena, static_cast<uint8_t>(ch))) return false;
  }
  s_->commit(c, s_->arena);
  return true;
}

bool JsonMatcher::complete() const { return s_->complete(); }

}  // namespace kdr::engine
