#include "hka/report/citations.h"

#include <algorithm>

#include "hka/report/numbers.h"
#include "hka/report/sentences.h"
#include "hka/text.h"

namespace kdr::hka::report {
namespace {

// "3" or "3-5": what a model writes when it numbers its own citations.
bool is_bare_citation_number(std::string_view s) {
  if (s.empty() || !is_digit(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_digit(c) || c == '-'; });
}

// True when the word at `pos` ends there (no letter or digit follows).
bool word_ends(std::string_view text, size_t pos) {
  return pos >= text.size() || !is_alnum(text[pos]);
}

// After a citation was dropped: no space before punctuation, no double spaces, no "()".
size_t tidy_after_removal(std::string_view text, size_t i, std::string& out) {
  auto next = [&] { return i < text.size() ? text[i] : '\n'; };
  auto stop = [&] {
    const char c = next();
    return is_space(c) || c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?' ||
           c == ')';
  };
  auto trim_out = [&] {
    while (!out.empty() && is_blank(out.back())) out.pop_back();
  };
  if (stop()) trim_out();
  if (!out.empty() && out.back() == '(' && next() == ')') {
    out.pop_back();
    ++i;
    if (stop()) trim_out();
  }
  if (out.empty() || out.back() == '\n') {
    while (i < text.size() && is_blank(text[i])) ++i;
  }
  return i;
}

}  // namespace

bool is_key(std::string_view s) {
  if (s.size() < 2 || !is_alpha(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(), is_digit);
}

std::optional<CitationGroup> parse_citation_group(std::string_view text, size_t pos) {
  if (pos >= text.size() || text[pos] != '[') return std::nullopt;
  const size_t close = text.find(']', pos + 1);
  if (close == std::string_view::npos || close - pos > 200) return std::nullopt;
  // "[T1](url)" is a markdown link, not a citation.
  if (close + 1 < text.size() && text[close + 1] == '(') return std::nullopt;
  CitationGroup group;
  group.begin = pos;
  group.end = close + 1;
  std::string_view inner = text.substr(pos + 1, close - pos - 1);
  size_t start = 0;
  while (start <= inner.size()) {
    size_t sep = inner.find_first_of(",;", start);
    if (sep == std::string_view::npos) sep = inner.size();
    const std::string_view item = text::trim(inner.substr(start, sep - start));
    if (!is_key(item) && !is_bare_citation_number(item)) return std::nullopt;
    group.items.emplace_back(item);
    start = sep + 1;
  }
  return group;
}

std::vector<CitationGroup> citation_groups(std::string_view text) {
  std::vector<CitationGroup> out;
  size_t i = 0;
  while (i < text.size()) {
    auto group = text[i] == '[' ? parse_citation_group(text, i) : std::nullopt;
    if (!group) {
      ++i;
      continue;
    }
    while (auto next = parse_citation_group(text, group->end)) {
      group->items.insert(group->items.end(), next->items.begin(), next->items.end());
      group->end = next->end;
    }
    i = group->end;
    out.push_back(std::move(*group));
  }
  return out;
}

Citable::Citable(const std::vector<analysis::Fact>& facts, const std::vector<ReportSource>& sources)
    : facts_(facts), sources_(sources) {
  for (const analysis::Fact& f : facts) {
    if (!f.key.empty()) by_key_.emplace(f.key, Reference{f.key, &f, nullptr});
  }
  for (const ReportSource& s : sources) by_key_.emplace(s.key, Reference{s.key, nullptr, &s});
}

std::optional<Reference> Citable::find(const std::string& key) const {
  const auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

int32_t ProseRewriter::cite(const std::string& key) {
  const std::optional<Reference> ref = citable_.find(key);
  if (!ref) return 0;
  auto [it, inserted] = numbers_.emplace(key, static_cast<int32_t>(references_.size()) + 1);
  if (inserted) references_.push_back(*ref);
  return it->second;
}

std::string ProseRewriter::rewrite(const std::string& text, const std::string& section) {
  const size_t first = citations_.size();
  std::string out = rewrite_citations(rewrite_references(text, section), section);
  // Each citation gets the sentence of the final text it stands in.
  const std::vector<SentenceSpan> spans = split_sentences(out);
  for (size_t i = first; i < citations_.size(); ++i) {
    if (const SentenceSpan* s = sentence_at(spans, offsets_[i])) {
      citations_[i].sentence =
          text::one_line(std::string_view(out).substr(s->begin, s->end - s->begin));
    }
  }
  return out;
}

std::string ProseRewriter::rewrite_citations(std::string_view text, const std::string& section) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    auto group = text[i] == '[' ? parse_citation_group(text, i) : std::nullopt;
    if (!group) {
      out += text[i++];
      continue;
    }
    // "[D1][T3]" reads as one group.
    while (auto next = parse_citation_group(text, group->end)) {
      group->items.insert(group->items.end(), next->items.begin(), next->items.end());
      group->end = next->end;
    }
    std::vector<int32_t> numbers;
    for (const std::string& item : group->items) {
      const int32_t n = is_key(item) ? cite(item) : 0;
      CitationCheck check;
      check.key = item;
      check.section = section;
      check.resolved = n > 0;
      check.number = n;
      if (n > 0) {
        const Reference& ref = references_[static_cast<size_t>(n - 1)];
        check.kind = ref.fact ? "fact" : ref.source->kind;
      } else {
        check.reason = is_key(item) ? "no fact or source has this key" : "a bare number, not a key";
      }
      citations_.push_back(std::move(check));
      offsets_.push_back(out.size());
      if (n > 0 && std::find(numbers.begin(), numbers.end(), n) == numbers.end()) {
        numbers.push_back(n);
      }
    }
    i = group->end;
    if (!numbers.empty()) {
      std::sort(numbers.begin(), numbers.end());
      out += '[';
      for (size_t k = 0; k < numbers.size(); ++k) {
        if (k > 0) out += ", ";
        out += std::to_string(numbers[k]);
      }
      out += ']';
      continue;
    }
    i = tidy_after_removal(text, i, out);
  }
  return out;
}

// "Figure F3" -> "Figure 1", "Tables R1 and R2" -> "Tables 1 and 2".
std::string ProseRewriter::rewrite_references(std::string_view text, const std::string& section) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (!is_alpha(text[i]) || (i > 0 && is_alnum(text[i - 1]))) {
      out += text[i++];
      continue;
    }
    size_t j = i;
    while (j < text.size() && is_alpha(text[j])) ++j;
    const std::string lower = text::lower(text.substr(i, j - i));
    const bool figure =
        lower == "figure" || lower == "figures" || (lower == "fig" && starts_with_at(text, j, "."));
    const bool table = lower == "table" || lower == "tables";
    out.append(text.substr(i, j - i));
    i = j;
    if (!figure && !table) continue;
    if (lower == "fig") out += text[i++];
    size_t k = i;
    while (k < text.size() && is_blank(text[k])) ++k;
    if (k == i) continue;
    const auto& numbers = figure ? figure_numbers_ : table_numbers_;
    while (true) {
      size_t e = k;
      while (e < text.size() && is_alnum(text[e])) ++e;
      const std::string key(text.substr(k, e - k));
      if (!is_key(key) || !word_ends(text, e)) break;
      out.append(text.substr(i, k - i));
      auto it = numbers.find(key);
      if (it != numbers.end()) {
        out += std::to_string(it->second);
        figure_refs_.push_back({key, figure ? "figure" : "table", section, true, it->second});
      } else {
        out += key;
        figure_refs_.push_back({key, figure ? "figure" : "table", section, false, 0});
      }
      i = e;
      k = e;
      bool joined = false;
      for (std::string_view joiner : {", and ", ", ", " and ", " & ", "\xE2\x80\x93", "-"}) {
        if (starts_with_at(text, k, joiner) && k + joiner.size() < text.size() &&
            is_alpha(text[k + joiner.size()])) {
          k += joiner.size();
          joined = true;
          break;
        }
      }
      if (!joined) break;
    }
  }
  return out;
}

}  // namespace kdr::hka::report
