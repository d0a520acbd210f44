// keyhold::store's KEK records (the key-encryption keys of envelope
// encryption, their versions, states and encryption counts), on a real SQLite
// file, checked through the store's API and with the SQLite C API opened on
// the same file.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/store/store.hpp"
#include "support/store_testing.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using keyhold::testing::contains;
using keyhold::testing::expect_error;
using keyhold::testing::RawDb;
using keyhold::Error;
using keyhold::ErrorCode;
using keyhold::store::CaRecord;
using keyhold::store::CaVersionRecord;
using keyhold::store::KekRecord;
using keyhold::store::KekVersionRecord;
using keyhold::store::KeyRecord;
using keyhold::store::kKekMaxCount;
using keyhold::store::kKekVersionDestroyed;
using keyhold::store::kKekVersionDisabled;
using keyhold::store::kKekVersionEnabled;
using keyhold::store::kSqliteSchemaVersion;
using keyhold::store::open_sqlite_store;
using keyhold::store::SshCaRecord;
using keyhold::store::SshKeyVersionRecord;
using keyhold::store::Store;
using keyhold::store::Transaction;

// Every test works in a directory of its own.
class TempDir : public keyhold::testing::TempDir {
 public:
  TempDir() : keyhold::testing::TempDir("keyhold-store-kek-test") {}
};




