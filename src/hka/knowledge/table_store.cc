#include "hka/knowledge/table_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <utility>

#include "hka/knowledge/encoding.h"
#include "hka/knowledge/retrieval.h"
#include "hka/knowledge/source_files.h"
#include "hka/knowledge/sqlite_util.h"
#include "hka/knowledge/xlsx.h"
#include "hka/text.h"

namespace kdr::hka {
namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------------------------------
// SQLite helpers

namespace {

// The store's SQLite plumbing, naming the workspace database in its errors.
class Statement : public sqlite::Statement<TableStoreError> {
 public:
  Statement(sqlite3* db, std::string_view sql)
      : sqlite::Statement<TableStoreError>(db, sql, "workspace database") {}
};

void exec(sqlite3* db, const std::string& sql) {
  sqlite::exec<TableStoreError>(db, sql, "workspace database");
}

std::string quote_identifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string to_lower(std::string_view s) { return text::lower(s); }

// Source files may hold invalid UTF-8; replace it rather than fail on the whole table.
std::string dump_json(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

using text::trim;

}  // namespace

// ---------------------------------------------------------------------------------------
// Parsing

RawTable parse_delimited(std::string_view text, char delimiter, const std::string& source) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  RawTable table;
  std::vector<std::string> record;
  std::string field;
  bool field_started = false;  // distinguishes an empty last field from a blank line
  bool at_field_start = true;  // a quote opens a quoted field only here
  int line = 1;
  int record_line = 1;
  std::vector<std::pair<std::vector<std::string>, int>> records;  // with their line
  auto end_record = [&]() {
    bool blank = record.empty() && !field_started && field.empty();
    if (!blank) {
      record.push_back(std::move(field));
      records.push_back({std::move(record), record_line});
    }
    record.clear();
    field.clear();
    field_started = false;
    at_field_start = true;
  };
  std::size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '"' && at_field_start) {
      // A quoted field runs to the next quote not doubled, across delimiters and newlines.
      int quote_line = line;
      std::size_t quote_col =
          i -
          (text.rfind('\n', i) == std::string_view::npos ? std::size_t{0}
                                                         : text.rfind('\n', i) + 1) +
          1;
      field_started = true;
      at_field_start = false;
      ++i;
      while (true) {
        if (i >= text.size()) {
          throw TableStoreError(source + ":" + std::to_string(quote_line) + ":" +
                                std::to_string(quote_col) +
                                ": quoted field is never closed (missing '\"')");
        }
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field += text[i++];
      }
      continue;
    }
    if (c == delimiter) {
      record.push_back(std::move(field));
      field.clear();
      field_started = true;
      at_field_start = true;
      ++i;
    } else if (c == '\r' || c == '\n') {
      end_record();
      i += (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ? 2 : 1;
      ++line;
      record_line = line;
    } else {
      field += c;
      field_started = true;
      at_field_start = false;
      ++i;
    }
  }
  end_record();
  if (records.empty()) throw TableStoreError(source + ": empty file, no header row");
  // Statistics offices put a few lines before the header ("Data Source", "Last Updated
  // Date"): the header is the first record as wide as most records; what comes before it is
  // skipped. A file whose first record is as wide as most (any ordinary CSV) starts there.
  std::map<size_t, size_t> widths;
  for (const auto& [r, l] : records) ++widths[r.size()];
  size_t common = records.front().first.size(), most = 0;
  for (const auto& [w, n] : widths) {
    if (n > most) {
      most = n;
      common = w;
    }
  }
  size_t start = 0;
  if (records.front().first.size() != common && most * 2 > records.size()) {
    while (start < records.size() && records[start].first.size() != common) ++start;
  }
  table.header = std::move(records[start].first);
  for (size_t k = start + 1; k < records.size(); ++k) {
    if (records[k].first.size() != table.header.size()) {
      throw TableStoreError(source + ":" + std::to_string(records[k].second) + ": row has " +
                            std::to_string(records[k].first.size()) +
                            " fields but the header has " + std::to_string(table.header.size()));
    }
    table.rows.push_back(std::move(records[k].first));
  }
  return table;
}

