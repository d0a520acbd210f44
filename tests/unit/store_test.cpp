// keyhold::store on a real SQLite file, checked both through the store's API
// and with the SQLite C API opened on the same file.

#include "keyhold/store/store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using keyhold::Error;
using keyhold::ErrorCode;
using keyhold::store::KeyRecord;
using keyhold::store::kSqliteSchemaVersion;
using keyhold::store::open_sqlite_store;
using keyhold::store::Store;
using keyhold::store::Transaction;

// Every test works in a directory of its own.
class TempDir : public keyhold::testing::TempDir {
 public:
  TempDir() : keyhold::testing::TempDir("keyhold-store-test") {}
};

class UmaskScope {
 public:
  explicit UmaskScope(mode_t mask) : old_(::umask(mask)) {}
  UmaskScope(const UmaskScope&) = delete;
  UmaskScope& operator=(const UmaskScope&) = delete;
  ~UmaskScope() { ::umask(old_); }

 private:
  mode_t old_;
};

// The file opened with the SQLite C API directly, as an independent observer.
class RawDb {
 public:
  explicit RawDb(const fs::path& path) {
    int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) throw std::runtime_error("sqlite3_open_v2 failed: " + std::to_string(rc));
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 5000);
  }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  ~RawDb() { sqlite3_close_v2(db_); }

  // The first column of the first row, as text ("" when there is none).
  std::string text(const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("prepare failed: ") + sqlite3_errmsg(db_));
    }
    std::string out;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw std::runtime_error(std::string("step failed: ") + sqlite3_errmsg(db_));
    return out;
  }
  long long integer(const char* sql) { return std::stoll(text(sql)); }
  // The extended result code of running sql.
  int exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }

 private:
  sqlite3* db_ = nullptr;
};

std::vector<std::uint8_t> object_id(int a, int b = 0) {
  std::vector<std::uint8_t> id(16, 0xa5);
  id[0] = static_cast<std::uint8_t>(a);
  id[1] = static_cast<std::uint8_t>(a >> 8);
  id[2] = static_cast<std::uint8_t>(b);
  id[3] = static_cast<std::uint8_t>(b >> 8);
  return id;
}

KeyRecord make_key(const std::string& name, std::vector<std::uint8_t> id,
                   const std::string& created_at = "2026-11-28T15:47:59Z") {
  KeyRecord r;
  r.name = name;
  r.token_object_id = std::move(id);
  r.key_type = "ec-p256";
  r.purpose = "sign";
  r.created_at = created_at;
  return r;
}

// Runs f, which must throw keyhold::Error with that code; returns its message.
template <class F>
std::string expect_error(F&& f, ErrorCode code) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(keyhold::to_string(e.code()), keyhold::to_string(code)) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected keyhold::Error, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected keyhold::Error " << keyhold::to_string(code) << ", nothing was thrown";
  return {};
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

mode_t file_mode(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("stat failed: " + path.string());
  return st.st_mode & 07777;
}

class SqliteStore : public ::testing::Test {
 protected:
  fs::path db_path() const { return dir_.path() / "keyhold.db"; }
  TempDir dir_;
};

class StoreTransaction : public SqliteStore {};

TEST_F(SqliteStore, AppliesMigrationsToNewFileAndCreatesParentDirectory) {
  fs::path path = dir_.path() / "not" / "yet" / "there" / "keyhold.db";
  {
    auto store = open_sqlite_store(path);
    EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
  }
  ASSERT_TRUE(fs::is_regular_file(path));
  RawDb raw(path);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'keys'"), 1);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'keys_active_name'"), 1);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM keys"), 0);
}

TEST_F(SqliteStore, ReopeningIsIdempotent) {
  KeyRecord key = make_key("ca-root", object_id(1));
  {
    auto store = open_sqlite_store(db_path());
    store->keys().insert(key);
  }
  for (int i = 0; i < 2; ++i) {
    auto store = open_sqlite_store(db_path());
    EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
    EXPECT_EQ(store->keys().list(true).size(), 1u);
    EXPECT_EQ(store->keys().find_active("ca-root"), key);
  }
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE name LIKE 'keys%'"), 3);  // table + 2 indexes
}

