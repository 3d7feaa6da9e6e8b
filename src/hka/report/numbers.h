// Numbers as people write them in prose: "1,234.5", "12%", "30 percent", "3.4 million",
// "1.2k", "$1,200", "−4.5" (a unicode minus), "2019–2021" (two numbers). Citation markers
// ("[3]", "[T2]"), "Figure 2" / "Table 3", list numbering, ordinals, times and digits glued to
// words ("H100", "COVID-19") are not numbers a report states. Private to report/.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::hka::report {

struct WrittenNumber {
  std::string text;           // as written, e.g. "12.5%", "3.4 million", "$1,200"
  size_t begin = 0, end = 0;  // byte offsets of `text` in the scanned text
  double value = 0;           // the number it denotes: 12.5 for "12.5%", 3.4e6 for "3.4 million"
  double mantissa = 0;        // signed, before the scale word (3.4 for "3.4 million")
  double scale = 1;           // 1e3, 1e6, ... for a scale word
  double half_step = 0;       // half a unit of the last digit written, in value units
  int decimals = 0;           // digits written after the decimal point
  bool negative = false;      // written with a minus sign
  bool plus = false;          // written with an explicit plus sign
  bool percent = false;       // "%", "percent", "per cent", "percentage point(s)"
  bool has_scale = false;     // "million", "bn", "k", ...
  bool grouped = false;       // written with thousands separators ("1,234")
  bool currency = false;      // "$", "€" or "£" before the digits
};

// The numbers `text` states, in order.
std::vector<WrittenNumber> scan_numbers(std::string_view text);

// The numbers a table cell holds: "12.5%", "$1,200", "1.5e-05", "2019-2021".
std::vector<double> cell_numbers(std::string_view cell);

// A bare integer from 1000 to 2200 (no sign, separators, decimals, unit or scale) reads as a
// year.
bool is_year(const WrittenNumber& n);

// The scale a scale word stands for ("thousand" -> 1e3, "bn" -> 1e9); 0 when it is none.
double scale_of_word(std::string_view word);

// Characters, ASCII only: the scanner never looks inside UTF-8 sequences except for the
// minus, dash and currency signs it names.
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
inline bool is_blank(char c) { return c == ' ' || c == '\t'; }
inline bool is_space(char c) { return is_blank(c) || c == '\n' || c == '\r'; }

inline bool all_digits(std::string_view w) {
  if (w.empty()) return false;
  for (char c : w) {
    if (!is_digit(c)) return false;
  }
  return true;
}

inline bool starts_with_at(std::string_view text, size_t pos, std::string_view prefix) {
  return pos <= text.size() && text.substr(pos).starts_with(prefix);
}

// Length of a range dash at `pos` ("-" or an en dash), 0 when none.
size_t dash_at(std::string_view text, size_t pos);

}  // namespace kdr::hka::report