namespace {

RawTable parse_json_records(std::string_view text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw TableStoreError(source + ": invalid JSON: " + e.what());
  }
  if (doc.is_object()) {
    // Accept {"records": [...]}-style wrappers: the one member that is an array.
    const json* found = nullptr;
    for (const auto& [key, value] : doc.items()) {
      if (value.is_array()) {
        if (found) throw TableStoreError(source + ": JSON object holds several arrays");
        found = &value;
      }
    }
    if (!found) throw TableStoreError(source + ": JSON is not an array of records");
    json inner = *found;
    doc = std::move(inner);
  }
  if (!doc.is_array()) throw TableStoreError(source + ": JSON is not an array of records");
  if (doc.empty()) throw TableStoreError(source + ": JSON array holds no records");
  RawTable table;
  std::map<std::string, std::size_t> index;
  for (std::size_t r = 0; r < doc.size(); ++r) {
    if (!doc[r].is_object()) {
      throw TableStoreError(source + ": record " + std::to_string(r) + " is not an object");
    }
    for (const auto& [key, value] : doc[r].items()) {
      if (index.emplace(key, table.header.size()).second) table.header.push_back(key);
    }
  }
  for (const json& record : doc) {
    std::vector<std::string> row(table.header.size());
    for (const auto& [key, value] : record.items()) {
      std::string& cell = row[index[key]];
      if (value.is_string()) {
        cell = value.get<std::string>();
      } else if (!value.is_null()) {
        cell = value.dump();
      }
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

// ---------------------------------------------------------------------------------------
// Type inference

bool is_missing(std::string_view cell) {
  static const std::set<std::string> kMissing = {"",    "na", "n/a", "null",        "none",
                                                 "nan", "-",  "--",  "\xE2\x80\x94"};
  return kMissing.count(to_lower(trim(cell))) > 0;
}

struct Number {
  double value = 0;
  int64_t integer = 0;
  bool integral = false;
  std::string unit;
};

// Accepts "1,234.5", "-3", "$1,200", "12.5 %", "70kg", "1e3"; codes with a leading zero
// ("007") are not numbers so identifiers keep their text.
std::optional<Number> parse_number(std::string_view cell) {
  std::string_view s = trim(cell);
  Number number;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  static const std::array<std::string_view, 5> kCurrencies = {
      "$", "\xE2\x82\xAC", "\xC2\xA3", "\xC2\xA5", "\xE2\x82\xB9"};  // $ EUR GBP JPY INR
  for (std::string_view currency : kCurrencies) {
    if (s.starts_with(currency)) {
      number.unit = std::string(currency);
      s = trim(s.substr(currency.size()));
      break;
    }
  }
  if (!s.empty() && s[0] == '-' && !number.unit.empty() && !negative) {
    negative = true;
    s.remove_prefix(1);
  }
  std::string digits;
  std::size_t i = 0;
  std::size_t group = 0;  // digits since the last thousands separator
  bool saw_separator = false;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == ',')) {
    if (s[i] == ',') {
      if (digits.empty() || (saw_separator && group != 3) || (!saw_separator && group > 3)) {
        return std::nullopt;
      }
      saw_separator = true;
      group = 0;
    } else {
      digits += s[i];
      ++group;
    }
    ++i;
  }
  if (digits.empty() || (saw_separator && group != 3)) return std::nullopt;
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
  bool integral = true;
  if (i < s.size() && s[i] == '.') {
    integral = false;
    digits += s[i++];
    std::size_t before = digits.size();
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) digits += s[i++];
    if (digits.size() == before) return std::nullopt;
  }
  if (i + 1 < s.size() && (s[i] == 'e' || s[i] == 'E') &&
      (std::isdigit(static_cast<unsigned char>(s[i + 1])) ||
       (i + 2 < s.size() && (s[i + 1] == '-' || s[i + 1] == '+') &&
        std::isdigit(static_cast<unsigned char>(s[i + 2]))))) {
    integral = false;
    digits += s[i++];
    if (s[i] == '-' || s[i] == '+') digits += s[i++];
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) digits += s[i++];
  }
  std::string_view suffix = trim(s.substr(i));
  if (!suffix.empty()) {
    if (!number.unit.empty() || suffix.size() > 12) return std::nullopt;
    // A unit starts with a letter, '%' or a non-ASCII symbol (degree, micro) and never
    // holds spaces or punctuation other than '/'.
    unsigned char first = static_cast<unsigned char>(suffix[0]);
    if (!(std::isalpha(first) || first == '%' || first >= 0x80)) return std::nullopt;
    for (char c : suffix) {
      unsigned char u = static_cast<unsigned char>(c);
      if (!(std::isalnum(u) || u == '%' || u == '/' || u >= 0x80)) return std::nullopt;
    }
    number.unit = std::string(suffix);
  }
  if (std::from_chars(digits.data(), digits.data() + digits.size(), number.value).ec !=
      std::errc()) {
    return std::nullopt;
  }
  if (negative) number.value = -number.value;
  number.integral =
      integral && number.unit.empty() &&
      std::from_chars(digits.data(), digits.data() + digits.size(), number.integer).ec ==
          std::errc();
  if (negative) number.integer = -number.integer;
  return number;
}

// A date as written: year plus two fields whose order may depend on the whole column.
struct DateParts {
  int year = 0;
  int first = 0;   // month when `ordered`, else month or day
  int second = 0;  // day when `ordered`
  bool ordered = true;
  bool dotted = false;  // d.m.yyyy: day first unless the column says otherwise
};

using text::month_from_name;

std::optional<int> to_int(std::string_view digits) {
  int value = 0;
  if (digits.empty() || digits.size() > 4) return std::nullopt;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || ptr != digits.data() + digits.size()) return std::nullopt;
  return value;
}

