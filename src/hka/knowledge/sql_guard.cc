#include "hka/knowledge/sql_guard.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <memory>
#include <string>

#include "hka/text.h"

namespace kdr::hka {
namespace {

// State shared with the SQLite callbacks of one query.
struct GuardState {
  std::string refusal;  // first action the authorizer denied, as a sentence for the model
  // CREATE and DROP report their write to sqlite_master before the statement-level action,
  // and denying it ends preparation; the refusal then quotes the statement instead.
  bool refusal_is_schema_write = false;
  std::chrono::steady_clock::time_point deadline;
  bool timed_out = false;
};

const char* action_name(int action) {
  switch (action) {
    case SQLITE_INSERT:
      return "INSERT";
    case SQLITE_UPDATE:
      return "UPDATE";
    case SQLITE_DELETE:
      return "DELETE";
    case SQLITE_CREATE_INDEX:
    case SQLITE_CREATE_TABLE:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_CREATE_VIEW:
    case SQLITE_CREATE_VTABLE:
      return "CREATE";
    case SQLITE_DROP_INDEX:
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_TEMP_INDEX:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_VIEW:
    case SQLITE_DROP_TRIGGER:
    case SQLITE_DROP_VIEW:
    case SQLITE_DROP_VTABLE:
      return "DROP";
    case SQLITE_ALTER_TABLE:
      return "ALTER TABLE";
    case SQLITE_ATTACH:
      return "ATTACH";
    case SQLITE_DETACH:
      return "DETACH";
    case SQLITE_PRAGMA:
      return "PRAGMA";
    case SQLITE_TRANSACTION:
      return "BEGIN/COMMIT/ROLLBACK";
    case SQLITE_SAVEPOINT:
      return "SAVEPOINT";
    case SQLITE_REINDEX:
      return "REINDEX";
    case SQLITE_ANALYZE:
      return "ANALYZE";
    case SQLITE_FUNCTION:
      return "function";
    default:
      return "this statement";
  }
}

bool function_is_forbidden(const char* name) {
  if (name == nullptr) return false;
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // load_extension would run native code; fts3_tokenizer can install a function pointer.
  return lower == "load_extension" || lower == "fts3_tokenizer";
}

int authorize(void* user, int action, const char* arg1, const char* arg2, const char*,
              const char*) {
  auto* state = static_cast<GuardState*>(user);
  switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
      return SQLITE_OK;
    case SQLITE_FUNCTION:
      if (!function_is_forbidden(arg2)) return SQLITE_OK;
      if (state->refusal.empty()) {
        state->refusal = std::string("refused: function ") + arg2 +
                         "() is not allowed; only read-only SELECT queries are permitted";
      }
      return SQLITE_DENY;
    default: {
      bool schema_write = arg1 != nullptr && std::string_view(arg1).starts_with("sqlite_");
      if (state->refusal.empty()) {
        // ALTER TABLE passes the database as arg1 and the table as arg2.
        const char* object = action == SQLITE_ALTER_TABLE ? arg2 : arg1;
        state->refusal = std::string("refused: ") + action_name(action);
        if (object != nullptr && action != SQLITE_TRANSACTION) {
          state->refusal += std::string(" ") + object;
        }
        state->refusal += " is not allowed; only read-only SELECT queries are permitted";
        state->refusal_is_schema_write = schema_write;
      }
      return SQLITE_DENY;
    }
  }
}

// The refusal to show the model for a statement the authorizer denied.
std::string refusal_message(const GuardState& state, std::string_view sql) {
  if (!state.refusal_is_schema_write) return state.refusal;
  std::size_t start = sql.find_first_not_of(" \t\r\n");
  std::string_view statement = start == std::string_view::npos ? sql : sql.substr(start);
  statement = statement.substr(0, std::min<std::size_t>(statement.find(';'), 40));
  return "refused: \"" + std::string(statement) +
         "\" changes the database schema; only read-only SELECT queries are permitted";
}

int check_deadline(void* user) {
  auto* state = static_cast<GuardState*>(user);
  if (std::chrono::steady_clock::now() < state->deadline) return 0;
  state->timed_out = true;
  return 1;
}

// True when `tail` holds only whitespace, semicolons and comments, i.e. no second statement.
bool only_trivia(std::string_view tail) {
  std::size_t i = 0;
  while (i < tail.size()) {
    char c = tail[i];
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      ++i;
    } else if (tail.substr(i, 2) == "--") {
      std::size_t end = tail.find('\n', i);
      i = end == std::string_view::npos ? tail.size() : end + 1;
    } else if (tail.substr(i, 2) == "/*") {
      std::size_t end = tail.find("*/", i + 2);
      i = end == std::string_view::npos ? tail.size() : end + 2;
    } else {
      return false;
    }
  }
  return true;
}

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};

std::string sqlite_message(sqlite3* db) {
  std::string message = sqlite3_errmsg(db);
  int offset = sqlite3_error_offset(db);
  if (offset >= 0) message += " (at character " + std::to_string(offset) + " of the query)";
  return message;
}

