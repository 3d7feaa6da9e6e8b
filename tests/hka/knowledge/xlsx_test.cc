// The XLSX reader, checked against workbooks written by libxlsxwriter (an independent
// implementation) and against packages built part by part for what libxlsxwriter never
// writes: the 1904 date system, inline and phonetic strings, error cells, hostile zips.
#include "hka/knowledge/xlsx.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <xlsxwriter.h>
#include <zip.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../../base/seed.h"
#include "hka/knowledge/sql_guard.h"
#include "hka/knowledge/table_store.h"

namespace kdr::hka {
namespace {

namespace fs = std::filesystem;
using Rows = std::vector<std::vector<std::string>>;
using Parts = std::vector<std::pair<std::string, std::string>>;

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const TableStoreError& e) {
    return e.what();
  }
  return "(no error)";
}

class XlsxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "kdr_xlsx_XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  fs::path path(const std::string& name) const { return root_ / name; }

  static std::string read_bytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void write_bytes(const fs::path& file, const std::string& bytes) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << bytes;
  }

  // Writes a workbook with libxlsxwriter; `fill` adds sheets and cells.
  std::string write_book(const std::string& name, const std::function<void(lxw_workbook*)>& fill,
                         bool constant_memory = false) {
    fs::path file = path(name);
    lxw_workbook_options options = {};
    options.constant_memory = constant_memory ? LXW_TRUE : LXW_FALSE;
    lxw_workbook* book = workbook_new_opt(file.c_str(), &options);
    if (!book) throw std::runtime_error("workbook_new_opt failed");
    fill(book);
    if (workbook_close(book) != LXW_NO_ERROR) throw std::runtime_error("workbook_close failed");
    return read_bytes(file);
  }

  // Writes a zip of `parts` with libzip and returns its bytes.
  std::string write_zip(const std::string& name, const Parts& parts) {
    fs::path file = path(name);
    int error = 0;
    zip_t* zip = zip_open(file.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
    if (!zip) throw std::runtime_error("zip_open failed");
    for (const auto& [part, content] : parts) {
      zip_source_t* source = zip_source_buffer(zip, content.data(), content.size(), 0);
      if (!source || zip_file_add(zip, part.c_str(), source, ZIP_FL_OVERWRITE) < 0) {
        zip_source_free(source);
        zip_discard(zip);
        throw std::runtime_error("zip_file_add failed");
      }
    }
    if (zip_close(zip) != 0) throw std::runtime_error("zip_close failed");
    return read_bytes(file);
  }

  fs::path root_;
};

RawTable read(const std::string& bytes, const std::string& source = "book.xlsx") {
  return read_xlsx(bytes, source);
}

// ---------------------------------------------------------------------------------------
// Hand-built packages

constexpr const char* kRelationshipNs =
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships";

std::string relationship(const std::string& id, const std::string& type,
                         const std::string& target) {
  return "<Relationship Id=\"" + id + "\" Type=\"" + kRelationshipNs + "/" + type + "\" Target=\"" +
         target + "\"/>";
}

std::string relationships(const std::string& body) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
         "<Relationships "
         "xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">" +
         body + "</Relationships>";
}

std::string worksheet(const std::string& sheet_data) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
         "<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">"
         "<sheetData>" +
         sheet_data + "</sheetData></worksheet>";
}

// Cell styles of the hand-built books: 0 General, 1 built-in date (14), 2 "hh:mm",
// 3 built-in elapsed time (46), 4 '0.0 "days"' (letters only in quotes), 5 a date behind a
// locale tag, 6 built-in date-time (22).
const char* kStyles =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
    "<styleSheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">"
    "<numFmts count=\"3\"><numFmt numFmtId=\"164\" formatCode=\"hh:mm\"/>"
    "<numFmt numFmtId=\"165\" formatCode=\"0.0&quot; days&quot;\"/>"
    "<numFmt numFmtId=\"166\" formatCode=\"[$-409]d\\ mmm\\ yyyy\"/></numFmts>"
    "<cellStyleXfs count=\"1\"><xf numFmtId=\"14\"/></cellStyleXfs>"
    "<cellXfs count=\"7\"><xf numFmtId=\"0\"/><xf numFmtId=\"14\"/><xf numFmtId=\"164\"/>"
    "<xf numFmtId=\"46\"/><xf numFmtId=\"165\"/><xf numFmtId=\"166\"/><xf numFmtId=\"22\"/>"
    "</cellXfs></styleSheet>";

