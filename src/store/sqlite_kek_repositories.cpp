// The SQLite implementation of KekRepository (tables of migration 5 in
// sqlite_store.cpp): the KEKs of envelope encryption, their versions and the
// versions' encryption counts.
//
// Same rules as the other repositories: every call holds the connection's
// lock (and so joins its thread's open Transaction), values go through bound
// parameters of cached prepared statements, and records are checked before
// SQLite's CHECK constraints and triggers are, for a message that names the
// wrong field.
//
// Counts and limits are unsigned in the API and plain non-negative INTEGERs in
// the table, so both are capped at kKekMaxCount (2^63 - 1); the conversions
// below are exact on that range.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/store/store.hpp"
#include "sqlite_database.hpp"

namespace keyhold::store::sqlite_internal {
namespace {

constexpr std::size_t kKekIdBytes = 16;

// Values the CHECK constraints keep within 0..kKekMaxCount.
std::uint64_t count_from_db(std::int64_t value) { return value < 0 ? 0 : static_cast<std::uint64_t>(value); }
std::int64_t count_to_db(std::uint64_t value) { return static_cast<std::int64_t>(value); }  // after the checks

// ---- keks ----

constexpr const char* kKekColumns = "id, name, kek_id, rotation_period_seconds, max_encryptions, created_at";

KekRecord read_kek(const Query& q) {
  KekRecord r;
  r.id = q.integer(0);
  r.name = q.text(1);
  r.kek_id = q.blob(2);
  r.rotation_period_seconds = q.integer(3);
  r.max_encryptions = count_from_db(q.integer(4));
  r.created_at = q.text(5);
  return r;
}

// The policy fields, for insert() and update_policy().
void validate_policy(std::int64_t rotation_period_seconds, std::uint64_t max_encryptions, const std::string& what) {
  require(rotation_period_seconds >= 0, what + ": rotation period " + std::to_string(rotation_period_seconds) +
                                            " seconds is negative (0 turns rotation by age off)");
  require(max_encryptions >= 1, what + ": max_encryptions is 0 (it must be at least 1)");
  require(max_encryptions <= kKekMaxCount, what + ": max_encryptions " + std::to_string(max_encryptions) +
                                               " is more than 2^63 - 1");
}

// The rules of migration 5's CHECK constraints, first, for a message that
// says which field is wrong.
void validate(const KekRecord& r, const std::string& created_at) {
  require(!r.name.empty(), "KEK record: name is empty");
  std::string what = "KEK record for " + in_quotes(r.name);
  require(r.kek_id.size() == kKekIdBytes,
          what + ": kek_id has " + std::to_string(r.kek_id.size()) + " bytes, not " + std::to_string(kKekIdBytes));
  validate_policy(r.rotation_period_seconds, r.max_encryptions, what);
  require_timestamp(created_at, "created_at", what);
}

// ---- kek_versions ----

constexpr const char* kKekVersionColumns =
    "id, kek_id, version, key_object_id, state, encryptions, created_at, state_changed_at";

KekVersionRecord read_kek_version(const Query& q) {
  KekVersionRecord r;
  r.id = q.integer(0);
  r.kek_id = q.integer(1);
  r.version = static_cast<std::uint32_t>(q.integer(2));  // 1..2^32-1 by the CHECK constraint
  r.key_object_id = q.blob(3);
  r.state = q.text(4);
  r.encryptions = count_from_db(q.integer(5));
  r.created_at = q.text(6);
  if (!q.is_null(7)) r.state_changed_at = q.text(7);
  return r;
}

bool is_kek_state(std::string_view s) {
  return s == kKekVersionEnabled || s == kKekVersionDisabled || s == kKekVersionDestroyed;
}

void validate(const KekVersionRecord& r, const std::string& created_at) {
  std::string what = "KEK version record " + std::to_string(r.version) + " of KEK " + std::to_string(r.kek_id);
  require(r.version >= 1, what + ": version must be 1 or more");
  require(!r.key_object_id.empty(), what + ": CKA_ID is empty");
  require(r.state == kKekVersionEnabled, what + ": state " + in_quotes(r.state) + " is not enabled (a new version is)");
  require(r.encryptions <= kKekMaxCount,
          what + ": encryptions " + std::to_string(r.encryptions) + " is more than 2^63 - 1");
  require(!r.state_changed_at.has_value(), what + ": state_changed_at is set (a new version has not changed state)");
  require_timestamp(created_at, "created_at", what);
}

class SqliteKekRepository final : public KekRepository {
 public:
  explicit SqliteKekRepository(Database& db)
      : db_(db),
        insert_(db.prepare("INSERT INTO keks (name, kek_id, rotation_period_seconds, max_encryptions, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
                           "prepare insert KEK")),
        find_(db.prepare(std::string("SELECT ") + kKekColumns + " FROM keks WHERE name = ?1", "prepare find KEK")),
        find_by_kek_id_(db.prepare(std::string("SELECT ") + kKekColumns + " FROM keks WHERE kek_id = ?1",
                                   "prepare find KEK by kek_id")),
        list_(db.prepare(std::string("SELECT ") + kKekColumns + " FROM keks ORDER BY name", "prepare list KEKs")),
        update_policy_(db.prepare("UPDATE keks SET rotation_period_seconds = ?2, max_encryptions = ?3 WHERE id = ?1",
                                  "prepare update KEK policy")),
        last_version_(db.prepare("SELECT name, (SELECT COALESCE(MAX(version), 0) FROM kek_versions "
                                 "WHERE kek_versions.kek_id = keks.id) FROM keks WHERE id = ?1",
                                 "prepare find last KEK version")),
        insert_version_(db.prepare("INSERT INTO kek_versions (kek_id, version, key_object_id, state, encryptions, "
                                   "created_at, state_changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                   "prepare insert KEK version")),
        versions_(db.prepare(std::string("SELECT ") + kKekVersionColumns +
                                 " FROM kek_versions WHERE kek_id = ?1 ORDER BY version",
                             "prepare list KEK versions")),
        find_version_(db.prepare(std::string("SELECT ") + kKekVersionColumns +
                                     " FROM kek_versions WHERE kek_id = ?1 AND version = ?2",
                                 "prepare find KEK version")),
        version_state_(db.prepare("SELECT keks.name, v.version, v.state, v.state_changed_at, v.encryptions "
                                  "FROM kek_versions AS v JOIN keks ON keks.id = v.kek_id WHERE v.id = ?1",
                                  "prepare read KEK version state")),
        set_state_(db.prepare("UPDATE kek_versions SET state = ?2, state_changed_at = ?3 WHERE id = ?1",
                              "prepare set KEK version state")),
        // One statement, so that the addition and the read are one atomic
        // step even outside a transaction and across processes. Its WHERE
        // keeps the sum within 2^63 - 1 (?2 is 1..2^63-1, so the subtraction
        // cannot overflow); RETURNING sees the new count.
        reserve_(db.prepare("UPDATE kek_versions SET encryptions = encryptions + ?2 "
                            "WHERE id = ?1 AND state = 'enabled' AND encryptions <= 9223372036854775807 - ?2 "
                            "RETURNING encryptions - ?2",
                            "prepare reserve KEK encryptions")) {}

  void insert(KekRecord& record) override {
    static constexpr std::string_view kOp = "insert KEK";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);

    auto lock = db_.lock_for(kOp);
    Query q(db_, insert_.get(), kOp);
    q.bind(1, record.name);
    q.bind(2, std::span<const std::uint8_t>(record.kek_id));
    q.bind(3, record.rotation_period_seconds);
    q.bind(4, count_to_db(record.max_encryptions));
    q.bind(5, created_at);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
      // SQLite names the constraint's columns (never values) in its message.
      if (std::string_view(sqlite3_errmsg(db_.handle())).find("keks.kek_id") != std::string_view::npos) {
        throw Error(ErrorCode::AlreadyExists,
                    "a KEK with kek_id " + to_hex(record.kek_id) + " is already in the store");
      }
      throw Error(ErrorCode::AlreadyExists, "a KEK named '" + record.name + "' already exists");
    }
    if (rc != SQLITE_DONE) q.fail(rc);
    record.id = sqlite3_last_insert_rowid(db_.handle());
    record.created_at = std::move(created_at);
  }