std::vector<std::uint8_t> bytes(std::initializer_list<int> values) {
  std::vector<std::uint8_t> out;
  for (int v : values) out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

// 16 bytes, distinct per n (and per fill).
std::vector<std::uint8_t> id16(int n, int fill = 0x4b) {
  std::vector<std::uint8_t> id(16, static_cast<std::uint8_t>(fill));
  id[0] = static_cast<std::uint8_t>(n);
  id[1] = static_cast<std::uint8_t>(n >> 8);
  return id;
}

KekRecord make_kek(const std::string& name, int n) {
  KekRecord r;
  r.name = name;
  r.kek_id = id16(n);
  r.rotation_period_seconds = 90LL * 24 * 3600;
  r.max_encryptions = std::uint64_t{1} << 30;
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

KekVersionRecord make_version(std::int64_t kek_id, std::uint32_t version, int n) {
  KekVersionRecord r;
  r.kek_id = kek_id;
  r.version = version;
  r.key_object_id = id16(n, 0x6b);
  r.state = std::string(kKekVersionEnabled);
  r.created_at = "2026-01-0" + std::to_string(1 + version % 9) + "T00:00:00Z";
  return r;
}

class StoreKek : public ::testing::Test {
 protected:
  fs::path db_path() const { return dir_.path() / "keyhold.db"; }

  void SetUp() override { store_ = open_sqlite_store(db_path()); }

  // KEK "app" with version 1 (v1_).
  void add_kek() {
    app_ = make_kek("app", 1);
    store_->keks().insert(app_);
    v1_ = make_version(app_.id, 1, 1);
    store_->keks().insert_version(v1_);
  }

  std::uint64_t count_of(std::int64_t kek_id, std::uint32_t version) {
    return store_->keks().find_version(kek_id, version).value().encryptions;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  KekRecord app_;
  KekVersionRecord v1_;
};

// ---- schema and migration ----

TEST_F(StoreKek, NewFileHasTheKekTablesAndTriggers) {
  EXPECT_EQ(store_->schema_version(), kSqliteSchemaVersion);
  EXPECT_GE(kSqliteSchemaVersion, 5);  // the KEK tables came with migration 5
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  for (const char* table : {"keks", "kek_versions"}) {
    EXPECT_EQ(raw.integer(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '") + table + "'"),
              1)
        << table;
  }
  for (const char* trigger : {"kek_versions_insert_valid", "kek_versions_destroyed_final",
                              "kek_versions_encryptions_never_decrease", "kek_versions_ids_fixed", "keks_kek_id_fixed"}) {
    EXPECT_EQ(
        raw.integer(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = '") + trigger + "'"),
        1)
        << trigger;
  }
  EXPECT_EQ(raw.text("PRAGMA foreign_key_list('kek_versions')").empty(), false);
}

class StoreKekMigration : public StoreKek {
 protected:
  // A version-4 file with rows in every table of migrations 1 to 4.
  // Migrations 1 to 4 are released and never change, and migration 5 only
  // adds the kek tables and their triggers: a file of this build without
  // them, at user_version 4, is what the previous keyhold left.
  void make_version4_file() {
    KeyRecord key;
    key.name = "ca-key";
    key.token_object_id = id16(1, 0x01);
    key.key_type = "ec-p256";
    key.purpose = "sign";
    key.created_at = "2025-01-01T00:00:00Z";
    key.used_by = "ca:root:v1";
    store_->keys().insert(key);
    CaRecord ca;
    ca.name = "root";
    ca.kind = "root";
    ca.created_at = "2025-01-01T00:00:00Z";
    store_->cas().insert(ca);
    CaVersionRecord version;
    version.ca_id = ca.id;
    version.version = 1;
    version.key_object_id = id16(1, 0x01);
    version.key_type = "ec-p256";
    version.certificate_der = bytes({0x30, 0x01});
    version.subject = "CN=Root";
    version.not_before = "2025-01-01T00:00:00Z";
    version.not_after = "2035-01-01T00:00:00Z";
    version.created_at = "2025-01-01T00:00:00Z";
    store_->cas().insert_version(version);
    store_->cas().next_crl_number(version.id);
    SshCaRecord ssh_ca;
    ssh_ca.name = "ops";
    ssh_ca.key_object_id = id16(2, 0x02);
    ssh_ca.key_type = "ed25519";
    ssh_ca.public_key_blob = bytes({0, 0, 0, 11, 's', 's', 'h'});
    ssh_ca.created_at = "2025-01-01T00:00:00Z";
    store_->ssh_cas().insert(ssh_ca);
    store_->ssh_cas().next_krl_version(ssh_ca.id);
    store_->ssh_certificates().revoke_key_id(ssh_ca.id, "mallory", "2025-06-01T00:00:00Z");
    SshKeyVersionRecord ssh_key;
    ssh_key.name = "deploy";
    ssh_key.version = 1;
    ssh_key.key_object_id = id16(3, 0x03);
    ssh_key.key_type = "ecdsa-p256";
    ssh_key.public_key_blob = bytes({0, 0, 0, 19, 'e', 'c'});
    ssh_key.created_at = "2025-01-01T00:00:00Z";
    store_->ssh_keys().insert_version(ssh_key);
    store_.reset();

    RawDb raw(db_path());
    // The tables of later migrations go too (migration 6: what is published).
    ASSERT_EQ(raw.exec("DROP TABLE expired_certificates; DROP TABLE published_krls; DROP TABLE published_crls; "
                       "DROP TABLE kek_versions; DROP TABLE keks; PRAGMA user_version = 4;"),
              SQLITE_OK);
    ASSERT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE tbl_name LIKE 'kek%'"), 0);
    ASSERT_EQ(raw.text("PRAGMA integrity_check"), "ok");
  }

  // Everything of the file but the KEK tables (and the tables of later
  // migrations): schema and rows.
  std::string everything_else(RawDb& raw) {
    std::string out = raw.rows("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name NOT LIKE 'kek%' "
                               "AND tbl_name NOT LIKE 'published%' AND tbl_name <> 'expired_certificates' "
                               "ORDER BY name");
    for (const char* table :
         {"keys", "cas", "ca_versions", "certificates", "ssh_cas", "ssh_certificates", "ssh_revocations", "ssh_keys"}) {
      out += "\n--" + std::string(table) + "\n" + raw.rows(std::string("SELECT * FROM ") + table + " ORDER BY id");
    }
    return out;
  }
};

TEST_F(StoreKekMigration, UpgradesAVersion4FileInPlaceKeepingItsRows) {
  make_version4_file();
  std::string before;
  {
    RawDb raw(db_path());
    before = everything_else(raw);
  }
  ASSERT_TRUE(contains(before, "mallory")) << before;
  ASSERT_TRUE(contains(before, "deploy")) << before;

  {
    auto store = open_sqlite_store(db_path());
    EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
    // The existing records read as before, and the new tables work.
    EXPECT_EQ(store->keys().find_active("ca-key")->used_by, "ca:root:v1");
    EXPECT_EQ(store->ssh_cas().find("ops")->krl_version, 1);
    EXPECT_EQ(store->ssh_keys().versions("deploy").size(), 1u);
    KekRecord kek = make_kek("app", 1);
    store->keks().insert(kek);
    KekVersionRecord v1 = make_version(kek.id, 1, 1);
    store->keks().insert_version(v1);
    EXPECT_EQ(store->keks().reserve_encryptions(v1.id, 3), 0u);
    EXPECT_EQ(store->keks().find("app"), kek);
  }
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(everything_else(raw), before);
  EXPECT_EQ(raw.text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.text("PRAGMA foreign_key_check"), "");
  // Reopening changes nothing more.
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
  ASSERT_EQ(store->keks().list().size(), 1u);
  EXPECT_EQ(store->keks().versions(store->keks().list()[0].id).at(0).encryptions, 3u);
}

TEST_F(StoreKekMigration, AFailedMigration5LeavesTheVersion4FileAsItWas) {
  make_version4_file();
  std::string before;
  {
    RawDb raw(db_path());
    // Something migration 5 cannot create over, after its first table.
    ASSERT_EQ(raw.exec("CREATE TABLE kek_versions (x)"), SQLITE_OK);
    before = everything_else(raw);
  }
  expect_error([&] { open_sqlite_store(db_path()); }, ErrorCode::Internal);
  {
    RawDb raw(db_path());
    EXPECT_EQ(raw.integer("PRAGMA user_version"), 4);
    EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE tbl_name LIKE 'kek%' AND name <> 'kek_versions'"), 0);
    EXPECT_EQ(raw.text("SELECT sql FROM sqlite_master WHERE name = 'kek_versions'"), "CREATE TABLE kek_versions (x)");
    EXPECT_EQ(everything_else(raw), before);
    EXPECT_EQ(raw.text("PRAGMA integrity_check"), "ok");
    ASSERT_EQ(raw.exec("DROP TABLE kek_versions"), SQLITE_OK);
  }
  // Once the obstacle is gone the migration runs.
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
  EXPECT_TRUE(store->keks().list().empty());
}

// ---- keks ----

TEST_F(StoreKek, InsertFindAndListRoundTripEveryField) {
  KekRecord zeta = make_kek("zeta", 1);
  zeta.kek_id = bytes({0x00, 0xff, 0x80, 0x7f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x00});
  zeta.rotation_period_seconds = 0;  // no rotation by age
  zeta.max_encryptions = kKekMaxCount;
  store_->keks().insert(zeta);
  EXPECT_GT(zeta.id, 0);

  KekRecord alpha = make_kek("alpha", 2);
  alpha.rotation_period_seconds = 3600;
  alpha.max_encryptions = 1;
  alpha.created_at = "";
  std::string before = keyhold::now_utc();
  store_->keks().insert(alpha);
  std::string after = keyhold::now_utc();
  EXPECT_GE(alpha.created_at, before);
  EXPECT_LE(alpha.created_at, after);

  EXPECT_EQ(store_->keks().find("zeta"), zeta);
  EXPECT_EQ(store_->keks().find("alpha"), alpha);
  EXPECT_EQ(store_->keks().find_by_kek_id(zeta.kek_id), zeta);
  EXPECT_EQ(store_->keks().find_by_kek_id(alpha.kek_id), alpha);
  EXPECT_FALSE(store_->keks().find("nope").has_value());
  EXPECT_FALSE(store_->keks().find_by_kek_id(id16(99)).has_value());
  EXPECT_FALSE(store_->keks().find_by_kek_id(bytes({0x01})).has_value());  // any length may be asked
  EXPECT_FALSE(store_->keks().find_by_kek_id({}).has_value());
  EXPECT_EQ(store_->keks().list(), (std::vector<KekRecord>{alpha, zeta}));
  // Keys are another namespace.
  EXPECT_TRUE(store_->keys().list(true).empty());
}

TEST_F(StoreKek, NameAndKekIdAreUniqueAndAFailedInsertChangesNothing) {
  KekRecord first = make_kek("app", 1);
  store_->keks().insert(first);

  KekRecord same_name = make_kek("app", 2);
  same_name.created_at = "";
  std::string message = expect_error([&] { store_->keks().insert(same_name); }, ErrorCode::AlreadyExists);
  EXPECT_TRUE(contains(message, "'app'")) << message;
  EXPECT_EQ(same_name.id, 0);
  EXPECT_EQ(same_name.created_at, "");

  KekRecord same_id = make_kek("other", 1);
  message = expect_error([&] { store_->keks().insert(same_id); }, ErrorCode::AlreadyExists);
  EXPECT_TRUE(contains(message, keyhold::to_hex(id16(1)))) << message;
  EXPECT_EQ(same_id.id, 0);

  EXPECT_EQ(store_->keks().list(), std::vector<KekRecord>{first});
}

TEST_F(StoreKek, KekRecordsThatBreakTheRulesAreRefused) {
  auto rejected = [&](auto change, const std::string& names) {
    KekRecord r = make_kek("app", 1);
    change(r);
    KekRecord copy = r;
    std::string message = expect_error([&] { store_->keks().insert(r); }, ErrorCode::InvalidArgument);
    EXPECT_TRUE(contains(message, names)) << message;
    EXPECT_EQ(r, copy);
  };
  rejected([](KekRecord& r) { r.name.clear(); }, "name");
  rejected([](KekRecord& r) { r.kek_id.clear(); }, "kek_id");
  rejected([](KekRecord& r) { r.kek_id.pop_back(); }, "kek_id has 15 bytes");
  rejected([](KekRecord& r) { r.kek_id.push_back(0); }, "kek_id has 17 bytes");
  rejected([](KekRecord& r) { r.rotation_period_seconds = -1; }, "rotation period");
  rejected([](KekRecord& r) { r.max_encryptions = 0; }, "max_encryptions");
  rejected([](KekRecord& r) { r.max_encryptions = kKekMaxCount + 1; }, "max_encryptions");
  rejected([](KekRecord& r) { r.max_encryptions = ~std::uint64_t{0}; }, "max_encryptions");
  rejected([](KekRecord& r) { r.created_at = "2026-01-01 00:00:00"; }, "created_at");
  EXPECT_TRUE(store_->keks().list().empty());
}

TEST_F(StoreKek, UpdatePolicyChangesOnlyThePolicy) {
  add_kek();
  KekRecord other = make_kek("other", 2);
  store_->keks().insert(other);

  store_->keks().update_policy(app_.id, 0, kKekMaxCount);
  KekRecord expected = app_;
  expected.rotation_period_seconds = 0;
  expected.max_encryptions = kKekMaxCount;
  EXPECT_EQ(store_->keks().find("app"), expected);
  store_->keks().update_policy(app_.id, 7, 1);
  expected.rotation_period_seconds = 7;
  expected.max_encryptions = 1;
  EXPECT_EQ(store_->keks().find("app"), expected);
  EXPECT_EQ(store_->keks().find("other"), other);

  expect_error([&] { store_->keks().update_policy(424242, 1, 1); }, ErrorCode::NotFound);
  expect_error([&] { store_->keks().update_policy(app_.id, -1, 1); }, ErrorCode::InvalidArgument);
  expect_error([&] { store_->keks().update_policy(app_.id, 1, 0); }, ErrorCode::InvalidArgument);
  expect_error([&] { store_->keks().update_policy(app_.id, 1, kKekMaxCount + 1); }, ErrorCode::InvalidArgument);
  EXPECT_EQ(store_->keks().find("app"), expected);
  EXPECT_EQ(store_->keks().versions(app_.id), std::vector<KekVersionRecord>{v1_});
}

// ---- kek_versions ----

TEST_F(StoreKek, VersionsRoundTripEveryFieldInAscendingOrder) {
  add_kek();
  EXPECT_GT(v1_.id, 0);
  KekVersionRecord v2 = make_version(app_.id, 2, 2);
  v2.key_object_id = bytes({0x00});  // any non-empty CKA_ID
  v2.encryptions = kKekMaxCount;     // a count carried over from elsewhere
  store_->keks().insert_version(v2);
  KekVersionRecord v3 = make_version(app_.id, 3, 3);
  v3.created_at = "";
  std::string before = keyhold::now_utc();
  store_->keks().insert_version(v3);
  std::string after = keyhold::now_utc();
  EXPECT_GE(v3.created_at, before);
  EXPECT_LE(v3.created_at, after);

  KekRecord other = make_kek("other", 2);
  store_->keks().insert(other);
  KekVersionRecord other_v1 = make_version(other.id, 1, 4);
  store_->keks().insert_version(other_v1);

  EXPECT_EQ(store_->keks().versions(app_.id), (std::vector<KekVersionRecord>{v1_, v2, v3}));
  EXPECT_EQ(store_->keks().versions(other.id), std::vector<KekVersionRecord>{other_v1});
  EXPECT_TRUE(store_->keks().versions(424242).empty());
  EXPECT_EQ(store_->keks().find_version(app_.id, 2), v2);
  EXPECT_EQ(store_->keks().find_version(other.id, 1), other_v1);
  EXPECT_FALSE(store_->keks().find_version(other.id, 2).has_value());
  EXPECT_FALSE(store_->keks().find_version(424242, 1).has_value());
  EXPECT_EQ(v2.state, "enabled");
  EXPECT_FALSE(v2.state_changed_at.has_value());

  // state_changed_at round-trips once set; the largest version number fits.
  store_->keks().set_state(v2.id, kKekVersionDisabled, "2026-03-04T05:06:07Z");
  v2.state = "disabled";
  v2.state_changed_at = "2026-03-04T05:06:07Z";
  EXPECT_EQ(store_->keks().find_version(app_.id, 2), v2);
  RawDb raw(db_path());
  ASSERT_EQ(raw.exec("PRAGMA foreign_keys = ON"), SQLITE_OK);
  // Only a raw writer can jump to the end: the store would insert 2^32 - 1 versions first.
  ASSERT_EQ(raw.exec("DROP TRIGGER kek_versions_insert_valid"), SQLITE_OK);
  ASSERT_EQ(raw.exec("INSERT INTO kek_versions (kek_id, version, key_object_id, created_at) VALUES (" +
                     std::to_string(other.id) + ", 4294967295, x'ee', '2026-01-01T00:00:00Z')"),
            SQLITE_OK);
  EXPECT_EQ(store_->keks().find_version(other.id, 4294967295u).value().version, 4294967295u);
  EXPECT_EQ(store_->keks().versions(other.id).back().version, 4294967295u);
}

TEST_F(StoreKek, VersionsMustBeNextEnabledAndUniqueAndAFailedInsertChangesNothing) {
  add_kek();
  KekRecord other = make_kek("other", 2);
  store_->keks().insert(other);

  auto refused = [&](KekVersionRecord r, ErrorCode code, const std::string& names) {
    KekVersionRecord copy = r;
    std::string message = expect_error([&] { store_->keks().insert_version(r); }, code);
    EXPECT_TRUE(contains(message, names)) << message;
    EXPECT_EQ(r, copy);
  };
  // (kek, version) taken.
  refused(make_version(app_.id, 1, 9), ErrorCode::AlreadyExists, "'app' already has a version 1");
  // Not last + 1.
  refused(make_version(app_.id, 3, 9), ErrorCode::InvalidArgument, "must be 2");
  refused(make_version(other.id, 2, 9), ErrorCode::InvalidArgument, "must be 1");
  // A CKA_ID another version has, of this KEK or another.
  refused(make_version(app_.id, 2, 1), ErrorCode::AlreadyExists, keyhold::to_hex(v1_.key_object_id));
  refused(make_version(other.id, 1, 1), ErrorCode::AlreadyExists, keyhold::to_hex(v1_.key_object_id));
  // No such KEK.
  refused(make_version(424242, 1, 9), ErrorCode::NotFound, "424242");

  auto malformed = [&](auto change, const std::string& names) {
    KekVersionRecord r = make_version(app_.id, 2, 9);
    change(r);
    refused(r, ErrorCode::InvalidArgument, names);
  };
  malformed([](KekVersionRecord& r) { r.version = 0; }, "version must be 1 or more");
  malformed([](KekVersionRecord& r) { r.key_object_id.clear(); }, "CKA_ID");
  malformed([](KekVersionRecord& r) { r.state = "disabled"; }, "state");
  malformed([](KekVersionRecord& r) { r.state = "destroyed"; }, "state");
  malformed([](KekVersionRecord& r) { r.state = "active"; }, "state");
  malformed([](KekVersionRecord& r) { r.encryptions = kKekMaxCount + 1; }, "encryptions");
  malformed([](KekVersionRecord& r) { r.state_changed_at = "2026-01-01T00:00:00Z"; }, "state_changed_at");
  malformed([](KekVersionRecord& r) { r.created_at = "2026-01-01T24:00:00Z"; }, "created_at");

  EXPECT_EQ(store_->keks().versions(app_.id), std::vector<KekVersionRecord>{v1_});
  EXPECT_TRUE(store_->keks().versions(other.id).empty());
  // The next version still goes in.
  KekVersionRecord v2 = make_version(app_.id, 2, 2);
  store_->keks().insert_version(v2);
  EXPECT_EQ(store_->keks().versions(app_.id), (std::vector<KekVersionRecord>{v1_, v2}));
}

TEST_F(StoreKek, ConcurrentRotationsFromFourConnectionsGetEachVersionOnce) {
  add_kek();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10;
  std::atomic<int> added{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        auto store = open_sqlite_store(db_path());
        int n = 0;
        while (n < kPerThread) {
          // What a rotation does: read the last version, add the next.
          std::uint32_t next = static_cast<std::uint32_t>(store->keks().versions(app_.id).size()) + 1;
          KekVersionRecord v = make_version(app_.id, next, 100 + t * 1000 + n);
          try {
            store->keks().insert_version(v);
            ++added;
            ++n;
          } catch (const Error& e) {
            if (e.code() != ErrorCode::AlreadyExists) throw;  // another connection took that number
          }
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  auto versions = store_->keks().versions(app_.id);
  ASSERT_EQ(versions.size(), static_cast<std::size_t>(1 + kThreads * kPerThread));
  for (std::size_t i = 0; i < versions.size(); ++i) EXPECT_EQ(versions[i].version, i + 1);
  EXPECT_EQ(added.load(), kThreads * kPerThread);
}

// ---- states ----

TEST_F(StoreKek, SetStateMovesBetweenEnabledAndDisabledAndRecordsWhen) {
  add_kek();
  store_->keks().set_state(v1_.id, kKekVersionDisabled, "2026-02-01T00:00:00Z");
  KekVersionRecord expected = v1_;
  expected.state = "disabled";
  expected.state_changed_at = "2026-02-01T00:00:00Z";
  EXPECT_EQ(store_->keks().find_version(app_.id, 1), expected);

  std::string message = expect_error(
      [&] { store_->keks().set_state(v1_.id, kKekVersionDisabled, "2026-02-02T00:00:00Z"); },
      ErrorCode::FailedPrecondition);
  EXPECT_EQ(message, "KEK 'app' version 1 is already disabled");
  EXPECT_EQ(store_->keks().find_version(app_.id, 1), expected);

  store_->keks().set_state(v1_.id, kKekVersionEnabled, "2026-02-03T00:00:00Z");
  expected.state = "enabled";
  expected.state_changed_at = "2026-02-03T00:00:00Z";
  EXPECT_EQ(store_->keks().find_version(app_.id, 1), expected);
  message = expect_error([&] { store_->keks().set_state(v1_.id, kKekVersionEnabled, "2026-02-04T00:00:00Z"); },
                         ErrorCode::FailedPrecondition);
  EXPECT_EQ(message, "KEK 'app' version 1 is already enabled");
  EXPECT_EQ(store_->keks().find_version(app_.id, 1), expected);
}

TEST_F(StoreKek, DestroyedIsFinal) {
  add_kek();
  KekVersionRecord v2 = make_version(app_.id, 2, 2);
  store_->keks().insert_version(v2);
  KekVersionRecord v3 = make_version(app_.id, 3, 3);
  store_->keks().insert_version(v3);
  // From enabled, and from disabled.
  store_->keks().set_state(v1_.id, kKekVersionDestroyed, "2026-03-01T00:00:00Z");
  store_->keks().set_state(v2.id, kKekVersionDisabled, "2026-03-01T00:00:00Z");
  store_->keks().set_state(v2.id, kKekVersionDestroyed, "2026-03-02T00:00:00Z");

  struct Destroyed {
    std::int64_t id;
    std::string when;
    int version;
  };
  for (const Destroyed& d : {Destroyed{v1_.id, "2026-03-01T00:00:00Z", 1}, Destroyed{v2.id, "2026-03-02T00:00:00Z", 2}}) {
    const std::int64_t id = d.id;
    const std::string& when = d.when;
    const int version = d.version;
    for (std::string_view state : {kKekVersionEnabled, kKekVersionDisabled, kKekVersionDestroyed}) {
      std::string message = expect_error([&] { store_->keks().set_state(id, state, "2026-04-01T00:00:00Z"); },
                                         ErrorCode::FailedPrecondition);
      EXPECT_EQ(message, "KEK 'app' version " + std::to_string(version) + " was destroyed at " + when);
    }
    std::string message =
        expect_error([&] { store_->keks().reserve_encryptions(id, 1); }, ErrorCode::FailedPrecondition);
    EXPECT_EQ(message, "KEK 'app' version " + std::to_string(version) + " was destroyed at " + when);
  }
  auto versions = store_->keks().versions(app_.id);
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[0].state, "destroyed");
  EXPECT_EQ(versions[0].state_changed_at, "2026-03-01T00:00:00Z");
  EXPECT_EQ(versions[1].state, "destroyed");
  EXPECT_EQ(versions[1].state_changed_at, "2026-03-02T00:00:00Z");
  EXPECT_EQ(versions[2], v3);
  // A destroyed version still counts for numbering.
  KekVersionRecord v4 = make_version(app_.id, 4, 4);
  store_->keks().insert_version(v4);
  EXPECT_EQ(store_->keks().versions(app_.id).size(), 4u);
}

TEST_F(StoreKek, SetStateRefusesUnknownVersionsStatesAndTimes) {
  add_kek();
  expect_error([&] { store_->keks().set_state(424242, kKekVersionDisabled, "2026-02-01T00:00:00Z"); },
               ErrorCode::NotFound);
  for (std::string_view state : {"", "active", "retired", "ENABLED"}) {
    std::string message = expect_error([&] { store_->keks().set_state(v1_.id, state, "2026-02-01T00:00:00Z"); },
                                       ErrorCode::InvalidArgument);
    EXPECT_TRUE(contains(message, "state")) << message;
  }
  for (std::string_view at : {"", "2026-02-01", "2026-02-01T00:00:00+01:00", "2026-13-01T00:00:00Z"}) {
    expect_error([&] { store_->keks().set_state(v1_.id, kKekVersionDisabled, at); }, ErrorCode::InvalidArgument);
  }
  EXPECT_EQ(store_->keks().find_version(app_.id, 1), v1_);
}

// ---- encryption counts ----

TEST_F(StoreKek, ReserveEncryptionsReturnsTheCountBeforeAndAddsN) {
  add_kek();
  EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 1), 0u);
  EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 1), 1u);
  EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 100), 2u);
  EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 1), 102u);
  EXPECT_EQ(count_of(app_.id, 1), 103u);
  // Counts are per version.
  KekVersionRecord v2 = make_version(app_.id, 2, 2);
  store_->keks().insert_version(v2);
  EXPECT_EQ(store_->keks().reserve_encryptions(v2.id, 5), 0u);
  EXPECT_EQ(count_of(app_.id, 1), 103u);
  EXPECT_EQ(count_of(app_.id, 2), 5u);
  // The store does not judge max_encryptions: that is the caller's policy.
  store_->keks().update_policy(app_.id, 0, 1);
  EXPECT_EQ(store_->keks().reserve_encryptions(v2.id, 1), 5u);
  // A version disabled and enabled again counts on.
  store_->keks().set_state(v1_.id, kKekVersionDisabled, "2026-02-01T00:00:00Z");
  store_->keks().set_state(v1_.id, kKekVersionEnabled, "2026-02-02T00:00:00Z");
  EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 1), 103u);
}

