// Read-only execution of SQL written by a language model.
//
// The SQL comes from an untrusted generator, so every defence is applied at once: the
// database is opened read-only with PRAGMA query_only, an authorizer admits only reads,
// extension loading is off, ATTACH is limited to zero databases, a progress handler
// enforces a time limit and a row cap bounds the result. Error messages carry SQLite's own
// text because they are fed back to the model for repair.
#pragma once

#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kdr::hka {

// A refused or failed query. what() is precise enough to show to the model that wrote it.
class SqlError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Limits {
  std::size_t max_rows = 1000;
  int max_ms = 2000;
  // No string or blob may grow past this inside SQLite (SQLITE_LIMIT_LENGTH), so a query
  // like hex(randomblob(300000000)) fails at once instead of allocating gigabytes.
  std::size_t max_cell_bytes = std::size_t{1} << 20;
  // The whole result (cell text and numbers) past this is refused with an error the model
  // can act on (aggregate, select fewer columns).
  std::size_t max_result_bytes = std::size_t{16} << 20;
};

struct QueryResult {
  std::vector<std::string> columns;
  // One JSON array per row; cells are null, integer, float or string (blobs become
  // "<blob N bytes>" since the model can do nothing with raw bytes).
  std::vector<nlohmann::json> rows;
  bool truncated = false;  // more rows existed than Limits::max_rows
};

// Runs exactly one SELECT (or WITH ... SELECT) statement against the database file.
// Throws SqlError when the statement is refused, malformed, too slow, or fails.
QueryResult run_readonly(const std::filesystem::path& db_path, std::string_view sql,
                         const Limits& limits = {});

// RFC 4180 CSV of a result: header line, CRLF line ends, fields quoted when they contain
// a comma, quote, CR or LF; NULL becomes an empty field.
std::string to_csv(const QueryResult& result);

}  // namespace kdr::hka