  std::optional<KekRecord> find(std::string_view name) override {
    return select_one(db_, find_, "find KEK", read_kek, name);
  }

  std::optional<KekRecord> find_by_kek_id(std::span<const std::uint8_t> kek_id) override {
    return select_one(db_, find_by_kek_id_, "find KEK by kek_id", read_kek, kek_id);
  }

  std::vector<KekRecord> list() override { return select_all(db_, list_, "list KEKs", read_kek); }

  void update_policy(std::int64_t id, std::int64_t rotation_period_seconds, std::uint64_t max_encryptions) override {
    static constexpr std::string_view kOp = "update KEK policy";
    validate_policy(rotation_period_seconds, max_encryptions, "update policy of KEK " + std::to_string(id));
    auto lock = db_.lock_for(kOp);
    Query q(db_, update_policy_.get(), kOp);
    q.bind(1, id);
    q.bind(2, rotation_period_seconds);
    q.bind(3, count_to_db(max_encryptions));
    q.run();
    if (sqlite3_changes(db_.handle()) == 0) throw no_such_kek(id);
  }

  void insert_version(KekVersionRecord& record) override {
    static constexpr std::string_view kOp = "insert KEK version";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);

    auto lock = db_.lock_for(kOp);
    // The step holds the write lock from reading the last version to the
    // insert: concurrent callers cannot both add the same next version, and
    // the refusal says what the last version was when it was refused.
    AtomicStep step(db_, kOp);
    std::string name;
    std::int64_t last = 0;
    {
      Query q(db_, last_version_.get(), kOp);
      q.bind(1, record.kek_id);
      if (!q.next()) throw no_such_kek(record.kek_id);
      name = q.text(0);
      last = q.integer(1);
    }
    if (record.version <= last) {
      throw Error(ErrorCode::AlreadyExists,
                  "KEK " + in_quotes(name) + " already has a version " + std::to_string(record.version));
    }
    require(record.version == last + 1, "KEK " + in_quotes(name) + ": the new version must be " +
                                            std::to_string(last + 1) + " (the last is " + std::to_string(last) +
                                            "), not " + std::to_string(record.version));
    {
      Query q(db_, insert_version_.get(), kOp);
      q.bind(1, record.kek_id);
      q.bind(2, std::int64_t{record.version});
      q.bind(3, std::span<const std::uint8_t>(record.key_object_id));
      q.bind(4, record.state);
      q.bind(5, count_to_db(record.encryptions));
      q.bind(6, created_at);
      q.bind(7, record.state_changed_at);
      int rc = q.step_rc();
      if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        // The version is free (checked above, under the lock): the CKA_ID is taken.
        throw Error(ErrorCode::AlreadyExists, "a KEK version with CKA_ID " + to_hex(record.key_object_id) +
                                                  " is already in the store");
      }
      if (rc != SQLITE_DONE) q.fail(rc);
    }
    std::int64_t id = sqlite3_last_insert_rowid(db_.handle());
    step.commit();
    record.id = id;
    record.created_at = std::move(created_at);
  }