std::optional<DateParts> parse_date(std::string_view cell) {
  std::string_view s = trim(cell);
  std::vector<std::string_view> words;
  std::set<char> separators;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '-' || s[i] == '/' || s[i] == '.' || s[i] == ' ' || s[i] == ',') {
      if (i > start) words.push_back(s.substr(start, i - start));
      if (i < s.size()) separators.insert(s[i]);
      start = i + 1;
    } else if (!std::isalnum(static_cast<unsigned char>(s[i]))) {
      return std::nullopt;
    }
  }
  if (words.size() != 3) return std::nullopt;
  DateParts date;
  int named = -1;
  for (int w = 0; w < 3; ++w) {
    if (std::isalpha(static_cast<unsigned char>(words[w][0]))) named = w;
  }
  if (named >= 0) {
    // "Jan 5, 2020", "5 January 2020", "05-Jan-2020": the four-digit word is the year.
    date.first = month_from_name(words[named]);
    if (date.first == 0) return std::nullopt;
    for (int w = 0; w < 3; ++w) {
      if (w == named) continue;
      std::optional<int> value = to_int(words[w]);
      if (!value) return std::nullopt;
      if (words[w].size() == 4) {
        date.year = *value;
      } else {
        date.second = *value;
      }
    }
    if (date.year == 0 || date.second == 0) return std::nullopt;
    return date;
  }
  if (separators.size() != 1 || separators.count(' ') || separators.count(',')) {
    return std::nullopt;
  }
  std::optional<int> a = to_int(words[0]), b = to_int(words[1]), c = to_int(words[2]);
  if (!a || !b || !c) return std::nullopt;
  if (words[0].size() == 4 && words[1].size() <= 2 && words[2].size() <= 2) {
    date.year = *a;
    date.first = *b;
    date.second = *c;
    return date;
  }
  if (words[2].size() == 4 && words[0].size() <= 2 && words[1].size() <= 2) {
    date.year = *c;
    date.first = *a;
    date.second = *b;
    date.ordered = false;
    date.dotted = separators.count('.') > 0;
    return date;
  }
  return std::nullopt;
}

// ISO text for a date, or nullopt when the day or month is out of range.
std::optional<std::string> iso_date(const DateParts& date, bool day_first) {
  int month = date.first, day = date.second;
  if (!date.ordered && day_first) std::swap(month, day);
  static const std::array<int, 12> kDays = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1]) return std::nullopt;
  bool leap = (date.year % 4 == 0 && date.year % 100 != 0) || date.year % 400 == 0;
  if (month == 2 && day == 29 && !leap) return std::nullopt;
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02d-%02d", date.year, month, day);
  return std::string(buffer);
}

struct ColumnPlan {
  ColumnInfo info;
  bool day_first = false;  // for DATE columns written d/m/yyyy
  // Dates that are all the first of January (2001-01-01, 2002-01-01 ...) stand for years:
  // stored as the INTEGER year, so that tables, charts and reports write 2001.
  bool years_only = false;
};

ColumnPlan infer_column(const RawTable& raw, std::size_t col) {
  ColumnPlan plan;
  plan.info.header = raw.header[col];
  std::vector<std::string_view> cells;
  for (const auto& row : raw.rows) {
    if (is_missing(row[col])) continue;
    cells.push_back(row[col]);
    std::string sample(trim(row[col]));
    if (plan.info.samples.size() < 3 &&
        std::find(plan.info.samples.begin(), plan.info.samples.end(), sample) ==
            plan.info.samples.end()) {
      plan.info.samples.push_back(sample);
    }
  }
  plan.info.type = "TEXT";
  if (cells.empty()) return plan;

  bool all_numbers = true, all_integral = true;
  std::set<std::string> units;
  for (std::string_view cell : cells) {
    std::optional<Number> number = parse_number(cell);
    if (!number) {
      all_numbers = false;
      break;
    }
    all_integral = all_integral && number->integral;
    if (!number->unit.empty()) units.insert(number->unit);
  }
  if (all_numbers && units.size() <= 1) {
    plan.info.type = all_integral ? "INTEGER" : "REAL";
    if (!units.empty()) plan.info.unit = *units.begin();
    return plan;
  }

  std::vector<DateParts> dates;
  for (std::string_view cell : cells) {
    std::optional<DateParts> date = parse_date(cell);
    if (!date) return plan;
    dates.push_back(*date);
  }
  // Slash dates are month-first (US) and dotted ones day-first, unless a value > 12 in
  // either place settles the order for the whole column.
  bool any_dotted = false, first_over_12 = false, second_over_12 = false;
  for (const DateParts& d : dates) {
    if (d.ordered) continue;
    any_dotted = any_dotted || d.dotted;
    first_over_12 = first_over_12 || d.first > 12;
    second_over_12 = second_over_12 || d.second > 12;
  }
  plan.day_first = first_over_12 || (!second_over_12 && any_dotted);
  bool all_new_year = true;
  std::set<int> years;
  for (const DateParts& d : dates) {
    const std::optional<std::string> iso = iso_date(d, plan.day_first);
    if (!iso) return plan;
    all_new_year = all_new_year && iso->substr(5) == "01-01";
    years.insert(d.year);
  }
  if (all_new_year && years.size() >= 2) {
    plan.info.type = "INTEGER";
    plan.years_only = true;
    plan.info.samples.clear();
    for (int y : years) {
      if (plan.info.samples.size() < 3) plan.info.samples.push_back(std::to_string(y));
    }
    return plan;
  }
  plan.info.type = "DATE";
  return plan;
}

// ---------------------------------------------------------------------------------------
// Names