TEST_F(StoreKek, ReserveEncryptionsRefusals) {
  add_kek();
  EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 2), 0u);

  expect_error([&] { store_->keks().reserve_encryptions(424242, 1); }, ErrorCode::NotFound);
  std::string message = expect_error([&] { store_->keks().reserve_encryptions(v1_.id, 0); }, ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(message, "0")) << message;
  expect_error([&] { store_->keks().reserve_encryptions(v1_.id, kKekMaxCount + 1); }, ErrorCode::InvalidArgument);
  expect_error([&] { store_->keks().reserve_encryptions(v1_.id, ~std::uint64_t{0}); }, ErrorCode::InvalidArgument);

  store_->keks().set_state(v1_.id, kKekVersionDisabled, "2026-02-01T00:00:00Z");
  message = expect_error([&] { store_->keks().reserve_encryptions(v1_.id, 1); }, ErrorCode::FailedPrecondition);
  EXPECT_TRUE(contains(message, "KEK 'app' version 1 is disabled")) << message;
  EXPECT_EQ(count_of(app_.id, 1), 2u);
  store_->keks().set_state(v1_.id, kKekVersionEnabled, "2026-02-02T00:00:00Z");

  // Overflow past 2^63 - 1: the last ones fit, one more does not.
  KekVersionRecord v2 = make_version(app_.id, 2, 2);
  v2.encryptions = kKekMaxCount - 5;
  store_->keks().insert_version(v2);
  message = expect_error([&] { store_->keks().reserve_encryptions(v2.id, 6); }, ErrorCode::FailedPrecondition);
  EXPECT_TRUE(contains(message, "2^63 - 1")) << message;
  EXPECT_EQ(count_of(app_.id, 2), kKekMaxCount - 5);
  expect_error([&] { store_->keks().reserve_encryptions(v2.id, kKekMaxCount); }, ErrorCode::FailedPrecondition);
  EXPECT_EQ(store_->keks().reserve_encryptions(v2.id, 4), kKekMaxCount - 5);
  EXPECT_EQ(store_->keks().reserve_encryptions(v2.id, 1), kKekMaxCount - 1);
  EXPECT_EQ(count_of(app_.id, 2), kKekMaxCount);
  expect_error([&] { store_->keks().reserve_encryptions(v2.id, 1); }, ErrorCode::FailedPrecondition);
  EXPECT_EQ(count_of(app_.id, 2), kKekMaxCount);
  // A fresh version takes the largest reservation there is.
  KekVersionRecord v3 = make_version(app_.id, 3, 3);
  store_->keks().insert_version(v3);
  EXPECT_EQ(store_->keks().reserve_encryptions(v3.id, kKekMaxCount), 0u);
  EXPECT_EQ(count_of(app_.id, 3), kKekMaxCount);
}