TEST_F(SqliteStore, UsesWalJournalMode) {
  auto store = open_sqlite_store(db_path());
  RawDb raw(db_path());
  EXPECT_EQ(raw.text("PRAGMA journal_mode"), "wal");
}

TEST_F(SqliteStore, CreatesFileWithMode0600UnderUmask022) {
  UmaskScope umask(022);
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(file_mode(db_path()), 0600u);
  KeyRecord key = make_key("k", object_id(1));
  store->keys().insert(key);
  // SQLite gives the WAL the database's mode; it exists while the store is open.
  fs::path wal = db_path().string() + "-wal";
  ASSERT_TRUE(fs::exists(wal));
  EXPECT_EQ(file_mode(wal), 0600u);
}

TEST_F(SqliteStore, CreatesWritableFileWithMode0600UnderRestrictiveUmask) {
  UmaskScope umask(0277);
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(file_mode(db_path()), 0600u);
  KeyRecord key = make_key("k", object_id(1));
  store->keys().insert(key);
  EXPECT_TRUE(store->keys().find_active("k").has_value());
}

TEST_F(SqliteStore, InsertThenFindRoundTripsEveryField) {
  auto store = open_sqlite_store(db_path());
  KeyRecord key;
  key.name = "kek-payments";
  key.token_object_id = {0x00, 0x01, 0xfe, 0xff, 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0x00};
  key.key_type = "aes-256";
  key.purpose = "encrypt";
  key.created_at = "2026-01-02T03:04:05Z";
  KeyRecord inserted = key;
  store->keys().insert(inserted);
  EXPECT_GT(inserted.id, 0);
  key.id = inserted.id;
  EXPECT_EQ(inserted, key);

  auto by_name = store->keys().find_active("kek-payments");
  ASSERT_TRUE(by_name.has_value());
  EXPECT_EQ(*by_name, key);
  auto by_id = store->keys().find_by_object_id(key.token_object_id);
  ASSERT_TRUE(by_id.has_value());
  EXPECT_EQ(*by_id, key);
  EXPECT_FALSE(store->keys().find_active("kek-payment").has_value());
  EXPECT_FALSE(store->keys().find_by_object_id(object_id(7)).has_value());

  // A destroyed key keeps every field and gains destroyed_at.
  store->keys().mark_destroyed("kek-payments", "2026-02-03T04:05:06Z");
  EXPECT_FALSE(store->keys().find_active("kek-payments").has_value());
  auto destroyed = store->keys().find_by_object_id(key.token_object_id);
  ASSERT_TRUE(destroyed.has_value());
  key.state = "destroyed";
  key.destroyed_at = "2026-02-03T04:05:06Z";
  EXPECT_EQ(*destroyed, key);
}

TEST_F(SqliteStore, InsertFillsCreatedAtWhenEmpty) {
  auto store = open_sqlite_store(db_path());
  KeyRecord key = make_key("k", object_id(1), "");
  std::string before = keyhold::now_utc();
  store->keys().insert(key);
  std::string after = keyhold::now_utc();
  EXPECT_GE(key.created_at, before);
  EXPECT_LE(key.created_at, after);
  EXPECT_EQ(store->keys().find_active("k")->created_at, key.created_at);
}

TEST_F(SqliteStore, DuplicateActiveNameIsAlreadyExistsAndInsertsNothing) {
  auto store = open_sqlite_store(db_path());
  KeyRecord first = make_key("ca-root", object_id(1));
  store->keys().insert(first);
  KeyRecord second = make_key("ca-root", object_id(2), "");
  std::string message = expect_error([&] { store->keys().insert(second); }, ErrorCode::AlreadyExists);
  EXPECT_NE(message.find("ca-root"), std::string::npos) << message;
  EXPECT_EQ(second.id, 0);
  EXPECT_EQ(second.created_at, "");
  EXPECT_FALSE(store->keys().find_by_object_id(object_id(2)).has_value());
  auto all = store->keys().list(true);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], first);
}

