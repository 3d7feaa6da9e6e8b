#include "hka/knowledge/xlsx.h"

#include <expat.h>
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "hka/calendar.h"
#include "hka/text.h"

namespace kdr::hka {
namespace {

// Limits against zip bombs: the largest part we inflate, and the most cells a sheet (or its
// table after placing cells by reference) may hold.
constexpr zip_uint64_t kMaxPartBytes = zip_uint64_t{64} << 20;
constexpr std::size_t kMaxCells = 1'000'000;
constexpr uint32_t kMaxRow = 1'048'576;  // Excel's grid: rows 1..1048576, columns A..XFD
constexpr uint32_t kMaxColumn = 16'384;

// A problem inside one part; read_xlsx prefixes the file and part names.
class PartError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using text::trim;

template <typename Int>
std::optional<Int> parse_int(std::string_view text) {
  Int value{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

// ---------------------------------------------------------------------------------------
// Zip container

class ZipArchive {
 public:
  ZipArchive(std::string_view bytes, std::string source) : source_(std::move(source)) {
    // libzip reads zero bytes as an empty archive; for a workbook that is no zip at all.
    if (bytes.empty()) throw TableStoreError(source_ + ": not a zip file");
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
    if (src) {
      archive_ = zip_open_from_source(src, ZIP_RDONLY, &error);
      if (!archive_) zip_source_free(src);
    }
    if (!archive_) {
      std::string why = zip_error_code_zip(&error) == ZIP_ER_NOZIP
                            ? std::string("not a zip file")
                            : std::string("damaged zip file: ") + zip_error_strerror(&error);
      zip_error_fini(&error);
      throw TableStoreError(source_ + ": " + why);
    }
    zip_error_fini(&error);
  }
  ~ZipArchive() { zip_discard(archive_); }
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  bool has(const std::string& name) const { return locate(name) >= 0; }

  // Inflates the part `name` chunk by chunk into `sink`; false when there is no such part.
  bool stream(const std::string& name, const std::function<void(std::string_view)>& sink) const {
    zip_int64_t index = locate(name);
    if (index < 0) return false;
    std::string where = source_ + ": " + name + ": ";
    zip_stat_t stat;
    zip_stat_init(&stat);
    if (zip_stat_index(archive_, static_cast<zip_uint64_t>(index), 0, &stat) != 0) {
      throw TableStoreError(where + "cannot read: " + zip_strerror(archive_));
    }
    // The declared size is checked first; the count below catches a part that lies about it.
    auto too_big = [&](zip_uint64_t size) {
      return TableStoreError(where + std::to_string(size) +
                             " bytes uncompressed, over the 64 MiB limit");
    };
    if ((stat.valid & ZIP_STAT_SIZE) && stat.size > kMaxPartBytes) throw too_big(stat.size);
    std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> file(
        zip_fopen_index(archive_, static_cast<zip_uint64_t>(index), 0), zip_fclose);
    if (!file) throw TableStoreError(where + "cannot read: " + zip_strerror(archive_));
    std::vector<char> buffer(64 * 1024);
    zip_uint64_t total = 0;
    while (true) {
      zip_int64_t n = zip_fread(file.get(), buffer.data(), buffer.size());
      if (n < 0) throw TableStoreError(where + "cannot read: " + zip_file_strerror(file.get()));
      if (n == 0) break;
      total += static_cast<zip_uint64_t>(n);
      if (total > kMaxPartBytes) throw too_big(total);
      sink(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    }
    return true;
  }

  const std::string& source() const { return source_; }

 private:
  // Writers disagree on the case of part names ("sharedStrings.xml"), so lookups ignore it.
  zip_int64_t locate(const std::string& name) const {
    return zip_name_locate(archive_, name.c_str(), ZIP_FL_NOCASE);
  }

  zip_t* archive_ = nullptr;
  std::string source_;
};

// ---------------------------------------------------------------------------------------
// Streaming XML

// Receives one part's events. Names arrive without their namespace ("c", not "x:c"), as
// writers differ in prefixes; attribute arrays are expat's (name, value) pairs.
class XmlHandler {
 public:
  virtual ~XmlHandler() = default;
  virtual void start(std::string_view name, const XML_Char** attrs) = 0;
  virtual void end(std::string_view /*name*/) {}
  virtual void text(std::string_view /*text*/) {}
};

constexpr char kNamespaceSeparator = '|';

std::string_view local_name(std::string_view name) {
  std::size_t bar = name.rfind(kNamespaceSeparator);
  return bar == std::string_view::npos ? name : name.substr(bar + 1);
}

// The value of attribute `name`, or nullptr. `namespaced` asks for a prefixed attribute
// (r:id) rather than a plain one (id).
const char* attribute(const XML_Char** attrs, std::string_view name, bool namespaced = false) {
  for (const XML_Char** a = attrs; *a; a += 2) {
    std::string_view full = a[0];
    bool has_namespace = full.find(kNamespaceSeparator) != std::string_view::npos;
    if (has_namespace == namespaced && local_name(full) == name) return a[1];
  }
  return nullptr;
}

struct ParseState {
  XmlHandler* handler = nullptr;
  XML_Parser parser = nullptr;
  std::exception_ptr error;       // thrown by the handler; expat is C and must not unwind
  const char* refusal = nullptr;  // why the parser was stopped on purpose
};

void stop(ParseState* state) {
  if (!state->error) state->error = std::current_exception();
  XML_StopParser(state->parser, XML_FALSE);
}

void XMLCALL on_start(void* data, const XML_Char* name, const XML_Char** attrs) {
  auto* state = static_cast<ParseState*>(data);
  if (state->error || state->refusal) return;
  try {
    state->handler->start(local_name(name), attrs);
  } catch (...) {
    stop(state);
  }
}

void XMLCALL on_end(void* data, const XML_Char* name) {
  auto* state = static_cast<ParseState*>(data);
  if (state->error || state->refusal) return;
  try {
    state->handler->end(local_name(name));
  } catch (...) {
    stop(state);
  }
}

void XMLCALL on_text(void* data, const XML_Char* text, int len) {
  auto* state = static_cast<ParseState*>(data);
  if (state->error || state->refusal) return;
  try {
    state->handler->text(std::string_view(text, static_cast<std::size_t>(len)));
  } catch (...) {
    stop(state);
  }
}

// No part of an XLSX file needs a DTD; refusing one rules out entity expansion bombs.
void XMLCALL on_doctype(void* data, const XML_Char*, const XML_Char*, const XML_Char*, int) {
  auto* state = static_cast<ParseState*>(data);
  state->refusal = "DOCTYPE is not allowed";
  XML_StopParser(state->parser, XML_FALSE);
}

void XMLCALL on_entity(void* data, const XML_Char*, int, const XML_Char*, int, const XML_Char*,
                       const XML_Char*, const XML_Char*, const XML_Char*) {
  auto* state = static_cast<ParseState*>(data);
  state->refusal = "entity declarations are not allowed";
  XML_StopParser(state->parser, XML_FALSE);
}

// Streams part `name` through `handler`; false when the archive has no such part.
bool parse_part(const ZipArchive& zip, const std::string& name, XmlHandler& handler) {
  std::unique_ptr<XML_ParserStruct, void (*)(XML_Parser)> parser(
      XML_ParserCreateNS(nullptr, kNamespaceSeparator), XML_ParserFree);
  if (!parser) throw std::bad_alloc();
  ParseState state;
  state.handler = &handler;
  state.parser = parser.get();
  XML_SetUserData(parser.get(), &state);
  XML_SetElementHandler(parser.get(), on_start, on_end);
  XML_SetCharacterDataHandler(parser.get(), on_text);
  XML_SetStartDoctypeDeclHandler(parser.get(), on_doctype);
  XML_SetEntityDeclHandler(parser.get(), on_entity);
  std::string where = zip.source() + ": " + name + ": ";
  auto fail = [&]() {
    if (state.error) {
      try {
        std::rethrow_exception(state.error);
      } catch (const PartError& e) {
        throw TableStoreError(where + e.what());
      }
    }
    throw TableStoreError(
        where + "XML error at line " + std::to_string(XML_GetCurrentLineNumber(parser.get())) +
        ": " + (state.refusal ? state.refusal : XML_ErrorString(XML_GetErrorCode(parser.get()))));
  };
  bool found = zip.stream(name, [&](std::string_view chunk) {
    if (XML_Parse(parser.get(), chunk.data(), static_cast<int>(chunk.size()), XML_FALSE) !=
        XML_STATUS_OK) {
      fail();
    }
  });
  if (!found) return false;
  if (XML_Parse(parser.get(), "", 0, XML_TRUE) != XML_STATUS_OK) fail();
  return true;
}

// Strings may hold _xHHHH_ escapes for characters XML cannot carry (control characters).
std::string decode_escapes(std::string_view text) {
  if (text.find("_x") == std::string_view::npos) return std::string(text);
  auto is_hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == '_' && i + 6 < text.size() && text[i + 1] == 'x' && text[i + 6] == '_' &&
        std::all_of(text.begin() + static_cast<std::ptrdiff_t>(i + 2),
                    text.begin() + static_cast<std::ptrdiff_t>(i + 6), is_hex)) {
      unsigned code = 0;
      std::from_chars(text.data() + i + 2, text.data() + i + 6, code, 16);
      if (code >= 0xD800 && code <= 0xDFFF) code = 0xFFFD;  // a lone surrogate
      if (code < 0x80) {
        if (code != 0) out += static_cast<char>(code);
      } else if (code < 0x800) {
        out += static_cast<char>(0xC0 | (code >> 6));
        out += static_cast<char>(0x80 | (code & 0x3F));
      } else {
        out += static_cast<char>(0xE0 | (code >> 12));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
      }
      i += 7;
    } else {
      out += text[i++];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Package structure: relationships, workbook, styles, shared strings

struct Relationship {
  std::string id, type, target;
  bool external = false;
};

class RelationshipsReader : public XmlHandler {
 public:
  void start(std::string_view name, const XML_Char** attrs) override {
    if (name != "Relationship") return;
    const char* id = attribute(attrs, "Id");
    const char* type = attribute(attrs, "Type");
    const char* target = attribute(attrs, "Target");
    const char* mode = attribute(attrs, "TargetMode");
    if (!id || !type || !target) return;
    relationships.push_back({id, type, target, mode && std::string_view(mode) == "External"});
  }

  // The first internal relationship whose type ends in `/kind`.
  const Relationship* find_type(std::string_view kind) const {
    for (const Relationship& r : relationships) {
      std::string_view type = r.type;
      if (!r.external && type.ends_with(kind) && type.size() > kind.size() &&
          type[type.size() - kind.size() - 1] == '/') {
        return &r;
      }
    }
    return nullptr;
  }

  std::vector<Relationship> relationships;
};

class WorkbookReader : public XmlHandler {
 public:
  void start(std::string_view name, const XML_Char** attrs) override {
    if (name == "workbookPr") {
      const char* flag = attribute(attrs, "date1904");
      date1904 = flag && (std::string_view(flag) == "1" || std::string_view(flag) == "true");
    } else if (name == "sheet") {
      const char* id = attribute(attrs, "id", /*namespaced=*/true);
      sheet_ids.push_back(id ? id : "");
    }
  }

  bool date1904 = false;
  std::vector<std::string> sheet_ids;  // relationship ids in workbook (tab) order
};

// How a number in a cell is shown, reduced to what changes its text.
enum class NumberKind { kNumber, kDate, kTime, kElapsed };

// Built-in formats (ECMA-376 18.8.30): 14-17 and 22 are dates, 18-21, 45 and 47 times of
// day, 46 elapsed time ([h]:mm:ss).
NumberKind builtin_kind(int id) {
  if ((id >= 14 && id <= 17) || id == 22) return NumberKind::kDate;
  if ((id >= 18 && id <= 21) || id == 45 || id == 47) return NumberKind::kTime;
  if (id == 46) return NumberKind::kElapsed;
  return NumberKind::kNumber;
}

// A custom format code is a date when it holds y, m, d, h or s outside quoted text,
// escapes and brackets; "[h]"-style brackets mark elapsed time instead.
NumberKind custom_kind(std::string_view code) {
  bool year_or_day = false, month = false, time = false, elapsed = false;
  for (std::size_t i = 0; i < code.size(); ++i) {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(code[i])));
    if (c == '"') {
      std::size_t close = code.find('"', i + 1);
      if (close == std::string_view::npos) break;
      i = close;
    } else if (c == '\\' || c == '_' || c == '*') {
      ++i;  // the next character is literal, padding or fill
    } else if (c == '[') {
      std::size_t close = code.find(']', i + 1);
      if (close == std::string_view::npos) break;
      std::string_view inner = code.substr(i + 1, close - i - 1);
      elapsed = elapsed || (!inner.empty() && inner.find_first_not_of("hmsHMS") == inner.npos);
      i = close;
    } else if (c == 'y' || c == 'd') {
      year_or_day = true;
    } else if (c == 'm') {
      month = true;
    } else if (c == 'h' || c == 's') {
      time = true;
    }
  }
  if (elapsed) return NumberKind::kElapsed;
  if (year_or_day) return NumberKind::kDate;
  if (time) return NumberKind::kTime;  // "m" beside h or s is minutes
  return month ? NumberKind::kDate : NumberKind::kNumber;
}

class StylesReader : public XmlHandler {
 public:
  void start(std::string_view name, const XML_Char** attrs) override {
    if (name == "numFmt") {
      const char* id = attribute(attrs, "numFmtId");
      const char* code = attribute(attrs, "formatCode");
      std::optional<int> number = id ? parse_int<int>(id) : std::nullopt;
      if (number && code) custom_[*number] = code;
    } else if (name == "cellXfs") {
      in_cell_formats_ = true;
    } else if (name == "xf" && in_cell_formats_) {
      const char* id = attribute(attrs, "numFmtId");
      format_ids_.push_back(id ? parse_int<int>(id).value_or(0) : 0);
    }
  }
  void end(std::string_view name) override {
    if (name == "cellXfs") in_cell_formats_ = false;
  }

  // One kind per cell style (the s attribute of a cell indexes this).
  std::vector<NumberKind> kinds() const {
    std::vector<NumberKind> out;
    for (int id : format_ids_) {
      auto custom = custom_.find(id);  // a custom format may redefine a built-in id
      out.push_back(custom != custom_.end() ? custom_kind(custom->second) : builtin_kind(id));
    }
    return out;
  }

 private:
  std::map<int, std::string> custom_;
  std::vector<int> format_ids_;
  bool in_cell_formats_ = false;
};

// Text runs of a string item (<si> or <is>): plain <t>, rich runs <r><t>, but not the
// phonetic guide <rPh><t> shown above East Asian text.
class RunText {
 public:
  void start(std::string_view name) {
    if (name == "rPh") ++phonetic_depth_;
    if (name == "t" && phonetic_depth_ == 0) in_text_ = true;
  }
  void end(std::string_view name) {
    if (name == "rPh" && phonetic_depth_ > 0) --phonetic_depth_;
    if (name == "t") in_text_ = false;
  }
  void text(std::string_view text) {
    if (in_text_) text_ += text;
  }
  std::string take() {
    std::string out = decode_escapes(text_);
    text_.clear();
    in_text_ = false;
    phonetic_depth_ = 0;
    return out;
  }

 private:
  std::string text_;
  bool in_text_ = false;
  int phonetic_depth_ = 0;
};

class SharedStringsReader : public XmlHandler {
 public:
  void start(std::string_view name, const XML_Char**) override {
    if (name == "si") {
      in_item_ = true;
      run_.take();
    } else if (in_item_) {
      run_.start(name);
    }
  }
  void end(std::string_view name) override {
    if (!in_item_) return;
    if (name != "si") {
      run_.end(name);
      return;
    }
    in_item_ = false;
    strings.push_back(run_.take());
    // A cell refers to at most one string, so more strings than cells is never needed.
    if (strings.size() > kMaxCells) {
      throw PartError("more than " + std::to_string(kMaxCells) + " shared strings");
    }
  }
  void text(std::string_view text) override {
    if (in_item_) run_.text(text);
  }

  std::vector<std::string> strings;

 private:
  RunText run_;
  bool in_item_ = false;
};

// ---------------------------------------------------------------------------------------
// Cell values

// The text of a serial date-time shown with a date or time format, or nullopt when it is out
// of Excel's range (negative, or past 9999-12-31) and stays a number.
std::optional<std::string> serial_text(double serial, NumberKind kind, bool date1904) {
  if (!(serial >= 0) || serial >= 2958466) return std::nullopt;
  const int64_t seconds = std::llround(serial * 86400);  // Excel rounds to the second
  const int64_t days = seconds / 86400;
  const int64_t second_of_day = seconds % 86400;
  char time[40];
  std::snprintf(time, sizeof(time), "%02d:%02d:%02d", static_cast<int>(second_of_day / 3600),
                static_cast<int>(second_of_day / 60 % 60), static_cast<int>(second_of_day % 60));
  if (kind == NumberKind::kTime) return std::string(time);
  if (kind == NumberKind::kElapsed) {
    char elapsed[40];
    std::snprintf(elapsed, sizeof(elapsed), "%02lld:%02d:%02d",
                  static_cast<long long>(seconds / 3600), static_cast<int>(seconds / 60 % 60),
                  static_cast<int>(seconds % 60));
    return std::string(elapsed);
  }
  std::string date;
  if (!date1904 && days == 60) {
    date = "1900-02-29";  // Excel's 1900 leap-year bug: the day exists in Excel only
  } else if (!date1904 && days == 0) {
    date = "1900-01-00";  // as Excel shows serial 0
  } else {
    // Serial 1 is 1900-01-01, and from serial 61 on one day is skipped for the phantom
    // 1900-02-29; in the 1904 system serial 0 is 1904-01-01.
    int64_t unix_days = date1904 ? days - 24107 : days < 60 ? days - 25568 : days - 25569;
    int64_t year = 0;
    int month = 0, day = 0;
    const calendar::CivilDate civil = calendar::civil_from_days(unix_days);
    year = civil.y;
    month = civil.m;
    day = civil.d;
    if (year > 9999) return std::nullopt;
    char buffer[40];
    std::snprintf(buffer, sizeof(buffer), "%04lld-%02d-%02d", static_cast<long long>(year), month,
                  day);
    date = buffer;
  }
  if (second_of_day != 0) date += std::string(" ") + time;
  return date;
}

// Up to 15 significant digits (Excel's precision), no trailing zeros, integers without ".0".
std::string number_text(double value) {
  char buffer[64];
  auto result =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::general, 15);
  std::string text(buffer, result.ptr);
  double rounded = 0;
  std::from_chars(text.data(), text.data() + text.size(), rounded);
  if (rounded == 0) return "0";
  if (std::fabs(rounded) < 9007199254740992.0 && rounded == std::trunc(rounded)) {
    return std::to_string(static_cast<int64_t>(rounded));
  }
  return text;
}

// An ISO 8601 date cell (t="d", written by a few tools): "2024-01-15T13:45:30Z" reads as
// "2024-01-15 13:45:30", and a midnight time is dropped.
std::string iso_cell_text(std::string_view value) {
  if (value.size() < 10) return std::string(value);
  std::string date(value.substr(0, 10));
  if (value.size() < 19 || value[10] != 'T') return date;
  std::string time(value.substr(11, 8));
  return time == "00:00:00" ? date : date + " " + time;
}

std::string column_letters(uint32_t column) {
  std::string letters;
  for (; column > 0; column = (column - 1) / 26) {
    letters.insert(letters.begin(), static_cast<char>('A' + (column - 1) % 26));
  }
  return letters;
}

std::string cell_name(uint32_t row, uint32_t column) {
  return column_letters(column) + std::to_string(row);
}

uint32_t parse_row(std::string_view text) {
  std::optional<uint32_t> row = parse_int<uint32_t>(trim(text));
  if (!row || *row < 1 || *row > kMaxRow) {
    throw PartError("bad row number \"" + std::string(text) + "\"");
  }
  return *row;
}

// "C7" -> row 7, column 3.
void parse_reference(std::string_view ref, uint32_t& row, uint32_t& column) {
  std::size_t i = 0;
  column = 0;
  while (i < ref.size() && i < 3 && ref[i] >= 'A' && ref[i] <= 'Z') {
    column = column * 26 + static_cast<uint32_t>(ref[i] - 'A' + 1);
    ++i;
  }
  std::optional<uint32_t> number = parse_int<uint32_t>(ref.substr(i));
  if (i == 0 || column > kMaxColumn || !number || *number < 1 || *number > kMaxRow) {
    throw PartError("bad cell reference \"" + std::string(ref) + "\"");
  }
  row = *number;
}

struct Cell {
  uint32_t row = 0;
  uint32_t column = 0;
  std::string text;
};

class SheetReader : public XmlHandler {
 public:
  SheetReader(const std::vector<std::string>& strings, std::vector<NumberKind> kinds, bool date1904)
      : strings_(strings), kinds_(std::move(kinds)), date1904_(date1904) {}

  void start(std::string_view name, const XML_Char** attrs) override {
    if (name == "sheetData") {
      in_data_ = true;
    } else if (!in_data_) {
      return;
    } else if (name == "row") {
      const char* r = attribute(attrs, "r");
      row_ = r ? parse_row(r) : row_ + 1;
      if (row_ > kMaxRow) throw PartError("more than " + std::to_string(kMaxRow) + " rows");
      column_ = 0;
    } else if (name == "c") {
      in_cell_ = true;
      cell_row_ = std::max<uint32_t>(row_, 1);
      const char* r = attribute(attrs, "r");
      if (r) {
        parse_reference(r, cell_row_, column_);
      } else if (++column_ > kMaxColumn) {
        throw PartError("row " + std::to_string(cell_row_) + " has more than " +
                        std::to_string(kMaxColumn) + " columns");
      }
      const char* type = attribute(attrs, "t");
      type_ = type ? type : "";
      const char* style = attribute(attrs, "s");
      style_ = style ? parse_int<std::size_t>(style).value_or(0) : 0;
      value_.clear();
      in_value_ = in_inline_ = false;
      inline_.take();
    } else if (in_cell_) {
      if (name == "v") {
        in_value_ = true;
      } else if (name == "is") {
        in_inline_ = true;
      } else if (in_inline_) {
        inline_.start(name);
      }
    }
  }

  void end(std::string_view name) override {
    if (name == "sheetData") in_data_ = false;
    if (!in_cell_) return;
    if (name == "v") {
      in_value_ = false;
    } else if (name == "is") {
      in_inline_ = false;
    } else if (name == "c") {
      in_cell_ = false;
      std::string text = cell_text();
      if (text.empty()) return;
      cells_.push_back({cell_row_, column_, std::move(text)});
      if (cells_.size() > kMaxCells) {
        throw PartError("more than " + std::to_string(kMaxCells) + " cells");
      }
    } else if (in_inline_) {
      inline_.end(name);
    }
  }

  void text(std::string_view text) override {
    if (in_value_) {
      value_ += text;
    } else if (in_inline_) {
      inline_.text(text);
    }
  }

  std::vector<Cell> take_cells() { return std::move(cells_); }

 private:
  std::string cell_text() {
    std::string_view value = trim(value_);
    if (type_ == "s") {
      std::optional<std::size_t> index = parse_int<std::size_t>(value);
      if (!index || *index >= strings_.size()) {
        throw PartError("cell " + cell_name(cell_row_, column_) + " refers to shared string \"" +
                        std::string(value) + "\" of " + std::to_string(strings_.size()));
      }
      return strings_[*index];
    }
    if (type_ == "inlineStr") return inline_.take();
    if (type_ == "str") return decode_escapes(value_);  // a formula's text result
    if (type_ == "b") return value == "1" ? "TRUE" : value == "0" ? "FALSE" : std::string(value);
    if (type_ == "e") return "";  // #N/A, #DIV/0!, ...: no value
    if (type_ == "d") return iso_cell_text(value);
    if (value.empty()) return "";
    double number = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
    if (ec != std::errc() || ptr != value.data() + value.size() || !std::isfinite(number)) {
      return std::string(value);
    }
    NumberKind kind = style_ < kinds_.size() ? kinds_[style_] : NumberKind::kNumber;
    if (kind != NumberKind::kNumber) {
      if (std::optional<std::string> date = serial_text(number, kind, date1904_)) return *date;
    }
    return number_text(number);
  }

  const std::vector<std::string>& strings_;
  const std::vector<NumberKind> kinds_;
  const bool date1904_;
  std::vector<Cell> cells_;
  bool in_data_ = false, in_cell_ = false, in_value_ = false, in_inline_ = false;
  uint32_t row_ = 0, column_ = 0, cell_row_ = 0;
  std::string type_, value_;
  std::size_t style_ = 0;
  RunText inline_;
};

// Places cells by reference, drops rows and columns that are empty everywhere, and takes
// the first row as the header. `where` prefixes errors.
RawTable to_table(std::vector<Cell> cells, const std::string& where) {
  std::stable_sort(cells.begin(), cells.end(), [](const Cell& a, const Cell& b) {
    return a.row != b.row ? a.row < b.row : a.column < b.column;
  });
  std::vector<uint32_t> columns;
  std::size_t row_count = 0;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    columns.push_back(cells[i].column);
    if (i == 0 || cells[i].row != cells[i - 1].row) ++row_count;
  }
  std::sort(columns.begin(), columns.end());
  columns.erase(std::unique(columns.begin(), columns.end()), columns.end());
  if (row_count == 0) throw TableStoreError(where + ": empty sheet, no header row");
  // A few cells far apart would otherwise become a huge grid of empty strings.
  if (row_count * columns.size() > kMaxCells) {
    throw TableStoreError(where + ": the table would have " + std::to_string(row_count) +
                          " rows of " + std::to_string(columns.size()) +
                          " columns, over the limit of " + std::to_string(kMaxCells) + " cells");
  }
  std::vector<std::vector<std::string>> grid;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i == 0 || cells[i].row != cells[i - 1].row) grid.emplace_back(columns.size());
    auto column = std::lower_bound(columns.begin(), columns.end(), cells[i].column);
    grid.back()[static_cast<std::size_t>(column - columns.begin())] = std::move(cells[i].text);
  }
  RawTable table;
  table.header = std::move(grid.front());
  for (std::size_t c = 0; c < table.header.size(); ++c) {
    if (table.header[c].empty()) table.header[c] = "column_" + std::to_string(c + 1);
  }
  table.rows.assign(std::make_move_iterator(grid.begin() + 1), std::make_move_iterator(grid.end()));
  return table;
}

