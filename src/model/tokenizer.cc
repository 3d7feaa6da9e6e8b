// Tokenizer core: special-token partition, SentencePiece-score merging, rank-based BPE
// (byte-level with a PCRE2 pre-tokenizer, or character-level with byte fallback), WordPiece,
// decoding.
#include "model/tokenizer.h"

#include "base/utf8.h"
#include "model/bert_text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <queue>
#include <unordered_map>
#include <utility>

namespace kdr::model {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Pre-tokenizer patterns as the model families publish them.
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string pattern_for_family(const std::string& pre) {
  if (pre == "llama3" || pre == "llama-bpe" || pre == "smaug-bpe") return kLlama3Pattern;
  if (pre == "qwen2" || pre == "qwen3") return kQwen2Pattern;
  if (pre == "gpt2" || pre == "gpt-2" || pre == "default") return kGpt2Pattern;
  throw TokenizerError("unsupported pre-tokenizer '" + pre +
                       "' (known: llama3/llama-bpe, qwen2, gpt2/default)");
}

// Length of the UTF-8 sequence a lead byte starts (1 for stray bytes, so scans advance).
size_t utf8_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes a valid UTF-8 sequence of `len` bytes.
uint32_t decode_utf8(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  switch (s.size()) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1Fu) << 6) | (b(1) & 0x3Fu);
    case 3:
      return ((b(0) & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
    default:
      return ((b(0) & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) |
             (b(3) & 0x3Fu);
  }
}

// Scans one UTF-8 character at s[i]: returns its length when complete and valid; 0 when the
// input ends inside a valid prefix; -k when the first k bytes are a maximal invalid subpart.
int scan_utf8(std::string_view s, size_t i) {
  const uint8_t lead = static_cast<uint8_t>(s[i]);
  if (lead < 0x80) return 1;
  int need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return 0;
    const uint8_t c = static_cast<uint8_t>(s[i + k]);
    const bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) return -k;
  }
  return need + 1;
}

// GPT-2's reversible byte <-> printable code point mapping used by byte-level BPE.
struct ByteLevelAlphabet {
  std::array<std::string, 256> byte_to_text;
  std::array<int16_t, 512> cp_to_byte;  // every mapped code point is < 324

  ByteLevelAlphabet() {
    cp_to_byte.fill(-1);
    uint32_t extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const uint32_t cp = printable ? b : extra++;
      append_utf8(byte_to_text[b], cp);
      cp_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Byte trie over the texts of special and user-defined tokens, for leftmost-longest matching.
class SpecialTrie {
 public:
  void insert(std::string_view text, int32_t id) {
    int32_t node = 0;
    for (char c : text) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, static_cast<int32_t>(token_.size())).first;
        token_.push_back(-1);
      }
      node = it->second;
    }
    if (token_[node] < 0) token_[node] = id;  // the lowest id wins for duplicate texts
  }

  // Longest accepted token starting at text[pos]: (id, length) or (-1, 0).
  template <class Accept>
  std::pair<int32_t, size_t> longest(std::string_view text, size_t pos, Accept accept) const {
    std::pair<int32_t, size_t> best{-1, 0};
    int32_t node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[i]);
      const auto it = edges_.find(key);
      if (it == edges_.end()) break;
      node = it->second;
      if (token_[node] >= 0 && accept(token_[node])) best = {token_[node], i + 1 - pos};
    }
    return best;
  }

  bool empty() const { return token_.size() <= 1; }

 private:
  std::vector<int32_t> token_{-1};  // node -> token id ending there
  std::unordered_map<uint64_t, int32_t> edges_;
};

}  // namespace

std::string utf8_sanitize(std::string_view bytes, bool keep_incomplete_tail, size_t* tail_len) {
  std::string out;
  out.reserve(bytes.size());
  if (tail_len) *tail_len = 0;
  size_t i = 0;
  while (i < bytes.size()) {
    const int n = scan_utf8(bytes, i);
    if (n > 0) {
      out.append(bytes.substr(i, n));
      i += n;
    } else if (n == 0) {
      if (keep_incomplete_tail) {
        if (tail_len) *tail_len = bytes.size() - i;
        break;
      }
      out += "\xEF\xBF\xBD";
      break;
    } else {
      out += "\xEF\xBF\xBD";
      i += static_cast<size_t>(-n);
    }
  }
  return out;
}

