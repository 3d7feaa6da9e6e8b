// The written-number scanner: one pass over the text, skipping citation groups, figure and
// table references and words, reading each number with its sign, currency, thousands groups,
// decimals and suffix (percent, scale word).
#include "hka/report/numbers.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <utility>

#include "hka/report/citations.h"
#include "hka/text.h"

namespace kdr::hka::report {
namespace {

struct ScaleWord {
  std::string_view word;
  double scale;
  bool attached_only;  // "k" must be attached ("1.2k"); "million" may follow a space
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
    if (spaced && w.attached_only) continue;
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
  // What a number's digits ending at `j` are followed by: "%", an attached scale word
  // ("1.2k"), or after one space a percent phrase ("30 percent", "5 percentage points") or a
  // scale word ("3.4 million"). `end` is where the written number ends.
  struct Suffix {
    bool percent = false;
    double scale = 1;
    bool has_scale = false;
    size_t end = 0;
  };

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
    // "COVID-19", "x-2", "1+2": a sign inside a word or between digits is not a sign.
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
    Sign sign;
    if (size_t len = minus_at(text_, i); len > 0) {
      sign.negative = true;
      i += len;
    } else if (text_[i] == '+') {
      sign.plus = true;
      ++i;
    }
    if (size_t c = currency_at(text_, i); c > 0) {
      sign.currency = true;
      i += c;
    }
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
        add(begin, j, sign, digits, 0, false, Suffix{});
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
    const size_t before_groups = j;
    if (run <= 3) j = read_thousands(j, digits);
    const bool grouped = j != before_groups;
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
    add(begin, end, sign, digits, decimals, grouped, sx);
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
              first.value = first.mantissa * last.scale;
            }
          }
        }
        return resume;
      }
    }
    return end;
  }

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

  struct Sign {
    bool negative = false;
    bool plus = false;
    bool currency = false;
  };

  // The second number of a range, never negative.
  size_t number_after_dash(size_t i) {
    Sign sign;
    const size_t c = currency_at(text_, i);
    sign.currency = c > 0;
    size_t j = i + c;
    const size_t digits_at = j;
    while (j < text_.size() && is_digit(text_[j])) ++j;
    std::string digits(text_.substr(digits_at, j - digits_at));
    const size_t before_groups = j;
    if (j - digits_at <= 3) j = read_thousands(j, digits);
    const bool grouped = j != before_groups;
    int decimals = 0;
    j = read_decimals(j, digits, decimals);
    const Suffix sx = read_suffix(j);
    add(i, sx.end, sign, digits, decimals, grouped, sx);
    return sx.end;
  }

  size_t skip_digits(size_t i) const {
    while (i < text_.size() && (is_digit(text_[i]) || text_[i] == '.' || text_[i] == ',')) ++i;
    return i;
  }

  void add(size_t begin, size_t end, const Sign& sign, const std::string& digits, int decimals,
           bool grouped, const Suffix& sx) {
    WrittenNumber n;
    const double magnitude = std::strtod(digits.c_str(), nullptr);
    n.text = std::string(text_.substr(begin, end - begin));
    n.begin = begin;
    n.end = end;
    n.mantissa = sign.negative ? -magnitude : magnitude;
    n.scale = sx.scale;
    n.has_scale = sx.has_scale;
    n.percent = sx.percent;
    n.decimals = decimals;
    n.negative = sign.negative;
    n.plus = sign.plus;
    n.currency = sign.currency;
    n.grouped = grouped;
    n.half_step = 0.5 * std::pow(10.0, -decimals) * sx.scale;
    n.value = n.mantissa * sx.scale;
    found_.push_back(std::move(n));
  }

  std::string_view text_;
  std::vector<WrittenNumber> found_;
};

}  // namespace

size_t dash_at(std::string_view text, size_t pos) {
  if (starts_with_at(text, pos, "-")) return 1;
  if (starts_with_at(text, pos, "\xE2\x80\x93")) return 3;
  return 0;
}

std::vector<WrittenNumber> scan_numbers(std::string_view text) {
  return NumberScanner(text).scan();
}

std::vector<double> cell_numbers(std::string_view cell) {
  const std::string_view t = text::trim(cell);
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
  for (const WrittenNumber& n : scan_numbers(t)) values.push_back(n.value);
  return values;
}

bool is_year(const WrittenNumber& n) {
  return !n.negative && !n.plus && !n.percent && !n.has_scale && !n.grouped && !n.currency &&
         n.decimals == 0 && n.value >= 1000 && n.value <= 2200;
}

double scale_of_word(std::string_view word) {
  for (const ScaleWord& w : kScaleWords) {
    if (!w.attached_only && word == w.word) return w.scale;
  }
  return 0;
}

}  // namespace kdr::hka::report
