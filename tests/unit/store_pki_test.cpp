// keyhold::store's PKI records (CAs, CA versions, certificates, revocations,
// CRL numbers) and the keys' used_by, on a real SQLite file, checked through
// the store's API and with the SQLite C API opened on the same file.

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "support/store_testing.hpp"
#include "support/temp_dir.hpp"
#include "keyhold/store/store.hpp"

namespace {

namespace fs = std::filesystem;
using keyhold::testing::contains;
using keyhold::testing::expect_error;
using keyhold::testing::RawDb;
using keyhold::Error;
using keyhold::ErrorCode;
using keyhold::store::CaRecord;
using keyhold::store::CaVersionRecord;
using keyhold::store::CertificateFilter;
using keyhold::store::CertificateRecord;
using keyhold::store::KeyRecord;
using keyhold::store::kSqliteSchemaVersion;
using keyhold::store::open_sqlite_store;
using keyhold::store::RevokedEntry;
using keyhold::store::Store;
using keyhold::store::Transaction;

// Every test works in a directory of its own.
class TempDir : public keyhold::testing::TempDir {
 public:
  TempDir() : keyhold::testing::TempDir("keyhold-store-pki-test") {}
};



std::vector<std::uint8_t> bytes(std::initializer_list<int> values) {
  std::vector<std::uint8_t> out;
  for (int v : values) out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

std::vector<std::uint8_t> object_id(int n) {
  std::vector<std::uint8_t> id(16, 0x5a);
  id[0] = static_cast<std::uint8_t>(n);
  id[1] = static_cast<std::uint8_t>(n >> 8);
  return id;
}

// Lowercase hex without leading zeros, the store's form of a serial.
std::string serial_hex(std::uint64_t value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%" PRIx64, value);
  return buf;
}

CaRecord make_ca(const std::string& name, const std::string& kind = "root",
                 std::optional<std::int64_t> parent = std::nullopt) {
  CaRecord r;
  r.name = name;
  r.kind = kind;
  r.parent_id = parent;
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

CaVersionRecord make_version(std::int64_t ca_id, int version) {
  CaVersionRecord r;
  r.ca_id = ca_id;
  r.version = version;
  r.key_object_id = object_id(100 * static_cast<int>(ca_id) + version);
  r.key_type = "ec-p256";
  r.certificate_der = bytes({0x30, 0x82, 0x01, version});
  r.subject = "CN=CA " + std::to_string(ca_id) + " v" + std::to_string(version) + ",O=Example";
  r.subject_key_id = bytes({0x01, 0x02, version});
  r.not_before = "2026-01-01T00:00:00Z";
  r.not_after = "2036-01-01T00:00:00Z";
  r.created_at = "2026-01-01T00:00:0" + std::to_string(version % 10) + "Z";
  return r;
}

CertificateRecord make_certificate(const std::string& serial, std::int64_t version_id,
                                   const std::string& not_after = "2027-01-01T00:00:00Z") {
  CertificateRecord r;
  r.serial = serial;
  r.ca_version_id = version_id;
  r.subject = "CN=host-" + serial + ".example";
  r.sans = {"dns:host-" + serial + ".example", "ip:10.0.0.1"};
  r.profile = "server";
  r.not_before = "2026-01-01T00:00:00Z";
  r.not_after = not_after;
  r.requester = "cli";
  r.certificate_der = bytes({0x30, 0x82, 0x02, 0x00, 0xff});
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

std::vector<std::string> serials_of(const std::vector<CertificateRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.serial);
  return out;
}

// Migration 1 exactly as released (sqlite_store.cpp), to make a version-1 file
// the way an older keyhold left it.
constexpr const char* kVersion1Schema = R"sql(
CREATE TABLE keys (
  id              INTEGER PRIMARY KEY,
  name            TEXT NOT NULL CONSTRAINT keys_name_valid CHECK (length(name) > 0),
  token_object_id BLOB NOT NULL CONSTRAINT keys_token_object_id_valid
                    CHECK (typeof(token_object_id) = 'blob' AND length(token_object_id) > 0),
  key_type        TEXT NOT NULL CONSTRAINT keys_key_type_valid CHECK (length(key_type) > 0),
  purpose         TEXT NOT NULL CONSTRAINT keys_purpose_valid CHECK (purpose IN ('sign', 'encrypt')),
  state           TEXT NOT NULL DEFAULT 'active'
                    CONSTRAINT keys_state_valid CHECK (state IN ('active', 'destroyed')),
  created_at      TEXT NOT NULL CONSTRAINT keys_created_at_valid
                    CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  destroyed_at    TEXT CONSTRAINT keys_destroyed_at_valid
                    CHECK ((destroyed_at IS NULL) = (state = 'active') AND (destroyed_at IS NULL OR
                      destroyed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z')),
  CONSTRAINT keys_token_object_id_unique UNIQUE (token_object_id)
);
CREATE UNIQUE INDEX keys_active_name ON keys (name) WHERE state = 'active';
CREATE INDEX keys_name_created_at ON keys (name, created_at);
PRAGMA application_id = 1263029316;
PRAGMA user_version = 1;
)sql";

class StorePki : public ::testing::Test {
 protected:
  fs::path db_path() const { return dir_.path() / "keyhold.db"; }

  void SetUp() override { store_ = open_sqlite_store(db_path()); }

  // A root CA "root" with versions 1 and 2, and a root CA "other" with version 1.
  void add_two_cas() {
    root_ = make_ca("root");
    store_->cas().insert(root_);
    other_ = make_ca("other");
    store_->cas().insert(other_);
    root_v1_ = make_version(root_.id, 1);
    root_v2_ = make_version(root_.id, 2);
    other_v1_ = make_version(other_.id, 1);
    store_->cas().insert_version(root_v1_);
    store_->cas().insert_version(root_v2_);
    store_->cas().insert_version(other_v1_);
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  CaRecord root_, other_;
  CaVersionRecord root_v1_, root_v2_, other_v1_;
};

// ---- schema and migration ----

TEST_F(StorePki, NewFileHasLatestSchemaWithPkiTablesAndIndexes) {
  EXPECT_EQ(store_->schema_version(), kSqliteSchemaVersion);
  EXPECT_GE(kSqliteSchemaVersion, 3);  // the PKI tables came with migrations 2 and 3
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  for (const char* table : {"cas", "ca_versions", "certificates"}) {
    EXPECT_EQ(raw.integer(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '") + table + "'"),
              1)
        << table;
  }
  for (const char* index : {"certificates_by_version", "certificates_by_not_after", "certificates_revoked_by_version"}) {
    EXPECT_EQ(raw.integer(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '") + index + "'"),
              1)
        << index;
  }
  EXPECT_EQ(raw.integer("SELECT count(*) FROM pragma_table_info('keys') WHERE name = 'used_by'"), 1);
}

TEST_F(StorePki, UpgradesVersion1FileInPlaceKeepingItsKeys) {
  store_.reset();
  fs::path path = dir_.path() / "v1.db";
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec(kVersion1Schema), SQLITE_OK);
    ASSERT_EQ(raw.exec("INSERT INTO keys (name, token_object_id, key_type, purpose, state, created_at, destroyed_at) VALUES "
                       "('ca-root', x'0102', 'ec-p256', 'sign', 'active', '2025-01-01T00:00:00Z', NULL), "
                       "('old', x'0304', 'aes-256', 'encrypt', 'destroyed', '2025-02-01T00:00:00Z', '2025-03-01T00:00:00Z')"),
              SQLITE_OK);
    ASSERT_EQ(raw.integer("PRAGMA user_version"), 1);
  }

  KeyRecord active;
  {
    auto store = open_sqlite_store(path);
    EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
    auto all = store->keys().list(true);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].name, "ca-root");
    EXPECT_EQ(all[0].token_object_id, bytes({0x01, 0x02}));
    EXPECT_EQ(all[0].key_type, "ec-p256");
    EXPECT_EQ(all[0].purpose, "sign");
    EXPECT_EQ(all[0].state, "active");
    EXPECT_EQ(all[0].created_at, "2025-01-01T00:00:00Z");
    EXPECT_FALSE(all[0].destroyed_at.has_value());
    EXPECT_FALSE(all[0].used_by.has_value());
    EXPECT_EQ(all[1].name, "old");
    EXPECT_EQ(all[1].destroyed_at, "2025-03-01T00:00:00Z");
    EXPECT_FALSE(all[1].used_by.has_value());
    active = all[0];

    // The migrated rows and the new tables work.
    store->keys().set_used_by(active.id, "ca:root:v1");
    CaRecord ca = make_ca("root");
    store->cas().insert(ca);
    EXPECT_EQ(store->cas().find("root"), ca);
  }
  // Reopening changes nothing more.
  auto store = open_sqlite_store(path);
  EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
  active.used_by = "ca:root:v1";
  EXPECT_EQ(store->keys().find_active("ca-root"), active);
  EXPECT_EQ(store->keys().list(true).size(), 2u);
  RawDb raw(path);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(raw.text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.text("PRAGMA foreign_key_check"), "");
}

TEST_F(StorePki, AFailedMigrationLeavesTheVersion1FileAsItWas) {
  store_.reset();
  fs::path path = dir_.path() / "v1.db";
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec(kVersion1Schema), SQLITE_OK);
    ASSERT_EQ(raw.exec("INSERT INTO keys (name, token_object_id, key_type, purpose, created_at) VALUES "
                       "('k', x'01', 'ec-p256', 'sign', '2025-01-01T00:00:00Z')"),
              SQLITE_OK);
    // Something migration 2 cannot create over, half-way through it.
    ASSERT_EQ(raw.exec("CREATE TABLE ca_versions (x)"), SQLITE_OK);
  }
  EXPECT_THROW(open_sqlite_store(path), Error);
  RawDb raw(path);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 1);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM pragma_table_info('keys') WHERE name = 'used_by'"), 0);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE name = 'cas'"), 0);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM keys"), 1);
}

