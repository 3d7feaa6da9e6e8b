// BertNormalizer + BertPreTokenizer on code points, with ICU's character data. The character
// classes follow Hugging Face tokenizers (whose ids the tests compare against), including its
// quirks: "control" is Unicode Cc, Cf or Co (unassigned code points stay), and the CJK ranges
// are the original BERT's, whose Extension E range starts at U+2B920.
#include "model/bert_text.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>

#include <cstdint>

#include "base/utf8.h"

namespace kdr::model {
namespace {

std::vector<UChar32> code_points(std::string_view s) {
  std::vector<UChar32> out;
  out.reserve(s.size());
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  for (size_t i = 0; i < s.size();) {
    const uint8_t lead = b(i);
    UChar32 cp;
    size_t len;
    if (lead < 0x80) {
      cp = lead, len = 1;
    } else if ((lead & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = ((lead & 0x1F) << 6) | (b(i + 1) & 0x3F), len = 2;
    } else if ((lead & 0xF0) == 0xE0 && i + 2 < s.size()) {
      cp = ((lead & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F), len = 3;
    } else if ((lead & 0xF8) == 0xF0 && i + 3 < s.size()) {
      cp = ((lead & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) | ((b(i + 2) & 0x3F) << 6) |
           (b(i + 3) & 0x3F),
      len = 4;
    } else {
      cp = 0xFFFD, len = 1;  // the tokenizer validated the text; never reached
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

bool is_whitespace(UChar32 c) {
  return c == '\t' || c == '\n' || c == '\r' || u_hasBinaryProperty(c, UCHAR_WHITE_SPACE);
}

bool is_control(UChar32 c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  const int8_t t = u_charType(c);
  return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_PRIVATE_USE_CHAR;
}

bool is_chinese(UChar32 c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_punctuation(UChar32 c) {
  if (c < 0x80)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  switch (u_charType(c)) {
    case U_CONNECTOR_PUNCTUATION:
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

// Canonical decomposition (NFD) of the whole sequence, so combining marks are also put in
// canonical order as Unicode's NFD does.
std::vector<UChar32> nfd(const std::vector<UChar32>& cps) {
  std::u16string in;
  in.reserve(cps.size());
  for (UChar32 c : cps) {
    if (c <= 0xFFFF) {
      in += static_cast<char16_t>(c);
    } else {
      in += static_cast<char16_t>(U16_LEAD(c));
      in += static_cast<char16_t>(U16_TRAIL(c));
    }
  }
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFDInstance(&err);
  if (U_FAILURE(err)) throw TokenizerError("tokenizer: ICU has no NFD data");
  std::u16string out(in.size() * 4 + 16, u'\0');  // NFD grows a character at most 4-fold
  const int32_t n = unorm2_normalize(
      norm, reinterpret_cast<const UChar*>(in.data()), static_cast<int32_t>(in.size()),
      reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()), &err);
  if (U_FAILURE(err)) throw TokenizerError("tokenizer: NFD normalization failed");
  std::vector<UChar32> result;
  result.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(reinterpret_cast<const UChar*>(out.data()), i, n, c);
    result.push_back(c);
  }
  return result;
}

}  // namespace

std::vector<std::string> bert_words(std::string_view text, const BertTextOptions& o) {
  std::vector<UChar32> cps = code_points(text);
  if (o.clean_text || o.handle_chinese_chars) {
    std::vector<UChar32> kept;
    kept.reserve(cps.size());
    for (UChar32 c : cps) {
      if (o.clean_text) {
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (is_whitespace(c)) c = ' ';
      }
      if (o.handle_chinese_chars && is_chinese(c)) {
        kept.push_back(' ');
        kept.push_back(c);
        kept.push_back(' ');
      } else {
        kept.push_back(c);
      }
    }
    cps.swap(kept);
  }
  if (o.strip_accents) {
    std::vector<UChar32> kept;
    for (UChar32 c : nfd(cps))
      if (u_charType(c) != U_NON_SPACING_MARK) kept.push_back(c);
    cps.swap(kept);
  }
  std::vector<std::string> words;
  std::string word;
  const auto end_word = [&] {
    if (!word.empty()) words.push_back(std::move(word));
    word.clear();
  };
  const auto append = [&](std::string& out, UChar32 c) {
    if (!o.lowercase) {
      append_utf8(out, static_cast<uint32_t>(c));
    } else if (c == 0x130) {  // the one unconditional multi-character lowercase mapping
      out += "i\xCC\x87";
    } else {
      append_utf8(out, static_cast<uint32_t>(u_tolower(c)));
    }
  };
  for (UChar32 c : cps) {
    if (is_whitespace(c)) {
      end_word();
    } else if (is_punctuation(c)) {
      end_word();
      append(word, c);
      end_word();
    } else {
      append(word, c);
    }
  }
  end_word();
  return words;
}

}  // namespace kdr::model