// ---------------------------------------------------------------------------------------
// Locating the parts

std::string directory_of(const std::string& part) {
  std::size_t slash = part.rfind('/');
  return slash == std::string::npos ? std::string() : part.substr(0, slash + 1);
}

// A relationship target resolved against the folder of the part that holds it.
std::string resolve_target(const std::string& directory, std::string_view target) {
  std::string path =
      target.starts_with('/') ? std::string(target.substr(1)) : directory + std::string(target);
  std::vector<std::string> segments;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    std::string segment = path.substr(start, slash - start);
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!segment.empty() && segment != ".") {
      segments.push_back(std::move(segment));
    }
    start = slash + 1;
  }
  std::string out;
  for (const std::string& s : segments) out += (out.empty() ? "" : "/") + s;
  return out;
}

// "xl/workbook.xml" -> "xl/_rels/workbook.xml.rels"
std::string relationships_of(const std::string& part) {
  std::string directory = directory_of(part);
  return directory + "_rels/" + part.substr(directory.size()) + ".rels";
}

}  // namespace

RawTable read_xlsx(std::string_view bytes, const std::string& source) {
  ZipArchive zip(bytes, source);

  std::string workbook_part = "xl/workbook.xml";
  RelationshipsReader package;
  if (parse_part(zip, "_rels/.rels", package)) {
    if (const Relationship* r = package.find_type("officeDocument")) {
      workbook_part = resolve_target("", r->target);
    }
  }
  const std::string directory = directory_of(workbook_part);
  WorkbookReader workbook;
  RelationshipsReader links;
  if (parse_part(zip, workbook_part, workbook)) {
    parse_part(zip, relationships_of(workbook_part), links);
  }

  // The first worksheet in tab order; chart sheets and dialog sheets hold no cells.
  std::string sheet_part;
  for (const std::string& id : workbook.sheet_ids) {
    for (const Relationship& r : links.relationships) {
      if (r.id == id && !r.external && r.type.ends_with("/worksheet")) {
        sheet_part = resolve_target(directory, r.target);
        break;
      }
    }
    if (!sheet_part.empty()) break;
  }
  if (sheet_part.empty()) {
    if (!zip.has("xl/worksheets/sheet1.xml")) throw TableStoreError(source + ": no worksheet");
    sheet_part = "xl/worksheets/sheet1.xml";
  }

  const Relationship* styles_link = links.find_type("styles");
  StylesReader styles;
  parse_part(
      zip, styles_link ? resolve_target(directory, styles_link->target) : directory + "styles.xml",
      styles);
  const Relationship* strings_link = links.find_type("sharedStrings");
  SharedStringsReader strings;
  parse_part(zip,
             strings_link ? resolve_target(directory, strings_link->target)
                          : directory + "sharedStrings.xml",
             strings);

  SheetReader sheet(strings.strings, styles.kinds(), workbook.date1904);
  if (!parse_part(zip, sheet_part, sheet)) {
    throw TableStoreError(source + ": " + sheet_part + ": worksheet part is missing");
  }
  return to_table(sheet.take_cells(), source + ": " + sheet_part);
}

}  // namespace kdr::hka