TEST_F(SqliteStore, DuplicateObjectIdIsAlreadyExistsEvenAfterDestroy) {
  auto store = open_sqlite_store(db_path());
  KeyRecord first = make_key("a", object_id(1));
  store->keys().insert(first);
  KeyRecord other_name = make_key("b", object_id(1));
  std::string message = expect_error([&] { store->keys().insert(other_name); }, ErrorCode::AlreadyExists);
  EXPECT_NE(message.find(keyhold::to_hex(object_id(1))), std::string::npos) << message;

  store->keys().mark_destroyed("a", "2026-12-01T00:00:00Z");
  KeyRecord reuse = make_key("a", object_id(1));
  expect_error([&] { store->keys().insert(reuse); }, ErrorCode::AlreadyExists);
  EXPECT_EQ(store->keys().list(true).size(), 1u);
  EXPECT_FALSE(store->keys().find_active("b").has_value());
}

TEST_F(SqliteStore, DestroyedNameCanBeReusedAndStaysListed) {
  auto store = open_sqlite_store(db_path());
  KeyRecord old_key = make_key("tls", object_id(1), "2026-01-01T00:00:00Z");
  store->keys().insert(old_key);
  store->keys().mark_destroyed("tls", "2026-06-01T00:00:00Z");
  KeyRecord new_key = make_key("tls", object_id(2), "2026-06-02T00:00:00Z");
  store->keys().insert(new_key);
  EXPECT_NE(new_key.id, old_key.id);

  auto all = store->keys().list(true);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].token_object_id, object_id(1));
  EXPECT_EQ(all[0].state, "destroyed");
  EXPECT_EQ(all[0].destroyed_at, "2026-06-01T00:00:00Z");
  EXPECT_EQ(all[1], new_key);

  auto active = store->keys().list(false);
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0], new_key);
  EXPECT_EQ(store->keys().find_active("tls"), new_key);
}

TEST_F(SqliteStore, ListOrdersByNameThenCreatedAt) {
  auto store = open_sqlite_store(db_path());
  auto add = [&](const std::string& name, int id, const std::string& created, bool destroy) {
    KeyRecord k = make_key(name, object_id(id), created);
    store->keys().insert(k);
    if (destroy) store->keys().mark_destroyed(name, "2026-12-31T00:00:00Z");
  };
  add("b", 1, "2026-03-01T00:00:00Z", true);
  add("a", 2, "2026-05-01T00:00:00Z", false);
  add("b", 3, "2026-01-01T00:00:00Z", true);
  add("b", 4, "2026-02-01T00:00:00Z", false);
  std::vector<std::pair<std::string, std::string>> seen;
  for (const auto& k : store->keys().list(true)) seen.emplace_back(k.name, k.created_at);
  std::vector<std::pair<std::string, std::string>> expected = {
      {"a", "2026-05-01T00:00:00Z"},
      {"b", "2026-01-01T00:00:00Z"},
      {"b", "2026-02-01T00:00:00Z"},
      {"b", "2026-03-01T00:00:00Z"},
  };
  EXPECT_EQ(seen, expected);
  auto active = store->keys().list(false);
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(active[0].name, "a");
  EXPECT_EQ(active[1].token_object_id, object_id(4));
}

TEST_F(SqliteStore, MarkDestroyedOfUnknownNameIsNotFound) {
  auto store = open_sqlite_store(db_path());
  std::string message =
      expect_error([&] { store->keys().mark_destroyed("nope", "2026-01-01T00:00:00Z"); }, ErrorCode::NotFound);
  EXPECT_NE(message.find("nope"), std::string::npos) << message;

  KeyRecord key = make_key("once", object_id(1));
  store->keys().insert(key);
  store->keys().mark_destroyed("once", "2026-01-01T00:00:00Z");
  expect_error([&] { store->keys().mark_destroyed("once", "2026-01-02T00:00:00Z"); }, ErrorCode::NotFound);
  // The first destroy time stands.
  EXPECT_EQ(store->keys().find_by_object_id(object_id(1))->destroyed_at, "2026-01-01T00:00:00Z");
}

