// Text helpers shared by every stage of the research agent: one trim, one lower-case, one way
// to write a cell or a number, so that a value reads the same in a prompt, a fact, a table
// and a report.
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::hka::text {

// Without leading and trailing spaces, tabs, CR and LF.
std::string_view trim(std::string_view s);
// ASCII lower case (other bytes unchanged).
std::string lower(std::string_view s);
// Runs of whitespace (newlines included) collapsed to one space, trimmed.
std::string one_line(std::string_view s);
// At most max_bytes, cut at a UTF-8 character boundary, " [...]" appended when cut.
std::string truncate(std::string_view s, size_t max_bytes);
// One line of at most max_bytes, cut at a word boundary, "…" appended when cut.
std::string shorten(std::string_view s, size_t max_bytes);
// Whether `word` occurs in `lowered` as a whole word (letters and digits on neither side).
bool has_word(std::string_view lowered, std::string_view word);
// Words of letters and digits, lower case ("Korea, Rep." -> {"korea", "rep"}).
std::vector<std::string> words(std::string_view s);
// 1-12 for a month name or its abbreviation of three or more letters ("Sept" too); else 0.
int month_from_name(std::string_view word);

// A query-result cell as text: strings as they are, integers in full, floats with up to 10
// significant digits and no exponent for ordinary magnitudes, null as "".
std::string format_cell(const nlohmann::json& cell);
// A number with `digits` significant digits as people write it, thousands grouped with commas:
// 35361.2 -> "35,361", 0.01234 -> "0.0123", 12.0 -> "12", 7.0 -> "7.0" (at least two
// significant digits stay). Magnitudes of 10^(digits-1) and more are rounded to integers.
std::string format_number(double value, int digits = 3);
// A signed change: "+12.3", "-4.1" (format_number with a leading sign).
std::string format_signed(double value, int digits = 3);

}  // namespace kdr::hka::text