nlohmann::json cell_value(sqlite3_stmt* stmt, int col) {
  switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER:
      return sqlite3_column_int64(stmt, col);
    case SQLITE_FLOAT:
      return sqlite3_column_double(stmt, col);
    case SQLITE_TEXT:
      return std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, col)),
                         static_cast<std::size_t>(sqlite3_column_bytes(stmt, col)));
    case SQLITE_BLOB:
      return "<blob " + std::to_string(sqlite3_column_bytes(stmt, col)) + " bytes>";
    default:
      return nullptr;
  }
}

}  // namespace

QueryResult run_readonly(const std::filesystem::path& db_path, std::string_view sql,
                         const Limits& limits) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(db_path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, DbCloser> db(raw);
  if (rc != SQLITE_OK) {
    throw SqlError(db_path.string() + ": cannot open database read-only: " +
                   (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_db_config(raw, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_limit(raw, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(raw, SQLITE_LIMIT_LENGTH,
                static_cast<int>(std::min<std::size_t>(limits.max_cell_bytes, 1u << 30)));
  if (sqlite3_exec(raw, "PRAGMA query_only = 1", nullptr, nullptr, nullptr) != SQLITE_OK) {
    throw SqlError(db_path.string() + ": cannot set query_only: " + sqlite3_errmsg(raw));
  }

  GuardState state;
  sqlite3_set_authorizer(raw, authorize, &state);
  state.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limits.max_ms);
  sqlite3_progress_handler(raw, 1000, check_deadline, &state);

  sqlite3_stmt* raw_stmt = nullptr;
  const char* tail = nullptr;
  rc = sqlite3_prepare_v2(raw, sql.data(), static_cast<int>(sql.size()), &raw_stmt, &tail);
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt(raw_stmt);
  if (rc != SQLITE_OK) {
    if (!state.refusal.empty()) throw SqlError(refusal_message(state, sql));
    throw SqlError("SQL error: " + sqlite_message(raw));
  }
  if (raw_stmt == nullptr) throw SqlError("SQL error: the query is empty");
  std::string_view rest(tail, static_cast<std::size_t>(sql.data() + sql.size() - tail));
  if (!only_trivia(rest)) {
    throw SqlError("refused: only one SQL statement is allowed, but more text follows: \"" +
                   std::string(rest.substr(0, 60)) + "\"");
  }
  // VACUUM and a few other statements never reach the authorizer; this catches them.
  if (!sqlite3_stmt_readonly(raw_stmt)) {
    std::string_view text = std::string_view(sql).substr(0, 30);
    std::size_t start = text.find_first_not_of(" \t\r\n");
    std::string_view verb = start == std::string_view::npos ? text : text.substr(start);
    verb = verb.substr(0, verb.find_first_of(" \t\r\n;("));
    throw SqlError("refused: " + std::string(verb) +
                   " is not allowed; only read-only SELECT queries are permitted");
  }

  QueryResult result;
  std::size_t result_bytes = 0;
  int ncols = sqlite3_column_count(raw_stmt);
  for (int c = 0; c < ncols; ++c) result.columns.emplace_back(sqlite3_column_name(raw_stmt, c));
  while (true) {
    rc = sqlite3_step(raw_stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      if (state.timed_out) {
        throw SqlError("SQL error: query stopped after the time limit of " +
                       std::to_string(limits.max_ms) +
                       " ms; simplify it or bound recursion with LIMIT");
      }
      if (!state.refusal.empty()) throw SqlError(refusal_message(state, sql));
      if (rc == SQLITE_TOOBIG) {
        throw SqlError("SQL error: a value would be larger than " +
                       std::to_string(limits.max_cell_bytes) + " bytes; compute smaller values");
      }
      throw SqlError("SQL error: " + sqlite_message(raw));
    }
    if (result.rows.size() == limits.max_rows) {
      result.truncated = true;
      break;
    }
    nlohmann::json row = nlohmann::json::array();
    for (int c = 0; c < ncols; ++c) {
      result_bytes += 8 + static_cast<std::size_t>(sqlite3_column_bytes(raw_stmt, c));
      row.push_back(cell_value(raw_stmt, c));
    }
    if (result_bytes > limits.max_result_bytes) {
      throw SqlError("SQL error: the result is larger than " +
                     std::to_string(limits.max_result_bytes >> 20) +
                     " MiB; aggregate it or select fewer rows and columns");
    }
    result.rows.push_back(std::move(row));
  }
  return result;
}

namespace {

void append_csv_field(std::string& out, const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) {
    out += field;
    return;
  }
  out += '"';
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

}  // namespace

std::string to_csv(const QueryResult& result) {
  std::string out;
  for (std::size_t c = 0; c < result.columns.size(); ++c) {
    if (c > 0) out += ',';
    append_csv_field(out, result.columns[c]);
  }
  out += "\r\n";
  for (const nlohmann::json& row : result.rows) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (c > 0) out += ',';
      const nlohmann::json& cell = row[c];
      if (cell.is_null()) continue;
      append_csv_field(out, text::format_cell(cell));
    }
    out += "\r\n";
  }
  return out;
}

}  // namespace kdr::hka