// ---- keys.used_by ----

TEST_F(StorePki, KeyUsedByRoundTripsAndCanBeChangedOrCleared) {
  KeyRecord plain;
  plain.name = "plain";
  plain.token_object_id = object_id(1);
  plain.key_type = "aes-256";
  plain.purpose = "encrypt";
  plain.created_at = "2026-01-01T00:00:00Z";
  store_->keys().insert(plain);
  EXPECT_FALSE(store_->keys().find_active("plain")->used_by.has_value());

  KeyRecord used = plain;
  used.id = 0;
  used.name = "ca-key";
  used.token_object_id = object_id(2);
  used.key_type = "ec-p256";
  used.purpose = "sign";
  used.used_by = "ca:issuing:v2";
  store_->keys().insert(used);
  EXPECT_EQ(store_->keys().find_active("ca-key"), used);
  EXPECT_EQ(store_->keys().find_by_object_id(object_id(2)), used);
  auto all = store_->keys().list(false);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], used);  // "ca-key" < "plain"
  EXPECT_EQ(all[1], plain);

  store_->keys().set_used_by(plain.id, "certificate:5f3a");
  EXPECT_EQ(store_->keys().find_active("plain")->used_by, "certificate:5f3a");
  store_->keys().set_used_by(used.id, std::nullopt);
  EXPECT_FALSE(store_->keys().find_active("ca-key")->used_by.has_value());

  // Destroyed keys keep (and may change) what used them.
  store_->keys().mark_destroyed("plain", "2026-02-01T00:00:00Z");
  EXPECT_EQ(store_->keys().find_by_object_id(object_id(1))->used_by, "certificate:5f3a");
  store_->keys().set_used_by(plain.id, "certificate:5f3b");
  EXPECT_EQ(store_->keys().find_by_object_id(object_id(1))->used_by, "certificate:5f3b");
}

