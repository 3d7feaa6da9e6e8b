// Small RAII helpers over the SQLite C API, shared by the knowledge stores. `Error` is the
// store's exception type and `who` names the store in messages, so each store keeps its own
// errors while the plumbing exists once.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace kdr::hka::sqlite {

template <class Error>
class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql, const char* who) : db_(db), who_(who) {
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) !=
        SQLITE_OK) {
      throw Error(std::string(who) + ": cannot prepare SQL (" + sqlite3_errmsg(db) +
                  "): " + std::string(sql));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  Statement& bind(int index, int value) { return bind(index, static_cast<int64_t>(value)); }
  Statement& bind(int index, double value) {
    sqlite3_bind_double(stmt_, index, value);
    return *this;
  }
  Statement& bind(int index, std::string_view text) {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind_blob(int index, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind_null(int index) {
    sqlite3_bind_null(stmt_, index);
    return *this;
  }

  // True while a row is available.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(std::string(who_) + ": SQL failed (" + sqlite3_errmsg(db_) +
                "): " + sqlite3_sql(stmt_));
  }
  // Runs to completion, then resets so the statement can run again with new bindings.
  void run() {
    while (step()) {
    }
    sqlite3_reset(stmt_);
  }

  int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : "";
  }
  // The bytes of a BLOB (or of text) column; empty for NULL.
  std::string blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : "";
  }

 private:
  sqlite3* db_;
  const char* who_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Runs SQL without results (schema, transactions).
template <class Error>
void exec(sqlite3* db, const std::string& sql, const char* who) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string message = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw Error(std::string(who) + ": SQL failed (" + message + "): " + sql.substr(0, 200));
  }
}

}  // namespace kdr::hka::sqlite