struct Tokenizer::Impl {
  TokenizerSpec spec;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ids;
  std::vector<TokenType> types;
  std::vector<std::string> bytes;  // decoded bytes per token
  std::array<int32_t, 256> byte_token{};
  SpecialTrie specials;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // pair -> (rank, merged id)
  pcre2_code* regex = nullptr;

  ~Impl() {
    if (regex) pcre2_code_free(regex);
  }

  int32_t lookup(std::string_view s) const {
    const auto it = ids.find(s);
    return it == ids.end() ? -1 : it->second;
  }

  bool is_special(int32_t id) const {
    const TokenType t = types[id];
    return t == TokenType::kControl || t == TokenType::kUnknown;
  }

  void build();
  void compile_regex();
  void encode_text(std::string_view text, bool prefix_space, std::vector<int32_t>& out) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_wordpiece(std::string_view text, std::vector<int32_t>& out) const;
  void push_byte_fallback(std::string_view ch, std::vector<int32_t>& out) const;
  void merge_by_rank(std::vector<int32_t>& symbols, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::build() {
  const TokenizerSpec& s = spec;
  const size_t n = s.tokens.size();
  if (n == 0) throw TokenizerError("tokenizer: empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX)) throw TokenizerError("tokenizer: vocabulary too large");
  if (!s.scores.empty() && s.scores.size() != n) {
    throw TokenizerError("tokenizer: " + std::to_string(s.scores.size()) + " scores for " +
                         std::to_string(n) + " tokens");
  }
  if (!s.token_types.empty() && s.token_types.size() != n) {
    throw TokenizerError("tokenizer: " + std::to_string(s.token_types.size()) +
                         " token types for " + std::to_string(n) + " tokens");
  }
  for (const auto& [name, id] : {std::pair{"bos", s.bos_id}, std::pair{"eos", s.eos_id},
                                 std::pair{"unk", s.unk_id}, std::pair{"pad", s.pad_id}}) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      throw TokenizerError(std::string("tokenizer: ") + name + " id " + std::to_string(id) +
                           " outside the vocabulary of " + std::to_string(n));
    }
  }
  if (s.model == TokenizerModel::kWordPiece) {
    if (s.unk_id < 0) throw TokenizerError("tokenizer: WordPiece needs an unknown token");
    if (s.max_input_chars_per_word < 1)
      throw TokenizerError("tokenizer: WordPiece max_input_chars_per_word " +
                           std::to_string(s.max_input_chars_per_word) + " is not positive");
  }
  types = s.token_types.empty() ? std::vector<TokenType>(n, TokenType::kNormal) : s.token_types;
  ids.reserve(n);
  byte_token.fill(-1);
  const bool byte_level = s.model == TokenizerModel::kBpe && s.byte_level;
  const ByteLevelAlphabet& alphabet = byte_level_alphabet();
  bytes.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = s.tokens[i];
    const int32_t id = static_cast<int32_t>(i);
    const int t = static_cast<int>(types[i]);
    if (t < 0 || t > 6) {
      throw TokenizerError("tokenizer: token " + std::to_string(i) + " has unknown type " +
                           std::to_string(t));
    }
    ids.emplace(text, id);  // the first id keeps a duplicated text, as llama.cpp does
    const bool verbatim = types[i] == TokenType::kControl || types[i] == TokenType::kUserDefined ||
                          types[i] == TokenType::kUnknown;
    const bool byte_form = text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>';
    unsigned value = 0;
    const bool byte_ok = byte_form && std::sscanf(text.c_str(), "<0x%2X>", &value) == 1;
    if (types[i] == TokenType::kByte && !byte_ok) {
      throw TokenizerError("tokenizer: byte token " + std::to_string(i) + " '" + text +
                           "' is not of the form <0xXX>");
    }
    // Character-level vocabularies mark byte-fallback pieces by their text alone.
    if (byte_ok &&
        (types[i] == TokenType::kByte || (!byte_level && s.model != TokenizerModel::kWordPiece &&
                                          types[i] == TokenType::kNormal))) {
      if (byte_token[value] < 0) byte_token[value] = id;
      bytes[i] = std::string(1, static_cast<char>(value));
      continue;
    }
    if (verbatim) {
      bytes[i] = text;
      if (!text.empty()) specials.insert(text, id);
    } else if (s.model == TokenizerModel::kWordPiece) {
      bytes[i] = text;  // decode() joins words and glues continuation pieces
    } else if (byte_level) {
      std::string& out = bytes[i];
      for (size_t k = 0; k < text.size();) {
        size_t len = std::min(utf8_len(static_cast<uint8_t>(text[k])), text.size() - k);
        const uint32_t cp = decode_utf8(std::string_view(text).substr(k, len));
        if (cp < alphabet.cp_to_byte.size() && alphabet.cp_to_byte[cp] >= 0) {
          out += static_cast<char>(alphabet.cp_to_byte[cp]);
        } else {
          out.append(text, k, len);  // not from the byte alphabet: keep as written
        }
        k += len;
      }
    } else {
      std::string& out = bytes[i];
      for (size_t k = 0; k < text.size();) {
        if (text.compare(k, kSpaceMark.size(), kSpaceMark) == 0) {
          out += ' ';
          k += kSpaceMark.size();
        } else {
          out += text[k++];
        }
      }
    }
  }
  if (s.model == TokenizerModel::kBpe) {
    merges.reserve(s.merges.size());
    for (size_t r = 0; r < s.merges.size(); ++r) {
      const std::string& m = s.merges[r];
      // The separator is the first space that is not the first character (a piece may be " ").
      const size_t sep = m.find(' ', 1);
      if (sep == std::string::npos) {
        throw TokenizerError("tokenizer: merge " + std::to_string(r) + " '" + m +
                             "' is not 'left right'");
      }
      const std::string_view left(m.data(), sep), right(m.data() + sep + 1, m.size() - sep - 1);
      const int32_t a = lookup(left), b = lookup(right);
      std::string joined(left);
      joined += right;
      const int32_t c = lookup(joined);
      if (a < 0 || b < 0 || c < 0) {
        throw TokenizerError("tokenizer: merge " + std::to_string(r) + " '" + m +
                             "' names a piece missing from the vocabulary");
      }
      merges.emplace(pair_key(a, b), std::pair{static_cast<int32_t>(r), c});  // first rank wins
    }
    if (byte_level) compile_regex();
  }
}