TEST_F(StorePki, KeyUsedByRejectsEmptyTextAndUnknownKeys) {
  KeyRecord k;
  k.name = "k";
  k.token_object_id = object_id(1);
  k.key_type = "ec-p256";
  k.purpose = "sign";
  k.used_by = "";
  expect_error([&] { store_->keys().insert(k); }, ErrorCode::InvalidArgument);
  EXPECT_TRUE(store_->keys().list(true).empty());
  k.used_by.reset();
  store_->keys().insert(k);
  expect_error([&] { store_->keys().set_used_by(k.id, ""); }, ErrorCode::InvalidArgument);
  std::string message = expect_error([&] { store_->keys().set_used_by(k.id + 1000, "x"); }, ErrorCode::NotFound);
  EXPECT_NE(message.find(std::to_string(k.id + 1000)), std::string::npos) << message;
  EXPECT_FALSE(store_->keys().find_active("k")->used_by.has_value());
}

// ---- cas ----

TEST_F(StorePki, CaInsertFindAndListRoundTripEveryField) {
  CaRecord root = make_ca("zeta-root");
  store_->cas().insert(root);
  EXPECT_GT(root.id, 0);

  CaRecord issuing = make_ca("issuing", "intermediate", root.id);
  issuing.name_constraints = R"({"permitted_dns":[".example.com"],"excluded_dns":[]})";
  issuing.created_at = "";
  std::string before = keyhold::now_utc();
  store_->cas().insert(issuing);
  std::string after = keyhold::now_utc();
  EXPECT_GE(issuing.created_at, before);
  EXPECT_LE(issuing.created_at, after);

  CaRecord imported = make_ca("alpha-imported", "imported");
  store_->cas().insert(imported);
  CaRecord imported_child = make_ca("beta-imported", "imported", imported.id);
  store_->cas().insert(imported_child);

  EXPECT_EQ(store_->cas().find("issuing"), issuing);
  EXPECT_EQ(store_->cas().find_by_id(issuing.id), issuing);
  EXPECT_EQ(store_->cas().find("zeta-root"), root);
  EXPECT_EQ(store_->cas().find_by_id(imported_child.id), imported_child);
  EXPECT_FALSE(store_->cas().find("nope").has_value());
  EXPECT_FALSE(store_->cas().find_by_id(9999).has_value());

  std::vector<CaRecord> expected = {imported, imported_child, issuing, root};
  EXPECT_EQ(store_->cas().list(), expected);
}

TEST_F(StorePki, CaNameIsUniqueAndAFailedInsertChangesNothing) {
  CaRecord first = make_ca("root");
  store_->cas().insert(first);
  CaRecord second = make_ca("root", "imported");
  second.created_at = "";
  std::string message = expect_error([&] { store_->cas().insert(second); }, ErrorCode::AlreadyExists);
  EXPECT_NE(message.find("root"), std::string::npos) << message;
  EXPECT_EQ(second.id, 0);
  EXPECT_EQ(second.created_at, "");
  EXPECT_EQ(store_->cas().list(), std::vector<CaRecord>{first});
}

TEST_F(StorePki, CaRecordsThatBreakTheRulesAreRefused) {
  CaRecord root = make_ca("root");
  store_->cas().insert(root);
  auto rejected = [&](CaRecord r, ErrorCode code = ErrorCode::InvalidArgument) {
    std::string message = expect_error([&] { store_->cas().insert(r); }, code);
    EXPECT_FALSE(message.empty());
  };
  rejected(make_ca(""));
  rejected(make_ca("x", "subordinate"));
  rejected(make_ca("x", "root", root.id));        // a root has no parent
  rejected(make_ca("x", "intermediate"));         // an intermediate has one
  rejected(make_ca("x", "intermediate", 424242), ErrorCode::NotFound);
  CaRecord bad_time = make_ca("x");
  bad_time.created_at = "2026-01-01 00:00:00";
  rejected(bad_time);
  CaRecord bad_json = make_ca("x", "intermediate", root.id);
  bad_json.name_constraints = "{permitted: .example.com";
  std::string message = expect_error([&] { store_->cas().insert(bad_json); }, ErrorCode::InvalidArgument);
  EXPECT_NE(message.find("JSON"), std::string::npos) << message;
  EXPECT_EQ(store_->cas().list().size(), 1u);
}

// ---- ca_versions ----

TEST_F(StorePki, CaVersionsRoundTripInVersionOrder) {
  CaRecord ca = make_ca("root");
  store_->cas().insert(ca);
  CaVersionRecord v2 = make_version(ca.id, 2);
  v2.subject_key_id.clear();  // an imported CA certificate may have none
  v2.crl_number = 17;
  v2.state = "retired";
  CaVersionRecord v1 = make_version(ca.id, 1);
  v1.created_at = "";
  store_->cas().insert_version(v2);  // out of order on purpose
  store_->cas().insert_version(v1);
  EXPECT_GT(v1.id, 0);
  EXPECT_FALSE(v1.created_at.empty());

  EXPECT_EQ(store_->cas().find_version(v1.id), v1);
  EXPECT_EQ(store_->cas().find_version(v2.id), v2);
  EXPECT_FALSE(store_->cas().find_version(9999).has_value());
  EXPECT_EQ(store_->cas().versions(ca.id), (std::vector<CaVersionRecord>{v1, v2}));
  EXPECT_TRUE(store_->cas().versions(9999).empty());
}

TEST_F(StorePki, CaVersionNumberIsUniquePerCaAndNeedsAnExistingCa) {
  add_two_cas();
  CaVersionRecord again = make_version(root_.id, 2);
  again.key_object_id = object_id(999);
  std::string message = expect_error([&] { store_->cas().insert_version(again); }, ErrorCode::AlreadyExists);
  EXPECT_NE(message.find("version 2"), std::string::npos) << message;
  EXPECT_EQ(again.id, 0);
  // The same number under another CA is fine.
  CaVersionRecord other_v2 = make_version(other_.id, 2);
  store_->cas().insert_version(other_v2);
  CaVersionRecord orphan = make_version(424242, 1);
  expect_error([&] { store_->cas().insert_version(orphan); }, ErrorCode::NotFound);
  EXPECT_EQ(store_->cas().versions(root_.id).size(), 2u);
  EXPECT_EQ(store_->cas().versions(other_.id).size(), 2u);
}