TEST_F(StoreKek, ReserveInsideARolledBackTransactionGivesTheCountBack) {
  add_kek();
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 10), 0u);
    EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 1), 10u);
    EXPECT_EQ(count_of(app_.id, 1), 11u);  // the transaction sees its own reservations
    tx.commit();
  }
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 5), 11u);
    // the encryption failed: not committed
  }
  EXPECT_EQ(count_of(app_.id, 1), 11u);
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 5), 11u);
    // A refusal inside the transaction undoes nothing of it.
    expect_error([&] { store_->keks().reserve_encryptions(424242, 1); }, ErrorCode::NotFound);
    expect_error([&] { store_->keks().set_state(v1_.id, kKekVersionEnabled, "2026-02-01T00:00:00Z"); },
                 ErrorCode::FailedPrecondition);
    EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 1), 16u);
    tx.rollback();
  }
  EXPECT_EQ(count_of(app_.id, 1), 11u);
  EXPECT_EQ(store_->keks().reserve_encryptions(v1_.id, 1), 11u);
  // The other connection sees only what was committed.
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("SELECT encryptions FROM kek_versions WHERE id = " + std::to_string(v1_.id)), 12);
}

// Every reservation [before, before + n) of every caller: disjoint, and
// together exactly [0, total).
void expect_disjoint_and_complete(std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges, std::uint64_t total) {
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t next = 0;
  for (auto [before, n] : ranges) {
    ASSERT_EQ(before, next) << "a reservation was lost or given twice";
    next = before + n;
  }
  EXPECT_EQ(next, total);
}

