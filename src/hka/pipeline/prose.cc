// Model prose as the report takes it: loops cut, repeats dropped, headings refused; and the
// sentence the code writes about a query result when the model gives none.
#include "hka/pipeline/prose.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <set>

#include "hka/pipeline/research.h"
#include "hka/text.h"

namespace kdr::hka {

namespace {

using json = nlohmann::json;

// Where a model's text starts to loop on a few characters: the first position from which a
// unit of 1-32 characters holding a letter or digit repeats back to back over at least
// max(24, 6 x its length) characters ("10000000...", "the the the ..."); npos if none.
// Repeated punctuation ("| --- | --- ...") is not a loop.
size_t runaway_repetition(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    for (size_t p = 1; p <= 32; ++p) {
      const size_t need = std::max<size_t>(24, 6 * p);
      if (i + need > text.size()) break;
      size_t k = i;
      while (k + p - i < need && text[k] == text[k + p]) ++k;
      if (k + p - i < need) continue;
      const auto unit = text.begin() + static_cast<ptrdiff_t>(i);
      if (std::any_of(unit, unit + static_cast<ptrdiff_t>(p),
                      [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; })) {
        return i;
      }
    }
  }
  return std::string::npos;
}

}  // namespace

// Whether text[i] ends a sentence: '.', '!' or '?' before a space, a line end or the end.
bool ends_sentence(const std::string& text, size_t i) {
  return (text[i] == '.' || text[i] == '!' || text[i] == '?') &&
         (i + 1 == text.size() || text[i + 1] == ' ' || text[i + 1] == '\n');
}

// Text as compared for repeats: its letters and digits, lower case, outside [citations].
std::string prose_key(const std::string& text) {
  std::string key;
  int depth = 0;
  for (char c : text) {
    if (c == '[') ++depth;
    if (c == ']' && depth > 0) --depth;
    if (depth == 0 && std::isalnum(static_cast<unsigned char>(c)))
      key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return key;
}

// Model prose, tidied (small models loop): a sentence that repeats an earlier one word for
// word is dropped; a text that loops on a few characters (runaway_repetition) ends at the
// last full sentence before the loop; a text that ran into its length limit ends at its last
// full sentence.
std::string tidy_prose(const std::string& raw, size_t max_length) {
  const size_t loop = runaway_repetition(raw);
  const std::string text = loop == std::string::npos ? raw : raw.substr(0, loop);
  std::vector<std::string> sentences;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    current += text[i];
    if (ends_sentence(text, i) || text[i] == '\n') {
      sentences.push_back(current);
      current.clear();
    }
  }
  const bool cut = raw.size() + 4 >= max_length;  // the grammar stopped it at maxLength
  if (!current.empty() && loop == std::string::npos && !(cut && !sentences.empty())) {
    sentences.push_back(current);
  }
  std::set<std::string> seen;
  std::string out;
  for (const std::string& sentence : sentences) {
    size_t b = sentence.find_first_not_of(" \n");
    if (b == std::string::npos) {
      out += sentence;
      continue;
    }
    const std::string key = sentence.substr(b, sentence.find_last_not_of(" \n") - b + 1);
    if (key.size() > 12 && !seen.insert(key).second) continue;
    out += sentence;
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
  return out;
}

bool reads_as_prose(const std::string& text) {
  size_t words = 0;
  bool in_word = false, sentence_end = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const bool space = std::isspace(static_cast<unsigned char>(text[i])) != 0;
    if (!space && !in_word) ++words;
    in_word = !space;
    sentence_end |= ends_sentence(text, i);
  }
  return words >= 3 && sentence_end;
}

std::string describe_result(const QueryResult& result) {
  const std::string rows = std::to_string(result.rows.size());
  const std::string plain = "The query returned " + rows + " rows.";
  if (result.rows.size() < 2 || result.columns.empty()) return plain;
  // The value column: the last one whose cells are all numbers (some may be null).
  std::optional<size_t> value;
  for (size_t c = result.columns.size(); c-- > 0 && !value;) {
    bool numbers = false, others = false;
    for (const json& row : result.rows) {
      const json& cell = row.at(c);
      numbers |= cell.is_number();
      others |= !cell.is_number() && !cell.is_null();
    }
    if (numbers && !others) value = c;
  }
  if (!value) return plain;
  const std::optional<size_t> label =
      *value == 0 ? (result.columns.size() > 1 ? std::optional<size_t>(1) : std::nullopt)
                  : std::optional<size_t>(0);
  const json* high = nullptr;
  const json* low = nullptr;
  for (const json& row : result.rows) {
    const json& cell = row.at(*value);
    if (!cell.is_number()) continue;
    if (!high || cell.get<double>() > high->at(*value).get<double>()) high = &row;
    if (!low || cell.get<double>() < low->at(*value).get<double>()) low = &row;
  }
  if (!high || high == low) return plain;
  auto at = [&](const json& row) {
    return text::format_cell(row.at(*value)) +
           (label ? " (" + result.columns[*label] + " " + text::format_cell(row.at(*label)) + ")"
                  : "");
  };
  return "In this result, " + result.columns[*value] + " is highest at " + at(*high) +
         " and lowest at " + at(*low) + ".";
}

}  // namespace kdr::hka

namespace kdr::hka {

std::vector<std::string> split_sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    current += text[i];
    // A citation right after the end belongs to the sentence: "... 2017. [A3]" is rare, but
    // "... 2017 [A3]." is the norm; both keep their marker.
    if (ends_sentence(text, i) || text[i] == '\n') {
      const std::string t(text::trim(current));
      if (!t.empty()) out.push_back(t);
      current.clear();
    }
  }
  const std::string t(text::trim(current));
  if (!t.empty()) out.push_back(t);
  return out;
}

}  // namespace kdr::hka