std::string sanitize_identifier(std::string_view text, std::string_view fallback) {
  std::string out;
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u) && u < 0x80) {
      out += static_cast<char>(std::tolower(u));
    } else if (!out.empty() && out.back() != '_') {
      out += '_';
    }
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  if (out.empty()) out = std::string(fallback);
  if (std::isdigit(static_cast<unsigned char>(out[0]))) out = "c_" + out;
  // Keywords and SQLite's reserved prefix would force the model to quote every use.
  if (out.starts_with("sqlite_")) out = "t_" + out;
  if (sqlite3_keyword_check(out.data(), static_cast<int>(out.size()))) out += '_';
  return out;
}

std::string unique_name(const std::string& base, const std::set<std::string>& taken) {
  if (!taken.count(base)) return base;
  for (int n = 2;; ++n) {
    std::string candidate = base + "_" + std::to_string(n);
    if (!taken.count(candidate)) return candidate;
  }
}

// ---------------------------------------------------------------------------------------
// Catalogue and sources

struct CatalogueEntry {
  std::string title, description, domain, sub_domain, topic;

  // Stored with the table so a catalogue edit re-ingests an otherwise unchanged source.
  std::string key() const {
    return dump_json(json::array({title, description, domain, sub_domain, topic}));
  }
};

std::string string_field(const json& record, const char* key) {
  auto it = record.find(key);
  return it != record.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string normalize_path(std::string path) {
  std::replace(path.begin(), path.end(), '\\', '/');
  while (path.starts_with("./")) path.erase(0, 2);
  return path;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TableStoreError(path.string() + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<json> load_catalogue(const fs::path& path) {
  std::string text = read_file(path);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw TableStoreError(path.string() + ": invalid catalogue JSON: " + e.what());
  }
  if (doc.is_object()) {
    for (const auto& [key, value] : doc.items()) {
      if (value.is_array()) {
        json inner = value;
        doc = std::move(inner);
        break;
      }
    }
  }
  if (!doc.is_array()) throw TableStoreError(path.string() + ": catalogue is not an array");
  std::vector<json> records;
  for (std::size_t i = 0; i < doc.size(); ++i) {
    if (!doc[i].is_object() || string_field(doc[i], "file_path").empty()) {
      throw TableStoreError(path.string() + ": catalogue record " + std::to_string(i) +
                            " has no file_path");
    }
    records.push_back(doc[i]);
  }
  return records;
}

// The catalogue record for a source: exact relative path first, then the file name alone.
std::optional<CatalogueEntry> match_catalogue(const std::vector<json>& records,
                                              const std::string& relative) {
  const json* match = nullptr;
  for (const json& r : records) {
    if (normalize_path(string_field(r, "file_path")) == relative) match = &r;
  }
  if (!match) {
    std::string name = fs::path(relative).filename().string();
    for (const json& r : records) {
      if (!match && fs::path(normalize_path(string_field(r, "file_path"))).filename() == name) {
        match = &r;
      }
    }
  }
  if (!match) return std::nullopt;
  CatalogueEntry entry;
  entry.title = string_field(*match, "table_title");
  if (entry.title.empty()) entry.title = string_field(*match, "title");
  entry.description = string_field(*match, "description");
  entry.domain = string_field(*match, "domain");
  entry.sub_domain = string_field(*match, "sub_domain");
  entry.topic = string_field(*match, "topic");
  return entry;
}

std::string content_hash(std::string_view bytes) {
  // FNV-1a: a change detector for local files, not a defence against crafted collisions.
  uint64_t hash = 1469598103934665603ULL;
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  char buffer[24];
  std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(hash));
  // The version of the typing rules: a workspace made by older rules re-ingests its sources.
  constexpr const char* kTypingVersion = "t2";
  return std::string(buffer) + "-" + std::to_string(bytes.size()) + "-" + kTypingVersion;
}

std::string title_from_file(const fs::path& path) {
  std::string title = path.stem().string();
  std::replace_if(
      title.begin(), title.end(), [](char c) { return c == '_' || c == '-'; }, ' ');
  return title;
}

json columns_to_json(const std::vector<ColumnInfo>& columns) {
  json out = json::array();
  for (const ColumnInfo& c : columns) {
    out.push_back({{"name", c.name},
                   {"header", c.header},
                   {"type", c.type},
                   {"unit", c.unit},
                   {"samples", c.samples}});
  }
  return out;
}

std::vector<ColumnInfo> columns_from_json(const std::string& text) {
  std::vector<ColumnInfo> columns;
  for (const json& c : json::parse(text)) {
    columns.push_back({c.at("name").get<std::string>(), c.at("header").get<std::string>(),
                       c.at("type").get<std::string>(), c.at("unit").get<std::string>(),
                       c.at("samples").get<std::vector<std::string>>()});
  }
  return columns;
}

// Everything needed to write one source as a table, computed before the database is touched
// so a parse failure cannot disturb the existing table.
struct PreparedTable {
  RawTable raw;
  std::vector<ColumnPlan> plans;
  TableInfo info;
  std::string catalogue_key;  // empty when no catalogue record matched
};

PreparedTable prepare_table(const fs::path& path, const std::string& text,
                            const std::optional<CatalogueEntry>& entry) {
  std::string source = path.string();
  std::string ext = to_lower(path.extension().string());
  PreparedTable table;
  if (trim(text).empty() || trim(text) == "\xEF\xBB\xBF") {
    throw TableStoreError(source + ": empty file, no header row");
  }
  if (ext == ".json") {
    table.raw = parse_json_records(text, source);
  } else if (ext == ".xlsx") {
    table.raw = read_xlsx(text, source);
  } else {
    table.raw = parse_delimited(text, ext == ".tsv" ? '\t' : ',', source);
  }
  std::set<std::string> taken;
  for (std::size_t c = 0; c < table.raw.header.size(); ++c) {
    ColumnPlan plan = infer_column(table.raw, c);
    plan.info.name =
        unique_name(sanitize_identifier(plan.info.header, "col_" + std::to_string(c + 1)), taken);
    taken.insert(plan.info.name);
    table.info.columns.push_back(plan.info);
    table.plans.push_back(std::move(plan));
  }
  table.info.row_count = static_cast<int64_t>(table.raw.rows.size());
  table.info.source_path = source;
  if (entry) {
    table.catalogue_key = entry->key();
    table.info.title = entry->title;
    table.info.description = entry->description;
    table.info.domain = entry->domain;
    table.info.sub_domain = entry->sub_domain;
    table.info.topic = entry->topic;
  }
  if (table.info.title.empty()) table.info.title = title_from_file(path);
  if (table.info.description.empty()) {
    std::string d = "Table " + table.info.title + " from " + path.filename().string() + " with " +
                    std::to_string(table.info.row_count) + " rows; columns: ";
    for (std::size_t c = 0; c < table.info.columns.size(); ++c) {
      const ColumnInfo& col = table.info.columns[c];
      d += (c ? ", " : "") + col.header + " (" + col.type +
           (col.unit.empty() ? "" : ", " + col.unit) + ")";
    }
    table.info.description = d + ".";
  }
  return table;
}

void bind_cell(Statement& insert, int index, std::string_view cell, const ColumnPlan& plan) {
  const std::string& type = plan.info.type;
  if (type == "TEXT") {
    if (cell.empty()) {
      insert.bind_null(index);
    } else {
      insert.bind(index, cell);
    }
    return;
  }
  if (is_missing(cell)) {
    insert.bind_null(index);
  } else if (type == "DATE") {
    insert.bind(index, *iso_date(*parse_date(cell), plan.day_first));
  } else if (plan.years_only) {
    insert.bind(index, static_cast<int64_t>(parse_date(cell)->year));
  } else {
    Number number = *parse_number(cell);
    if (type == "INTEGER") {
      insert.bind(index, number.integer);
    } else {
      insert.bind(index, number.value);
    }
  }
}

std::string fts_columns_text(const std::vector<ColumnInfo>& columns) {
  std::string text;
  for (const ColumnInfo& c : columns) text += c.name + " " + c.header + " " + c.unit + " ";
  return text;
}

std::string fts_samples_text(const std::vector<ColumnInfo>& columns) {
  std::string text;
  for (const ColumnInfo& c : columns) {
    for (const std::string& s : c.samples) text += s + " ";
  }
  return text;
}

void delete_catalogue_rows(sqlite3* db, const std::string& name) {
  Statement del(db, "DELETE FROM _hka_tables WHERE name = ?");
  del.bind(1, name);
  del.run();
  Statement del_fts(db, "DELETE FROM _hka_tables_fts WHERE name = ?");
  del_fts.bind(1, name);
  del_fts.run();
  Statement del_vector(db, "DELETE FROM _hka_table_vectors WHERE name = ?");
  del_vector.bind(1, name);
  del_vector.run();
}

void write_table(sqlite3* db, const PreparedTable& table, const std::string& hash, int64_t size,
                 int64_t mtime) {
  const TableInfo& info = table.info;
  std::string quoted = quote_identifier(info.name);
  exec(db, "DROP TABLE IF EXISTS " + quoted);
  std::string create = "CREATE TABLE " + quoted + " (";
  std::string insert_sql = "INSERT INTO " + quoted + " VALUES (";
  for (std::size_t c = 0; c < info.columns.size(); ++c) {
    const ColumnInfo& col = info.columns[c];
    // DATE columns hold ISO text; TEXT affinity keeps SQLite from coercing them.
    create += (c ? ", " : "") + quote_identifier(col.name) + " " +
              (col.type == "DATE" ? std::string("TEXT") : col.type);
    insert_sql += c ? ", ?" : "?";
  }
  exec(db, create + ")");
  Statement insert(db, insert_sql + ")");
  for (const auto& row : table.raw.rows) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      bind_cell(insert, static_cast<int>(c) + 1, row[c], table.plans[c]);
    }
    insert.run();
  }
  delete_catalogue_rows(db, info.name);
  Statement catalogue(db,
                      "INSERT INTO _hka_tables (name, title, description, domain, sub_domain, "
                      "topic, columns_json, row_count, source_path, source_size, source_mtime, "
                      "source_hash, catalogue_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  catalogue.bind(1, info.name);
  catalogue.bind(2, info.title);
  catalogue.bind(3, info.description);
  catalogue.bind(4, info.domain);
  catalogue.bind(5, info.sub_domain);
  catalogue.bind(6, info.topic);
  catalogue.bind(7, dump_json(columns_to_json(info.columns)));
  catalogue.bind(8, info.row_count);
  catalogue.bind(9, info.source_path);
  catalogue.bind(10, size);
  catalogue.bind(11, mtime);
  catalogue.bind(12, hash);
  catalogue.bind(13, table.catalogue_key);
  catalogue.run();
  Statement fts(db,
                "INSERT INTO _hka_tables_fts (name, title, description, columns, samples) "
                "VALUES (?, ?, ?, ?, ?)");
  fts.bind(1, info.name);
  fts.bind(2, info.title + " " + info.domain + " " + info.sub_domain + " " + info.topic);
  fts.bind(3, info.description);
  fts.bind(4, fts_columns_text(info.columns));
  fts.bind(5, fts_samples_text(info.columns));
  fts.run();
}

