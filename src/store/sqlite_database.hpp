#pragma once
// What the SQLite store's files share (internal to src/store): the
// connection (Database), one execution of a prepared statement (Query), a
// step of several statements that is atomic (AtomicStep), and the small
// checks and encodings their records go through. sqlite_store.cpp defines
// Database's out-of-line members and the key repository; the CA and
// certificate repositories live in sqlite_pki_repositories.cpp, the SSH ones
// in sqlite_ssh_repositories.cpp, the KEK one in sqlite_kek_repositories.cpp.
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

// Several statements that must happen together or not at all (a KRL entry
// and the certificates it revokes), with the connection's lock held. Inside
// the thread's open Transaction it is a SAVEPOINT, so that a failure undoes
// this step only and the caller's transaction holds whole steps; otherwise a
// transaction of its own through Database::begin() (BEGIN IMMEDIATE, see the
// top of this file). Rolled back on destruction unless committed.
class AtomicStep {
 public:
  AtomicStep(Database& db, std::string_view op)
      // Under the lock, a transaction open on the connection is this thread's.
      : db_(db), op_(op), nested_(sqlite3_get_autocommit(db.handle()) == 0) {
    if (nested_) {
      db_.exec("SAVEPOINT keyhold_step", op_);
    } else {
      db_.begin();
    }
  }
  AtomicStep(const AtomicStep&) = delete;
  AtomicStep& operator=(const AtomicStep&) = delete;
  ~AtomicStep() {
    if (done_) return;
    if (!nested_) {
      db_.rollback();
    } else if (sqlite3_get_autocommit(db_.handle()) == 0) {
      // Fails only when SQLite already rolled the whole transaction back
      // (SQLITE_FULL, ...): Database then refuses the transaction's next calls.
      sqlite3_exec(db_.handle(), "ROLLBACK TO keyhold_step; RELEASE keyhold_step", nullptr, nullptr, nullptr);
    }
  }

  void commit() {
    if (nested_) {
      db_.exec("RELEASE keyhold_step", op_);
      done_ = true;
    } else {
      done_ = true;  // Database::commit() ends the transaction whatever happens
      db_.commit();
    }
  }

 private:
  Database& db_;
  std::string_view op_;
  bool nested_;
  bool done_ = false;
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

// ---- lists of strings as JSON text ----

// values as a JSON array of strings (RFC 8259): the form the schema checks
// (json_valid, json_type 'array'), and one that a PostgreSQL store could keep
// as jsonb.
inline std::string to_json_array(const std::vector<std::string>& values) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.push_back('"');
    for (char ch : values[i]) {
      auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        out.push_back('\\');
        out.push_back(ch);
      } else if (c < 0x20) {
        out += "\\u00";
        out.push_back(kDigits[c >> 4]);
        out.push_back(kDigits[c & 0x0f]);
      } else {
        out.push_back(ch);
      }
    }
    out.push_back('"');
  }
  out.push_back(']');
  return out;
}

// A JSON array of strings back into strings; nullopt when text is anything
// else. Reads any valid JSON spelling (escapes, white space), not only
// to_json_array's: other writers of the database may spell it differently.
inline std::optional<std::vector<std::string>> from_json_array(std::string_view text) {
  std::size_t i = 0;
  auto skip_ws = [&] {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) ++i;
  };
  auto hex4 = [&](std::uint32_t& v) {
    if (text.size() - i < 4) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i++];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return false;
      v = v << 4 | static_cast<std::uint32_t>(d);
    }
    return true;
  };
  auto utf8 = [](std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xc0 | cp >> 6));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | cp >> 12));
      out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | cp >> 18));
      out.push_back(static_cast<char>(0x80 | (cp >> 12 & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  };
  auto string = [&](std::string& out) {
    if (i >= text.size() || text[i] != '"') return false;
    ++i;
    while (i < text.size()) {
      auto c = static_cast<unsigned char>(text[i++]);
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c != '\\') {
        out.push_back(static_cast<char>(c));
        continue;
      }
      if (i >= text.size()) return false;
      switch (text[i++]) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xdc00 && cp <= 0xdfff) return false;  // a lone low surrogate
          if (cp >= 0xd800 && cp <= 0xdbff) {
            std::uint32_t low = 0;
            if (text.substr(i, 2) != "\\u") return false;
            i += 2;
            if (!hex4(low) || low < 0xdc00 || low > 0xdfff) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          utf8(out, cp);
          break;
        }
        default: return false;
      }
    }
    return false;
  };

  std::vector<std::string> out;
  skip_ws();
  if (i >= text.size() || text[i] != '[') return std::nullopt;
  ++i;
  skip_ws();
  if (i < text.size() && text[i] == ']') {
    ++i;
  } else {
    for (;;) {
      std::string value;
      if (!string(value)) return std::nullopt;
      out.push_back(std::move(value));
      skip_ws();
      if (i >= text.size()) return std::nullopt;
      char c = text[i++];
      if (c == ']') break;
      if (c != ',') return std::nullopt;
      skip_ws();
    }
  }
  skip_ws();
  if (i != text.size()) return std::nullopt;
  return out;
}

// ---- the repositories of the other files, for the store ----

// sqlite_pki_repositories.cpp
std::unique_ptr<CaRepository> make_ca_repository(Database& db);
std::unique_ptr<CertificateRepository> make_certificate_repository(Database& db);

// sqlite_ssh_repositories.cpp
std::unique_ptr<SshCaRepository> make_ssh_ca_repository(Database& db);
std::unique_ptr<SshCertificateRepository> make_ssh_certificate_repository(Database& db);
std::unique_ptr<SshKeyRepository> make_ssh_key_repository(Database& db);

// sqlite_kek_repositories.cpp
std::unique_ptr<KekRepository> make_kek_repository(Database& db);

}  // namespace keyhold::store::sqlite_internal