void Tokenizer::Impl::compile_regex() {
  const std::string pattern =
      spec.pre_regex.empty() ? pattern_for_family(spec.pre) : spec.pre_regex;
  int err = 0;
  PCRE2_SIZE offset = 0;
  regex = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                        PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (!regex) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    throw TokenizerError("tokenizer: pre-tokenizer regex does not compile at offset " +
                         std::to_string(offset) + ": " + reinterpret_cast<const char*>(msg) +
                         " (pattern " + pattern + ")");
  }
  pcre2_jit_compile(regex, PCRE2_JIT_COMPLETE);  // an interpreter fallback is fine
}

void Tokenizer::Impl::push_byte_fallback(std::string_view ch, std::vector<int32_t>& out) const {
  bool all = true;
  for (char c : ch) all = all && byte_token[static_cast<uint8_t>(c)] >= 0;
  if (all) {
    for (char c : ch) out.push_back(byte_token[static_cast<uint8_t>(c)]);
  } else if (spec.unk_id >= 0) {
    out.push_back(spec.unk_id);
  } else {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "U+%04X", static_cast<unsigned>(decode_utf8(ch)));
    throw TokenizerError(std::string("tokenizer: cannot encode character ") + buf +
                         ": no byte tokens and no unknown token");
  }
}