// A complete package around `sheet_data`, with optional shared strings.
Parts package(const std::string& sheet_data, const std::string& shared_strings = "",
              bool date1904 = false) {
  std::string links = relationship("rId1", "worksheet", "worksheets/sheet1.xml") +
                      relationship("rId2", "styles", "styles.xml");
  Parts parts = {
      {"_rels/.rels", relationships(relationship("rId1", "officeDocument", "xl/workbook.xml"))},
      {"xl/workbook.xml",
       std::string("<workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/"
                   "main\" xmlns:r=\"") +
           kRelationshipNs + "\"><workbookPr" + (date1904 ? " date1904=\"1\"" : "") +
           "/><sheets><sheet name=\"S\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>"},
      {"xl/styles.xml", kStyles},
      {"xl/worksheets/sheet1.xml", worksheet(sheet_data)}};
  if (!shared_strings.empty()) {
    links += relationship("rId3", "sharedStrings", "sharedStrings.xml");
    parts.push_back({"xl/sharedStrings.xml",
                     "<sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">" +
                         shared_strings + "</sst>"});
  }
  parts.push_back({"xl/_rels/workbook.xml.rels", relationships(links)});
  return parts;
}

// One header cell "v" over cells of `values` (serials) in style `style`.
std::string numbers_column(const std::vector<std::string>& values, int style) {
  std::string xml = "<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>v</t></is></c></row>";
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::string r = std::to_string(i + 2);
    xml += "<row r=\"" + r + "\"><c r=\"A" + r + "\" s=\"" + std::to_string(style) + "\"><v>" +
           values[i] + "</v></c></row>";
  }
  return xml;
}

std::vector<std::string> column(const RawTable& table, std::size_t c = 0) {
  std::vector<std::string> out;
  for (const auto& row : table.rows) out.push_back(row.at(c));
  return out;
}

TEST_F(XlsxTest, DateSerialsHonourExcels1900LeapYearBug) {
  // Excel counts 1900-02-29 (serial 60), so dates before it are one serial lower.
  RawTable t = read(write_zip(
      "d.xlsx",
      package(numbers_column({"1", "59", "60", "61", "45000", "45000.5", "2958465"}, 1))));
  EXPECT_EQ(column(t),
            (std::vector<std::string>{"1900-01-01", "1900-02-28", "1900-02-29", "1900-03-01",
                                      "2023-03-15", "2023-03-15 12:00:00", "9999-12-31"}));
}

TEST_F(XlsxTest, Date1904SystemStartsAt1904) {
  RawTable t = read(write_zip(
      "d.xlsx", package(numbers_column({"0", "43538", "43538.25"}, 1), "", /*date1904=*/true)));
  EXPECT_EQ(column(t),
            (std::vector<std::string>{"1904-01-01", "2023-03-15", "2023-03-15 06:00:00"}));
}

TEST_F(XlsxTest, TimeAndElapsedFormatsAndOutOfRangeSerials) {
  EXPECT_EQ(column(read(write_zip("t.xlsx", package(numbers_column({"0.75", "0.0104166667"}, 2))))),
            (std::vector<std::string>{"18:00:00", "00:15:00"}));
  EXPECT_EQ(column(read(write_zip("e.xlsx", package(numbers_column({"1.5"}, 3))))),
            (std::vector<std::string>{"36:00:00"}));
  // A date format on a number outside Excel's calendar leaves the number.
  EXPECT_EQ(column(read(write_zip("n.xlsx", package(numbers_column({"-1", "3000000"}, 1))))),
            (std::vector<std::string>{"-1", "3000000"}));
}

TEST_F(XlsxTest, CustomFormatsAreDatesOnlyForLettersOutsideQuotes) {
  EXPECT_EQ(column(read(write_zip("q.xlsx", package(numbers_column({"2.5"}, 4))))),
            (std::vector<std::string>{"2.5"}));
  EXPECT_EQ(column(read(write_zip("l.xlsx", package(numbers_column({"45000"}, 5))))),
            (std::vector<std::string>{"2023-03-15"}));
  EXPECT_EQ(column(read(write_zip("g.xlsx", package(numbers_column({"45000.75"}, 6))))),
            (std::vector<std::string>{"2023-03-15 18:00:00"}));
}

TEST_F(XlsxTest, StringKindsErrorsAndBooleans) {
  // Shared strings: plain, rich runs, and a phonetic guide that is not part of the text.
  std::string strings =
      "<si><t>plain</t></si>"
      "<si><r><t>ri</t></r><r><rPr><b/></rPr><t xml:space=\"preserve\">ch </t></r></si>"
      "<si><t>\xE6\x9D\xB1\xE4\xBA\xAC</t><rPh sb=\"0\" eb=\"2\"><t>TOKYO</t></rPh></si>"
      "<si><t>a_x000D_b</t></si>";
  std::string sheet =
      "<row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c><c r=\"B1\" t=\"s\"><v>1</v></c>"
      "<c r=\"C1\" t=\"s\"><v>2</v></c><c r=\"D1\" t=\"s\"><v>3</v></c></row>"
      "<row r=\"2\"><c r=\"A2\" t=\"inlineStr\"><is><r><t>in</t></r><r><t>line</t></r></is></c>"
      "<c r=\"B2\" t=\"e\"><f>1/0</f><v>#DIV/0!</v></c>"
      "<c r=\"C2\" t=\"b\"><v>1</v></c><c r=\"D2\" t=\"b\"><v>0</v></c></row>"
      "<row r=\"3\"><c r=\"A3\" t=\"str\"><f>A1&amp;\"!\"</f><v>plain!</v></c>"
      "<c r=\"B3\" t=\"e\"><v>#N/A</v></c><c r=\"C3\"><f>1+1</f><v>2</v></c>"
      "<c r=\"D3\" t=\"d\"><v>2024-02-29T00:00:00</v></c></row>";
  RawTable t = read(write_zip("s.xlsx", package(sheet, strings)));
  EXPECT_EQ(t.header,
            (std::vector<std::string>{"plain", "rich ", "\xE6\x9D\xB1\xE4\xBA\xAC", "a\rb"}));
  EXPECT_EQ(t.rows, (Rows{{"inline", "", "TRUE", "FALSE"}, {"plain!", "", "2", "2024-02-29"}}));
}

