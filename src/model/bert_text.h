// BERT's text pipeline before WordPiece (Hugging Face tokenizers' BertNormalizer and
// BertPreTokenizer): private to the tokenizer (tokenizer.cc), in its own file because it is
// the one place that needs Unicode character data (ICU).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer.h"

namespace kdr::model {

// Normalizes valid UTF-8 `text` as `o` says (clean_text, handle_chinese_chars, strip_accents,
// lowercase, in that order) and splits it into the words WordPiece sees: whitespace separates
// words and is dropped; every punctuation character is a word of its own.
std::vector<std::string> bert_words(std::string_view text, const BertTextOptions& o);

}  // namespace kdr::model
