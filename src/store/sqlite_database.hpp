#pragma once
// What the SQLite store's two files share (internal to src/store): the
// connection (Database), one execution of a prepared statement (Query), and
// the small checks their records go through. sqlite_store.cpp defines
// Database's out-of-line members and the key repository; the CA and
// certificate repositories live in sqlite_pki_repositories.cpp.
//
// Concurrency: one connection per Store, guarded by a recursive mutex that
// every call holds. A Transaction keeps that mutex from BEGIN to COMMIT or
// ROLLBACK, so another thread's call waits instead of landing inside someone
// else's transaction; the creating thread's own calls re-enter it. Several
// processes may share the file: WAL lets readers run beside the one writer,
// busy_timeout waits for the write lock, and transactions BEGIN IMMEDIATE
// so that a read-then-write never fails with an unretryable SQLITE_BUSY
// (a deferred transaction cannot wait to upgrade its read snapshot in WAL).

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/store/store.hpp"

namespace keyhold::store::sqlite_internal {

using Db = CPtr<sqlite3, &sqlite3_close_v2>;
using Stmt = CPtr<sqlite3_stmt, &sqlite3_finalize>;

// The open connection: configuration, migrations, locking and error mapping.
class Database {
 public:
  explicit Database(std::filesystem::path path);
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  sqlite3* handle() const noexcept { return db_.get(); }
  const std::string& path() const noexcept { return path_; }

  // op names the operation for the message ("insert key"), never its SQL.
  Error error(int rc, std::string_view op) const;

  // Fixed SQL only (DDL, PRAGMA, BEGIN/COMMIT): anything carrying a value goes
  // through a prepared statement with bound parameters.
  void exec(const char* sql, std::string_view op) {
    int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) throw error(rc, op);
  }

  Stmt prepare(const std::string& sql, std::string_view op) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    Stmt stmt(raw);
    if (rc != SQLITE_OK) throw error(rc, op);
    return stmt;
  }

  std::int64_t pragma_int(const char* sql, std::string_view op) {
    std::int64_t value = 0;
    int rc = try_pragma_int(sql, value);
    if (rc != SQLITE_OK) throw error(rc, op);
    return value;
  }

  // Held by every call; see the top of this file.
  std::unique_lock<std::recursive_mutex> lock_for(std::string_view op) {
    std::unique_lock lock(mutex_);
    check_usable(op);
    return lock;
  }

  void begin();
  void commit();
  void rollback() noexcept;

 private:
  int try_pragma_int(const char* sql, std::int64_t& value) noexcept;
  void check_usable(std::string_view op) const;
  void check_ownership();
  void migrate();

  std::string path_;
  Db db_;
  std::recursive_mutex mutex_;
  bool tx_open_ = false;  // with mutex_ held by the transaction's thread
  bool broken_ = false;   // a ROLLBACK failed: the connection's state is unknown
};

// One execution of a cached prepared statement. Resets it and clears its
// bindings when done: a statement left mid-step would pin a WAL read snapshot
// (blocking checkpoints), and SQLITE_STATIC bindings must not outlive the
// buffers they point to.
class Query {
 public:
  Query(const Database& db, sqlite3_stmt* stmt, std::string_view op) : db_(db), stmt_(stmt), op_(op) {}
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  void bind(int index, std::string_view text) {
    // A null pointer would bind NULL, not an empty string.
    const char* data = text.data() != nullptr ? text.data() : "";
    check_bind(sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_STATIC, SQLITE_UTF8));
  }
  void bind(int index, std::span<const std::uint8_t> blob) {
    static constexpr std::uint8_t kEmpty = 0;  // an empty blob, not NULL
    const void* data = blob.data() != nullptr ? blob.data() : &kEmpty;
    check_bind(sqlite3_bind_blob64(stmt_, index, data, blob.size(), SQLITE_STATIC));
  }
  void bind(int index, std::int64_t value) { check_bind(sqlite3_bind_int64(stmt_, index, value)); }
  void bind_null(int index) { check_bind(sqlite3_bind_null(stmt_, index)); }
  // NULL when unset.
  template <class T>
  void bind(int index, const std::optional<T>& value) {
    if (value) {
      bind(index, *value);
    } else {
      bind_null(index);
    }
  }

  int step_rc() noexcept { return sqlite3_step(stmt_); }
  // True with a row to read, false when done.
  bool next() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(rc);
  }
  void run() {
    while (next()) {
    }
  }

  std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    if (p == nullptr) {
      if (!is_null(col)) fail(SQLITE_NOMEM);
      return {};
    }
    return std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::vector<std::uint8_t> blob(int col) const {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, col));
    auto n = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col));
    if (p == nullptr) {
      if (n != 0) fail(SQLITE_NOMEM);
      return {};
    }
    return std::vector<std::uint8_t>(p, p + n);
  }

  [[noreturn]] void fail(int rc) const { throw db_.error(rc, op_); }

 private:
  void check_bind(int rc) const {
    if (rc != SQLITE_OK) fail(rc);
  }

  const Database& db_;
  sqlite3_stmt* stmt_;
  std::string_view op_;
};