  std::vector<KekVersionRecord> versions(std::int64_t kek_id) override {
    return select_all(db_, versions_, "list KEK versions", read_kek_version, kek_id);
  }

  std::optional<KekVersionRecord> find_version(std::int64_t kek_id, std::uint32_t version) override {
    return select_one(db_, find_version_, "find KEK version", read_kek_version, kek_id, std::int64_t{version});
  }

  void set_state(std::int64_t version_id, std::string_view state, std::string_view at) override {
    static constexpr std::string_view kOp = "set KEK version state";
    std::string what = "set state of KEK version " + std::to_string(version_id);
    require(is_kek_state(state), what + ": state " + in_quotes(state) + " is not enabled, disabled or destroyed");
    require_timestamp(at, "time", what);

    auto lock = db_.lock_for(kOp);
    // Read, judge and write under the write lock: states go back and forth,
    // so what a later read shows might not be why an update was refused.
    AtomicStep step(db_, kOp);
    VersionState current = version_state(version_id, kOp);
    if (current.state == kKekVersionDestroyed) throw destroyed(current);
    if (current.state == state) {
      throw Error(ErrorCode::FailedPrecondition, current.label() + " is already " + std::string(state));
    }
    {
      Query q(db_, set_state_.get(), kOp);
      q.bind(1, version_id);
      q.bind(2, state);
      q.bind(3, at);
      q.run();
    }
    step.commit();
  }

