#pragma once
// keyhold's metadata store: names, CKA_IDs, purposes, algorithms, states and
// timestamps of the keys keyhold manages. Never key material: private and
// secret keys stay in the token. Callers see only these interfaces; SQLite is
// the embedded implementation (open_sqlite_store), PostgreSQL comes later.
//
// Errors: every failure is a keyhold::Error. Codes used: InvalidArgument (a
// record that breaks a rule of the schema), NotFound, AlreadyExists,
// FailedPrecondition (the database is not a keyhold store, or its schema is
// newer than this build; misuse of a Transaction), Unavailable (the database
// cannot be opened, read or written, e.g. it stays locked), Internal.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keyhold::store {

inline constexpr std::string_view kStateActive = "active";
inline constexpr std::string_view kStateDestroyed = "destroyed";

// One key keyhold manages. Timestamps are RFC 3339 UTC with seconds and a
// 'Z' (keyhold::format_utc), so that they sort as text.
struct KeyRecord {
  std::int64_t id = 0;                        // row id, set by insert()
  std::string name;                           // keyhold name (CKA_LABEL in the token)
  std::vector<std::uint8_t> token_object_id;  // CKA_ID (16 random bytes for keys keyhold made)
  std::string key_type;                       // "rsa-2048" | "ec-p256" | ... | "aes-256" (opaque text to the store)
  std::string purpose;                        // "sign" | "encrypt"
  std::string state = "active";               // "active" | "destroyed"
  std::string created_at;                     // e.g. 2026-11-28T15:47:59Z; insert() fills it when empty
  std::optional<std::string> destroyed_at;    // set exactly when state is "destroyed"

  bool operator==(const KeyRecord&) const = default;
};

// The keys table. At most one ACTIVE key per name; a destroyed key's row stays
// for audit, and its name may be given to a new key. A CKA_ID is never reused.
// Thread-safe: calls may come from any thread; each call is atomic on its own,
// and joins the Transaction its thread has open on the same Store, if any.
class KeyRepository {
 public:
  virtual ~KeyRepository() = default;

  // Adds the record and sets record.id (and record.created_at when it was
  // empty); record is unchanged when it throws. AlreadyExists when an active
  // key has that name or any row has that CKA_ID; InvalidArgument when a
  // field is empty or malformed (purpose not sign/encrypt, state not
  // active/destroyed, destroyed_at not matching state, bad timestamp).
  virtual void insert(KeyRecord& record) = 0;

  // The active key of that name, or nullopt.
  virtual std::optional<KeyRecord> find_active(std::string_view name) = 0;

  // The key (active or destroyed) whose CKA_ID is id, or nullopt.
  virtual std::optional<KeyRecord> find_by_object_id(std::span<const std::uint8_t> id) = 0;

  // Every active key (and destroyed ones too when include_destroyed), ordered
  // by name, then created_at, then id.
  virtual std::vector<KeyRecord> list(bool include_destroyed) = 0;

  // Marks the active key of that name destroyed at `at` (an RFC 3339 UTC
  // timestamp as above). NotFound when no active key has that name;
  // InvalidArgument when `at` is malformed. The row is kept.
  virtual void mark_destroyed(std::string_view name, std::string_view at) = 0;
};

// An open store. Thread-safe: the SQLite store serialises every call on its
// one connection (a mutex), so calls from many threads are fine but do not run
// in parallel. Several processes may share one SQLite file. Must outlive the
// repositories and Transactions taken from it.
class Store {
 public:
  virtual ~Store() = default;

  virtual KeyRepository& keys() = 0;

  // The schema version of the open database (number of migrations applied).
  virtual int schema_version() = 0;

 protected:
  friend class Transaction;
  // begin: FailedPrecondition when the calling thread already has a
  // transaction open on this store; Unavailable when the store stays busy.
  // While a transaction is open, other threads' calls on this store wait.
  virtual void begin_transaction() = 0;
  // Ends the transaction whatever happens; throws when the commit failed
  // (the changes are then rolled back).
  virtual void commit_transaction() = 0;
  virtual void rollback_transaction() noexcept = 0;
};

// A unit of work on one Store: begun on construction, rolled back on
// destruction unless commit() was called. Every repository call made on the
// Store by the creating thread until then belongs to it, and other threads'
// calls on that Store wait until it ends: keep it short. Move-only; use and end
// it on the thread that created it (so never hold one across a coroutine
// suspension). A second Transaction on the same Store from the same thread
// fails with FailedPrecondition (no nesting); one from another thread waits.
class Transaction {
 public:
  explicit Transaction(Store& store);
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&& other) noexcept;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  // FailedPrecondition when already committed or rolled back; on any other
  // error the changes are rolled back and the transaction is over.
  void commit();
  // Rolls back now; a no-op when already ended.
  void rollback() noexcept;
  bool active() const noexcept { return store_ != nullptr; }

 private:
  Store* store_;  // null once ended (or moved from)
};

// Opens (creating it when missing) the SQLite store at path: the parent
// directory is created when missing and the file with mode 0600 whatever the
// umask; WAL journal mode, busy timeout 5000 ms, foreign keys on; pending
// migrations are applied. FailedPrecondition when the file is not an SQLite
// database, belongs to another application, or has a schema newer than this
// build knows; Unavailable when it cannot be opened.
std::unique_ptr<Store> open_sqlite_store(const std::filesystem::path& path);

}  // namespace keyhold::store