TEST_F(XlsxTest, PrefixedNamesAndCellsWithoutReferences) {
  // Some writers use a prefix for the main namespace and omit r attributes; cells then
  // follow one another and rows count from the last one.
  std::string sheet =
      "<?xml version=\"1.0\"?>\n<x:worksheet "
      "xmlns:x=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><x:sheetData>"
      "<x:row><x:c t=\"inlineStr\"><x:is><x:t>a</x:t></x:is></x:c>"
      "<x:c t=\"inlineStr\"><x:is><x:t>b</x:t></x:is></x:c></x:row>"
      "<x:row r=\"3\"><x:c><x:v>1</x:v></x:c><x:c><x:v>2</x:v></x:c></x:row>"
      "<x:row><x:c r=\"B4\"><x:v>4</x:v></x:c></x:row>"
      "</x:sheetData></x:worksheet>";
  Parts parts = package("");
  for (auto& [name, content] : parts) {
    if (name == "xl/worksheets/sheet1.xml") content = sheet;
  }
  RawTable t = read(write_zip("p.xlsx", parts));
  EXPECT_EQ(t.header, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(t.rows, (Rows{{"1", "2"}, {"", "4"}}));
}

TEST_F(XlsxTest, FirstWorksheetInTabOrderNotPartName) {
  // The workbook lists sheet2.xml first; that is the sheet a person sees first.
  Parts parts = {
      {"xl/workbook.xml",
       std::string("<workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/"
                   "main\" xmlns:r=\"") +
           kRelationshipNs +
           "\"><sheets><sheet name=\"Data\" sheetId=\"2\" r:id=\"rId2\"/>"
           "<sheet name=\"Old\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>"},
      {"xl/_rels/workbook.xml.rels",
       relationships(relationship("rId1", "worksheet", "worksheets/sheet1.xml") +
                     relationship("rId2", "worksheet", "/xl/worksheets/sheet2.xml"))},
      {"xl/worksheets/sheet1.xml",
       worksheet("<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>old</t></is></c></row>")},
      {"xl/worksheets/sheet2.xml",
       worksheet("<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>data</t></is></c></row>")}};
  EXPECT_EQ(read(write_zip("o.xlsx", parts)).header, (std::vector<std::string>{"data"}));
}

TEST_F(XlsxTest, FallsBackToSheet1WithoutAWorkbookPart) {
  RawTable t = read(write_zip(
      "f.xlsx", {{"xl/worksheets/sheet1.xml",
                  worksheet("<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>h</t></is></c>"
                            "</row><row r=\"2\"><c r=\"A2\"><v>0.1</v></c></row>")}}));
  EXPECT_EQ(t.header, (std::vector<std::string>{"h"}));
  EXPECT_EQ(t.rows, (Rows{{"0.1"}}));
}

// ---------------------------------------------------------------------------------------
// Workbooks written by libxlsxwriter

TEST_F(XlsxTest, WriterStringsNumbersBooleansAndFormulaResults) {
  RawTable t = read(write_book("w.xlsx", [](lxw_workbook* book) {
    lxw_worksheet* sheet = workbook_add_worksheet(book, "Data");
    const char* header[] = {"name", "count", "ratio", "big", "ok", "double", "label"};
    for (int c = 0; c < 7; ++c)
      worksheet_write_string(sheet, 0, static_cast<lxw_col_t>(c), header[c], nullptr);
    worksheet_write_string(sheet, 1, 0, "alpha", nullptr);
    worksheet_write_number(sheet, 1, 1, 42, nullptr);
    worksheet_write_number(sheet, 1, 2, 0.1 + 0.2, nullptr);
    worksheet_write_number(sheet, 1, 3, 1e20, nullptr);
    worksheet_write_boolean(sheet, 1, 4, 1, nullptr);
    worksheet_write_formula_num(sheet, 1, 5, "=B2*2", nullptr, 84);
    worksheet_write_formula_str(sheet, 1, 6, "=A2&\"!\"", nullptr, "alpha!");
    worksheet_write_string(sheet, 2, 0, "beta", nullptr);
    worksheet_write_number(sheet, 2, 1, -7, nullptr);
    worksheet_write_number(sheet, 2, 2, 1.0 / 3.0, nullptr);
    worksheet_write_number(sheet, 2, 3, 123456789012345678.0, nullptr);
    worksheet_write_boolean(sheet, 2, 4, 0, nullptr);
    worksheet_write_formula_num(sheet, 2, 5, "=B3*2", nullptr, -14);
    worksheet_write_number(sheet, 2, 6, -0.0, nullptr);
  }));
  EXPECT_EQ(t.header,
            (std::vector<std::string>{"name", "count", "ratio", "big", "ok", "double", "label"}));
  EXPECT_EQ(
      t.rows,
      (Rows{{"alpha", "42", "0.3", "1e+20", "TRUE", "84", "alpha!"},
            {"beta", "-7", "0.333333333333333", "1.23456789012346e+17", "FALSE", "-14", "0"}}));
}

TEST_F(XlsxTest, WriterDatesFromBuiltinAndCustomFormats) {
  RawTable t = read(write_book("d.xlsx", [](lxw_workbook* book) {
    lxw_worksheet* sheet = workbook_add_worksheet(book, nullptr);
    lxw_format* iso = workbook_add_format(book);
    format_set_num_format(iso, "yyyy-mm-dd");
    lxw_format* builtin = workbook_add_format(book);
    format_set_num_format_index(builtin, 14);
    lxw_format* words = workbook_add_format(book);
    format_set_num_format(words, "dd \"of\" mmmm yyyy");
    lxw_format* stamp = workbook_add_format(book);
    format_set_num_format(stamp, "yyyy-mm-dd hh:mm:ss");
    lxw_format* money = workbook_add_format(book);
    format_set_num_format(money, "#,##0.00 \"USD\"");
    const char* header[] = {"iso", "builtin", "words", "stamp", "money"};
    for (int c = 0; c < 5; ++c)
      worksheet_write_string(sheet, 0, static_cast<lxw_col_t>(c), header[c], nullptr);
    lxw_datetime leap = {2024, 2, 29, 0, 0, 0};
    lxw_datetime early = {1900, 1, 1, 0, 0, 0};
    lxw_datetime march = {1900, 3, 1, 0, 0, 0};
    lxw_datetime afternoon = {2024, 3, 1, 13, 45, 30};
    worksheet_write_datetime(sheet, 1, 0, &leap, iso);
    worksheet_write_datetime(sheet, 1, 1, &leap, builtin);
    worksheet_write_datetime(sheet, 1, 2, &early, words);
    worksheet_write_datetime(sheet, 1, 3, &afternoon, stamp);
    worksheet_write_number(sheet, 1, 4, 1234.5, money);
    worksheet_write_datetime(sheet, 2, 0, &march, iso);
    worksheet_write_datetime(sheet, 2, 3, &leap, stamp);
  }));
  EXPECT_EQ(t.rows,
            (Rows{{"2024-02-29", "2024-02-29", "1900-01-01", "2024-03-01 13:45:30", "1234.5"},
                  {"1900-03-01", "", "", "2024-02-29", ""}}));
}

TEST_F(XlsxTest, WriterBlankCellsKeepPositionsAndRaggedRowsArePadded) {
  // A1:C1 header; B2 blank; row 3 empty (dropped, like a blank CSV line); D4 past the
  // header widens it; column E is formatted but empty everywhere (dropped).
  RawTable t = read(write_book("b.xlsx", [](lxw_workbook* book) {
    lxw_worksheet* sheet = workbook_add_worksheet(book, nullptr);
    lxw_format* bold = workbook_add_format(book);
    format_set_bold(bold);
    worksheet_write_string(sheet, 0, 0, "a", nullptr);
    worksheet_write_string(sheet, 0, 1, "b", nullptr);
    worksheet_write_string(sheet, 0, 2, "c", nullptr);
    worksheet_write_number(sheet, 1, 0, 1, nullptr);
    worksheet_write_blank(sheet, 1, 1, bold);
    worksheet_write_number(sheet, 1, 2, 3, nullptr);
    worksheet_write_blank(sheet, 2, 4, bold);
    worksheet_write_string(sheet, 3, 0, "x", nullptr);
    worksheet_write_string(sheet, 3, 3, "extra", nullptr);
  }));
  EXPECT_EQ(t.header, (std::vector<std::string>{"a", "b", "c", "column_4"}));
  EXPECT_EQ(t.rows, (Rows{{"1", "", "3", ""}, {"x", "", "", "extra"}}));
}

TEST_F(XlsxTest, WriterTableOffsetFromA1) {
  // A table that starts at C3: the empty rows above and columns beside it are not data.
  RawTable t = read(write_book("o.xlsx", [](lxw_workbook* book) {
    lxw_worksheet* sheet = workbook_add_worksheet(book, nullptr);
    worksheet_write_string(sheet, 2, 2, "k", nullptr);
    worksheet_write_string(sheet, 2, 3, "v", nullptr);
    worksheet_write_string(sheet, 3, 2, "x", nullptr);
    worksheet_write_number(sheet, 3, 3, 2.5, nullptr);
  }));
  EXPECT_EQ(t.header, (std::vector<std::string>{"k", "v"}));
  EXPECT_EQ(t.rows, (Rows{{"x", "2.5"}}));
}

TEST_F(XlsxTest, WriterUnicodeAndRichStrings) {
  RawTable t = read(write_book("u.xlsx", [](lxw_workbook* book) {
    lxw_worksheet* sheet = workbook_add_worksheet(book, nullptr);
    lxw_format* bold = workbook_add_format(book);
    format_set_bold(bold);
    worksheet_write_string(sheet, 0, 0, "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC", nullptr);
    worksheet_write_string(sheet, 0, 1, "emoji \xF0\x9F\x98\x80 <&> \"q\"", nullptr);
    char plain[] = "plain ";
    char strong[] = "bold";
    lxw_rich_string_tuple first = {nullptr, plain};
    lxw_rich_string_tuple second = {bold, strong};
    lxw_rich_string_tuple* runs[] = {&first, &second, nullptr};
    worksheet_write_rich_string(sheet, 1, 0, runs, nullptr);
    worksheet_write_string(sheet, 1, 1, "  spaced  ", nullptr);
  }));
  EXPECT_EQ(t.header, (std::vector<std::string>{"caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC",
                                                "emoji \xF0\x9F\x98\x80 <&> \"q\""}));
  EXPECT_EQ(t.rows, (Rows{{"plain bold", "  spaced  "}}));
}

TEST_F(XlsxTest, WriterSecondSheetAndChartSheetAreIgnored) {
  // The chart sheet comes first in tab order but holds no cells.
  RawTable t = read(write_book("c.xlsx", [](lxw_workbook* book) {
    lxw_chartsheet* chartsheet = workbook_add_chartsheet(book, "Chart");
    lxw_worksheet* data = workbook_add_worksheet(book, "Data");
    lxw_worksheet* other = workbook_add_worksheet(book, "Other");
    worksheet_write_string(data, 0, 0, "first", nullptr);
    worksheet_write_number(data, 1, 0, 1, nullptr);
    worksheet_write_number(data, 2, 0, 2, nullptr);
    worksheet_write_string(other, 0, 0, "second", nullptr);
    worksheet_write_number(other, 1, 0, 99, nullptr);
    lxw_chart* chart = workbook_add_chart(book, LXW_CHART_COLUMN);
    chart_add_series(chart, nullptr, "=Data!$A$2:$A$3");
    chartsheet_set_chart(chartsheet, chart);
  }));
  EXPECT_EQ(t.header, (std::vector<std::string>{"first"}));
  EXPECT_EQ(t.rows, (Rows{{"1"}, {"2"}}));
}

TEST_F(XlsxTest, WriterConstantMemoryInlineStrings) {
  // In constant-memory mode libxlsxwriter writes strings inline rather than shared.
  std::string bytes = write_book(
      "i.xlsx",
      [](lxw_workbook* book) {
        lxw_worksheet* sheet = workbook_add_worksheet(book, nullptr);
        worksheet_write_string(sheet, 0, 0, "name", nullptr);
        worksheet_write_string(sheet, 0, 1, "n", nullptr);
        worksheet_write_string(sheet, 1, 0, "inline \xC3\xA9", nullptr);
        worksheet_write_number(sheet, 1, 1, 5, nullptr);
      },
      /*constant_memory=*/true);
  RawTable t = read(bytes);
  EXPECT_EQ(t.header, (std::vector<std::string>{"name", "n"}));
  EXPECT_EQ(t.rows, (Rows{{"inline \xC3\xA9", "5"}}));
}

TEST_F(XlsxTest, WriterRandomGridsReadBackCellByCell) {
  const uint64_t seed = kdr_test::test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::vector<std::string> alphabet = {
      "a", "b", "Z", " ", "<", "&", "\"", "'", ",", "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\x98\x80"};
  for (int trial = 0; trial < 20; ++trial) {
    const int rows = 1 + static_cast<int>(rng() % 6);
    const int cols = 1 + static_cast<int>(rng() % 5);
    Rows want(static_cast<std::size_t>(rows + 1), std::vector<std::string>(cols));
    std::string bytes = write_book("r.xlsx", [&](lxw_workbook* book) {
      lxw_worksheet* sheet = workbook_add_worksheet(book, nullptr);
      for (int c = 0; c < cols; ++c) {
        want[0][c] = "h" + std::to_string(c);
        worksheet_write_string(sheet, 0, static_cast<lxw_col_t>(c), want[0][c].c_str(), nullptr);
      }
      for (int r = 1; r <= rows; ++r) {
        for (int c = 0; c < cols; ++c) {
          std::string& cell = want[r][c];
          switch (rng() % 4) {
            case 0: {  // text, never blank
              cell = "s";
              for (uint64_t n = rng() % 6; n > 0; --n) cell += alphabet[rng() % alphabet.size()];
              worksheet_write_string(sheet, static_cast<lxw_row_t>(r), static_cast<lxw_col_t>(c),
                                     cell.c_str(), nullptr);
              break;
            }
            case 1: {  // an integer
              const int64_t value = static_cast<int64_t>(rng() % 2000001) - 1000000;
              cell = std::to_string(value);
              worksheet_write_number(sheet, static_cast<lxw_row_t>(r), static_cast<lxw_col_t>(c),
                                     static_cast<double>(value), nullptr);
              break;
            }
            case 2: {  // a decimal with up to 4 places, written as its shortest text
              const int64_t units = static_cast<int64_t>(rng() % 2000001) - 1000000;
              const int places = static_cast<int>(rng() % 5);
              std::string digits = std::to_string(units < 0 ? -units : units);
              if (digits.size() <= static_cast<std::size_t>(places)) {
                digits.insert(0, static_cast<std::size_t>(places) + 1 - digits.size(), '0');
              }
              std::string whole = digits.substr(0, digits.size() - places);
              std::string fraction = digits.substr(digits.size() - places);
              while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
              cell = (units < 0 ? "-" : "") + whole + (fraction.empty() ? "" : "." + fraction);
              if (cell == "-0") cell = "0";
              worksheet_write_number(sheet, static_cast<lxw_row_t>(r), static_cast<lxw_col_t>(c),
                                     std::stod(cell), nullptr);
              break;
            }
            default:  // blank
              break;
          }
        }
      }
    });
    // Rows and columns blank everywhere are not part of the table.
    Rows expected;
    for (std::size_t r = 0; r < want.size(); ++r) {
      bool blank = true;
      for (const std::string& cell : want[r]) blank = blank && cell.empty();
      if (!blank) expected.push_back(want[r]);
    }
    RawTable t = read(bytes);
    ASSERT_EQ(t.header, expected[0]) << "trial " << trial;
    EXPECT_EQ(t.rows, Rows(expected.begin() + 1, expected.end())) << "trial " << trial;
  }
}

// ---------------------------------------------------------------------------------------
// Errors: each names the file, none crashes

TEST_F(XlsxTest, RandomBytesAreNotAZipFile) {
  std::mt19937 rng(7);
  std::string bytes(4096, '\0');
  for (char& b : bytes) b = static_cast<char>(rng());
  EXPECT_EQ(error_of([&] { read(bytes, "r.xlsx"); }), "r.xlsx: not a zip file");
  EXPECT_EQ(error_of([&] { read("", "e.xlsx"); }), "e.xlsx: not a zip file");
}

TEST_F(XlsxTest, TruncatedFileIsAnError) {
  std::string bytes = write_book("t.xlsx", [](lxw_workbook* book) {
    worksheet_write_string(workbook_add_worksheet(book, nullptr), 0, 0, "x", nullptr);
  });
  for (std::size_t keep : {bytes.size() / 2, bytes.size() - 10}) {
    std::string error = error_of([&] { read(bytes.substr(0, keep), "t.xlsx"); });
    EXPECT_TRUE(error.starts_with("t.xlsx: ")) << error;
    EXPECT_NE(error, "(no error)");
  }
}

TEST_F(XlsxTest, ZipWithoutWorkbookHasNoWorksheet) {
  std::string bytes = write_zip("w.xlsx", {{"docs/readme.txt", "not a workbook"}});
  EXPECT_EQ(error_of([&] { read(bytes, "w.xlsx"); }), "w.xlsx: no worksheet");
}

TEST_F(XlsxTest, DoctypeEntityBombIsRefused) {
  std::string bomb =
      "<?xml version=\"1.0\"?>\n"
      "<!DOCTYPE worksheet [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">"
      "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;\">]>\n"
      "<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">"
      "<sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>&d;&d;&d;&d;</t></is></c>"
      "</row></sheetData></worksheet>";
  Parts parts = package("");
  for (auto& [name, content] : parts) {
    if (name == "xl/worksheets/sheet1.xml") content = bomb;
  }
  EXPECT_EQ(error_of([&] { read(write_zip("b.xlsx", parts), "b.xlsx"); }),
            "b.xlsx: xl/worksheets/sheet1.xml: XML error at line 2: DOCTYPE is not allowed");
}

TEST_F(XlsxTest, MalformedXmlNamesPartAndLine) {
  Parts parts = package("");
  for (auto& [name, content] : parts) {
    if (name == "xl/worksheets/sheet1.xml") {
      content = "<worksheet>\n<sheetData>\n<row><c><v>1</v></row>\n</sheetData></worksheet>";
    }
  }
  EXPECT_EQ(error_of([&] { read(write_zip("m.xlsx", parts), "m.xlsx"); }),
            "m.xlsx: xl/worksheets/sheet1.xml: XML error at line 3: mismatched tag");
}

TEST_F(XlsxTest, BadReferencesAreErrors) {
  EXPECT_EQ(error_of([&] {
              read(write_zip("s.xlsx", package("<row r=\"1\"><c r=\"A1\" t=\"s\"><v>3</v></c>"
                                               "</row>",
                                               "<si><t>only</t></si>")),
                   "s.xlsx");
            }),
            "s.xlsx: xl/worksheets/sheet1.xml: cell A1 refers to shared string \"3\" of 1");
  EXPECT_EQ(error_of([&] {
              read(write_zip("c.xlsx", package("<row r=\"1\"><c r=\"XFE1\"><v>1</v></c></row>")),
                   "c.xlsx");
            }),
            "c.xlsx: xl/worksheets/sheet1.xml: bad cell reference \"XFE1\"");
}

TEST_F(XlsxTest, EmptySheetHasNoHeader) {
  EXPECT_EQ(error_of([&] {
              read(write_zip("e.xlsx", package("<row r=\"1\"><c r=\"A1\" s=\"1\"/></row>")),
                   "e.xlsx");
            }),
            "e.xlsx: xl/worksheets/sheet1.xml: empty sheet, no header row");
}

TEST_F(XlsxTest, PartClaimingAHugeSizeIsRefused) {
  std::string bytes = write_zip("h.xlsx", package(numbers_column({"1"}, 0)));
  // Rewrite the sheet's uncompressed size in its local and central headers to 2 GiB.
  const std::string name = "xl/worksheets/sheet1.xml";
  auto put32 = [&](std::size_t at, uint32_t value) {
    for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>(value >> (8 * i));
  };
  int patched = 0;
  for (std::size_t at = 0; at + 46 < bytes.size(); ++at) {
    if (bytes.compare(at, 4, "PK\x03\x04") == 0 && bytes.compare(at + 30, name.size(), name) == 0) {
      put32(at + 22, 0x7FFFFFFF);
      ++patched;
    }
    if (bytes.compare(at, 4, "PK\x01\x02") == 0 && bytes.compare(at + 46, name.size(), name) == 0) {
      put32(at + 24, 0x7FFFFFFF);
      ++patched;
    }
  }
  ASSERT_EQ(patched, 2);
  EXPECT_EQ(error_of([&] { read(bytes, "h.xlsx"); }),
            "h.xlsx: xl/worksheets/sheet1.xml: 2147483647 bytes uncompressed, over the 64 MiB "
            "limit");
}

TEST_F(XlsxTest, SparseCellsCannotBlowUpTheGrid) {
  // 1001 cells on a diagonal would place 1001 x 1001 cells.
  std::string sheet;
  for (int i = 1; i <= 1001; ++i) {
    sheet += "<row r=\"" + std::to_string(i) + "\"><c r=\"" +
             std::string(1, static_cast<char>('A' + (i - 1) / 676 % 26)) +
             static_cast<char>('A' + (i - 1) / 26 % 26) + static_cast<char>('A' + (i - 1) % 26) +
             std::to_string(i) + "\"><v>1</v></c></row>";
  }
  EXPECT_EQ(error_of([&] { read(write_zip("g.xlsx", package(sheet)), "g.xlsx"); }),
            "g.xlsx: xl/worksheets/sheet1.xml: the table would have 1001 rows of 1001 columns, "
            "over the limit of 1000000 cells");
}

TEST_F(XlsxTest, MoreThanAMillionCellsIsRefused) {
  std::string row;
  for (int c = 0; c < 1000; ++c) row += "<c><v>1</v></c>";
  std::string sheet;
  for (int r = 0; r < 1001; ++r) sheet += "<row>" + row + "</row>";
  EXPECT_EQ(error_of([&] { read(write_zip("m.xlsx", package(sheet)), "m.xlsx"); }),
            "m.xlsx: xl/worksheets/sheet1.xml: more than 1000000 cells");
}

TEST_F(XlsxTest, SingleByteMutationsParseOrThrowTableStoreError) {
  const std::string valid = write_book("f.xlsx", [](lxw_workbook* book) {
    lxw_worksheet* sheet = workbook_add_worksheet(book, nullptr);
    lxw_format* date = workbook_add_format(book);
    format_set_num_format(date, "yyyy-mm-dd");
    worksheet_write_string(sheet, 0, 0, "name", nullptr);
    worksheet_write_string(sheet, 0, 1, "when", nullptr);
    lxw_datetime day = {2024, 5, 6, 0, 0, 0};
    worksheet_write_string(sheet, 1, 0, "x", nullptr);
    worksheet_write_datetime(sheet, 1, 1, &day, date);
  });
  ASSERT_EQ(read(valid).rows, (Rows{{"x", "2024-05-06"}}));
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  int parsed = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string bytes = valid;
    const std::size_t at = rng() % bytes.size();
    bytes[at] = static_cast<char>(bytes[at] ^ static_cast<char>(1 + rng() % 255));
    SCOPED_TRACE("KDR_SEED=" + std::to_string(seed) + " trial " + std::to_string(trial) + " byte " +
                 std::to_string(at));
    try {
      RawTable t = read(bytes, "f.xlsx");
      EXPECT_FALSE(t.header.empty());
      for (const auto& r : t.rows) EXPECT_EQ(r.size(), t.header.size());
      ++parsed;
    } catch (const TableStoreError& e) {
      EXPECT_TRUE(std::string(e.what()).starts_with("f.xlsx: ")) << e.what();
    }
  }
  std::printf("[ fuzz     ] %d of 300 mutations still parsed\n", parsed);
}

