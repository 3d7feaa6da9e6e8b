#include "hka/text.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace kdr::hka::text {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         (static_cast<unsigned char>(c) >= 0x80);
}

std::string group_thousands(const std::string& digits) {
  // digits: an optional '-' then an integer part, then optionally '.' and decimals.
  size_t start = digits[0] == '-' ? 1 : 0;
  size_t end = digits.find('.');
  if (end == std::string::npos) end = digits.size();
  if (end - start < 4) return digits;
  std::string out = digits.substr(0, start);
  for (size_t i = start; i < end; ++i) {
    out += digits[i];
    const size_t left = end - i - 1;
    if (left > 0 && left % 3 == 0) out += ',';
  }
  return out + digits.substr(end);
}

}  // namespace

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string one_line(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : trim(s)) {
    if (is_space(c)) {
      space = true;
    } else {
      if (space) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

std::string truncate(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return std::string(s);
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + " [...]";
}

std::string shorten(std::string_view s, size_t max_bytes) {
  std::string line = one_line(s);
  if (line.size() <= max_bytes) return line;
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
  const size_t space = line.rfind(' ', cut);
  if (space != std::string::npos && space > max_bytes / 2) cut = space;
  return line.substr(0, cut) + "\xE2\x80\xA6";  // "…"
}

bool has_word(std::string_view lowered, std::string_view word) {
  if (word.empty()) return false;
  for (size_t at = lowered.find(word); at != std::string_view::npos;
       at = lowered.find(word, at + 1)) {
    const bool left = at == 0 || !is_word_char(lowered[at - 1]);
    const size_t end = at + word.size();
    const bool right = end >= lowered.size() || !is_word_char(lowered[end]);
    if (left && right) return true;
  }
  return false;
}

std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  std::string current;
  for (char c : s) {
    if (is_word_char(c)) {
      current += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!current.empty()) {
      out.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

int month_from_name(std::string_view word) {
  static const std::array<std::string_view, 12> kMonths = {
      "january", "february", "march",     "april",   "may",      "june",
      "july",    "august",   "september", "october", "november", "december"};
  std::string l = lower(trim(word));
  while (!l.empty() && l.back() == '.') l.pop_back();  // "Jan.", "Sept."
  if (l.size() < 3) return 0;
  for (size_t m = 0; m < kMonths.size(); ++m) {
    if (kMonths[m].starts_with(l) || (m == 8 && l == "sept")) return static_cast<int>(m) + 1;
  }
  return 0;
}

std::string format_cell(const nlohmann::json& cell) {
  if (cell.is_null()) return "";
  if (cell.is_string()) return cell.get<std::string>();
  if (cell.is_number_integer()) return std::to_string(cell.get<int64_t>());
  if (cell.is_number_unsigned()) return std::to_string(cell.get<uint64_t>());
  if (cell.is_number_float()) {
    const double v = cell.get<double>();
    if (!std::isfinite(v)) return std::isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.10g", v);
    std::string s = buf;
    if (s.find('e') != std::string::npos && std::fabs(v) >= 1e-4 && std::fabs(v) < 1e15) {
      std::snprintf(buf, sizeof buf, "%.10f", v);
      s = buf;
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    return s;
  }
  if (cell.is_boolean()) return cell.get<bool>() ? "true" : "false";
  return cell.dump();
}

std::string format_number(double value, int digits) {
  if (!std::isfinite(value)) return std::isnan(value) ? "NaN" : (value > 0 ? "inf" : "-inf");
  if (value == 0) return "0";
  const double mag = std::fabs(value);
  char buf[64];
  if (mag >= std::pow(10.0, digits - 1) ||
      (std::floor(value) == value && mag >= 10 && mag < 1e15)) {
    std::snprintf(buf, sizeof buf, "%.0f", std::round(value));
    std::string s = buf;
    if (s == "-0") s = "0";
    return group_thousands(s);
  }
  const int decimals =
      std::clamp(digits - 1 - static_cast<int>(std::floor(std::log10(mag))), 0, 12);
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  std::string s = buf;
  // Trailing zeros go, but at least two significant digits stay ("7.0", not "7"), so that a
  // reader (and a checker) sees the precision the value has.
  size_t significant = 0;
  bool leading = true;
  for (char c : s) {
    if (c >= '1' && c <= '9') leading = false;
    if (!leading && c >= '0' && c <= '9') ++significant;
  }
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0' && significant > 2) {
      s.pop_back();
      --significant;
    }
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return group_thousands(s);
}

std::string format_signed(double value, int digits) {
  const std::string s = format_number(value, digits);
  return (value > 0 && s != "0") ? "+" + s : s;
}

}  // namespace kdr::hka::text