  std::uint64_t reserve_encryptions(std::int64_t version_id, std::uint64_t n) override {
    static constexpr std::string_view kOp = "reserve KEK encryptions";
    std::string what = "reserve encryptions of KEK version " + std::to_string(version_id);
    require(n >= 1, what + ": the number to reserve is 0");
    require(n <= kKekMaxCount, what + ": the number to reserve, " + std::to_string(n) + ", is more than 2^63 - 1");

    auto lock = db_.lock_for(kOp);
    // The usual case: one statement, its own committed write (or part of the
    // caller's transaction).
    if (std::optional<std::uint64_t> before = try_reserve(version_id, n, kOp)) return *before;

    // Refused: say why. Under a step (the write lock), the UPDATE runs again
    // so that the explanation matches what it saw; should another writer have
    // changed the version meanwhile (enabled it again), the reservation now
    // succeeds.
    AtomicStep step(db_, kOp);
    if (std::optional<std::uint64_t> before = try_reserve(version_id, n, kOp)) {
      step.commit();
      return *before;
    }
    VersionState current = version_state(version_id, kOp);
    if (current.state == kKekVersionDestroyed) throw destroyed(current);
    if (current.state != kKekVersionEnabled) {
      throw Error(ErrorCode::FailedPrecondition,
                  current.label() + " is " + current.state + " (since " +
                      current.changed_at.value_or("an unknown time") + "): it does not encrypt");
    }
    throw Error(ErrorCode::FailedPrecondition, current.label() + " has reserved " +
                                                   std::to_string(current.encryptions) + " encryptions; " +
                                                   std::to_string(n) + " more would pass 2^63 - 1");
  }

 private:
  struct VersionState {
    std::string name;
    std::int64_t version = 0;
    std::string state;
    std::optional<std::string> changed_at;
    std::uint64_t encryptions = 0;

    std::string label() const { return "KEK " + in_quotes(name) + " version " + std::to_string(version); }
  };

  // With the lock held. NotFound for an unknown id.
  VersionState version_state(std::int64_t version_id, std::string_view op) {
    Query q(db_, version_state_.get(), op);
    q.bind(1, version_id);
    if (!q.next()) throw Error(ErrorCode::NotFound, "no KEK version with id " + std::to_string(version_id));
    VersionState s;
    s.name = q.text(0);
    s.version = q.integer(1);
    s.state = q.text(2);
    if (!q.is_null(3)) s.changed_at = q.text(3);
    s.encryptions = count_from_db(q.integer(4));
    return s;
  }

  // The count before the addition, or nullopt when the UPDATE matched no row.
  // With the lock held.
  std::optional<std::uint64_t> try_reserve(std::int64_t version_id, std::uint64_t n, std::string_view op) {
    Query q(db_, reserve_.get(), op);
    q.bind(1, version_id);
    q.bind(2, count_to_db(n));
    if (!q.next()) return std::nullopt;
    std::int64_t before = q.integer(0);
    q.run();  // to SQLITE_DONE: the statement (and, outside a transaction, its write) is complete
    return count_from_db(before);
  }

  static Error destroyed(const VersionState& s) {
    return Error(ErrorCode::FailedPrecondition,
                 s.label() + " was destroyed at " + s.changed_at.value_or("an unknown time"));
  }

  static Error no_such_kek(std::int64_t id) {
    return Error(ErrorCode::NotFound, "no KEK with id " + std::to_string(id));
  }

  Database& db_;
  Stmt insert_;
  Stmt find_;
  Stmt find_by_kek_id_;
  Stmt list_;
  Stmt update_policy_;
  Stmt last_version_;
  Stmt insert_version_;
  Stmt versions_;
  Stmt find_version_;
  Stmt version_state_;
  Stmt set_state_;
  Stmt reserve_;
};

}  // namespace

std::unique_ptr<KekRepository> make_kek_repository(Database& db) { return std::make_unique<SqliteKekRepository>(db); }

}  // namespace keyhold::store::sqlite_internal