TEST_F(StorePki, CaVersionRecordsThatBreakTheRulesAreRefused) {
  CaRecord ca = make_ca("root");
  store_->cas().insert(ca);
  auto rejected = [&](auto change) {
    CaVersionRecord r = make_version(ca.id, 1);
    change(r);
    expect_error([&] { store_->cas().insert_version(r); }, ErrorCode::InvalidArgument);
  };
  rejected([](CaVersionRecord& r) { r.version = 0; });
  rejected([](CaVersionRecord& r) { r.key_object_id.clear(); });
  rejected([](CaVersionRecord& r) { r.key_type.clear(); });
  rejected([](CaVersionRecord& r) { r.certificate_der.clear(); });
  rejected([](CaVersionRecord& r) { r.subject.clear(); });
  rejected([](CaVersionRecord& r) { r.state = "revoked"; });
  rejected([](CaVersionRecord& r) { r.crl_number = -1; });
  rejected([](CaVersionRecord& r) { r.not_before = "2026-01-01T00:00:00"; });
  rejected([](CaVersionRecord& r) { r.not_after = "2026-02-30T25:00:00Z"; });
  rejected([](CaVersionRecord& r) { r.not_after = "2025-01-01T00:00:00Z"; });  // before not_before
  rejected([](CaVersionRecord& r) { r.created_at = "yesterday"; });
  EXPECT_TRUE(store_->cas().versions(ca.id).empty());
}

TEST_F(StorePki, CurrentVersionIsTheHighestActiveOne) {
  CaRecord ca = make_ca("root");
  store_->cas().insert(ca);
  EXPECT_FALSE(store_->cas().current_version(ca.id).has_value());
  CaVersionRecord v1 = make_version(ca.id, 1);
  CaVersionRecord v2 = make_version(ca.id, 2);
  store_->cas().insert_version(v1);
  EXPECT_EQ(store_->cas().current_version(ca.id), v1);
  store_->cas().insert_version(v2);
  EXPECT_EQ(store_->cas().current_version(ca.id), v2);

  store_->cas().set_version_state(v1.id, "retired");
  EXPECT_EQ(store_->cas().find_version(v1.id)->state, "retired");
  EXPECT_EQ(store_->cas().current_version(ca.id), v2);
  store_->cas().set_version_state(v2.id, "retired");
  EXPECT_FALSE(store_->cas().current_version(ca.id).has_value());
  store_->cas().set_version_state(v1.id, "active");
  EXPECT_EQ(store_->cas().current_version(ca.id)->id, v1.id);
}

TEST_F(StorePki, SetVersionStateRefusesUnknownStatesAndVersions) {
  add_two_cas();
  expect_error([&] { store_->cas().set_version_state(root_v1_.id, "revoked"); }, ErrorCode::InvalidArgument);
  expect_error([&] { store_->cas().set_version_state(root_v1_.id, ""); }, ErrorCode::InvalidArgument);
  expect_error([&] { store_->cas().set_version_state(424242, "retired"); }, ErrorCode::NotFound);
  EXPECT_EQ(store_->cas().find_version(root_v1_.id)->state, "active");
}

// ---- CRL numbers ----

TEST_F(StorePki, NextCrlNumberIncreasesByOnePerCallAcrossTheVersionsOfACa) {
  add_two_cas();
  for (std::int64_t expected = 1; expected <= 5; ++expected) {
    EXPECT_EQ(store_->cas().next_crl_number(root_v1_.id), expected);
  }
  EXPECT_EQ(store_->cas().find_version(root_v1_.id)->crl_number, 5);
  // Both versions publish under one issuer name: one sequence (RFC 5280 5.2.3).
  EXPECT_EQ(store_->cas().next_crl_number(root_v2_.id), 6);
  EXPECT_EQ(store_->cas().next_crl_number(root_v1_.id), 7);
  EXPECT_EQ(store_->cas().find_version(root_v2_.id)->crl_number, 6) << "each version remembers its last number";
  // Another CA counts on its own.
  EXPECT_EQ(store_->cas().next_crl_number(other_v1_.id), 1);

  // A version recorded with CRLs already issued (an imported CA) goes on from there.
  CaVersionRecord imported = make_version(other_.id, 2);
  imported.crl_number = 41;
  store_->cas().insert_version(imported);
  EXPECT_EQ(store_->cas().next_crl_number(imported.id), 42);

  // Retired versions keep signing CRLs.
  store_->cas().set_version_state(root_v1_.id, "retired");
  EXPECT_EQ(store_->cas().next_crl_number(root_v1_.id), 8);

  expect_error([&] { store_->cas().next_crl_number(424242); }, ErrorCode::NotFound);
}

TEST_F(StorePki, NextCrlNumberIsGivenBackWhenItsTransactionRollsBack) {
  add_two_cas();
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->cas().next_crl_number(root_v1_.id), 1);
    tx.commit();
  }
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->cas().next_crl_number(root_v1_.id), 2);
    // signing the CRL failed: not committed
  }
  EXPECT_EQ(store_->cas().find_version(root_v1_.id)->crl_number, 1);
  EXPECT_EQ(store_->cas().next_crl_number(root_v1_.id), 2);
}

void expect_numbers_are_1_to_n(std::vector<std::int64_t> numbers, std::size_t n) {
  ASSERT_EQ(numbers.size(), n);
  std::sort(numbers.begin(), numbers.end());
  EXPECT_EQ(std::adjacent_find(numbers.begin(), numbers.end()), numbers.end()) << "a CRL number was given twice";
  EXPECT_EQ(numbers.front(), 1);
  EXPECT_EQ(numbers.back(), static_cast<std::int64_t>(n));
}