TEST_F(SqliteStore, RejectsMalformedRecordsAndChangesNothing) {
  auto store = open_sqlite_store(db_path());
  auto rejected = [&](KeyRecord k) {
    std::string message = expect_error([&] { store->keys().insert(k); }, ErrorCode::InvalidArgument);
    EXPECT_FALSE(message.empty());
  };
  KeyRecord k = make_key("k", object_id(1));
  k.purpose = "wrap";
  rejected(k);
  k = make_key("k", object_id(1));
  k.state = "deleted";
  rejected(k);
  k = make_key("k", object_id(1));
  k.name.clear();
  rejected(k);
  k = make_key("k", {});
  rejected(k);
  k = make_key("k", object_id(1), "2026-11-28 15:47:59");
  rejected(k);
  k = make_key("k", object_id(1));
  k.destroyed_at = "2026-11-28T15:47:59Z";  // while active
  rejected(k);
  EXPECT_TRUE(store->keys().list(true).empty());
  KeyRecord ok = make_key("k", object_id(1));
  store->keys().insert(ok);
  expect_error([&] { store->keys().mark_destroyed("k", "yesterday"); }, ErrorCode::InvalidArgument);
  EXPECT_EQ(store->keys().find_active("k"), ok);
}

TEST_F(SqliteStore, SchemaConstraintsHoldForWritersThatBypassTheStore) {
  { auto store = open_sqlite_store(db_path()); }
  RawDb raw(db_path());
  auto insert = [&](const std::string& values) {
    std::string sql = "INSERT INTO keys (name, token_object_id, key_type, purpose, state, created_at, destroyed_at) VALUES (" +
                      values + ")";
    return raw.exec(sql.c_str());
  };
  EXPECT_EQ(insert("'a', x'01', 'ec-p256', 'sign', 'active', '2026-01-01T00:00:00Z', NULL"), SQLITE_OK);
  EXPECT_EQ(insert("'b', x'02', 'ec-p256', 'bogus', 'active', '2026-01-01T00:00:00Z', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(insert("'b', x'02', 'ec-p256', 'sign', 'gone', '2026-01-01T00:00:00Z', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(insert("'a', x'02', 'ec-p256', 'sign', 'active', '2026-01-01T00:00:00Z', NULL"), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(insert("'c', x'01', 'ec-p256', 'sign', 'destroyed', '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'"),
            SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(insert("'a', x'03', 'ec-p256', 'sign', 'destroyed', '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'"),
            SQLITE_OK);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM keys"), 2);
}

TEST_F(StoreTransaction, RollsBackWhenNotCommitted) {
  auto store = open_sqlite_store(db_path());
  EXPECT_THROW(
      {
        Transaction tx(*store);
        KeyRecord a = make_key("a", object_id(1));
        store->keys().insert(a);
        ASSERT_TRUE(store->keys().find_active("a").has_value());  // visible inside the transaction
        throw std::runtime_error("abandon");
      },
      std::runtime_error);
  EXPECT_FALSE(store->keys().find_active("a").has_value());
  EXPECT_TRUE(store->keys().list(true).empty());
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("SELECT count(*) FROM keys"), 0);
}

TEST_F(StoreTransaction, KeepsChangesWhenCommitted) {
  {
    auto store = open_sqlite_store(db_path());
    Transaction tx(*store);
    KeyRecord a = make_key("a", object_id(1));
    KeyRecord b = make_key("b", object_id(2));
    store->keys().insert(a);
    store->keys().insert(b);
    store->keys().mark_destroyed("a", "2026-12-01T00:00:00Z");
    tx.commit();
    EXPECT_FALSE(tx.active());
  }
  auto reopened = open_sqlite_store(db_path());
  EXPECT_EQ(reopened->keys().list(true).size(), 2u);
  EXPECT_FALSE(reopened->keys().find_active("a").has_value());
  EXPECT_TRUE(reopened->keys().find_active("b").has_value());
}

TEST_F(StoreTransaction, ErrorInsideLeavesEarlierWorkToTheCaller) {
  auto store = open_sqlite_store(db_path());
  KeyRecord a = make_key("a", object_id(1));
  KeyRecord dup = make_key("a", object_id(2));
  Transaction tx(*store);
  store->keys().insert(a);
  // A constraint failure undoes only its own statement; the caller decides.
  expect_error([&] { store->keys().insert(dup); }, ErrorCode::AlreadyExists);
  tx.rollback();
  EXPECT_FALSE(tx.active());
  EXPECT_TRUE(store->keys().list(true).empty());
}

TEST_F(StoreTransaction, NestedTransactionFailsClearlyAndOuterSurvives) {
  auto store = open_sqlite_store(db_path());
  Transaction outer(*store);
  std::string message = expect_error([&] { Transaction inner(*store); }, ErrorCode::FailedPrecondition);
  EXPECT_NE(message.find("nested"), std::string::npos) << message;
  KeyRecord a = make_key("a", object_id(1));
  store->keys().insert(a);
  outer.commit();
  EXPECT_TRUE(store->keys().find_active("a").has_value());
  // The store is usable for a new transaction afterwards.
  Transaction again(*store);
  again.commit();
}

TEST_F(StoreTransaction, CommitTwiceFailsAndMoveTransfersOwnership) {
  auto store = open_sqlite_store(db_path());
  Transaction first(*store);
  Transaction moved(std::move(first));
  EXPECT_FALSE(first.active());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_TRUE(moved.active());
  expect_error([&] { first.commit(); }, ErrorCode::FailedPrecondition);
  KeyRecord a = make_key("a", object_id(1));
  store->keys().insert(a);
  moved.commit();
  expect_error([&] { moved.commit(); }, ErrorCode::FailedPrecondition);
  EXPECT_TRUE(store->keys().find_active("a").has_value());
}

TEST_F(StoreTransaction, OtherThreadsWaitInsteadOfJoiningIt) {
  auto store = open_sqlite_store(db_path());
  std::mutex m;
  std::condition_variable cv;
  bool tx_has_insert = false;
  bool other_started = false;
  std::thread other;
  {
    Transaction tx(*store);
    KeyRecord mine = make_key("mine", object_id(1));
    store->keys().insert(mine);
    other = std::thread([&] {
      {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return tx_has_insert; });
        other_started = true;
      }
      cv.notify_all();
      KeyRecord theirs = make_key("theirs", object_id(2));
      store->keys().insert(theirs);  // must wait for tx to end, not land inside it
    });
    {
      std::lock_guard lock(m);
      tx_has_insert = true;
    }
    cv.notify_all();
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return other_started; });
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(store->keys().find_active("theirs").has_value());
  }  // rolled back
  other.join();
  EXPECT_FALSE(store->keys().find_active("mine").has_value());
  EXPECT_TRUE(store->keys().find_active("theirs").has_value());
}