// SentencePiece BPE: repeatedly merge the adjacent pair whose joined piece has the best
// score (leftmost on ties); pieces left unknown fall back to <0xXX> tokens.
void Tokenizer::Impl::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  struct Symbol {
    uint32_t pos, len;
    int32_t prev, next;
  };
  std::vector<Symbol> sym;
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min(utf8_len(static_cast<uint8_t>(text[i])), text.size() - i);
    sym.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len),
                   static_cast<int32_t>(sym.size()) - 1, static_cast<int32_t>(sym.size()) + 1});
    i += len;
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t len;
  };
  const auto worse = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  const auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t len = sym[l].len + sym[r].len;
    const int32_t id = lookup(text.substr(sym[l].pos, len));
    if (id < 0 || (types[id] != TokenType::kNormal && types[id] != TokenType::kUndefined)) return;
    queue.push({spec.scores.empty() ? 0.0f : spec.scores[id], l, r, len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale entry
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    const std::string_view piece = text.substr(sym[i].pos, sym[i].len);
    const int32_t id = lookup(piece);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (size_t k = 0; k < piece.size();) {
        const size_t len = std::min(utf8_len(static_cast<uint8_t>(piece[k])), piece.size() - k);
        push_byte_fallback(piece.substr(k, len), out);
        k += len;
      }
    }
  }
}

// Rank-based BPE on symbol ids: merge the lowest-ranked adjacent pair, leftmost on ties.
void Tokenizer::Impl::merge_by_rank(std::vector<int32_t>& symbols,
                                    std::vector<int32_t>& out) const {
  const int32_t n = static_cast<int32_t>(symbols.size());
  std::vector<int32_t> next(n), prev(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank, pos, left, right;
  };
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.pos > b.pos);
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  const auto try_add = [&](int32_t p) {
    if (p < 0 || next[p] < 0) return;
    const auto it = merges.find(pair_key(symbols[p], symbols[next[p]]));
    if (it != merges.end()) queue.push({it->second.first, p, symbols[p], symbols[next[p]]});
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_add(i);
  std::vector<bool> dead(n, false);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const int32_t q = next[c.pos];
    if (dead[c.pos] || q < 0 || symbols[c.pos] != c.left || symbols[q] != c.right) continue;
    symbols[c.pos] = merges.at(pair_key(c.left, c.right)).second;
    dead[q] = true;
    next[c.pos] = next[q];
    if (next[q] >= 0) prev[next[q]] = c.pos;
    try_add(prev[c.pos]);
    try_add(c.pos);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = next[i]) out.push_back(symbols[i]);
}

void Tokenizer::Impl::encode_bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  std::vector<int32_t> symbols;
  if (spec.byte_level) {
    const ByteLevelAlphabet& alphabet = byte_level_alphabet();
    std::string mapped;
    for (char c : piece) mapped += alphabet.byte_to_text[static_cast<uint8_t>(c)];
    if (spec.ignore_merges) {
      const int32_t whole = lookup(mapped);
      if (whole >= 0) {
        out.push_back(whole);
        return;
      }
    }
    for (char c : piece) {
      const int32_t id = lookup(alphabet.byte_to_text[static_cast<uint8_t>(c)]);
      if (id >= 0) {
        symbols.push_back(id);
      } else if (spec.unk_id >= 0) {
        symbols.push_back(spec.unk_id);
      } else {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "tokenizer: byte 0x%02X has no token and no unknown token",
                      static_cast<unsigned>(static_cast<uint8_t>(c)));
        throw TokenizerError(buf);
      }
    }
  } else {
    for (size_t k = 0; k < piece.size();) {
      const size_t len = std::min(utf8_len(static_cast<uint8_t>(piece[k])), piece.size() - k);
      const int32_t id = lookup(piece.substr(k, len));
      if (id >= 0) {
        symbols.push_back(id);
      } else {
        push_byte_fallback(piece.substr(k, len), symbols);
      }
      k += len;
    }
  }
  merge_by_rank(symbols, out);
}

