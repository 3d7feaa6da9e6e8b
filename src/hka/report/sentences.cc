#include "hka/report/sentences.h"

#include <algorithm>
#include <array>
#include <string>

#include "hka/report/citations.h"
#include "hka/report/numbers.h"
#include "hka/text.h"

namespace kdr::hka::report {
namespace {

// Words a period follows without ending the sentence ("Korea, Rep. fell", "Congo, Dem. Rep.").
bool is_abbreviation(std::string_view word) {
  static constexpr std::array<std::string_view, 22> kAbbreviations = {
      "rep", "dem", "st", "mr",   "mrs", "ms", "dr",  "vs",  "fig", "no",  "approx",
      "inc", "ltd", "co", "corp", "jr",  "sr", "e.g", "i.e", "est", "avg", "cf"};
  if (word.size() == 1 && is_alpha(word[0])) return true;  // "U.S.", "J. Smith"
  const std::string lowered = text::lower(word);
  return std::find(kAbbreviations.begin(), kAbbreviations.end(), lowered) != kAbbreviations.end();
}

// The word (letters and inner dots) that ends right before `pos`.
std::string_view word_before(std::string_view text, size_t pos) {
  size_t b = pos;
  while (b > 0 && (is_alpha(text[b - 1]) ||
                   (text[b - 1] == '.' && b - 1 > 0 && b - 1 < pos && is_alpha(text[b - 2])))) {
    --b;
  }
  return text.substr(b, pos - b);
}

// Whether the line starting at `pos` (after blanks) starts a block of its own.
bool starts_block(std::string_view text, size_t pos) {
  while (pos < text.size() && is_blank(text[pos])) ++pos;
  if (pos >= text.size() || text[pos] == '\n' || text[pos] == '\r') return true;  // blank line
  const char c = text[pos];
  if (c == '|' || c == '#' || c == '>') return true;
  if ((c == '-' || c == '*' || c == '+') && pos + 1 < text.size() && is_blank(text[pos + 1])) {
    return true;
  }
  size_t d = pos;
  while (d < text.size() && is_digit(text[d])) ++d;
  return d > pos && d + 1 < text.size() && (text[d] == '.' || text[d] == ')') &&
         is_blank(text[d + 1]);
}

bool line_is_table_row(std::string_view text, size_t line_begin) {
  while (line_begin < text.size() && is_blank(text[line_begin])) ++line_begin;
  return line_begin < text.size() && text[line_begin] == '|';
}

}  // namespace

std::vector<SentenceSpan> split_sentences(std::string_view text) {
  std::vector<SentenceSpan> out;
  size_t begin = 0;
  size_t line_begin = 0;
  auto close = [&](size_t end) {
    if (!text::trim(text.substr(begin, end - begin)).empty()) out.push_back({begin, end});
    begin = end;
  };
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n') {
      if (line_is_table_row(text, line_begin) || starts_block(text, i + 1)) close(i);
      line_begin = ++i;
      continue;
    }
    if (c != '.' && c != '!' && c != '?') {
      ++i;
      continue;
    }
    // Closing quotes and parentheses stay with the sentence they close.
    size_t end = i + 1;
    while (end < text.size() && (text[end] == '"' || text[end] == ')' || text[end] == '\'' ||
                                 starts_with_at(text, end, "\xE2\x80\x9D"))) {
      end += text[end] == '\xE2' ? 3 : 1;
    }
    if (end < text.size() && !is_space(text[end])) {
      i = end;
      continue;
    }
    if (c == '.' && is_abbreviation(word_before(text, i))) {
      i = end;
      continue;
    }
    size_t next = end;
    while (next < text.size() && is_blank(text[next])) ++next;
    // "... in 2017. [A3]": the citation belongs to the sentence it follows.
    if (next < text.size() && text[next] == '[') {
      const std::vector<CitationGroup> groups = citation_groups(text.substr(next, 400));
      if (!groups.empty() && groups.front().begin == 0) {
        end = next + groups.front().end;
        if (end < text.size() && (text[end] == '.' || text[end] == ',')) ++end;
        close(end);
        i = end;
        continue;
      }
    }
    const bool ends = next >= text.size() || text[next] == '\n' || text[next] == '\r' ||
                      !is_alpha(text[next]) || (text[next] >= 'A' && text[next] <= 'Z');
    // A lower-case word after the period continues the sentence ("Rep. fell", "approx. two").
    if (ends) close(end);
    i = end;
  }
  close(text.size());
  return out;
}

const SentenceSpan* sentence_at(const std::vector<SentenceSpan>& spans, size_t pos) {
  for (const SentenceSpan& s : spans) {
    if (pos < s.end) return &s;
  }
  return spans.empty() ? nullptr : &spans.back();
}

}  // namespace kdr::hka::report