// ---------------------------------------------------------------------------------------
// Through the table store

TEST_F(XlsxTest, TableStoreTypesColumnsAndCataloguesAWorkbook) {
  fs::create_directories(path("tables"));
  write_book("tables/sales.xlsx", [](lxw_workbook* book) {
    lxw_worksheet* sheet = workbook_add_worksheet(book, "Sales");
    lxw_format* date = workbook_add_format(book);
    format_set_num_format(date, "d mmm yyyy");
    const char* header[] = {"Region", "Units", "Revenue", "Order date"};
    for (int c = 0; c < 4; ++c)
      worksheet_write_string(sheet, 0, static_cast<lxw_col_t>(c), header[c], nullptr);
    const char* regions[] = {"North", "South", "East"};
    const double units[] = {1024, 87, 150};
    const double revenue[] = {1200.5, 980, 2345.25};
    lxw_datetime days[] = {{2023, 1, 15, 0, 0, 0}, {2023, 2, 1, 0, 0, 0}, {2023, 3, 20, 0, 0, 0}};
    for (int r = 0; r < 3; ++r) {
      lxw_row_t row = static_cast<lxw_row_t>(r + 1);
      worksheet_write_string(sheet, row, 0, regions[r], nullptr);
      worksheet_write_number(sheet, row, 1, units[r], nullptr);
      worksheet_write_number(sheet, row, 2, revenue[r], nullptr);
      worksheet_write_datetime(sheet, row, 3, &days[r], date);
    }
  });
  write_bytes(path("tables/~$sales.xlsx"), "Excel's lock file");  // not a table
  TableStore store = TableStore::open(path("ws.db"));
  TableIngestReport report = store.ingest_dir(path("tables"));
  EXPECT_TRUE(report.failed.empty()) << report.failed.front();
  ASSERT_EQ(report.added, (std::vector<std::string>{"sales"}));
  std::vector<TableInfo> tables = store.tables();
  ASSERT_EQ(tables.size(), 1u);
  std::vector<std::string> types;
  for (const ColumnInfo& c : tables[0].columns) types.push_back(c.name + " " + c.type);
  EXPECT_EQ(types, (std::vector<std::string>{"region TEXT", "units INTEGER", "revenue REAL",
                                             "order_date DATE"}));
  QueryResult result = run_readonly(path("ws.db"), "SELECT * FROM sales ORDER BY order_date");
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : result.rows) rows.push_back(row);
  EXPECT_EQ(rows, nlohmann::json::parse(R"([["North", 1024, 1200.5, "2023-01-15"],
                                             ["South", 87, 980.0, "2023-02-01"],
                                             ["East", 150, 2345.25, "2023-03-20"]])"));
  std::vector<TableHit> hits = store.search("regional revenue by order date", 3);
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].table, "sales");
  // Unchanged bytes are not read again.
  EXPECT_EQ(store.ingest_dir(path("tables")).unchanged, (std::vector<std::string>{"sales"}));
}

TEST_F(XlsxTest, TableStoreReportsABrokenWorkbookAndLoadsTheRest) {
  fs::create_directories(path("tables"));
  write_bytes(path("tables/good.csv"), "a,b\n1,2\n");
  write_bytes(path("tables/bad.xlsx"), "PK\x03\x04 this is not really a zip");
  TableStore store = TableStore::open(path("ws.db"));
  TableIngestReport report = store.ingest_dir(path("tables"));
  EXPECT_EQ(report.added, (std::vector<std::string>{"good"}));
  ASSERT_EQ(report.failed.size(), 1u);
  EXPECT_EQ(report.failed[0],
            fs::weakly_canonical(path("tables/bad.xlsx")).string() + ": not a zip file");
}

}  // namespace
}  // namespace kdr::hka