// Encodes text that holds no special token.
// WordPiece: each word becomes its longest known prefix, then the longest known
// continuation (spelled with the continuing prefix) of what is left, and so on; a word that
// cannot be spelled this way, or is too long, is the unknown token as a whole.
void Tokenizer::Impl::encode_wordpiece(std::string_view text, std::vector<int32_t>& out) const {
  std::string piece;
  for (const std::string& word : bert_words(text, spec.bert)) {
    size_t chars = 0;
    for (char c : word) chars += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
    if (chars > static_cast<size_t>(spec.max_input_chars_per_word)) {
      out.push_back(spec.unk_id);
      continue;
    }
    const size_t first = out.size();
    for (size_t start = 0; start < word.size();) {
      int32_t id = -1;
      size_t end = word.size();
      while (end > start) {
        piece.assign(start > 0 ? spec.continuing_prefix : std::string());
        piece.append(word, start, end - start);
        id = lookup(piece);
        if (id >= 0) break;
        do --end;  // one code point shorter
        while (end > start && (static_cast<uint8_t>(word[end]) & 0xC0) == 0x80);
      }
      if (id < 0) {
        out.resize(first);
        out.push_back(spec.unk_id);
        break;
      }
      out.push_back(id);
      start = end;
    }
  }
}

void Tokenizer::Impl::encode_text(std::string_view text, bool prefix_space,
                                  std::vector<int32_t>& out) const {
  if (spec.model == TokenizerModel::kWordPiece) {
    encode_wordpiece(text, out);
    return;
  }
  const bool escape = spec.model == TokenizerModel::kSpm || !spec.byte_level;
  if (escape) {
    std::string norm;
    norm.reserve(text.size() + 8);
    if (prefix_space) norm += kSpaceMark;
    for (char c : text) {
      if (c == ' ') {
        norm += kSpaceMark;
      } else {
        norm += c;
      }
    }
    if (spec.model == TokenizerModel::kSpm) {
      encode_spm(norm, out);
    } else {
      encode_bpe_piece(norm, out);
    }
    return;
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(regex, nullptr);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start < text.size()) {
    const int rc = pcre2_match(regex, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      encode_bpe_piece(text.substr(start), out);
      break;
    }
    if (rc < 0) {
      pcre2_match_data_free(md);
      throw TokenizerError("tokenizer: pre-tokenizer regex failed with PCRE2 error " +
                           std::to_string(rc));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t begin = ov[0], end = ov[1];
    if (begin > start) encode_bpe_piece(text.substr(start, begin - start), out);  // a gap
    if (end == begin) {  // an empty match: take one character so the scan advances
      end = std::min(text.size(), begin + utf8_len(static_cast<uint8_t>(text[begin])));
    }
    encode_bpe_piece(text.substr(begin, end - begin), out);
    start = end;
  }
  pcre2_match_data_free(md);
}

Tokenizer::Tokenizer(TokenizerSpec spec) : impl_(std::make_unique<Impl>()) {
  impl_->spec = std::move(spec);
  impl_->build();
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  return encode(text, add_special, parse_special, {});
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special,
                                       std::span<const ByteRange> literal) const {
  const Impl& m = *impl_;
  for (size_t i = 0; i < text.size();) {
    const int n = scan_utf8(text, i);
    if (n <= 0) {
      throw TokenizerError("tokenizer: text is not valid UTF-8 at byte " + std::to_string(i));
    }
    i += n;
  }
  std::vector<int32_t> out;
  if (add_special && m.spec.add_bos && m.spec.bos_id >= 0) out.push_back(m.spec.bos_id);
  const auto accept = [&](int32_t id) { return parse_special || !m.is_special(id); };
  // Text before each special token is encoded on its own; a space prefix goes on text that
  // starts the input or follows a special token.
  bool after_special = true;
  size_t fragment = 0;
  const auto flush = [&](size_t end) {
    if (end > fragment) {
      m.encode_text(text.substr(fragment, end - fragment), m.spec.add_space_prefix && after_special,
                    out);
      after_special = false;
    }
  };
  // The literal range at or after the scan position.
  size_t next_literal = 0;
  const auto accept_literal = [&](int32_t id) { return !m.is_special(id); };
  if (!m.specials.empty()) {
    for (size_t i = 0; i < text.size();) {
      while (next_literal < literal.size() && literal[next_literal].end <= i) ++next_literal;
      const bool inside = next_literal < literal.size() && literal[next_literal].begin <= i;
      auto [id, len] = inside ? m.specials.longest(text, i, accept_literal)
                              : m.specials.longest(text, i, accept);
      // A control token may not reach into a literal range from the template's side.
      if (id >= 0 && !inside && m.is_special(id) && next_literal < literal.size() &&
          i + len > literal[next_literal].begin)
        id = -1;
      if (id >= 0 && inside && i + len > literal[next_literal].end) id = -1;
      if (id < 0) {
        ++i;
        continue;
      }
      flush(i);
      out.push_back(id);
      after_special = true;
      i += len;
      fragment = i;
    }
  }
  flush(text.size());
  if (add_special && m.spec.add_eos && m.spec.eos_id >= 0) out.push_back(m.spec.eos_id);
  return out;
}

std::string Tokenizer::token_bytes(int32_t id, bool render_special) const {
  if (id < 0 || id >= n_vocab()) {
    throw TokenizerError("tokenizer: token id " + std::to_string(id) +
                         " outside the vocabulary of " + std::to_string(n_vocab()));
  }
  if (!render_special && impl_->is_special(id)) return {};
  return impl_->bytes[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  if (impl_->spec.model == TokenizerModel::kWordPiece) {
    // Words joined by spaces, continuation pieces glued to their word (no clean-up of the
    // spaces before punctuation, which Hugging Face's decoder adds on request).
    const std::string& prefix = impl_->spec.continuing_prefix;
    std::string text;
    for (int32_t id : ids) {
      const std::string piece = token_bytes(id, true);
      if (skip_special && impl_->is_special(id)) continue;
      if (!prefix.empty() && piece.compare(0, prefix.size(), prefix) == 0) {
        text.append(piece, prefix.size());
      } else {
        if (!text.empty()) text += ' ';
        text += piece;
      }
    }
    return utf8_sanitize(text);
  }
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    std::string piece = token_bytes(id, true);
    if (skip_special && impl_->is_special(id)) continue;
    // The prefix space added at encode time is not part of the text (llama.cpp, HF Llama).
    if (first && impl_->spec.add_space_prefix && !piece.empty() && piece[0] == ' ') {
      piece.erase(0, 1);
    }
    first = false;
    bytes += piece;
  }
  return utf8_sanitize(bytes);
}

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->spec.tokens.size()); }

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= n_vocab()) {
    throw TokenizerError("tokenizer: token id " + std::to_string(id) + " out of range");
  }
  return impl_->types[id];
}

int32_t Tokenizer::token_id(std::string_view piece) const { return impl_->lookup(piece); }

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) {
    throw TokenizerError("tokenizer: token id " + std::to_string(id) + " out of range");
  }
  return impl_->spec.tokens[id];
}

const TokenizerSpec& Tokenizer::spec() const { return impl_->spec; }

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string StreamingDetokenizer::push(int32_t id) {
  const TokenType t = tokenizer_->token_type(id);
  const bool special = t == TokenType::kControl || t == TokenType::kUnknown;
  if (special && skip_special_) return {};
  std::string piece = tokenizer_->token_bytes(id, true);
  if (at_start_ && tokenizer_->spec().add_space_prefix && !piece.empty() && piece[0] == ' ') {
    piece.erase(0, 1);
  }
  at_start_ = false;
  held_ += piece;
  size_t tail = 0;
  std::string out = utf8_sanitize(held_, true, &tail);
  held_.erase(0, held_.size() - tail);
  return out;
}

std::string StreamingDetokenizer::finish() {
  std::string out = utf8_sanitize(held_);
  held_.clear();
  at_start_ = true;
  return out;
}

}  // namespace kdr::model
