// The table knowledge store: a workspace SQLite file holding one typed table per source
// file (CSV, TSV, JSON records, the first worksheet of an XLSX workbook), a catalogue
// describing each table, and an FTS5 index over that catalogue so the planner can find the
// tables a question needs.
//
// Ingestion is incremental: a source whose content hash is unchanged is skipped, a changed
// one is replaced in one transaction (a parse failure leaves the old table intact), and a
// deleted one is removed.
//
// With an embedder (set_embedder), each catalogue entry also gets an embedding of its title,
// description and columns, stored beside it with the model's name, and search() fuses BM25
// with embedding similarity (retrieval.h); without one, search() is BM25 alone.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hka/knowledge/retrieval.h"

struct sqlite3;

namespace kdr::hka {

// A problem with a source file, the catalogue or the workspace. The message names the file
// and, for parse errors, the line (and column where one is meaningful).
class TableStoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A parsed source before typing: the header and rows of cell text.
struct RawTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

// Parses RFC 4180 text with `delimiter` (',' or '\t'): quoted fields may hold delimiters,
// doubled quotes and newlines; a UTF-8 BOM and CRLF line ends are accepted; blank lines are
// skipped. `source` names the file in errors (ragged rows, unterminated quotes, no header).
RawTable parse_delimited(std::string_view text, char delimiter, const std::string& source);

struct ColumnInfo {
  std::string name;    // sanitized SQL identifier
  std::string header;  // the header as written in the source
  std::string type;    // INTEGER, REAL, DATE (ISO yyyy-mm-dd text) or TEXT
  std::string unit;    // "$", "%", "kg", ... stripped from REAL cells; empty when none
  std::vector<std::string> samples;  // up to three distinct values as written in the source
};

struct TableInfo {
  std::string name;  // SQL table name
  std::string title;
  std::string description;
  std::string domain;
  std::string sub_domain;
  std::string topic;
  std::vector<ColumnInfo> columns;
  int64_t row_count = 0;
  std::string source_path;
};

struct TableHit {
  std::string table;
  std::string title;
  // Higher is a better match: -bm25 for BM25 alone, the fused RRF score in hybrid search.
  double score = 0;
  int bm25_rank = 0;    // hybrid search: 1-based rank by BM25; 0 when not in that ranking
  int vector_rank = 0;  // hybrid search: 1-based rank by embedding similarity; 0 likewise
};

struct TableIngestReport {
  std::vector<std::string> added;      // table names
  std::vector<std::string> replaced;   // table names whose source changed
  std::vector<std::string> unchanged;  // table names skipped (same content hash)
  std::vector<std::string> removed;    // table names whose source was deleted
  std::vector<std::string> failed;     // one error message per source that did not load
  // One note per source loaded in this run whose text was not UTF-8:
  // "<path>: converted from Windows-1252 to UTF-8".
  std::vector<std::string> converted;
  // Tables embedded in this run (new or changed ones, and any without a vector of the
  // embedder's model); 0 without an embedder.
  int64_t embedded = 0;
};

class TableStore {
 public:
  // Opens or creates the workspace database.
  static TableStore open(const std::filesystem::path& workspace_db);
  TableStore(TableStore&& other) noexcept;
  TableStore& operator=(TableStore&& other) noexcept;
  TableStore(const TableStore&) = delete;
  TableStore& operator=(const TableStore&) = delete;
  ~TableStore();

  // Ingests every .csv, .tsv, .json and .xlsx file under `dir` (recursively). The optional
  // catalogue is a JSON array (or an object holding one) of KDR-Bench records matched to
  // files by file_path (relative path, else file name). A source that fails to parse is
  // reported in `failed` and does not stop the others.
  TableIngestReport ingest_dir(
      const std::filesystem::path& dir,
      const std::optional<std::filesystem::path>& catalogue = std::nullopt);

  // From now on ingest_dir() embeds the tables and search() is hybrid; an empty embedder
  // returns to BM25 alone. Vectors of the same model name are reused across runs.
  void set_embedder(TextEmbedder embedder) { embedder_ = std::move(embedder); }

  // The top `k` tables for a free-text query by BM25 over titles, descriptions, column
  // names and sample values. Any text is accepted: it is reduced to quoted terms. With an
  // embedder, the BM25 and embedding rankings (kFusionDepth each) are fused by RRF; tables
  // without a usable vector of the embedder's model (ingested without it) are embedded
  // first, so the search may write to the workspace. Embedding failures throw
  // TableStoreError naming the model.
  std::vector<TableHit> search(std::string_view query, int k) const;

  // A compact schema text for prompts: name, title, rows, and per column its type, unit,
  // original header and samples. Throws TableStoreError for an unknown table.
  std::string describe(std::string_view table) const;

  std::vector<TableInfo> tables() const;
  const std::filesystem::path& db_path() const { return db_path_; }

 private:
  TableStore(sqlite3* db, std::filesystem::path db_path);

  sqlite3* db_ = nullptr;
  std::filesystem::path db_path_;
  TextEmbedder embedder_;
};

}  // namespace kdr::hka