TEST_F(StoreKek, ReserveFromFourThreadsNeverLosesAnIncrement) {
  add_kek();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100;
  std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> taken(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        try {
          std::uint64_t n = 1 + static_cast<std::uint64_t>((i + t) % 3);
          if (t % 2 == 0) {
            taken[t].emplace_back(store_->keks().reserve_encryptions(v1_.id, n), n);
          } else {
            // Half the threads reserve inside transactions of their own.
            Transaction tx(*store_);
            std::uint64_t before = store_->keks().reserve_encryptions(v1_.id, n);
            tx.commit();
            taken[t].emplace_back(before, n);
          }
        } catch (const std::exception& e) {
          ADD_FAILURE() << e.what();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> all;
  std::uint64_t total = 0;
  for (const auto& v : taken) {
    for (auto [before, n] : v) {
      all.emplace_back(before, n);
      total += n;
    }
  }
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
  expect_disjoint_and_complete(all, total);
  EXPECT_EQ(count_of(app_.id, 1), total);
}

TEST_F(StoreKek, ReserveFromFourConnectionsNeverLosesAnIncrement) {
  add_kek();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100;
  std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> taken(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        auto store = open_sqlite_store(db_path());  // its own connection: contention goes through SQLite's locks
        for (int i = 0; i < kPerThread; ++i) {
          std::uint64_t n = 1 + static_cast<std::uint64_t>((i * 7 + t) % 4);
          taken[t].emplace_back(store->keks().reserve_encryptions(v1_.id, n), n);
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> all;
  std::uint64_t total = 0;
  for (const auto& v : taken) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end())) << "one connection's reservations increase";
    for (auto [before, n] : v) {
      all.emplace_back(before, n);
      total += n;
    }
  }
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
  expect_disjoint_and_complete(all, total);
  EXPECT_EQ(count_of(app_.id, 1), total);
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("SELECT encryptions FROM kek_versions WHERE id = " + std::to_string(v1_.id)),
            static_cast<long long>(total));
}