TEST_F(StorePki, NextCrlNumberFromFourThreadsInTransactionsNeverRepeats) {
  add_two_cas();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::vector<std::vector<std::int64_t>> taken(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        try {
          Transaction tx(*store_);
          taken[t].push_back(store_->cas().next_crl_number(root_v1_.id));
          tx.commit();
        } catch (const std::exception& e) {
          ++failures;
          ADD_FAILURE() << e.what();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  std::vector<std::int64_t> all;
  for (const auto& v : taken) all.insert(all.end(), v.begin(), v.end());
  expect_numbers_are_1_to_n(all, kThreads * kPerThread);
  EXPECT_EQ(store_->cas().find_version(root_v1_.id)->crl_number, kThreads * kPerThread);
}

TEST_F(StorePki, NextCrlNumberFromFourConnectionsNeverRepeats) {
  add_two_cas();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::vector<std::vector<std::int64_t>> taken(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        auto store = open_sqlite_store(db_path());  // its own connection: contention goes through SQLite's locks
        for (int i = 0; i < kPerThread; ++i) {
          if (i % 2 == 0) {
            Transaction tx(*store);
            taken[t].push_back(store->cas().next_crl_number(root_v1_.id));
            tx.commit();
          } else {
            taken[t].push_back(store->cas().next_crl_number(root_v1_.id));  // atomic on its own too
          }
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::int64_t> all;
  for (const auto& v : taken) all.insert(all.end(), v.begin(), v.end());
  expect_numbers_are_1_to_n(all, kThreads * kPerThread);
}

TEST_F(StorePki, NextCrlNumberFromTwoProcessesNeverRepeats) {
  add_two_cas();
  store_.reset();  // the child must not inherit an open connection it could use
  constexpr int kPerProcess = 50;
  std::int64_t version_id = root_v1_.id;
  auto take = [&](std::vector<std::int64_t>& out) {
    auto store = open_sqlite_store(db_path());
    for (int i = 0; i < kPerProcess; ++i) {
      Transaction tx(*store);
      out.push_back(store->cas().next_crl_number(version_id));
      tx.commit();
    }
  };
  fs::path child_out = dir_.path() / "child-numbers.txt";
  pid_t pid = ::fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    int status = 0;
    try {
      std::vector<std::int64_t> mine;
      take(mine);
      std::ofstream out(child_out);
      for (std::int64_t n : mine) out << n << '\n';
      out.close();
      if (!out) status = 2;
    } catch (...) {
      status = 1;
    }
    ::_exit(status);
  }
  std::vector<std::int64_t> all;
  try {
    take(all);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  std::ifstream in(child_out);
  for (std::int64_t n = 0; in >> n;) all.push_back(n);
  expect_numbers_are_1_to_n(all, 2 * kPerProcess);
}

// ---- certificates ----

TEST_F(StorePki, CertificateInsertAndFindRoundTripEveryField) {
  add_two_cas();
  CertificateRecord c = make_certificate("5f3a00ff", root_v2_.id);
  c.subject = "";  // SAN-only
  c.sans = {"dns:a.example", "ip:10.0.0.1", "ip:2001:db8::1", "uri:spiffe://x/y", "email:a@b",
            "dns:quote\"back\\slash", "dns:ctl\x01\n\t", "dns:\xc3\xa9t\xc3\xa9"};
  c.key_object_id = object_id(7);
  c.certificate_der = bytes({0x30, 0x00, 0x00, 0x01, 0xff});
  c.created_at = "";
  store_->certificates().insert(c);
  EXPECT_GT(c.id, 0);
  EXPECT_FALSE(c.created_at.empty());
  EXPECT_EQ(store_->certificates().find("5f3a00ff"), c);

  CertificateRecord revoked = make_certificate("1", root_v1_.id);
  revoked.sans.clear();
  revoked.status = "revoked";
  revoked.revoked_at = "2026-03-01T00:00:00Z";
  revoked.revocation_reason = "superseded";
  store_->certificates().insert(revoked);
  EXPECT_EQ(store_->certificates().find("1"), revoked);
  EXPECT_FALSE(store_->certificates().find("2").has_value());

  // sans is a JSON array in the file, readable by other tools.
  RawDb raw(db_path());
  EXPECT_EQ(raw.text("SELECT json_array_length(sans) FROM certificates WHERE serial = '5f3a00ff'"), "8");
  EXPECT_EQ(raw.text("SELECT json_extract(sans, '$[5]') FROM certificates WHERE serial = '5f3a00ff'"),
            "dns:quote\"back\\slash");
  EXPECT_EQ(raw.text("SELECT sans FROM certificates WHERE serial = '1'"), "[]");
}

TEST_F(StorePki, CertificateSansWrittenByAnotherToolAreRead) {
  add_two_cas();
  CertificateRecord c = make_certificate("abc", root_v1_.id);
  store_->certificates().insert(c);
  {
    RawDb raw(db_path());
    ASSERT_EQ(raw.exec(R"(UPDATE certificates SET sans = ' [ "dns:a\u00e9\/b" , "\ud83d\ude00\n" ] ' WHERE serial = 'abc')"),
              SQLITE_OK);
  }
  EXPECT_EQ(store_->certificates().find("abc")->sans,
            (std::vector<std::string>{"dns:a\xc3\xa9/b", "\xf0\x9f\x98\x80\n"}));
}

TEST_F(StorePki, CertificateSerialIsUniqueAndTheLoserChangesNothing) {
  add_two_cas();
  CertificateRecord first = make_certificate("5f3a", root_v1_.id);
  store_->certificates().insert(first);
  CertificateRecord second = make_certificate("5f3a", other_v1_.id);  // even under another CA
  second.created_at = "";
  std::string message = expect_error([&] { store_->certificates().insert(second); }, ErrorCode::AlreadyExists);
  EXPECT_NE(message.find("5f3a"), std::string::npos) << message;
  EXPECT_EQ(second.id, 0);
  EXPECT_EQ(second.created_at, "");
  EXPECT_EQ(store_->certificates().find("5f3a"), first);
  EXPECT_EQ(store_->certificates().count(other_v1_.id), 0);
}

TEST_F(StorePki, CertificateRecordsThatBreakTheRulesAreRefused) {
  add_two_cas();
  auto rejected = [&](auto change, ErrorCode code = ErrorCode::InvalidArgument) {
    CertificateRecord r = make_certificate("abc", root_v1_.id);
    change(r);
    std::string message = expect_error([&] { store_->certificates().insert(r); }, code);
    EXPECT_FALSE(message.empty());
  };
  for (const char* serial : {"", "0", "0abc", "ABC", "12g4", "5f:3a", " 5f", "123456789012345678901234567890123456789012"}) {
    rejected([&](CertificateRecord& r) { r.serial = serial; });
  }
  rejected([](CertificateRecord& r) { r.ca_version_id = 424242; }, ErrorCode::NotFound);
  rejected([](CertificateRecord& r) { r.profile.clear(); });
  rejected([](CertificateRecord& r) { r.requester.clear(); });
  rejected([](CertificateRecord& r) { r.certificate_der.clear(); });
  rejected([](CertificateRecord& r) { r.key_object_id = std::vector<std::uint8_t>{}; });
  rejected([](CertificateRecord& r) { r.status = "expired"; });
  rejected([](CertificateRecord& r) { r.status = "Revoked"; });
  rejected([](CertificateRecord& r) { r.not_before = "2026-01-01"; });
  rejected([](CertificateRecord& r) { r.not_after = "2026-01-01T00:00:00+00:00"; });
  rejected([](CertificateRecord& r) { r.not_after = "2025-12-31T23:59:59Z"; });  // before not_before
  rejected([](CertificateRecord& r) { r.created_at = "2026-00-01T00:00:00Z"; });
  rejected([](CertificateRecord& r) { r.revoked_at = "2026-03-01T00:00:00Z"; });  // while valid
  rejected([](CertificateRecord& r) {
    r.status = "revoked";
    r.revoked_at = "2026-03-01T00:00:00Z";  // without a reason
  });
  rejected([](CertificateRecord& r) {
    r.status = "revoked";
    r.revoked_at = "2026-03-01T00:00:00Z";
    r.revocation_reason = "certificateHold";  // not one keyhold records
  });
  rejected([](CertificateRecord& r) {
    r.status = "revoked";
    r.revoked_at = "2026-03-01 00:00:00";
    r.revocation_reason = "keyCompromise";
  });
  EXPECT_EQ(store_->certificates().count(root_v1_.id), 0);
  expect_error([&] { store_->certificates().find("0abc"); }, ErrorCode::InvalidArgument);
}

TEST_F(StorePki, RevokeMarksTheCertificateAndASecondRevokeSaysWhen) {
  add_two_cas();
  CertificateRecord c = make_certificate("5f3a", root_v1_.id);
  store_->certificates().insert(c);
  store_->certificates().revoke("5f3a", "2026-02-01T10:20:30Z", "keyCompromise");
  CertificateRecord expected = c;
  expected.status = "revoked";
  expected.revoked_at = "2026-02-01T10:20:30Z";
  expected.revocation_reason = "keyCompromise";
  EXPECT_EQ(store_->certificates().find("5f3a"), expected);

  std::string message = expect_error(
      [&] { store_->certificates().revoke("5f3a", "2026-03-01T00:00:00Z", "superseded"); },
      ErrorCode::FailedPrecondition);
  EXPECT_EQ(message, "certificate 5f3a was already revoked at 2026-02-01T10:20:30Z (keyCompromise)");
  EXPECT_EQ(store_->certificates().find("5f3a"), expected);  // the first revocation stands
}

TEST_F(StorePki, RevokeOfUnknownOrMalformedInputChangesNothing) {
  add_two_cas();
  CertificateRecord c = make_certificate("5f3a", root_v1_.id);
  store_->certificates().insert(c);
  std::string message =
      expect_error([&] { store_->certificates().revoke("5f3b", "2026-02-01T00:00:00Z", "unspecified"); },
                   ErrorCode::NotFound);
  EXPECT_NE(message.find("5f3b"), std::string::npos) << message;
  expect_error([&] { store_->certificates().revoke("5F3A", "2026-02-01T00:00:00Z", "unspecified"); },
               ErrorCode::InvalidArgument);
  expect_error([&] { store_->certificates().revoke("5f3a", "now", "unspecified"); }, ErrorCode::InvalidArgument);
  message = expect_error([&] { store_->certificates().revoke("5f3a", "2026-02-01T00:00:00Z", "removeFromCRL"); },
                         ErrorCode::InvalidArgument);
  EXPECT_NE(message.find("removeFromCRL"), std::string::npos) << message;
  EXPECT_EQ(store_->certificates().find("5f3a"), c);
}

TEST_F(StorePki, EveryRevocationReasonIsAccepted) {
  add_two_cas();
  int n = 1;
  for (std::string_view reason : keyhold::store::kRevocationReasons) {
    std::string serial = serial_hex(static_cast<std::uint64_t>(n++));
    CertificateRecord c = make_certificate(serial, root_v1_.id);
    store_->certificates().insert(c);
    store_->certificates().revoke(serial, "2026-02-01T00:00:00Z", reason);
    EXPECT_EQ(store_->certificates().find(serial)->revocation_reason, std::string(reason));
  }
  EXPECT_EQ(store_->certificates().revoked(root_v1_.id).size(), std::size(keyhold::store::kRevocationReasons));
}

class StorePkiFilters : public StorePki {
 protected:
  static constexpr const char* kNow = "2026-06-01T00:00:00Z";

  void SetUp() override {
    StorePki::SetUp();
    add_two_cas();
    add("11", root_v1_.id, "2026-03-01T00:00:00Z");                      // expired
    add("12", root_v1_.id, "2026-07-01T00:00:00Z", "2026-02-01T00:00:00Z");  // revoked
    add("13", root_v1_.id, "2026-12-01T00:00:00Z");
    add("21", root_v2_.id, "2026-06-15T00:00:00Z");
    add("22", root_v2_.id, "2026-05-01T00:00:00Z", "2026-02-02T00:00:00Z");  // revoked and expired
    add("31", other_v1_.id, "2026-06-10T00:00:00Z");
    add("100", root_v2_.id, "2027-01-01T00:00:00Z");  // same not_after as "ff": numeric serial order decides
    add("ff", root_v2_.id, "2027-01-01T00:00:00Z");
    add("2026", root_v2_.id, "2026-06-01T00:00:00Z");  // not_after == now: still valid (RFC 5280: inclusive)
  }

  void add(const std::string& serial, std::int64_t version, const std::string& not_after,
           std::optional<std::string> revoked_at = std::nullopt) {
    CertificateRecord c = make_certificate(serial, version, not_after);
    store_->certificates().insert(c);
    if (revoked_at) store_->certificates().revoke(serial, *revoked_at, "keyCompromise");
  }

  std::vector<std::string> listed(CertificateFilter f) { return serials_of(store_->certificates().list(f)); }
  CertificateFilter status(const std::string& s) {
    CertificateFilter f;
    f.status = s;
    f.now = kNow;
    return f;
  }
};

TEST_F(StorePkiFilters, NoFilterListsAllByNotAfterThenNumericSerial) {
  EXPECT_EQ(listed({}), (std::vector<std::string>{"11", "22", "2026", "31", "21", "12", "13", "ff", "100"}));
}

TEST_F(StorePkiFilters, StatusValidRevokedAndExpiredAgainstAnInjectedNow) {
  EXPECT_EQ(listed(status("valid")), (std::vector<std::string>{"2026", "31", "21", "13", "ff", "100"}));
  EXPECT_EQ(listed(status("revoked")), (std::vector<std::string>{"22", "12"}));
  EXPECT_EQ(listed(status("expired")), (std::vector<std::string>{"11"}));
  // A year later everything not revoked has expired.
  CertificateFilter later = status("expired");
  later.now = "2027-06-01T00:00:00Z";
  EXPECT_EQ(listed(later), (std::vector<std::string>{"11", "2026", "31", "21", "13", "ff", "100"}));
  later.status = "valid";
  EXPECT_TRUE(listed(later).empty());
}

TEST_F(StorePkiFilters, ExpiringWithinSelectsNotAfterBeforeTheGivenTime) {
  CertificateFilter f;
  f.not_after_before = "2026-07-01T00:00:00Z";  // strictly before: "12" (exactly then) is not in
  EXPECT_EQ(listed(f), (std::vector<std::string>{"11", "22", "2026", "31", "21"}));
  // "expiring within 30 days": valid now and not_after before now + 30 days.
  CertificateFilter soon = status("valid");
  soon.not_after_before = "2026-07-01T00:00:00Z";
  EXPECT_EQ(listed(soon), (std::vector<std::string>{"2026", "31", "21"}));
}

TEST_F(StorePkiFilters, PerCaAndPerVersion) {
  CertificateFilter by_ca;
  by_ca.ca_id = root_.id;
  EXPECT_EQ(listed(by_ca), (std::vector<std::string>{"11", "22", "2026", "21", "12", "13", "ff", "100"}));
  by_ca.ca_id = other_.id;
  EXPECT_EQ(listed(by_ca), (std::vector<std::string>{"31"}));
  by_ca.ca_id = 424242;
  EXPECT_TRUE(listed(by_ca).empty());

  CertificateFilter by_version;
  by_version.ca_version_id = root_v2_.id;
  EXPECT_EQ(listed(by_version), (std::vector<std::string>{"22", "2026", "21", "ff", "100"}));
  by_version.ca_version_id = root_v1_.id;
  EXPECT_EQ(listed(by_version), (std::vector<std::string>{"11", "12", "13"}));

  CertificateFilter both = status("valid");
  both.ca_id = root_.id;
  both.ca_version_id = root_v2_.id;
  both.not_after_before = "2026-07-01T00:00:00Z";
  EXPECT_EQ(listed(both), (std::vector<std::string>{"2026", "21"}));
  both.ca_id = other_.id;  // a version of another CA: nothing
  EXPECT_TRUE(listed(both).empty());
}

TEST_F(StorePkiFilters, ListLeavesOutTheDerAndKeepsEverythingElse) {
  CertificateFilter f;
  f.ca_version_id = root_v1_.id;
  auto listed_records = store_->certificates().list(f);
  ASSERT_EQ(listed_records.size(), 3u);
  for (const CertificateRecord& r : listed_records) {
    EXPECT_TRUE(r.certificate_der.empty());
    CertificateRecord full = *store_->certificates().find(r.serial);
    EXPECT_FALSE(full.certificate_der.empty());
    full.certificate_der.clear();
    EXPECT_EQ(r, full);
  }
}

TEST_F(StorePkiFilters, MalformedFiltersAreRefused) {
  expect_error([&] { listed(status("expiring")); }, ErrorCode::InvalidArgument);
  expect_error([&] { listed(status("")); }, ErrorCode::InvalidArgument);
  CertificateFilter bad_now = status("valid");
  bad_now.now = "2026-06-01";
  expect_error([&] { listed(bad_now); }, ErrorCode::InvalidArgument);
  CertificateFilter bad_before;
  bad_before.not_after_before = "30d";
  expect_error([&] { listed(bad_before); }, ErrorCode::InvalidArgument);
}

TEST_F(StorePkiFilters, RevokedListsOneVersionsRevocationsBySerialAndCountCountsAll) {
  EXPECT_EQ(store_->certificates().revoked(root_v1_.id),
            (std::vector<RevokedEntry>{{"12", "2026-02-01T00:00:00Z", "keyCompromise"}}));
  EXPECT_EQ(store_->certificates().revoked(root_v2_.id),
            (std::vector<RevokedEntry>{{"22", "2026-02-02T00:00:00Z", "keyCompromise"}}));
  EXPECT_TRUE(store_->certificates().revoked(other_v1_.id).empty());
  EXPECT_TRUE(store_->certificates().revoked(424242).empty());
  EXPECT_EQ(store_->certificates().count(root_v1_.id), 3);
  EXPECT_EQ(store_->certificates().count(root_v2_.id), 5);
  EXPECT_EQ(store_->certificates().count(other_v1_.id), 1);
  EXPECT_EQ(store_->certificates().count(424242), 0);
}

TEST_F(StorePki, HundredThousandRevokedCertificatesComeBackInSerialOrder) {
  add_two_cas();
  constexpr int kRevoked = 100000;
  std::mt19937_64 rng(20261128);
  std::set<std::uint64_t> values;
  std::vector<std::uint64_t> order;
  while (values.size() < kRevoked) {
    // Random magnitudes of 1 to 64 bits: serials of many lengths.
    std::uint64_t v = rng() >> (rng() % 64);
    if (v != 0 && values.insert(v).second) order.push_back(v);
  }
  auto insert_start = std::chrono::steady_clock::now();
  {
    Transaction tx(*store_);
    CertificateRecord c = make_certificate("1", root_v2_.id);
    c.sans.clear();
    c.status = "revoked";
    c.revoked_at = "2026-02-01T00:00:00Z";
    c.revocation_reason = "cessationOfOperation";
    for (std::uint64_t v : order) {
      c.id = 0;
      c.serial = serial_hex(v);
      store_->certificates().insert(c);
    }
    // Noise the CRL query must skip: valid certificates of the version, revoked
    // ones of another (serials longer than 16 digits: no clash with the above).
    for (std::uint64_t i = 0; i < 1000; ++i) {
      CertificateRecord valid = make_certificate("f000000000000000000" + serial_hex(i), root_v2_.id);
      store_->certificates().insert(valid);
      CertificateRecord elsewhere = make_certificate("e000000000000000000" + serial_hex(i), root_v1_.id);
      elsewhere.status = "revoked";
      elsewhere.revoked_at = "2026-02-01T00:00:00Z";
      elsewhere.revocation_reason = "superseded";
      store_->certificates().insert(elsewhere);
    }
    tx.commit();
  }
  auto insert_time = std::chrono::steady_clock::now() - insert_start;

  auto start = std::chrono::steady_clock::now();
  std::vector<RevokedEntry> revoked = store_->certificates().revoked(root_v2_.id);
  auto elapsed = std::chrono::steady_clock::now() - start;
  std::cout << "[   info   ] inserted " << kRevoked + 2000 << " certificates in one transaction in "
            << std::chrono::duration<double, std::milli>(insert_time).count() << " ms; revoked(version) returned "
            << revoked.size() << " entries in " << std::chrono::duration<double, std::milli>(elapsed).count()
            << " ms (figure only: timing is measured by bench/, never asserted)\n";

  ASSERT_EQ(revoked.size(), static_cast<std::size_t>(kRevoked));
  std::size_t i = 0;
  for (std::uint64_t v : values) {  // std::set: ascending numeric order
    ASSERT_EQ(revoked[i].serial, serial_hex(v)) << "at " << i;
    ++i;
  }
  EXPECT_EQ(revoked.front().revoked_at, "2026-02-01T00:00:00Z");
  EXPECT_EQ(revoked.back().reason, "cessationOfOperation");
  EXPECT_EQ(store_->certificates().count(root_v2_.id), kRevoked + 1000);
  EXPECT_EQ(store_->certificates().revoked(root_v1_.id).size(), 1000u);
}

// ---- the schema itself, for writers that bypass the store ----

TEST_F(StorePki, SchemaConstraintsHoldForWritersThatBypassTheStore) {
  add_two_cas();
  RawDb raw(db_path());
  ASSERT_EQ(raw.exec("PRAGMA foreign_keys = ON"), SQLITE_OK);
  const std::string v1 = std::to_string(root_v1_.id);
  auto certificate = [&](const std::string& serial, const std::string& status, const std::string& revoked_at,
                         const std::string& reason, const std::string& sans = "'[]'",
                         const std::string& not_after = "'2027-01-01T00:00:00Z'", const std::string& version = "") {
    return raw.exec("INSERT INTO certificates (serial, ca_version_id, subject, sans, profile, not_before, not_after, status, "
                    "revoked_at, revocation_reason, requester, certificate_der, created_at) VALUES ('" +
                    serial + "', " + (version.empty() ? v1 : version) + ", 'CN=x', " + sans + ", 'server', " +
                    "'2026-01-01T00:00:00Z', " + not_after + ", '" + status + "', " + revoked_at + ", " + reason +
                    ", 'cli', x'3000', '2026-01-01T00:00:00Z')");
  };
  EXPECT_EQ(certificate("a1", "valid", "NULL", "NULL"), SQLITE_OK);
  EXPECT_EQ(certificate("a2", "revoked", "'2026-02-01T00:00:00Z'", "'keyCompromise'"), SQLITE_OK);
  EXPECT_EQ(certificate("a1", "valid", "NULL", "NULL"), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(certificate("a3", "valid", "NULL", "NULL", "'[]'", "'2027-01-01T00:00:00Z'", "424242"),
            SQLITE_CONSTRAINT_FOREIGNKEY);
  EXPECT_EQ(certificate("a3", "expired", "NULL", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("a3", "revoked", "NULL", "'keyCompromise'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("a3", "revoked", "'2026-02-01T00:00:00Z'", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("a3", "valid", "'2026-02-01T00:00:00Z'", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("a3", "revoked", "'2026-02-01T00:00:00Z'", "'certificateHold'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("a3", "revoked", "'2026-02-01 00:00:00'", "'keyCompromise'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("A3", "valid", "NULL", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("0a3", "valid", "NULL", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("a3", "valid", "NULL", "NULL", "'{\"dns\":1}'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("a3", "valid", "NULL", "NULL", "'[\"dns:x\"'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("a3", "valid", "NULL", "NULL", "'[]'", "'2025-01-01T00:00:00Z'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM certificates"), 2);

  EXPECT_EQ(raw.exec("UPDATE certificates SET status = 'revoked' WHERE serial = 'a1'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("UPDATE ca_versions SET state = 'expired' WHERE id = " + v1), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("UPDATE ca_versions SET crl_number = -1 WHERE id = " + v1), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("UPDATE ca_versions SET version = 1 WHERE id = " + std::to_string(root_v2_.id)),
            SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(raw.exec("INSERT INTO cas (name, kind, created_at) VALUES ('x', 'sub', '2026-01-01T00:00:00Z')"),
            SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("INSERT INTO cas (name, kind, created_at) VALUES ('x', 'intermediate', '2026-01-01T00:00:00Z')"),
            SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("INSERT INTO cas (name, kind, parent_id, created_at) VALUES ('x', 'root', " +
                     std::to_string(other_.id) + ", '2026-01-01T00:00:00Z')"),
            SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("INSERT INTO cas (name, kind, created_at) VALUES ('root', 'root', '2026-01-01T00:00:00Z')"),
            SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(raw.exec("INSERT INTO keys (name, token_object_id, key_type, purpose, created_at, used_by) VALUES "
                     "('k', x'01', 'ec-p256', 'sign', '2026-01-01T00:00:00Z', '')"),
            SQLITE_CONSTRAINT_CHECK);
}

}  // namespace
