// Tokenizers for the model families we serve: SentencePiece-style BPE driven by piece scores
// (Gemma, Llama 2: GGUF `tokenizer.ggml.model = llama`) and byte-level BPE driven by merge
// ranks (Llama 3, Qwen2/3: `gpt2`), plus the character-level BPE with byte fallback that
// Hugging Face tokenizer.json files use for Gemma, and BERT's WordPiece (sentence-embedding
// models). Ids match Hugging Face `tokenizers`.
//
// A TokenizerSpec is what a model file says; Tokenizer validates it and encodes/decodes.
// Errors are TokenizerErrors naming the token, id or key that is wrong.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::model {

class GgufFile;

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// How pieces are merged.
enum class TokenizerModel {
  kSpm,        // best-scoring merged piece first (scores), byte fallback, spaces as U+2581
  kBpe,        // lowest merge rank first (merges); byte-level or character-level with byte fallback
  kWordPiece,  // BERT: normalized words split greedily into the longest known pieces
};

// BertNormalizer's steps, applied in this order before WordPiece splits the text into words
// (whitespace separates, each punctuation character is a word of its own).
struct BertTextOptions {
  bool clean_text = true;            // drop control characters, any whitespace becomes ' '
  bool handle_chinese_chars = true;  // CJK ideographs become words of their own
  bool strip_accents = true;         // NFD, then drop nonspacing marks
  bool lowercase = true;
};

// GGUF `tokenizer.ggml.token_type` values.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // bos/eos/turn markers: only matched in text when parse_special is on
  kUserDefined = 4,  // always matched in text before merging, decoded verbatim
  kUnused = 5,
  kByte = 6,  // <0xXX>
};

// A vocabulary as a model file describes it. GGUF, tokenizer.json and tests fill one in.
struct TokenizerSpec {
  TokenizerModel model = TokenizerModel::kSpm;
  std::vector<std::string> tokens;     // by id (byte-level BPE: GPT-2's byte-to-unicode text)
  std::vector<float> scores;           // kSpm merge priority per token; empty = all 0
  std::vector<TokenType> token_types;  // empty = all normal
  std::vector<std::string> merges;     // kBpe: "left right", highest priority first

  // kBpe only. byte_level: GPT-2 byte-to-unicode mapping plus a pre-tokenizer regex.
  // Otherwise spaces become U+2581 and unknown characters fall back to <0xXX> tokens.
  bool byte_level = true;
  // Pre-tokenizer family (llama3 / llama-bpe, qwen2, gpt2 / default); pre_regex, when not
  // empty, is the exact pattern instead (from tokenizer.json).
  std::string pre = "default";
  std::string pre_regex;
  // A pre-token that is itself a vocabulary entry is emitted whole (Llama 3).
  bool ignore_merges = false;

  // Prepend U+2581 to text that starts the input or follows a special token (Llama 2: yes,
  // Gemma: no), as llama.cpp does.
  bool add_space_prefix = false;

  // kWordPiece only. A word longer than max_input_chars_per_word code points, or one that
  // no sequence of pieces spells, is the unknown token (unk_id, required).
  BertTextOptions bert;
  std::string continuing_prefix = "##";  // marks a piece that continues a word
  int32_t max_input_chars_per_word = 100;

  // kWordPiece: bos is [CLS] and eos [SEP] (the post-processor's template).
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false;
};

// Reads tokenizer.ggml.* from a GGUF file (tokens, scores, token_type, merges, pre, special
// ids, add_bos_token, add_space_prefix). Errors name the file and key.
TokenizerSpec spec_from_gguf(const GgufFile& file);

// Reads a Hugging Face tokenizer.json (model.type BPE: byte-level, or SentencePiece-like with
// byte_fallback and a U+2581 normalizer as Gemma's; or WordPiece with BertNormalizer,
// BertPreTokenizer and a TemplateProcessing or BertProcessing post-processor). `name` stands
// for the file in errors.
// NFC normalizers are accepted but not applied (text is assumed already NFC).
TokenizerSpec spec_from_tokenizer_json(std::string_view json_text, const std::string& name);
TokenizerSpec spec_from_tokenizer_json_file(const std::string& path);

class Tokenizer {
 public:
  // Validates the spec (ids in range, merges name known tokens, regex compiles).
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_special: prepend bos / append eos as the spec says. parse_special: control tokens
  // written in the text become their ids (user-defined tokens always do). Throws on text
  // that is not UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = true) const;
  // The same, except that no control token is recognised inside the byte ranges `literal`
  // ([begin, end), ascending, disjoint) or across their edges: text a user wrote stays text
  // while the template around it keeps its control tokens.
  struct ByteRange {
    size_t begin = 0, end = 0;
  };
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special,
                              std::span<const ByteRange> literal) const;

  // Concatenated token bytes; invalid UTF-8 becomes U+FFFD. Control tokens are dropped
  // when skip_special, else rendered as their text.
  std::string decode(std::span<const int32_t> ids, bool skip_special = true) const;

  // The raw bytes one token stands for (may be part of a UTF-8 character). Control tokens
  // give "" unless render_special. Throws on an id out of range.
  std::string token_bytes(int32_t id, bool render_special = false) const;

  int32_t n_vocab() const;
  TokenType token_type(int32_t id) const;
  // Id of the exact piece text, or -1.
  int32_t token_id(std::string_view piece) const;
  const std::string& token_text(int32_t id) const;
  const TokenizerSpec& spec() const;
  int32_t bos_id() const { return spec().bos_id; }
  int32_t eos_id() const { return spec().eos_id; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of generated ids into text that never splits a UTF-8 character: bytes of
// an incomplete character are held until the token that completes it arrives.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special = true);
  // The complete text that `id` makes available (possibly "").
  std::string push(int32_t id);
  // Whatever is still held, with incomplete characters as U+FFFD; resets the stream.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool at_start_ = true;
  std::string held_;
};

// Replaces each maximal invalid subsequence of `bytes` with U+FFFD (Unicode's practice, as
// Rust's from_utf8_lossy). When `keep_incomplete_tail`, a valid but unfinished character at
// the end is left out of the result and its length stored in *tail_len.
std::string utf8_sanitize(std::string_view bytes, bool keep_incomplete_tail = false,
                          size_t* tail_len = nullptr);

}  // namespace kdr::model