// ---- the schema itself, for writers that bypass the store ----

TEST_F(StoreKek, SchemaConstraintsHoldForWritersThatBypassTheStore) {
  add_kek();
  RawDb raw(db_path());
  ASSERT_EQ(raw.exec("PRAGMA foreign_keys = ON"), SQLITE_OK);
  const std::string created = "'2026-01-01T00:00:00Z'";
  const std::string kek_id16 = "x'00112233445566778899aabbccddeeff'";
  auto kek = [&](const std::string& name, const std::string& kek_id, const std::string& period,
                 const std::string& max, const std::string& at) {
    return raw.exec("INSERT INTO keks (name, kek_id, rotation_period_seconds, max_encryptions, created_at) VALUES (" +
                    name + ", " + kek_id + ", " + period + ", " + max + ", " + at + ")");
  };
  EXPECT_EQ(kek("'raw'", kek_id16, "0", "1", created), SQLITE_OK);
  EXPECT_EQ(kek("'raw'", "x'00112233445566778899aabbccddee00'", "0", "1", created), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(kek("'raw2'", kek_id16, "0", "1", created), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(kek("''", "x'00112233445566778899aabbccddee01'", "0", "1", created), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(kek("'k'", "x'00112233445566778899aabbccddee'", "0", "1", created), SQLITE_CONSTRAINT_CHECK);      // 15
  EXPECT_EQ(kek("'k'", "x'00112233445566778899aabbccddee0102'", "0", "1", created), SQLITE_CONSTRAINT_CHECK);  // 17
  EXPECT_EQ(kek("'k'", "'0123456789abcdef'", "0", "1", created), SQLITE_CONSTRAINT_CHECK);  // text, 16 characters
  EXPECT_EQ(kek("'k'", "x'00112233445566778899aabbccddee02'", "-1", "1", created), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(kek("'k'", "x'00112233445566778899aabbccddee02'", "1.5", "1", created), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(kek("'k'", "x'00112233445566778899aabbccddee02'", "0", "0", created), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(kek("'k'", "x'00112233445566778899aabbccddee02'", "0", "'many'", created), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(kek("'k'", "x'00112233445566778899aabbccddee02'", "0", "1", "'2026-01-01 00:00:00'"),
            SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(kek("'k'", "x'00112233445566778899aabbccddee02'", "0", "NULL", created), SQLITE_CONSTRAINT_NOTNULL);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM keks"), 2);
  const std::string app = std::to_string(app_.id);
  EXPECT_EQ(raw.exec("UPDATE keks SET kek_id = " + kek_id16.substr(0, kek_id16.size() - 3) + "01' WHERE id = " + app),
            SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE keks SET max_encryptions = 0 WHERE id = " + app), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("UPDATE keks SET name = 'raw' WHERE id = " + app), SQLITE_CONSTRAINT_UNIQUE);

  auto version = [&](const std::string& kek_id, const std::string& number, const std::string& object_id,
                     const std::string& state, const std::string& encryptions, const std::string& at,
                     const std::string& changed) {
    return raw.exec("INSERT INTO kek_versions (kek_id, version, key_object_id, state, encryptions, created_at, "
                    "state_changed_at) VALUES (" +
                    kek_id + ", " + number + ", " + object_id + ", " + state + ", " + encryptions + ", " + at + ", " +
                    changed + ")");
  };
  // The next version of "app" is 2.
  EXPECT_EQ(version(app, "2", "x'02'", "'enabled'", "0", created, "NULL"), SQLITE_OK);
  EXPECT_EQ(version(app, "2", "x'03'", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_TRIGGER);  // taken
  EXPECT_EQ(version(app, "4", "x'03'", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_TRIGGER);  // a gap
  EXPECT_EQ(version(app, "3", "x'03'", "'disabled'", "0", created, created), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(version(app, "3", "x'03'", "'enabled'", "0", created, created), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(version(app, "3", "x'02'", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_UNIQUE);  // CKA_ID
  EXPECT_EQ(version(app, "3", "x''", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "3", "'03'", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "3", "x'03'", "'enabled'", "-1", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "3", "x'03'", "'enabled'", "1.5", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "3", "x'03'", "'enabled'", "0", "'yesterday'", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version("424242", "1", "x'03'", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_FOREIGNKEY);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM kek_versions"), 2);

  const std::string v1 = std::to_string(v1_.id);
  // Version numbers: 1 or more (a raw writer without the trigger still meets the CHECK).
  ASSERT_EQ(raw.exec("BEGIN"), SQLITE_OK);
  ASSERT_EQ(raw.exec("DROP TRIGGER kek_versions_insert_valid"), SQLITE_OK);
  EXPECT_EQ(version(app, "0", "x'04'", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "4294967296", "x'04'", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "'3'", "x'04'", "'enabled'", "0", created, "NULL"), SQLITE_OK);  // INTEGER affinity: 3
  EXPECT_EQ(version(app, "'x'", "x'05'", "'enabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "5", "x'05'", "'retired'", "0", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "5", "x'05'", "'disabled'", "0", created, "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(version(app, "5", "x'05'", "'enabled'", "0", created, "'now'"), SQLITE_CONSTRAINT_CHECK);
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE name = 'kek_versions_insert_valid'"), 1);

  // States: known ones, and state_changed_at set once disabled or destroyed.
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET state = 'retired', state_changed_at = " + created + " WHERE id = " + v1),
            SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET state = 'disabled' WHERE id = " + v1), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET state = 'disabled', state_changed_at = '2026-02-01' WHERE id = " + v1),
            SQLITE_CONSTRAINT_CHECK);
  // Counts never go down, nor past 2^63 - 1 (the sum would be a REAL).
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET encryptions = 10 WHERE id = " + v1), SQLITE_OK);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET encryptions = 9 WHERE id = " + v1), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET encryptions = encryptions + 9223372036854775807 WHERE id = " + v1),
            SQLITE_CONSTRAINT_CHECK);
  // The ids never change.
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET key_object_id = x'0909' WHERE id = " + v1), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET version = 7 WHERE id = " + v1), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET kek_id = (SELECT id FROM keks WHERE name = 'raw') WHERE id = " + v1),
            SQLITE_CONSTRAINT_TRIGGER);
  // Destroyed is final.
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET state = 'destroyed', state_changed_at = " + created + " WHERE id = " + v1),
            SQLITE_OK);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET state = 'enabled' WHERE id = " + v1), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET encryptions = encryptions + 1 WHERE id = " + v1),
            SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE kek_versions SET state_changed_at = '2030-01-01T00:00:00Z' WHERE id = " + v1),
            SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.rows("SELECT state, encryptions, state_changed_at FROM kek_versions WHERE id = " + v1),
            "destroyed|10|2026-01-01T00:00:00Z");
  // The store reads what the raw writer left.
  KekVersionRecord v1_now = store_->keks().find_version(app_.id, 1).value();
  EXPECT_EQ(v1_now.state, "destroyed");
  EXPECT_EQ(v1_now.encryptions, 10u);
  EXPECT_EQ(raw.text("PRAGMA foreign_key_check"), "");
}

}  // namespace