// Runs `body` inside one transaction, rolling back if it throws.
template <typename Body>
void in_transaction(sqlite3* db, Body&& body) {
  exec(db, "BEGIN IMMEDIATE");
  try {
    body();
    exec(db, "COMMIT");
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

// The source files under `root` the store reads (.csv, .tsv, .json, .xlsx), sorted; entries
// that cannot be read go into `failed` (source_files.h).
std::vector<fs::path> source_files(const fs::path& root, std::vector<std::string>& failed) {
  std::vector<fs::path> files;
  std::string root_error;
  const auto wanted = [](const fs::path& path) {
    const std::string ext = to_lower(path.extension().string());
    // "~$book.xlsx" is the lock file Excel keeps beside a workbook it has open.
    return (ext == ".csv" || ext == ".tsv" || ext == ".json" || ext == ".xlsx") &&
           !path.filename().string().starts_with("~$");
  };
  const auto skipped = [&](const fs::path&, const std::string& message) {
    failed.push_back(message);
  };
  if (!list_source_files(root, wanted, skipped, files, &root_error)) {
    throw TableStoreError(root.string() + ": cannot list the directory (" + root_error + ")");
  }
  return files;
}

// ---------------------------------------------------------------------------------------
// Embeddings (hybrid search)

// What a table's vector is computed from: its title, its columns with their units, then its
// description (last, so that an embedder truncating a long text loses the description's
// tail rather than the columns).
std::string embedding_text(const std::string& title, const std::string& description,
                           const std::vector<ColumnInfo>& columns) {
  std::string text = title + ".\nColumns: ";
  for (std::size_t c = 0; c < columns.size(); ++c) {
    text += (c ? ", " : "") + columns[c].header;
    if (!columns[c].unit.empty()) text += " (" + columns[c].unit + ")";
  }
  return text + ".\n" + description;
}

std::vector<std::vector<float>> embed_or_throw(const TextEmbedder& embedder,
                                               std::span<const std::string> texts) {
  try {
    return embed_texts(embedder, texts);
  } catch (const EmbeddingError& e) {
    throw TableStoreError(std::string("table store: ") + e.what());
  }
}

struct TableVectors {
  std::vector<std::string> names;
  std::vector<std::string> titles;
  std::vector<std::vector<float>> vectors;  // one per name
  int64_t computed = 0;                     // embedded by this call
};

// Every catalogued table with its vector of `embedder.model`. Tables without a usable one
// (new, ingested without an embedder, another model's, unreadable, or not of `dim`
// dimensions when given) are embedded and their vectors stored first.
TableVectors table_vectors(sqlite3* db, const TextEmbedder& embedder,
                           std::optional<std::size_t> dim) {
  TableVectors out;
  std::vector<std::size_t> missing;
  std::vector<std::string> texts;
  {
    Statement rows(db,
                   "SELECT t.name, t.title, t.description, t.columns_json, v.model, v.vector "
                   "FROM _hka_tables t LEFT JOIN _hka_table_vectors v ON v.name = t.name "
                   "ORDER BY t.name");
    while (rows.step()) {
      out.names.push_back(rows.text(0));
      out.titles.push_back(rows.text(1));
      std::optional<std::vector<float>> vector;
      if (rows.text(4) == embedder.model) vector = vector_from_blob(rows.blob(5));
      if (vector && (!dim || vector->size() == *dim)) {
        out.vectors.push_back(std::move(*vector));
        continue;
      }
      missing.push_back(out.vectors.size());
      out.vectors.emplace_back();
      texts.push_back(embedding_text(rows.text(1), rows.text(2), columns_from_json(rows.text(3))));
    }
  }
  if (missing.empty()) return out;
  std::vector<std::vector<float>> computed = embed_or_throw(embedder, texts);
  in_transaction(db, [&] {
    Statement put(db,
                  "INSERT OR REPLACE INTO _hka_table_vectors (name, model, vector) "
                  "VALUES (?, ?, ?)");
    for (std::size_t m = 0; m < missing.size(); ++m) {
      put.bind(1, out.names[missing[m]]);
      put.bind(2, embedder.model);
      put.bind_blob(3, vector_to_blob(computed[m]));
      put.run();
      out.vectors[missing[m]] = std::move(computed[m]);
    }
  });
  out.computed = static_cast<int64_t>(missing.size());
  return out;
}

std::vector<TableHit> bm25_search(sqlite3* db, std::string_view query, int k) {
  // Every run of letters and digits becomes a quoted term, so no FTS5 operator, column
  // filter or prefix syntax in model-written text can reach the parser.
  std::string match;
  std::string term;
  int terms = 0;
  for (std::size_t i = 0; i <= query.size() && terms < 32; ++i) {
    unsigned char c = i < query.size() ? static_cast<unsigned char>(query[i]) : ' ';
    if (std::isalnum(c) || c >= 0x80) {
      term += static_cast<char>(c);
    } else if (!term.empty()) {
      match += (terms++ ? " OR \"" : "\"") + term + "\"";
      term.clear();
    }
  }
  std::vector<TableHit> hits;
  if (match.empty() || k <= 0) return hits;
  Statement stmt(db,
                 "SELECT f.name, t.title, bm25(_hka_tables_fts, 3.0, 4.0, 1.0, 3.0, 2.0) AS rank "
                 "FROM _hka_tables_fts f JOIN _hka_tables t ON t.name = f.name "
                 "WHERE _hka_tables_fts MATCH ? ORDER BY rank LIMIT ?");
  stmt.bind(1, match);
  stmt.bind(2, static_cast<int64_t>(k));
  while (stmt.step()) hits.push_back({stmt.text(0), stmt.text(1), -stmt.real(2)});
  return hits;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// TableStore

TableStore::TableStore(sqlite3* db, fs::path db_path) : db_(db), db_path_(std::move(db_path)) {}

TableStore::TableStore(TableStore&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      db_path_(std::move(other.db_path_)),
      embedder_(std::move(other.embedder_)) {}

TableStore& TableStore::operator=(TableStore&& other) noexcept {
  if (this != &other) {
    sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
    db_path_ = std::move(other.db_path_);
    embedder_ = std::move(other.embedder_);
  }
  return *this;
}

TableStore::~TableStore() { sqlite3_close_v2(db_); }

TableStore TableStore::open(const fs::path& workspace_db) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(workspace_db.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                           nullptr);
  TableStore store(db, workspace_db);
  if (rc != SQLITE_OK) {
    throw TableStoreError(workspace_db.string() + ": cannot open workspace database: " +
                          (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
  }
  exec(db,
       "CREATE TABLE IF NOT EXISTS _hka_tables (name TEXT PRIMARY KEY, title TEXT, "
       "description TEXT, domain TEXT, sub_domain TEXT, topic TEXT, columns_json TEXT, "
       "row_count INTEGER, source_path TEXT UNIQUE, source_size INTEGER, source_mtime INTEGER, "
       "source_hash TEXT, catalogue_key TEXT)");
  exec(db,
       "CREATE VIRTUAL TABLE IF NOT EXISTS _hka_tables_fts USING fts5(name, title, description, "
       "columns, samples, tokenize = 'porter unicode61')");
  // One embedding per table for hybrid search, with the name of the model that made it.
  exec(db,
       "CREATE TABLE IF NOT EXISTS _hka_table_vectors (name TEXT PRIMARY KEY, model TEXT NOT NULL, "
       "vector BLOB NOT NULL)");
  return store;
}

TableIngestReport TableStore::ingest_dir(const fs::path& dir,
                                         const std::optional<fs::path>& catalogue_path) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw TableStoreError(dir.string() + ": not a directory" +
                          (ec ? " (" + ec.message() + ")" : ""));
  }
  std::vector<json> catalogue;
  if (catalogue_path) catalogue = load_catalogue(*catalogue_path);
  fs::path root = fs::weakly_canonical(dir);
  fs::path catalogue_abs = catalogue_path ? fs::weakly_canonical(*catalogue_path) : fs::path();
  fs::path db_abs = fs::weakly_canonical(db_path_);

  TableIngestReport report;
  std::vector<fs::path> sources;
  for (fs::path& path : source_files(root, report.failed)) {
    if (path != catalogue_abs && path != db_abs) sources.push_back(std::move(path));
  }

  struct Known {
    std::string name, hash, catalogue_key;
  };
  std::map<std::string, Known> known;  // by source path
  {
    Statement rows(db_, "SELECT source_path, name, source_hash, catalogue_key FROM _hka_tables");
    while (rows.step()) known[rows.text(0)] = {rows.text(1), rows.text(2), rows.text(3)};
  }

  std::set<std::string> seen;
  for (const fs::path& path : sources) {
    std::string source = path.string();
    seen.insert(source);
    try {
      std::string bytes = read_file(path);
      std::string hash = content_hash(bytes);
      std::string relative = normalize_path(path.lexically_relative(root).generic_string());
      std::optional<CatalogueEntry> entry = match_catalogue(catalogue, relative);
      auto old = known.find(source);
      if (old != known.end() && old->second.hash == hash &&
          old->second.catalogue_key == (entry ? entry->key() : std::string())) {
        report.unchanged.push_back(old->second.name);
        continue;
      }
      // XLSX is a zip archive whose XML parts declare their own encoding; text sources are
      // read as UTF-8, UTF-16 or Windows-1252 (encoding.h) and stored as UTF-8.
      std::string encoding(kUtf8);
      const std::string text =
          to_lower(path.extension().string()) == ".xlsx" ? bytes : to_utf8(bytes, &encoding);
      PreparedTable table = prepare_table(path, text, entry);
      if (old != known.end()) {
        table.info.name = old->second.name;
      } else {
        std::set<std::string> taken;
        Statement names(db_, "SELECT lower(name) FROM sqlite_master");
        while (names.step()) taken.insert(names.text(0));
        table.info.name = unique_name(sanitize_identifier(path.stem().string(), "table"), taken);
      }
      auto mtime = static_cast<int64_t>(fs::last_write_time(path).time_since_epoch().count());
      in_transaction(
          db_, [&] { write_table(db_, table, hash, static_cast<int64_t>(bytes.size()), mtime); });
      (old != known.end() ? report.replaced : report.added).push_back(table.info.name);
      if (encoding != kUtf8) report.converted.push_back(conversion_note(source, encoding));
    } catch (const TableStoreError& e) {
      report.failed.push_back(e.what());
    } catch (const fs::filesystem_error& e) {
      report.failed.push_back(source + ": " + e.code().message());
    }
  }

  std::string prefix = root.string() + "/";
  for (const auto& [source, entry] : known) {
    if (!source.starts_with(prefix) || seen.count(source)) continue;
    in_transaction(db_, [&] {
      exec(db_, "DROP TABLE IF EXISTS " + quote_identifier(entry.name));
      delete_catalogue_rows(db_, entry.name);
    });
    report.removed.push_back(entry.name);
  }
  if (embedder_) report.embedded = table_vectors(db_, embedder_, std::nullopt).computed;
  return report;
}

std::vector<TableHit> TableStore::search(std::string_view query, int k) const {
  if (!embedder_) return bm25_search(db_, query, k);
  if (k <= 0 || !has_search_terms(query)) return {};
  const std::vector<TableHit> lexical = bm25_search(db_, query, std::max(k, kFusionDepth));
  const std::string query_text(query);
  const std::vector<float> query_vector =
      embed_or_throw(embedder_, std::span<const std::string>(&query_text, 1)).front();
  const TableVectors stored = table_vectors(db_, embedder_, query_vector.size());
  std::vector<std::vector<std::string>> rankings(2);
  std::map<std::string, std::string> titles;
  for (const TableHit& h : lexical) {
    rankings[0].push_back(h.table);
    titles[h.table] = h.title;
  }
  for (const auto& [i, similarity] : rank_by_cosine(query_vector, stored.vectors, kFusionDepth)) {
    rankings[1].push_back(stored.names[i]);
    titles[stored.names[i]] = stored.titles[i];
  }
  std::vector<TableHit> hits;
  for (const FusedHit<std::string>& f : fuse_rankings(rankings)) {
    if (static_cast<int>(hits.size()) == k) break;
    hits.push_back({f.key, titles[f.key], f.score, f.ranks[0], f.ranks[1]});
  }
  return hits;
}

std::vector<TableInfo> TableStore::tables() const {
  std::vector<TableInfo> out;
  Statement stmt(db_,
                 "SELECT name, title, description, domain, sub_domain, topic, columns_json, "
                 "row_count, source_path FROM _hka_tables ORDER BY name");
  while (stmt.step()) {
    TableInfo info;
    info.name = stmt.text(0);
    info.title = stmt.text(1);
    info.description = stmt.text(2);
    info.domain = stmt.text(3);
    info.sub_domain = stmt.text(4);
    info.topic = stmt.text(5);
    info.columns = columns_from_json(stmt.text(6));
    info.row_count = stmt.int64(7);
    info.source_path = stmt.text(8);
    out.push_back(std::move(info));
  }
  return out;
}

std::string TableStore::describe(std::string_view table) const {
  std::vector<TableInfo> all = tables();
  auto it = std::find_if(all.begin(), all.end(),
                         [&](const TableInfo& t) { return to_lower(t.name) == to_lower(table); });
  if (it == all.end()) {
    std::string known;
    for (const TableInfo& t : all) known += (known.empty() ? "" : ", ") + t.name;
    throw TableStoreError("no table named \"" + std::string(table) +
                          "\"; known tables: " + (known.empty() ? "(none)" : known));
  }
  const TableInfo& t = *it;
  std::string out = "TABLE " + t.name + " -- " + t.title + " (" + std::to_string(t.row_count) +
                    " rows, from " + fs::path(t.source_path).filename().string() + ")\n";
  out += "  " + t.description + "\n";
  if (!t.domain.empty() || !t.sub_domain.empty() || !t.topic.empty()) {
    out += "  domain: " + t.domain + " / " + t.sub_domain + " / " + t.topic + "\n";
  }
  for (const ColumnInfo& c : t.columns) {
    out += "  " + c.name + " " + c.type;
    if (!c.unit.empty()) out += " [unit " + c.unit + "]";
    if (c.type == "DATE") out += " [ISO yyyy-mm-dd text]";
    out += " -- header " + dump_json(c.header);
    if (!c.samples.empty()) out += "; e.g. " + dump_json(c.samples);
    out += "\n";
  }
  return out;
}

}  // namespace kdr::hka