TEST_F(SqliteStore, RefusesSchemaNewerThanItKnows) {
  { auto store = open_sqlite_store(db_path()); }
  {
    RawDb raw(db_path());
    ASSERT_EQ(raw.exec("PRAGMA user_version = 99"), SQLITE_OK);
  }
  std::string message = expect_error([&] { open_sqlite_store(db_path()); }, ErrorCode::FailedPrecondition);
  EXPECT_NE(message.find("99"), std::string::npos) << message;
  EXPECT_NE(message.find("(" + std::to_string(kSqliteSchemaVersion) + ")"), std::string::npos) << message;
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 99);
}

TEST_F(SqliteStore, RefusesGarbageFileWithOneLineErrorAndLeavesItAlone) {
  for (std::size_t size : {std::size_t{10}, std::size_t{8192}}) {
    std::string garbage;
    for (std::size_t i = 0; i < size; ++i) garbage.push_back(static_cast<char>('a' + i % 26));
    {
      std::ofstream out(db_path(), std::ios::binary | std::ios::trunc);
      out << garbage;
    }
    std::string message = expect_error([&] { open_sqlite_store(db_path()); }, ErrorCode::FailedPrecondition);
    EXPECT_NE(message.find(db_path().string()), std::string::npos) << message;
    EXPECT_NE(message.find("not an SQLite database"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_EQ(read_file(db_path()), garbage);
    EXPECT_FALSE(fs::exists(db_path().string() + "-wal"));
  }
}

TEST_F(SqliteStore, RefusesAnotherApplicationsDatabase) {
  {
    RawDb raw(db_path());
    ASSERT_EQ(raw.exec("CREATE TABLE songs (title TEXT)"), SQLITE_OK);
  }
  std::string message = expect_error([&] { open_sqlite_store(db_path()); }, ErrorCode::FailedPrecondition);
  EXPECT_NE(message.find(db_path().string()), std::string::npos) << message;
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE name = 'keys'"), 0);
  EXPECT_EQ(raw.text("PRAGMA journal_mode"), "delete");
}

TEST_F(SqliteStore, ErrorsNameTheOperationNotTheSql) {
  auto store = open_sqlite_store(db_path());
  {
    RawDb raw(db_path());
    ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);  // hold the write lock past the busy timeout
    KeyRecord k = make_key("value-not-in-message", object_id(1));
    auto start = std::chrono::steady_clock::now();
    std::string message = expect_error([&] { store->keys().insert(k); }, ErrorCode::Unavailable);
    auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_GE(waited, std::chrono::milliseconds(4500));
    EXPECT_NE(message.find("insert key"), std::string::npos) << message;
    EXPECT_NE(message.find("SQLITE_BUSY"), std::string::npos) << message;
    EXPECT_EQ(message.find("INSERT"), std::string::npos) << message;
    EXPECT_EQ(message.find("value-not-in-message"), std::string::npos) << message;
    raw.exec("ROLLBACK");
  }
  KeyRecord k = make_key("k", object_id(1));
  store->keys().insert(k);
  EXPECT_TRUE(store->keys().find_active("k").has_value());
}

TEST_F(SqliteStore, ConcurrentInsertsFromFourThreadsAllLand) {
  auto store = open_sqlite_store(db_path());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        try {
          KeyRecord k = make_key("t" + std::to_string(t) + "-" + std::to_string(i), object_id(t, i), "");
          store->keys().insert(k);
          if (!store->keys().find_active(k.name)) ++failures;
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto all = store->keys().list(false);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::set<std::int64_t> ids;
  std::set<std::string> names;
  for (const auto& k : all) {
    ids.insert(k.id);
    names.insert(k.name);
  }
  EXPECT_EQ(ids.size(), all.size());
  EXPECT_EQ(names.size(), all.size());
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("SELECT count(*) FROM keys"), kThreads * kPerThread);
}

TEST_F(SqliteStore, ConcurrentInsertsThroughSeparateConnectionsAllLand) {
  { auto init = open_sqlite_store(db_path()); }
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        auto store = open_sqlite_store(db_path());  // its own connection: contention goes through SQLite's locks
        for (int i = 0; i < kPerThread; ++i) {
          KeyRecord k = make_key("c" + std::to_string(t) + "-" + std::to_string(i), object_id(t, i), "");
          if (i % 10 == 0) {
            Transaction tx(*store);
            store->keys().insert(k);
            tx.commit();
          } else {
            store->keys().insert(k);
          }
        }
      } catch (const std::exception& e) {
        ++failures;
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(store->keys().list(true).size(), static_cast<std::size_t>(kThreads * kPerThread));
}

}  // namespace
