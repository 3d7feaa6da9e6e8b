// Reads the first worksheet of an XLSX workbook (a zip of XML parts) as a RawTable, so a
// spreadsheet is typed and catalogued exactly like a CSV file.
//
// Cells are placed by their references: skipped cells are empty, rows and columns empty
// everywhere are dropped, and the first remaining row is the header (blank header cells are
// named "column_N"). Values come back as the text a person would read: shared, inline and
// rich strings; numbers with up to 15 significant digits; TRUE / FALSE; formulas' cached
// results; error cells empty. A number whose cell format is a date becomes ISO
// "yyyy-mm-dd" (with " hh:mm:ss" when it has a time of day; a time-only format gives
// "hh:mm:ss"), in the workbook's 1900 or 1904 date system.
//
// The file is untrusted: a part over 64 MiB uncompressed, a sheet of more than 1,000,000
// cells, or XML with a DOCTYPE is refused.
#pragma once

#include <string>
#include <string_view>

#include "hka/knowledge/table_store.h"

namespace kdr::hka {

// Parses XLSX `bytes`. Throws TableStoreError naming `source` (and the part, with its line,
// for XML errors): "book.xlsx: not a zip file", "book.xlsx: no worksheet", ...
RawTable read_xlsx(std::string_view bytes, const std::string& source);

}  // namespace kdr::hka
