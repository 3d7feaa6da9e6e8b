// finalize_report: citations, figure and table numbering, number verification, rendering.
// The prose is rewritten once (citations renumbered, figure/table references replaced), then
// checked and rendered from that one rewritten text so the three can never disagree.
#include "hka/report/report.h"
#include "hka/text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace kdr::hka {
namespace {

// ---------------------------------------------------------------------------------------------
// Characters and small string helpers

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_space(char c) { return is_blank(c) || c == '\n' || c == '\r'; }

using text::trim;

bool starts_with_at(std::string_view text, size_t pos, std::string_view prefix) {
  return pos <= text.size() && text.substr(pos).starts_with(prefix);
}

// Collapses runs of whitespace (newlines included) to one space.
using text::one_line;

// Cuts at a word boundary to at most `max_bytes`, never inside a UTF-8 sequence.
using text::shorten;

std::string format_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// "T2": a letter followed by digits.
bool is_key(std::string_view s) {
  if (s.size() < 2 || !is_alpha(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(), is_digit);
}

// "3" or "3-5": what a model writes when it numbers its own citations.
bool is_bare_citation_number(std::string_view s) {
  if (s.empty() || !is_digit(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_digit(c) || c == '-'; });
}

// ---------------------------------------------------------------------------------------------
// Citation groups: "[T2]", "[D1, T3]", "[3]"

struct CitationGroup {
  size_t end = 0;  // one past the ']'
  std::vector<std::string> items;
};

std::optional<CitationGroup> parse_citation_group(std::string_view text, size_t pos) {
  if (pos >= text.size() || text[pos] != '[') return std::nullopt;
  const size_t close = text.find(']', pos + 1);
  if (close == std::string_view::npos || close - pos > 200) return std::nullopt;
  // "[T1](url)" is a markdown link, not a citation.
  if (close + 1 < text.size() && text[close + 1] == '(') return std::nullopt;
  CitationGroup group;
  group.end = close + 1;
  std::string_view inner = text.substr(pos + 1, close - pos - 1);
  size_t start = 0;
  while (start <= inner.size()) {
    size_t sep = inner.find_first_of(",;", start);
    if (sep == std::string_view::npos) sep = inner.size();
    const std::string_view item = trim(inner.substr(start, sep - start));
    if (!is_key(item) && !is_bare_citation_number(item)) return std::nullopt;
    group.items.emplace_back(item);
    start = sep + 1;
  }
  return group;
}

// ---------------------------------------------------------------------------------------------
// Numbers as written

struct WrittenNumber {
  NumberCheck check;     // text, value, context
  double mantissa = 0;   // signed, before the scale word (3.4 for "3.4 million")
  double scale = 1;      // 1e3, 1e6, ...
  double half_step = 0;  // half a unit of the last digit written, in value units
  bool percent = false;
  bool has_scale = false;
};

struct ScaleWord {
  std::string_view word;
  double scale;
  bool spaced_only;  // "million" needs no space, "k" must be attached ("1.2k")
};

// Suffixes that follow a number directly ("1.2k", "3M", "2bn") or after one space
// ("3.4 million", "2 bn").
constexpr ScaleWord kScaleWords[] = {
    {"trillion", 1e12, false}, {"billion", 1e9, false}, {"million", 1e6, false},
    {"thousand", 1e3, false},  {"bn", 1e9, false},      {"mn", 1e6, false},
    {"k", 1e3, true},          {"K", 1e3, true},        {"M", 1e6, true},
    {"B", 1e9, true},
};

// True when the word at `pos` ends there (no letter or digit follows).
bool word_ends(std::string_view text, size_t pos) {
  return pos >= text.size() || !is_alnum(text[pos]);
}

// Matches a scale word at `pos` (after the digits, optionally after one space).
std::optional<std::pair<double, size_t>> scale_at(std::string_view text, size_t pos, bool spaced) {
  for (const ScaleWord& w : kScaleWords) {
    if (spaced && w.spaced_only) continue;
    if (starts_with_at(text, pos, w.word) && word_ends(text, pos + w.word.size())) {
      return std::make_pair(w.scale, pos + w.word.size());
    }
  }
  return std::nullopt;
}

// Length of a currency sign at `pos` ("$", "€", "£"), 0 when none.
size_t currency_at(std::string_view text, size_t pos) {
  if (starts_with_at(text, pos, "$")) return 1;
  if (starts_with_at(text, pos, "\xE2\x82\xAC")) return 3;  // €
  if (starts_with_at(text, pos, "\xC2\xA3")) return 2;      // £
  return 0;
}

// Length of a minus sign at `pos` ("-" or U+2212), 0 when none.
size_t minus_at(std::string_view text, size_t pos) {
  if (starts_with_at(text, pos, "-")) return 1;
  if (starts_with_at(text, pos, "\xE2\x88\x92")) return 3;
  return 0;
}

// Length of a range dash at `pos` ("-" or an en dash), 0 when none.
size_t dash_at(std::string_view text, size_t pos) {
  if (starts_with_at(text, pos, "-")) return 1;
  if (starts_with_at(text, pos, "\xE2\x80\x93")) return 3;
  return 0;
}

// The sentence around [begin, end).
std::string sentence_around(std::string_view text, size_t begin, size_t end) {
  size_t s = begin;
  while (s > 0) {
    const char c = text[s - 1];
    if (c == '\n') break;
    if ((c == '.' || c == '!' || c == '?') && s < text.size() && is_space(text[s])) break;
    --s;
  }
  size_t e = end;
  while (e < text.size()) {
    const char c = text[e];
    if (c == '\n') break;
    ++e;
    if ((c == '.' || c == '!' || c == '?') && (e == text.size() || is_space(text[e]))) break;
  }
  return shorten(text.substr(s, e - s), 400);
}

class NumberScanner {
 public:
  explicit NumberScanner(std::string_view text) : text_(text) {}

  std::vector<WrittenNumber> scan() {
    size_t i = 0;
    while (i < text_.size()) {
      const char c = text_[i];
      if (c == '[') {
        if (auto group = parse_citation_group(text_, i)) {
          i = group->end;
          continue;
        }
        ++i;
      } else if (is_alpha(c)) {
        i = skip_word(i);
      } else if (is_digit(c) || sign_starts_number(i)) {
        i = number(i);
      } else {
        ++i;
      }
    }
    return std::move(found_);
  }

 private:
  // A word; after "Figure", "Fig.", "Table" (and plurals) the numbers that follow are
  // references, not claims: "Figures 1 and 2".
  size_t skip_word(size_t i) {
    size_t j = i;
    while (j < text_.size() && (is_alnum(text_[j]) || text_[j] == '_')) ++j;
    std::string word(text_.substr(i, j - i));
    if (!word.empty())
      word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
    const bool reference = word == "Figure" || word == "Figures" || word == "Table" ||
                           word == "Tables" || (word == "Fig" && starts_with_at(text_, j, "."));
    if (!reference) return j;
    if (word == "Fig") ++j;
    size_t k = j;
    while (k < text_.size() && is_blank(text_[k])) ++k;
    if (k == j || k >= text_.size() || !is_digit(text_[k])) return j;
    while (true) {
      while (k < text_.size() && (is_digit(text_[k]) || text_[k] == '.') &&
             !(text_[k] == '.' && (k + 1 >= text_.size() || !is_digit(text_[k + 1])))) {
        ++k;
      }
      size_t next = k;
      for (std::string_view joiner : {", ", " and ", " & ", "-", "\xE2\x80\x93", ","}) {
        if (starts_with_at(text_, k, joiner) && k + joiner.size() < text_.size() &&
            is_digit(text_[k + joiner.size()])) {
          next = k + joiner.size();
          break;
        }
      }
      if (next == k) return k;
      k = next;
    }
  }

  bool sign_starts_number(size_t i) const {
    size_t j = i + minus_at(text_, i);
    if (j == i && text_[i] == '+') ++j;
    j += currency_at(text_, j);
    if (j == i || j >= text_.size() || !is_digit(text_[j])) return false;
    // "COVID-19", "x-2": a hyphen inside a word is not a sign.
    return i == 0 || !(is_alnum(text_[i - 1]) || text_[i - 1] == '_' || text_[i - 1] == '.');
  }

  // At the start of a line (after blanks, '#' or '>'), "1." / "1)" followed by a space
  // numbers a list item or heading.
  bool is_line_numbering(size_t begin, size_t digits_end) const {
    size_t s = begin;
    while (s > 0 && text_[s - 1] != '\n') {
      const char c = text_[s - 1];
      if (!is_blank(c) && c != '#' && c != '>') return false;
      --s;
    }
    if (digits_end >= text_.size() || (text_[digits_end] != '.' && text_[digits_end] != ')')) {
      return false;
    }
    return digits_end + 1 >= text_.size() || is_space(text_[digits_end + 1]);
  }

  // Parses the number at `i` (sign, currency, digits); returns where scanning resumes.
  size_t number(size_t i) {
    const size_t begin = i;
    bool negative = false;
    if (size_t len = minus_at(text_, i); len > 0) {
      negative = true;
      i += len;
    } else if (text_[i] == '+') {
      ++i;
    }
    i += currency_at(text_, i);
    if (i >= text_.size() || !is_digit(text_[i])) return i + 1;
    const size_t digits_begin = i;
    // A digit run glued to a word ("H100", "COVID-19" after the hyphen) is a name.
    if (digits_begin == begin && begin > 0) {
      const char prev = text_[begin - 1];
      if (is_alnum(prev) || prev == '_' || prev == '.') return skip_digits(i);
      if (prev == '-' && begin > 1 && is_alnum(text_[begin - 2])) return skip_digits(i);
    }
    size_t j = i;
    while (j < text_.size() && is_digit(text_[j])) ++j;
    const size_t run = j - i;
    std::string digits(text_.substr(i, run));
    // ISO date (2021-03-15, 2021-03): keep the year only. Time of day: not a quantity.
    if (run == 4 && j + 2 < text_.size() && text_[j] == '-' && is_digit(text_[j + 1]) &&
        is_digit(text_[j + 2]) && (j + 3 == text_.size() || !is_digit(text_[j + 3]))) {
      const int month = (text_[j + 1] - '0') * 10 + (text_[j + 2] - '0');
      if (month >= 1 && month <= 12) {
        add(begin, j, negative, digits, 0, Suffix{});
        size_t k = j + 3;
        if (k + 1 < text_.size() && text_[k] == '-' && is_digit(text_[k + 1])) {
          k = skip_digits(k + 1);
        }
        return k;
      }
    }
    if (j + 1 < text_.size() && text_[j] == ':' && is_digit(text_[j + 1])) {
      return skip_digits(j + 1);
    }
    if (run <= 3) j = read_thousands(j, digits);
    const size_t before_decimals = j;
    int decimals = 0;
    j = read_decimals(j, digits, decimals);
    if (j == before_decimals && begin == digits_begin && is_line_numbering(begin, j)) {
      return j + 1;
    }
    // Suffixes: ordinals are not quantities; "%", "percent", scale words.
    for (std::string_view ordinal : {"st", "nd", "rd", "th"}) {
      if (starts_with_at(text_, j, ordinal) && word_ends(text_, j + 2)) return j + 2;
    }
    const Suffix sx = read_suffix(j);
    const size_t end = sx.end;
    const size_t index = found_.size();
    add(begin, end, negative, digits, decimals, sx);
    // A range "2019-2021", "10-20%": the second number; a unit written once applies to both.
    if (size_t dash = dash_at(text_, end); dash > 0 && end + dash < text_.size()) {
      const size_t second = end + dash + currency_at(text_, end + dash);
      if (second < text_.size() && is_digit(text_[second])) {
        const size_t resume = number_after_dash(end + dash);
        if (found_.size() > index + 1) {
          WrittenNumber& first = found_[index];
          const WrittenNumber& last = found_[index + 1];
          if (!first.percent && !first.has_scale && end == j) {
            first.percent = last.percent;
            if (last.has_scale) {
              first.has_scale = true;
              first.scale = last.scale;
              first.half_step *= last.scale;
              first.check.value = first.mantissa * last.scale;
            }
          }
        }
        return resume;
      }
    }
    return end;
  }

  // What a number's digits ending at `j` are followed by: "%", an attached scale word
  // ("1.2k"), or after one space a percent phrase ("30 percent", "5 percentage points") or a
  // scale word ("3.4 million"). `end` is where the written number ends.
  struct Suffix {
    bool percent = false;
    double scale = 1;
    bool has_scale = false;
    size_t end = 0;
  };
  Suffix read_suffix(size_t j) const {
    Suffix sx;
    sx.end = j;
    if (starts_with_at(text_, j, "%")) {
      sx.percent = true;
      sx.end = j + 1;
    } else if (auto attached = scale_at(text_, j, false)) {
      sx.scale = attached->first;
      sx.has_scale = true;
      sx.end = attached->second;
    } else if (j < text_.size() && is_blank(text_[j])) {
      for (std::string_view word :
           {"percentage points", "percentage point", "per cent", "percent"}) {
        if (starts_with_at(text_, j + 1, word) && word_ends(text_, j + 1 + word.size())) {
          sx.percent = true;
          sx.end = j + 1 + word.size();
          return sx;
        }
      }
      if (auto spaced = scale_at(text_, j + 1, true)) {
        sx.scale = spaced->first;
        sx.has_scale = true;
        sx.end = spaced->second;
      }
    }
    return sx;
  }

  // Comma groups of exactly three digits after a run ("1,234,567"), appended to `digits`.
  size_t read_thousands(size_t j, std::string& digits) const {
    while (j + 3 < text_.size() && text_[j] == ',' && is_digit(text_[j + 1]) &&
           is_digit(text_[j + 2]) && is_digit(text_[j + 3]) &&
           (j + 4 >= text_.size() || !is_digit(text_[j + 4]))) {
      digits.append(text_.substr(j + 1, 3));
      j += 4;
    }
    return j;
  }

  // A decimal part (".25"), appended to `digits` with its digit count in `decimals`.
  size_t read_decimals(size_t j, std::string& digits, int& decimals) const {
    if (j + 1 < text_.size() && text_[j] == '.' && is_digit(text_[j + 1])) {
      digits += '.';
      ++j;
      while (j < text_.size() && is_digit(text_[j])) {
        digits += text_[j++];
        ++decimals;
      }
    }
    return j;
  }

  // The second number of a range, never negative.
  size_t number_after_dash(size_t i) { return number_unsigned(i + currency_at(text_, i), i); }

  size_t number_unsigned(size_t digits_at, size_t begin) {
    size_t j = digits_at;
    while (j < text_.size() && is_digit(text_[j])) ++j;
    std::string digits(text_.substr(digits_at, j - digits_at));
    if (j - digits_at <= 3) j = read_thousands(j, digits);
    int decimals = 0;
    j = read_decimals(j, digits, decimals);
    const Suffix sx = read_suffix(j);
    add(begin, sx.end, false, digits, decimals, sx);
    return sx.end;
  }

  size_t skip_digits(size_t i) const {
    while (i < text_.size() && (is_digit(text_[i]) || text_[i] == '.' || text_[i] == ',')) ++i;
    return i;
  }

  void add(size_t begin, size_t end, bool negative, const std::string& digits, int decimals,
           const Suffix& sx) {
    const double scale = sx.scale;
    WrittenNumber n;
    const double magnitude = std::strtod(digits.c_str(), nullptr);
    n.mantissa = negative ? -magnitude : magnitude;
    n.scale = scale;
    n.has_scale = sx.has_scale;
    n.percent = sx.percent;
    n.half_step = 0.5 * std::pow(10.0, -decimals) * scale;
    n.check.text = std::string(trim(text_.substr(begin, end - begin)));
    n.check.value = n.mantissa * scale;
    n.check.context = sentence_around(text_, begin, end);
    found_.push_back(std::move(n));
  }

  std::string_view text_;
  std::vector<WrittenNumber> found_;
};

std::vector<WrittenNumber> scan_numbers(std::string_view text) {
  return NumberScanner(text).scan();
}

// The numbers a table cell holds: "12.5%", "$1,200", "1.5e-05", "2019-2021".
std::vector<double> cell_numbers(std::string_view cell) {
  const std::string_view t = trim(cell);
  if (t.empty()) return {};
  std::string plain;
  for (size_t i = 0; i < t.size();) {
    if (size_t c = currency_at(t, i); c > 0) {
      i += c;
    } else if (t[i] == ',' || t[i] == '%') {
      ++i;
    } else {
      plain += t[i++];
    }
  }
  if (!plain.empty()) {
    char* end = nullptr;
    const double v = std::strtod(plain.c_str(), &end);
    if (end == plain.c_str() + plain.size() && std::isfinite(v)) return {v};
  }
  std::vector<double> values;
  for (const WrittenNumber& n : scan_numbers(t)) values.push_back(n.check.value);
  return values;
}

// ---------------------------------------------------------------------------------------------
// Verification against the evidence

struct EvidenceValue {
  double value;
  const std::string* source_key;
};

struct ColumnValues {
  const std::string* source_key;
  std::string column;
  std::vector<double> values;  // at most kMaxDerivedValues, for differences and ratios
};

constexpr size_t kMaxDerivedValues = 200;

class Verifier {
 public:
  explicit Verifier(const ReportDraft& draft) : question_key_("question") {
    for (const ReportSource& s : draft.sources) {
      if (s.kind == "table") {
        for (const std::string& column : s.columns) {
          for (double v : cell_numbers(column)) values_.push_back({v, &s.key});
        }
        std::vector<ColumnValues> columns(s.columns.size());
        for (size_t c = 0; c < columns.size(); ++c) {
          columns[c].source_key = &s.key;
          columns[c].column = s.columns[c];
        }
        for (const auto& row : s.rows) {
          for (size_t c = 0; c < row.size(); ++c) {
            const std::vector<double> cell = cell_numbers(row[c]);
            for (double v : cell) values_.push_back({v, &s.key});
            if (c < columns.size() && cell.size() == 1 &&
                columns[c].values.size() < kMaxDerivedValues) {
              columns[c].values.push_back(cell[0]);
            }
          }
        }
        for (ColumnValues& c : columns) {
          if (c.values.size() >= 2) columns_.push_back(std::move(c));
        }
      } else {
        for (const WrittenNumber& n : scan_numbers(s.text)) {
          values_.push_back({n.check.value, &s.key});
        }
      }
    }
    for (const WrittenNumber& n : scan_numbers(draft.question)) {
      values_.push_back({n.check.value, &question_key_});
    }
  }

  void verify(const WrittenNumber& n, NumberCheck& check) const {
    if (direct(n, check)) return;
    // A derived match (difference, ratio, percent change of two values) is only trusted for
    // a number written with two significant digits or more: among hundreds of pairs, "3" or
    // "0.4" would match something by chance.
    if (n.half_step <= 0.05 * std::fabs(n.check.value)) derived(n, check);
  }

 private:
  static double epsilon(double e) { return 1e-9 * std::max(1.0, std::fabs(e)); }

  bool direct(const WrittenNumber& n, NumberCheck& check) const {
    int best_rank = 100;
    for (const EvidenceValue& e : values_) {
      const double eps = epsilon(e.value);
      int rank = 100;
      std::string how;
      const double d = std::fabs(n.check.value - e.value);
      if (d <= eps) {
        rank = 0;
        how = "exact";
      } else if (d <= n.half_step + eps) {
        rank = 1;
        how = "rounded";
      } else if (n.has_scale && std::fabs(n.mantissa - e.value) <= n.half_step / n.scale + eps) {
        rank = 2;
        how = "rounded, evidence in units of " + format_number(n.scale);
      } else if (n.percent && std::fabs(n.check.value - e.value * 100) <= n.half_step + eps) {
        rank = 3;
        how = "percent of fraction";
      } else if (n.check.value > 0 && e.value < 0 &&
                 std::fabs(n.check.value + e.value) <= n.half_step + eps) {
        rank = 4;
        how = "magnitude";
      }
      if (rank < best_rank) {
        best_rank = rank;
        check.verified = true;
        check.source_key = *e.source_key;
        check.how = how;
        if (rank == 0) break;
      }
    }
    return check.verified;
  }

  bool derived(const WrittenNumber& n, NumberCheck& check) const {
    const double v = n.check.value;
    const double tol = n.half_step;
    for (const ColumnValues& column : columns_) {
      const std::vector<double>& vals = column.values;
      for (size_t i = 0; i < vals.size(); ++i) {
        for (size_t j = 0; j < vals.size(); ++j) {
          if (i == j) continue;
          const double a = vals[i];
          const double b = vals[j];
          const double eps = epsilon(std::max(std::fabs(a), std::fabs(b)));
          auto found = [&](const std::string& what) {
            check.verified = true;
            check.source_key = *column.source_key;
            check.how =
                what + format_number(a) + " and " + format_number(b) + " (" + column.column + ")";
            return true;
          };
          if (!n.percent && std::fabs(v - (a - b)) <= tol + eps) return found("difference of ");
          if (b == 0) continue;
          if (!n.percent && std::fabs(v - a / b) <= tol + eps) return found("ratio of ");
          if (n.percent) {
            const double change = (a - b) / b * 100;
            if (std::fabs(std::fabs(v) - std::fabs(change)) <= tol + eps) {
              return found("percent change between ");
            }
            if (std::fabs(v - a / b * 100) <= tol + eps) return found("ratio as percent of ");
            if (std::fabs(v - (a - b)) <= tol + eps) return found("difference of ");
          }
        }
      }
    }
    return false;
  }

  std::string question_key_;
  std::vector<EvidenceValue> values_;
  std::vector<ColumnValues> columns_;
};

// ---------------------------------------------------------------------------------------------
// Citations and figure/table references in the prose

struct FigureRef {
  std::string key;
  std::string kind;  // "figure" or "table"
  std::string section;
  bool resolved = false;
  int32_t number = 0;
};

class ProseRewriter {
 public:
  ProseRewriter(const ReportDraft& draft, const std::map<std::string, int32_t>& figure_numbers,
                const std::map<std::string, int32_t>& table_numbers)
      : figure_numbers_(figure_numbers), table_numbers_(table_numbers) {
    for (const ReportSource& s : draft.sources) by_key_.emplace(s.key, &s);
  }

  // The reference number of a source key, numbering it on first use; 0 when unknown.
  int32_t cite(const std::string& key) {
    auto source = by_key_.find(key);
    if (source == by_key_.end()) return 0;
    auto [it, inserted] = numbers_.emplace(key, static_cast<int32_t>(references_.size()) + 1);
    if (inserted) references_.push_back(source->second);
    return it->second;
  }

  std::string rewrite(const std::string& text, const std::string& section) {
    return rewrite_references(rewrite_citations(text, section), section);
  }

  const std::vector<const ReportSource*>& references() const { return references_; }
  std::vector<CitationCheck>& citations() { return citations_; }
  std::vector<FigureRef>& figure_refs() { return figure_refs_; }

 private:
  std::string rewrite_citations(std::string_view text, const std::string& section) {
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
        citations_.push_back({item, section, n > 0, n});
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

  // After a citation was dropped: no space before punctuation, no double spaces, no "()".
  static size_t tidy_after_removal(std::string_view text, size_t i, std::string& out) {
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

  // "Figure F3" -> "Figure 1", "Tables R1 and R2" -> "Tables 1 and 2".
  std::string rewrite_references(std::string_view text, const std::string& section) {
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
      if (!is_alpha(text[i]) || (i > 0 && is_alnum(text[i - 1]))) {
        out += text[i++];
        continue;
      }
      size_t j = i;
      while (j < text.size() && is_alpha(text[j])) ++j;
      std::string word(text.substr(i, j - i));
      std::string lower = word;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const bool figure = lower == "figure" || lower == "figures" ||
                          (lower == "fig" && starts_with_at(text, j, "."));
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

  const std::map<std::string, int32_t>& figure_numbers_;
  const std::map<std::string, int32_t>& table_numbers_;
  std::unordered_map<std::string, const ReportSource*> by_key_;
  std::map<std::string, int32_t> numbers_;
  std::vector<const ReportSource*> references_;
  std::vector<CitationCheck> citations_;
  std::vector<FigureRef> figure_refs_;
};

// ---------------------------------------------------------------------------------------------
// The report in reading order, after rewriting

struct PlacedFigure {
  const ReportFigure* figure;
  int32_t number;
  std::string caption;  // rewritten
  int32_t source_ref;   // 0 when the source is unknown
};

struct PlacedTable {
  const ReportTable* table;
  int32_t number;
  int32_t source_ref;
};

struct Part {
  std::string heading;
  std::string text;  // rewritten prose
  std::vector<PlacedFigure> figures;
  std::vector<PlacedTable> tables;
};

// ---------------------------------------------------------------------------------------------
// Markdown

// Model text is text: nothing in it may become HTML or a link when the markdown is rendered.
std::string md_text(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '&') {
      out += "&amp;";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == ']' && i + 1 < s.size() && s[i + 1] == '(') {
      out += "]\\";  // "[x](url)" stays text
    } else {
      out += c;
    }
  }
  return out;
}

std::string md_inline(std::string_view s) { return md_text(one_line(s)); }

std::string md_cell(std::string_view s) {
  std::string out;
  for (char c : md_inline(s)) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

// For ![alt](path): brackets in the alt text and spaces or parentheses in the path escaped.
std::string md_alt(std::string_view s) {
  std::string out;
  for (char c : md_inline(s)) {
    if (c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string md_path(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ') {
      out += "%20";
    } else if (c == '(') {
      out += "%28";
    } else if (c == ')') {
      out += "%29";
    } else if (c == '<' || c == '>' || c == '"' || c == '\n' || c == '\r') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// A code span long enough to hold any run of backticks in `s`.
std::string md_code(std::string_view s) {
  const std::string line = one_line(s);
  size_t longest = 0;
  size_t run = 0;
  for (char c : line) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  const std::string fence(longest + 1, '`');
  return fence + " " + line + " " + fence;
}

std::string reference_text_md(const ReportSource& s) {
  if (s.kind == "table") {
    std::string out = md_inline(s.title) + " \xE2\x80\x94 query: " + md_code(s.sql);
    std::vector<std::string> parts;
    if (!s.csv_path.empty()) parts.push_back("result: " + md_inline(s.csv_path));
    if (!s.location.empty()) parts.push_back("source: " + md_inline(s.location));
    if (!parts.empty()) {
      out += " (";
      for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
      out += ")";
    }
    return out;
  }
  std::string out = md_inline(s.title) + " \xE2\x80\x94 " + md_inline(s.location);
  if (!trim(s.text).empty())
    out += ": \xE2\x80\x9C" + md_inline(shorten(s.text, 240)) + "\xE2\x80\x9D";
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTML

std::string base64(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(data[i]) << 16) |
                       (static_cast<uint8_t>(data[i + 1]) << 8) | static_cast<uint8_t>(data[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == data.size()) {
    const uint32_t v = static_cast<uint8_t>(data[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    const uint32_t v =
        (static_cast<uint8_t>(data[i]) << 16) | (static_cast<uint8_t>(data[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// Replaces each pair of `marker` in already escaped text by <tag>...</tag>.
std::string pair_markup(const std::string& s, std::string_view marker, std::string_view tag) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t open = s.find(marker, i);
    if (open == std::string::npos) break;
    const size_t close = s.find(marker, open + marker.size());
    if (close == std::string::npos || close == open + marker.size()) break;
    out.append(s, i, open - i);
    out += '<';
    out += tag;
    out += '>';
    out.append(s, open + marker.size(), close - open - marker.size());
    out += "</";
    out += tag;
    out += '>';
    i = close + marker.size();
  }
  out.append(s, i);
  return out;
}

// Citation markers "[1, 3]" (only ours are left in the rewritten prose) become links.
std::string link_citations(const std::string& s, size_t reference_count) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    auto group = s[i] == '[' ? parse_citation_group(s, i) : std::nullopt;
    bool ours = group.has_value();
    if (ours) {
      for (const std::string& item : group->items) {
        const bool in_range = !item.empty() && item.size() < 6 &&
                              std::all_of(item.begin(), item.end(), is_digit) &&
                              std::stoul(item) >= 1 && std::stoul(item) <= reference_count;
        ours = ours && in_range;
      }
    }
    if (!ours) {
      out += s[i++];
      continue;
    }
    out += '[';
    for (size_t k = 0; k < group->items.size(); ++k) {
      if (k > 0) out += ", ";
      out += "<a href=\"#ref-" + group->items[k] + "\">" + group->items[k] + "</a>";
    }
    out += ']';
    i = group->end;
  }
  return out;
}

class HtmlWriter {
 public:
  explicit HtmlWriter(size_t reference_count) : reference_count_(reference_count) {}

  // One line of model text: escaped, then our own markup for citations, bold and code.
  std::string inline_text(std::string_view s) const {
    std::string out = link_citations(html_escape(one_line(s)), reference_count_);
    out = pair_markup(out, "**", "strong");
    return pair_markup(out, "`", "code");
  }

  // Paragraphs split by blank lines; "- " / "* " lines are list items; "#" lines headings.
  std::string blocks(std::string_view text) const {
    std::string out;
    std::string paragraph;
    bool in_list = false;
    auto flush_paragraph = [&] {
      if (!trim(paragraph).empty()) out += "<p>" + inline_text(paragraph) + "</p>\n";
      paragraph.clear();
    };
    auto close_list = [&] {
      if (in_list) out += "</ul>\n";
      in_list = false;
    };
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      const std::string_view line = trim(text.substr(start, end - start));
      start = end + 1;
      if (line.empty()) {
        flush_paragraph();
        close_list();
      } else if (line.starts_with("- ") || line.starts_with("* ")) {
        flush_paragraph();
        if (!in_list) out += "<ul>\n";
        in_list = true;
        out += "<li>" + inline_text(line.substr(2)) + "</li>\n";
      } else if (line.starts_with("#")) {
        flush_paragraph();
        close_list();
        out += "<h3>" +
               inline_text(line.substr(std::min(line.find_first_not_of('#'), line.size()))) +
               "</h3>\n";
      } else {
        close_list();
        paragraph += ' ';
        paragraph += line;
      }
      if (end == text.size()) break;
    }
    flush_paragraph();
    close_list();
    return out;
  }

 private:
  size_t reference_count_;
};

constexpr std::string_view kStyle = R"(
body { font-family: Georgia, 'DejaVu Serif', serif; line-height: 1.55; color: #222;
  background: #fff; margin: 0; }
main { max-width: 52rem; margin: 0 auto; padding: 2rem 1.5rem 3rem; }
h1 { font-size: 1.9rem; line-height: 1.25; margin-bottom: 1rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.1rem; }
blockquote { margin: 1rem 0; padding: .5rem 1rem; border-left: 4px solid #c90;
  background: #fff8e6; }
figure { margin: 1.5rem auto; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .92rem; color: #444; margin-top: .4rem; text-align: left; }
table { border-collapse: collapse; margin: 1.2rem auto .3rem; font-size: .9rem;
  font-family: 'DejaVu Sans', Arial, sans-serif; }
caption { font-weight: bold; padding-bottom: .3rem; }
th, td { border: 1px solid #999; padding: .25rem .55rem; text-align: left; }
th { background: #f0f0f0; }
.source { font-size: .85rem; color: #555; text-align: center; }
code { font-family: 'DejaVu Sans Mono', monospace; font-size: .85em; background: #f4f4f4;
  padding: 0 .2em; word-break: break-word; }
ol.references li { margin-bottom: .4rem; font-size: .92rem; }
.unverified { color: #a00; }
footer { max-width: 52rem; margin: 0 auto; padding: 1rem 1.5rem 2rem; color: #777;
  font-size: .85rem; border-top: 1px solid #ddd; }
)";

std::string reference_text_html(const ReportSource& s) {
  std::string out = html_escape(one_line(s.title)) + " \xE2\x80\x94 ";
  if (s.kind == "table") {
    out += "query: <code>" + html_escape(one_line(s.sql)) + "</code>";
    std::vector<std::string> parts;
    if (!s.csv_path.empty()) parts.push_back("result: " + html_escape(one_line(s.csv_path)));
    if (!s.location.empty()) parts.push_back("source: " + html_escape(one_line(s.location)));
    if (!parts.empty()) {
      out += " (";
      for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
      out += ")";
    }
    return out;
  }
  out += html_escape(one_line(s.location));
  if (!trim(s.text).empty()) {
    out += ": \xE2\x80\x9C" + html_escape(shorten(s.text, 240)) + "\xE2\x80\x9D";
  }
  return out;
}

std::string source_line_md(int32_t ref, const std::vector<const ReportSource*>& refs) {
  if (ref <= 0) return "";
  return "Source: [" + std::to_string(ref) + "] " + md_inline(refs[ref - 1]->title);
}

std::string source_line_html(int32_t ref, const std::vector<const ReportSource*>& refs) {
  if (ref <= 0) return "";
  const std::string n = std::to_string(ref);
  return "Source: [<a href=\"#ref-" + n + "\">" + n + "</a>] " +
         html_escape(one_line(refs[ref - 1]->title));
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<NumberCheck> extract_numbers(const std::string& text) {
  std::vector<NumberCheck> checks;
  for (WrittenNumber& n : scan_numbers(text)) {
    checks.push_back(std::move(n.check));
  }
  return checks;
}

FinalReport finalize_report(const ReportDraft& draft) {
  FinalReport report;

  // 1. Figures and tables numbered by placement; the unplaced ones follow in draft order.
  std::unordered_map<std::string, const ReportFigure*> figure_by_key;
  std::unordered_map<std::string, const ReportTable*> table_by_key;
  for (const ReportFigure& f : draft.figures) figure_by_key.emplace(f.key, &f);
  for (const ReportTable& t : draft.tables) table_by_key.emplace(t.key, &t);
  std::map<std::string, int32_t> figure_numbers;
  std::map<std::string, int32_t> table_numbers;
  std::vector<FigureRef> bad_placements;
  for (const ReportSection& section : draft.sections) {
    for (const std::string& key : section.figure_keys) {
      if (!figure_by_key.contains(key)) {
        bad_placements.push_back({key, "figure", section.heading, false, 0});
      } else if (!figure_numbers.contains(key)) {
        figure_numbers.emplace(key, static_cast<int32_t>(figure_numbers.size()) + 1);
      }
    }
    for (const std::string& key : section.table_keys) {
      if (!table_by_key.contains(key)) {
        bad_placements.push_back({key, "table", section.heading, false, 0});
      } else if (!table_numbers.contains(key)) {
        table_numbers.emplace(key, static_cast<int32_t>(table_numbers.size()) + 1);
      }
    }
  }
  std::vector<const ReportFigure*> unplaced_figures;
  std::vector<const ReportTable*> unplaced_tables;
  for (const ReportFigure& f : draft.figures) {
    if (figure_numbers.emplace(f.key, static_cast<int32_t>(figure_numbers.size()) + 1).second) {
      unplaced_figures.push_back(&f);
    }
  }
  for (const ReportTable& t : draft.tables) {
    if (table_numbers.emplace(t.key, static_cast<int32_t>(table_numbers.size()) + 1).second) {
      unplaced_tables.push_back(&t);
    }
  }

  // 2. The prose rewritten in reading order, which is also the order citations are numbered.
  ProseRewriter rewriter(draft, figure_numbers, table_numbers);
  auto place_figure = [&](const ReportFigure& f, Part& part) {
    PlacedFigure placed{&f, figure_numbers.at(f.key), rewriter.rewrite(f.caption, part.heading), 0};
    placed.source_ref = rewriter.cite(f.source_key);
    part.figures.push_back(std::move(placed));
  };
  auto place_table = [&](const ReportTable& t, Part& part) {
    part.tables.push_back({&t, table_numbers.at(t.key), rewriter.cite(t.source_key)});
  };
  std::vector<Part> parts;
  parts.push_back({"Abstract", rewriter.rewrite(draft.abstract, "Abstract"), {}, {}});
  parts.push_back({"Introduction", rewriter.rewrite(draft.introduction, "Introduction"), {}, {}});
  std::unordered_set<std::string> shown;
  for (const ReportSection& section : draft.sections) {
    Part part{section.heading, rewriter.rewrite(section.text, section.heading), {}, {}};
    for (const std::string& key : section.figure_keys) {
      auto f = figure_by_key.find(key);
      if (f != figure_by_key.end() && shown.insert("F:" + key).second)
        place_figure(*f->second, part);
    }
    for (const std::string& key : section.table_keys) {
      auto t = table_by_key.find(key);
      if (t != table_by_key.end() && shown.insert("T:" + key).second) place_table(*t->second, part);
    }
    parts.push_back(std::move(part));
  }
  parts.push_back({"Conclusion", rewriter.rewrite(draft.conclusion, "Conclusion"), {}, {}});
  if (!unplaced_figures.empty() || !unplaced_tables.empty()) {
    Part extra{unplaced_tables.empty()    ? "Additional figures"
               : unplaced_figures.empty() ? "Additional tables"
                                          : "Additional figures and tables",
               "",
               {},
               {}};
    for (const ReportFigure* f : unplaced_figures) place_figure(*f, extra);
    for (const ReportTable* t : unplaced_tables) place_table(*t, extra);
    parts.push_back(std::move(extra));
  }
  const std::vector<const ReportSource*>& refs = rewriter.references();
  report.citations = rewriter.citations();
  std::vector<FigureRef> figure_refs = std::move(bad_placements);
  for (FigureRef& r : rewriter.figure_refs()) figure_refs.push_back(std::move(r));

  // 3. Numbers checked against the evidence.
  const Verifier verifier(draft);
  auto check_numbers = [&](const std::string& text, const std::string& section) {
    for (WrittenNumber& n : scan_numbers(text)) {
      n.check.section = section;
      verifier.verify(n, n.check);
      report.numbers.push_back(std::move(n.check));
    }
  };
  for (const Part& part : parts) {
    check_numbers(part.text, part.heading);
    for (const PlacedFigure& f : part.figures) check_numbers(f.caption, part.heading);
  }
  for (const CitationCheck& c : report.citations) report.unresolved_citations += !c.resolved;
  for (const NumberCheck& n : report.numbers) report.unverified_numbers += !n.verified;
  const int32_t unknown_refs = static_cast<int32_t>(std::count_if(
      figure_refs.begin(), figure_refs.end(), [](const FigureRef& r) { return !r.resolved; }));

  // 4. verification.json
  nlohmann::json citations = nlohmann::json::array();
  for (const CitationCheck& c : report.citations) {
    citations.push_back(
        {{"key", c.key}, {"section", c.section}, {"resolved", c.resolved}, {"number", c.number}});
  }
  nlohmann::json numbers = nlohmann::json::array();
  for (const NumberCheck& n : report.numbers) {
    numbers.push_back({{"text", n.text},
                       {"value", n.value},
                       {"section", n.section},
                       {"context", n.context},
                       {"verified", n.verified},
                       {"source", n.source_key},
                       {"how", n.how}});
  }
  nlohmann::json figure_refs_json = nlohmann::json::array();
  for (const FigureRef& r : figure_refs) {
    figure_refs_json.push_back({{"key", r.key},
                                {"kind", r.kind},
                                {"section", r.section},
                                {"resolved", r.resolved},
                                {"number", r.number}});
  }
  const int32_t verified = static_cast<int32_t>(report.numbers.size()) - report.unverified_numbers;
  report.verification = {{"citations", citations},
                         {"numbers", numbers},
                         {"figure_refs", figure_refs_json},
                         {"summary",
                          {{"citations", report.citations.size()},
                           {"unresolved_citations", report.unresolved_citations},
                           {"numbers", report.numbers.size()},
                           {"verified_numbers", verified},
                           {"unverified_numbers", report.unverified_numbers},
                           {"unknown_figure_refs", unknown_refs}}}};

  const std::string summary_line =
      std::to_string(report.numbers.size()) + " numbers checked: " + std::to_string(verified) +
      " verified against the evidence, " + std::to_string(report.unverified_numbers) +
      " unverified. " + std::to_string(report.citations.size()) +
      " citations: " + std::to_string(report.unresolved_citations) + " unresolved and removed.";

  // 5. report.md
  std::string md = "# " + md_inline(draft.title) + "\n\n";
  for (size_t i = 0; i < draft.notes.size(); ++i) {
    md += (i ? ">\n> " : "> ") + md_inline(draft.notes[i]) + "\n";
  }
  if (!draft.notes.empty()) md += "\n";
  for (const Part& part : parts) {
    if (trim(part.text).empty() && part.figures.empty() && part.tables.empty()) continue;
    md += "## " + md_inline(part.heading) + "\n\n";
    if (!trim(part.text).empty()) md += md_text(trim(part.text)) + "\n\n";
    for (const PlacedFigure& f : part.figures) {
      const std::string label = "Figure " + std::to_string(f.number) + ": " + f.figure->title;
      md += "![" + md_alt(label) + "](" + md_path(f.figure->svg_path) + ")\n\n";
      md += "*" + md_inline(label) + ".* " + md_inline(f.caption);
      if (f.source_ref > 0) md += " (" + source_line_md(f.source_ref, refs) + ")";
      md += "\n\n";
    }
    for (const PlacedTable& t : part.tables) {
      md += "Table " + std::to_string(t.number) + ": " + md_inline(t.table->title) + "\n\n";
      if (!t.table->columns.empty()) {
        md += "|";
        for (const std::string& c : t.table->columns) {
          md += ' ';
          md += md_cell(c);
          md += " |";
        }
        md += "\n|";
        for (size_t c = 0; c < t.table->columns.size(); ++c) md += " --- |";
        md += "\n";
        for (const auto& row : t.table->rows) {
          md += "|";
          for (size_t c = 0; c < t.table->columns.size(); ++c) {
            md += ' ';
            if (c < row.size()) md += md_cell(row[c]);
            md += " |";
          }
          md += "\n";
        }
        md += "\n";
      }
      if (t.source_ref > 0) md += source_line_md(t.source_ref, refs) + "\n\n";
    }
  }
  md += "## References\n\n";
  if (refs.empty()) md += "No sources were cited.\n\n";
  for (size_t i = 0; i < refs.size(); ++i) {
    md += std::to_string(i + 1) + ". " + reference_text_md(*refs[i]) + "\n";
  }
  if (!refs.empty()) md += "\n";
  md += "## Verification\n\n" + summary_line + "\n\n";
  if (report.unverified_numbers > 0) {
    md += "Unverified numbers:\n\n";
    for (const NumberCheck& n : report.numbers) {
      if (n.verified) continue;
      md += "- " + md_inline(n.text) + " (" + md_inline(n.section) + "): \xE2\x80\x9C" +
            md_inline(n.context) + "\xE2\x80\x9D\n";
    }
    md += "\n";
  }
  if (report.unresolved_citations > 0) {
    md += "Unresolved citations (removed from the text):\n\n";
    for (const CitationCheck& c : report.citations) {
      if (!c.resolved) md += "- [" + md_inline(c.key) + "] in " + md_inline(c.section) + "\n";
    }
    md += "\n";
  }
  if (unknown_refs > 0) {
    md += "Unknown figure and table references:\n\n";
    for (const FigureRef& r : figure_refs) {
      if (!r.resolved)
        md += "- " + r.kind + " " + md_inline(r.key) + " in " + md_inline(r.section) + "\n";
    }
    md += "\n";
  }
  if (!draft.generated_by.empty())
    md += "---\n\nGenerated by " + md_inline(draft.generated_by) + "\n";
  report.markdown = std::move(md);

  // 6. report.html: everything from the draft goes through html_escape.
  const HtmlWriter writer(refs.size());
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
      "style-src 'unsafe-inline'\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
      html_escape(one_line(draft.title)) + "</title>\n<style>" + std::string(kStyle) +
      "</style>\n</head>\n<body>\n<main>\n<h1>" + html_escape(one_line(draft.title)) + "</h1>\n";
  if (!draft.notes.empty()) {
    html += "<blockquote>\n";
    for (const std::string& note : draft.notes) html += "<p>" + writer.inline_text(note) + "</p>\n";
    html += "</blockquote>\n";
  }
  for (const Part& part : parts) {
    if (trim(part.text).empty() && part.figures.empty() && part.tables.empty()) continue;
    html += "<section>\n<h2>" + html_escape(one_line(part.heading)) + "</h2>\n";
    html += writer.blocks(part.text);
    for (const PlacedFigure& f : part.figures) {
      const std::string label =
          "Figure " + std::to_string(f.number) + ": " + one_line(f.figure->title);
      html += "<figure>\n<img src=\"data:image/svg+xml;base64," + base64(f.figure->svg) +
              "\" alt=\"" + html_escape(label) + "\">\n<figcaption><strong>" + html_escape(label) +
              ".</strong> " + writer.inline_text(f.caption);
      if (f.source_ref > 0) html += " (" + source_line_html(f.source_ref, refs) + ")";
      html += "</figcaption>\n</figure>\n";
    }
    for (const PlacedTable& t : part.tables) {
      html += "<table>\n<caption>Table " + std::to_string(t.number) + ": " +
              html_escape(one_line(t.table->title)) + "</caption>\n";
      if (!t.table->columns.empty()) {
        html += "<thead><tr>";
        for (const std::string& c : t.table->columns)
          html += "<th>" + html_escape(one_line(c)) + "</th>";
        html += "</tr></thead>\n";
      }
      html += "<tbody>\n";
      const size_t width = std::max<size_t>(t.table->columns.size(), 1);
      for (const auto& row : t.table->rows) {
        html += "<tr>";
        for (size_t c = 0; c < width; ++c) {
          html +=
              "<td>" + (c < row.size() ? html_escape(one_line(row[c])) : std::string()) + "</td>";
        }
        html += "</tr>\n";
      }
      html += "</tbody>\n</table>\n";
      if (t.source_ref > 0)
        html += "<p class=\"source\">" + source_line_html(t.source_ref, refs) + "</p>\n";
    }
    html += "</section>\n";
  }
  html += "<section>\n<h2>References</h2>\n";
  if (refs.empty()) html += "<p>No sources were cited.</p>\n";
  if (!refs.empty()) {
    html += "<ol class=\"references\">\n";
    for (size_t i = 0; i < refs.size(); ++i) {
      html += "<li id=\"ref-" + std::to_string(i + 1) + "\">" + reference_text_html(*refs[i]) +
              "</li>\n";
    }
    html += "</ol>\n";
  }
  html +=
      "</section>\n<section>\n<h2>Verification</h2>\n<p>" + html_escape(summary_line) + "</p>\n";
  if (report.unverified_numbers > 0) {
    html += "<h3>Unverified numbers</h3>\n<ul>\n";
    for (const NumberCheck& n : report.numbers) {
      if (n.verified) continue;
      html += "<li><strong class=\"unverified\">" + html_escape(n.text) + "</strong> (" +
              html_escape(one_line(n.section)) + "): \xE2\x80\x9C" + html_escape(n.context) +
              "\xE2\x80\x9D</li>\n";
    }
    html += "</ul>\n";
  }
  if (report.unresolved_citations > 0) {
    html += "<h3>Unresolved citations (removed from the text)</h3>\n<ul>\n";
    for (const CitationCheck& c : report.citations) {
      if (!c.resolved) {
        html +=
            "<li>[" + html_escape(c.key) + "] in " + html_escape(one_line(c.section)) + "</li>\n";
      }
    }
    html += "</ul>\n";
  }
  if (unknown_refs > 0) {
    html += "<h3>Unknown figure and table references</h3>\n<ul>\n";
    for (const FigureRef& r : figure_refs) {
      if (!r.resolved) {
        html += "<li>" + r.kind + " " + html_escape(r.key) + " in " +
                html_escape(one_line(r.section)) + "</li>\n";
      }
    }
    html += "</ul>\n";
  }
  html += "</section>\n</main>\n";
  if (!draft.generated_by.empty()) {
    html += "<footer>Generated by " + html_escape(one_line(draft.generated_by)) + "</footer>\n";
  }
  html += "</body>\n</html>\n";
  report.html = std::move(html);
  return report;
}

}  // namespace kdr::hka