// The reads of the repositories: under the connection's lock, the statement
// with keys bound to ?1, ?2, ... in order, each row made a record by
// read(const Query&).
template <class Read>
using RecordOf = std::invoke_result_t<Read&, const Query&>;

// The first row, or nullopt when there is none.
template <class Read, class... Keys>
std::optional<RecordOf<Read>> select_one(Database& db, const Stmt& stmt, std::string_view op, Read read,
                                         const Keys&... keys) {
  auto lock = db.lock_for(op);
  Query q(db, stmt.get(), op);
  [[maybe_unused]] int index = 0;  // unused without keys
  (q.bind(++index, keys), ...);
  if (!q.next()) return std::nullopt;
  return read(q);
}

// Every row, in the statement's order.
template <class Read, class... Keys>
std::vector<RecordOf<Read>> select_all(Database& db, const Stmt& stmt, std::string_view op, Read read,
                                       const Keys&... keys) {
  auto lock = db.lock_for(op);
  Query q(db, stmt.get(), op);
  [[maybe_unused]] int index = 0;  // unused without keys
  (q.bind(++index, keys), ...);
  std::vector<RecordOf<Read>> out;
  while (q.next()) out.push_back(read(q));
  return out;
}

// ---- checks of records, made before SQLite's CHECK constraints are, for a
// message that says which field is wrong ----

inline void require(bool ok, const std::string& message) {
  if (!ok) throw Error(ErrorCode::InvalidArgument, message);
}

inline std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

inline constexpr std::string_view kTimestampExample = "a UTC timestamp like 2026-11-28T15:47:59Z";

// "YYYY-MM-DDTHH:MM:SSZ" with a plausible date and time: the form
// keyhold::format_utc writes, and the only one stored, so that text order is
// time order.
inline bool is_utc_timestamp(std::string_view t) {
  if (t.size() != 20 || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' || t[16] != ':' || t[19] != 'Z') {
    return false;
  }
  for (std::size_t pos : {0, 5, 8, 11, 14, 17}) {
    for (char c : t.substr(pos, pos == 0 ? 4 : 2)) {
      if (c < '0' || c > '9') return false;
    }
  }
  auto two = [&](std::size_t pos) { return (t[pos] - '0') * 10 + (t[pos + 1] - '0'); };
  return two(5) >= 1 && two(5) <= 12 && two(8) >= 1 && two(8) <= 31 && two(11) <= 23 && two(14) <= 59 && two(17) <= 60;
}

// "<what>: <field> '<value>' is not a UTC timestamp like ...".
inline void require_timestamp(std::string_view value, std::string_view field, std::string_view what) {
  require(is_utc_timestamp(value), std::string(what) + ": " + std::string(field) + " " + in_quotes(value) + " is not " +
                                       std::string(kTimestampExample));
}

// ---- the repositories of sqlite_pki_repositories.cpp, for the store ----

std::unique_ptr<CaRepository> make_ca_repository(Database& db);
std::unique_ptr<CertificateRepository> make_certificate_repository(Database& db);

}  // namespace keyhold::store::sqlite_internal
