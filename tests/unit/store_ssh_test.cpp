// keyhold::store's SSH records (SSH CAs, the certificates they signed, their
// KRL entries and KRL versions, and the versions of token-held SSH keys), on a
// real SQLite file, checked through the store's API and with the SQLite C API
// opened on the same file.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
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
using keyhold::store::CertificateRecord;
using keyhold::store::KeyRecord;
using keyhold::store::kSqliteSchemaVersion;
using keyhold::store::kSshValidForever;
using keyhold::store::open_sqlite_store;
using keyhold::store::SshCaRecord;
using keyhold::store::SshCertificateFilter;
using keyhold::store::SshCertificateRecord;
using keyhold::store::SshKeyVersionRecord;
using keyhold::store::SshRevocation;
using keyhold::store::Store;
using keyhold::store::Transaction;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();  // 2^64 - 1
constexpr std::uint64_t kTwo63 = std::uint64_t{1} << 63;                    // 2^63

// Every test works in a directory of its own.
class TempDir : public keyhold::testing::TempDir {
 public:
  TempDir() : keyhold::testing::TempDir("keyhold-store-ssh-test") {}
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

// An OpenSSH-looking wire blob, distinct per n (the store keeps it opaque).
std::vector<std::uint8_t> key_blob(int n) {
  std::vector<std::uint8_t> blob = bytes({0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9', 0, 0, 0, 32});
  for (int i = 0; i < 32; ++i) blob.push_back(static_cast<std::uint8_t>(n + i));
  return blob;
}

// "SHA256:" and 43 base64 characters, distinct per n.
std::string fingerprint(int n) {
  char digits[44];
  std::snprintf(digits, sizeof digits, "%043d", n);
  return std::string("SHA256:") + digits;
}

SshCaRecord make_ssh_ca(const std::string& name, int n) {
  SshCaRecord r;
  r.name = name;
  r.key_object_id = object_id(n);
  r.key_type = "ed25519";
  r.public_key_blob = key_blob(n);
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

SshCertificateRecord make_cert(std::int64_t ca_id, std::uint64_t serial, const std::string& key_id = "alice",
                               std::uint64_t valid_before = 2000000000, int key = 1) {
  SshCertificateRecord r;
  r.ca_id = ca_id;
  r.serial = serial;
  r.type = "user";
  r.key_id = key_id;
  r.principals = {"alice", "root"};
  r.valid_after = 100;
  r.valid_before = valid_before;
  r.public_key_fingerprint = fingerprint(key);
  r.public_key_blob = key_blob(key);
  r.profile = "ops";
  r.requester = "cli";
  r.certificate_blob = bytes({0, 0, 0, 28, 's', 's', 'h', '-', 'c', 'e', 'r', 't', 0x01, static_cast<int>(serial & 0xff)});
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

SshKeyVersionRecord make_key_version(const std::string& name, int version, int n) {
  SshKeyVersionRecord r;
  r.name = name;
  r.version = version;
  r.key_object_id = object_id(1000 + n);
  r.key_type = "ecdsa-p256";
  r.public_key_blob = key_blob(100 + n);
  r.created_at = "2026-01-0" + std::to_string(version % 10) + "T00:00:00Z";
  return r;
}

std::vector<std::uint64_t> serials_of(const std::vector<SshCertificateRecord>& records) {
  std::vector<std::uint64_t> out;
  for (const auto& r : records) out.push_back(r.serial);
  return out;
}

SshRevocation serial_entry(std::uint64_t serial, const std::string& at) {
  SshRevocation r;
  r.kind = "serial";
  r.serial = serial;
  r.revoked_at = at;
  return r;
}
SshRevocation key_id_entry(const std::string& key_id, const std::string& at) {
  SshRevocation r;
  r.kind = "key_id";
  r.key_id = key_id;
  r.revoked_at = at;
  return r;
}
SshRevocation key_entry(std::vector<std::uint8_t> blob, const std::string& at) {
  SshRevocation r;
  r.kind = "key";
  r.public_key_blob = std::move(blob);
  r.revoked_at = at;
  return r;
}

class StoreSsh : public ::testing::Test {
 protected:
  fs::path db_path() const { return dir_.path() / "keyhold.db"; }

  void SetUp() override { store_ = open_sqlite_store(db_path()); }

  // SSH CAs "ops" and "hosts".
  void add_two_cas() {
    ops_ = make_ssh_ca("ops", 1);
    store_->ssh_cas().insert(ops_);
    hosts_ = make_ssh_ca("hosts", 2);
    store_->ssh_cas().insert(hosts_);
  }

  SshCertificateRecord add_cert(std::int64_t ca_id, std::uint64_t serial, const std::string& key_id = "alice",
                                std::uint64_t valid_before = 2000000000, int key = 1) {
    SshCertificateRecord c = make_cert(ca_id, serial, key_id, valid_before, key);
    store_->ssh_certificates().insert(c);
    return c;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  SshCaRecord ops_, hosts_;
};

// ---- schema and migration ----

TEST_F(StoreSsh, NewFileHasTheSshTablesAndIndexes) {
  EXPECT_EQ(store_->schema_version(), kSqliteSchemaVersion);
  EXPECT_GE(kSqliteSchemaVersion, 4);  // the SSH tables came with migration 4
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  for (const char* table : {"ssh_cas", "ssh_certificates", "ssh_revocations", "ssh_keys"}) {
    EXPECT_EQ(raw.integer(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '") + table + "'"),
              1)
        << table;
  }
  for (const char* index : {"ssh_certificates_by_ca", "ssh_certificates_by_valid_before", "ssh_certificates_by_key_id",
                            "ssh_revocations_serial_unique", "ssh_revocations_key_id_unique",
                            "ssh_revocations_key_unique"}) {
    EXPECT_EQ(raw.integer(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '") + index + "'"),
              1)
        << index;
  }
}

class StoreSshMigration : public StoreSsh {
 protected:
  // A version-3 file with a key, a CA with a version and a certificate in it.
  // Migrations 1 to 3 are released and never change, and migration 4 only
  // adds the ssh_* tables and their indexes: a file of this build without
  // them, at user_version 3, is what the previous keyhold left.
  void make_version3_file() {
    KeyRecord key;
    key.name = "ca-key";
    key.token_object_id = object_id(1);
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
    version.key_object_id = object_id(1);
    version.key_type = "ec-p256";
    version.certificate_der = bytes({0x30, 0x01});
    version.subject = "CN=Root";
    version.not_before = "2025-01-01T00:00:00Z";
    version.not_after = "2035-01-01T00:00:00Z";
    version.created_at = "2025-01-01T00:00:00Z";
    store_->cas().insert_version(version);
    CertificateRecord cert;
    cert.serial = "5f3a";
    cert.ca_version_id = version.id;
    cert.subject = "CN=a.example";
    cert.sans = {"dns:a.example"};
    cert.profile = "server";
    cert.not_before = "2025-01-01T00:00:00Z";
    cert.not_after = "2026-01-01T00:00:00Z";
    cert.requester = "cli";
    cert.certificate_der = bytes({0x30, 0x02});
    cert.created_at = "2025-01-01T00:00:00Z";
    store_->certificates().insert(cert);
    store_->certificates().revoke("5f3a", "2025-06-01T00:00:00Z", "superseded");
    store_->cas().next_crl_number(version.id);
    store_.reset();

    RawDb raw(db_path());
    // The tables of later migrations go too (migration 5: the KEKs; 6: what is published).
    ASSERT_EQ(raw.exec("DROP TABLE expired_certificates; DROP TABLE published_krls; DROP TABLE published_crls; "
                       "DROP TABLE kek_versions; DROP TABLE keks; "
                       "DROP TABLE ssh_keys; DROP TABLE ssh_revocations; DROP TABLE ssh_certificates; "
                       "DROP TABLE ssh_cas; PRAGMA user_version = 3;"),
              SQLITE_OK);
    ASSERT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE name LIKE 'ssh%'"), 0);
    ASSERT_EQ(raw.text("PRAGMA integrity_check"), "ok");
  }

  // Everything of the file but the SSH tables (and the tables of later
  // migrations): schema and rows.
  std::string everything_else(RawDb& raw) {
    std::string out = raw.rows("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name NOT LIKE 'ssh%' "
                               "AND tbl_name NOT LIKE 'kek%' AND tbl_name NOT LIKE 'published%' "
                               "AND tbl_name <> 'expired_certificates' ORDER BY name");
    for (const char* table : {"keys", "cas", "ca_versions", "certificates"}) {
      out += "\n--" + std::string(table) + "\n" + raw.rows(std::string("SELECT * FROM ") + table + " ORDER BY id");
    }
    return out;
  }
};

TEST_F(StoreSshMigration, UpgradesAVersion3FileInPlaceLeavingItsTablesUntouched) {
  make_version3_file();
  std::string before;
  {
    RawDb raw(db_path());
    before = everything_else(raw);
  }
  ASSERT_TRUE(contains(before, "5f3a")) << before;

  {
    auto store = open_sqlite_store(db_path());
    EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
    // The existing records read as before, and the new tables work.
    EXPECT_EQ(store->keys().find_active("ca-key")->used_by, "ca:root:v1");
    EXPECT_EQ(store->certificates().find("5f3a")->revocation_reason, "superseded");
    SshCaRecord ca = make_ssh_ca("ops", 1);
    store->ssh_cas().insert(ca);
    SshCertificateRecord c = make_cert(ca.id, kMax);
    store->ssh_certificates().insert(c);
    EXPECT_EQ(store->ssh_certificates().find(ca.id, kMax), c);
    SshKeyVersionRecord k = make_key_version("deploy", 1, 1);
    store->ssh_keys().insert_version(k);
    EXPECT_EQ(store->ssh_keys().versions("deploy"), std::vector<SshKeyVersionRecord>{k});
  }
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(everything_else(raw), before);
  EXPECT_EQ(raw.text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.text("PRAGMA foreign_key_check"), "");
  // Reopening changes nothing more.
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
  EXPECT_EQ(store->ssh_cas().list().size(), 1u);
}

TEST_F(StoreSshMigration, AFailedMigration4LeavesTheVersion3FileAsItWas) {
  make_version3_file();
  std::string before;
  {
    RawDb raw(db_path());
    // Something migration 4 cannot create over, after its first tables.
    ASSERT_EQ(raw.exec("CREATE TABLE ssh_keys (x)"), SQLITE_OK);
    before = everything_else(raw);
  }
  expect_error([&] { open_sqlite_store(db_path()); }, ErrorCode::Internal);
  {
    RawDb raw(db_path());
    EXPECT_EQ(raw.integer("PRAGMA user_version"), 3);
    EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE name LIKE 'ssh%' AND name <> 'ssh_keys'"), 0);
    EXPECT_EQ(everything_else(raw), before);
    ASSERT_EQ(raw.exec("DROP TABLE ssh_keys"), SQLITE_OK);
  }
  // Once the obstacle is gone the migration runs.
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
}

// ---- ssh_cas ----

TEST_F(StoreSsh, CaInsertFindAndListRoundTripEveryField) {
  SshCaRecord zeta = make_ssh_ca("zeta", 1);
  zeta.key_type = "rsa-3072";
  zeta.krl_version = 41;  // one that already published KRLs
  store_->ssh_cas().insert(zeta);
  EXPECT_GT(zeta.id, 0);

  SshCaRecord alpha = make_ssh_ca("alpha", 2);
  alpha.created_at = "";
  std::string before = keyhold::now_utc();
  store_->ssh_cas().insert(alpha);
  std::string after = keyhold::now_utc();
  EXPECT_GE(alpha.created_at, before);
  EXPECT_LE(alpha.created_at, after);

  EXPECT_EQ(store_->ssh_cas().find("zeta"), zeta);
  EXPECT_EQ(store_->ssh_cas().find_by_id(alpha.id), alpha);
  EXPECT_FALSE(store_->ssh_cas().find("nope").has_value());
  EXPECT_FALSE(store_->ssh_cas().find_by_id(424242).has_value());
  EXPECT_EQ(store_->ssh_cas().list(), (std::vector<SshCaRecord>{alpha, zeta}));
  // The X.509 CAs are another namespace.
  EXPECT_TRUE(store_->cas().list().empty());
}

TEST_F(StoreSsh, CaNameAndKeyAreUniqueAndAFailedInsertChangesNothing) {
  SshCaRecord first = make_ssh_ca("ops", 1);
  store_->ssh_cas().insert(first);

  SshCaRecord same_name = make_ssh_ca("ops", 2);
  same_name.created_at = "";
  std::string message = expect_error([&] { store_->ssh_cas().insert(same_name); }, ErrorCode::AlreadyExists);
  EXPECT_TRUE(contains(message, "'ops'")) << message;
  EXPECT_EQ(same_name.id, 0);
  EXPECT_EQ(same_name.created_at, "");

  SshCaRecord same_key = make_ssh_ca("other", 1);
  message = expect_error([&] { store_->ssh_cas().insert(same_key); }, ErrorCode::AlreadyExists);
  EXPECT_TRUE(contains(message, keyhold::to_hex(object_id(1)))) << message;
  EXPECT_EQ(same_key.id, 0);

  EXPECT_EQ(store_->ssh_cas().list(), std::vector<SshCaRecord>{first});
}

TEST_F(StoreSsh, CaRecordsThatBreakTheRulesAreRefused) {
  auto rejected = [&](auto change, const std::string& names) {
    SshCaRecord r = make_ssh_ca("ops", 1);
    change(r);
    std::string message = expect_error([&] { store_->ssh_cas().insert(r); }, ErrorCode::InvalidArgument);
    EXPECT_TRUE(contains(message, names)) << message;
    EXPECT_EQ(r.id, 0);
  };
  rejected([](SshCaRecord& r) { r.name.clear(); }, "name");
  rejected([](SshCaRecord& r) { r.key_object_id.clear(); }, "CKA_ID");
  rejected([](SshCaRecord& r) { r.key_type.clear(); }, "key type");
  rejected([](SshCaRecord& r) { r.public_key_blob.clear(); }, "public key");
  rejected([](SshCaRecord& r) { r.krl_version = -1; }, "KRL version");
  rejected([](SshCaRecord& r) { r.created_at = "2026-01-01 00:00:00"; }, "created_at");
  EXPECT_TRUE(store_->ssh_cas().list().empty());
}

// ---- KRL versions ----

TEST_F(StoreSsh, NextKrlVersionIncreasesByOnePerCallAndCountsPerCa) {
  add_two_cas();
  for (std::int64_t expected = 1; expected <= 5; ++expected) {
    EXPECT_EQ(store_->ssh_cas().next_krl_version(ops_.id), expected);
  }
  EXPECT_EQ(store_->ssh_cas().find("ops")->krl_version, 5);
  EXPECT_EQ(store_->ssh_cas().next_krl_version(hosts_.id), 1);
  EXPECT_EQ(store_->ssh_cas().next_krl_version(ops_.id), 6);

  SshCaRecord imported = make_ssh_ca("imported", 3);
  imported.krl_version = 41;
  store_->ssh_cas().insert(imported);
  EXPECT_EQ(store_->ssh_cas().next_krl_version(imported.id), 42);

  expect_error([&] { store_->ssh_cas().next_krl_version(424242); }, ErrorCode::NotFound);
}

TEST_F(StoreSsh, NextKrlVersionIsGivenBackWhenItsTransactionRollsBack) {
  add_two_cas();
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->ssh_cas().next_krl_version(ops_.id), 1);
    tx.commit();
  }
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->ssh_cas().next_krl_version(ops_.id), 2);
    // writing the KRL failed: not committed
  }
  EXPECT_EQ(store_->ssh_cas().find("ops")->krl_version, 1);
  EXPECT_EQ(store_->ssh_cas().next_krl_version(ops_.id), 2);
}

void expect_numbers_are_1_to_n(std::vector<std::int64_t> numbers, std::size_t n) {
  ASSERT_EQ(numbers.size(), n);
  std::sort(numbers.begin(), numbers.end());
  EXPECT_EQ(std::adjacent_find(numbers.begin(), numbers.end()), numbers.end()) << "a KRL version was given twice";
  EXPECT_EQ(numbers.front(), 1);
  EXPECT_EQ(numbers.back(), static_cast<std::int64_t>(n));
}

TEST_F(StoreSsh, NextKrlVersionFromFourThreadsInTransactionsNeverRepeats) {
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
          std::int64_t version = store_->ssh_cas().next_krl_version(ops_.id);
          store_->ssh_certificates().revocations(ops_.id);  // the KRL's other work
          taken[t].push_back(version);
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
  for (const auto& v : taken) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end())) << "one thread's versions increase";
    all.insert(all.end(), v.begin(), v.end());
  }
  expect_numbers_are_1_to_n(all, kThreads * kPerThread);
  EXPECT_EQ(store_->ssh_cas().find("ops")->krl_version, kThreads * kPerThread);
  EXPECT_EQ(store_->ssh_cas().find("hosts")->krl_version, 0);
}

TEST_F(StoreSsh, NextKrlVersionFromFourConnectionsNeverRepeats) {
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
          Transaction tx(*store);
          taken[t].push_back(store->ssh_cas().next_krl_version(ops_.id));
          tx.commit();
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

// ---- ssh_certificates ----

TEST_F(StoreSsh, CertificateInsertAndFindRoundTripEveryField) {
  add_two_cas();
  SshCertificateRecord user = make_cert(ops_.id, 7);
  user.principals = {"alice", "quote\"back\\slash", "ctl\x01\t", "\xc3\xa9t\xc3\xa9", ""};
  user.created_at = "";
  store_->ssh_certificates().insert(user);
  EXPECT_GT(user.id, 0);
  EXPECT_FALSE(user.created_at.empty());
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 7), user);

  SshCertificateRecord host = make_cert(hosts_.id, 7, "web1.example.com", kSshValidForever, 2);
  host.type = "host";
  host.principals.clear();
  host.status = "revoked";
  host.revoked_at = "2026-03-01T00:00:00Z";
  store_->ssh_certificates().insert(host);
  EXPECT_EQ(store_->ssh_certificates().find(hosts_.id, 7), host);
  // Recorded as revoked: in the KRL too.
  EXPECT_EQ(store_->ssh_certificates().revocations(hosts_.id),
            std::vector<SshRevocation>{serial_entry(7, "2026-03-01T00:00:00Z")});
  EXPECT_TRUE(store_->ssh_certificates().revocations(ops_.id).empty());

  EXPECT_FALSE(store_->ssh_certificates().find(ops_.id, 8).has_value());
  EXPECT_FALSE(store_->ssh_certificates().find(424242, 7).has_value());
}

TEST_F(StoreSsh, PrincipalsWrittenInAnotherJsonSpellingReadBack) {
  add_two_cas();
  SshCertificateRecord c = add_cert(ops_.id, 1);
  RawDb raw(db_path());
  ASSERT_EQ(raw.exec("UPDATE ssh_certificates SET principals = ' [ \"a\" , \"\\u00e9\\/\\ud83d\\ude00\" ] ' WHERE id = " +
                     std::to_string(c.id)),
            SQLITE_OK);
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 1)->principals,
            (std::vector<std::string>{"a", "\xc3\xa9/\xf0\x9f\x98\x80"}));
}

TEST_F(StoreSsh, Unsigned64BitSerialsAndTimesRoundTripExactly) {
  add_two_cas();
  const std::uint64_t values[] = {0, 1, kTwo63 - 1, kTwo63, kMax};
  for (std::uint64_t serial : values) {
    SshCertificateRecord c = make_cert(ops_.id, serial);
    // The largest validity times too: after up to 2^64 - 2, before up to forever.
    c.valid_after = serial == kMax ? kMax - 1 : serial;
    c.valid_before = serial == kMax ? kMax : serial + 1;
    store_->ssh_certificates().insert(c);
    auto found = store_->ssh_certificates().find(ops_.id, serial);
    ASSERT_TRUE(found.has_value()) << serial;
    EXPECT_EQ(found->serial, serial);
    EXPECT_EQ(found->valid_after, c.valid_after);
    EXPECT_EQ(found->valid_before, c.valid_before);
    EXPECT_EQ(found, c);
  }
  // Stored as the bit pattern in SQLite's signed INTEGER.
  RawDb raw(db_path());
  EXPECT_EQ(raw.rows("SELECT serial, typeof(serial), valid_before FROM ssh_certificates ORDER BY id"),
            "0|integer|1\n"
            "1|integer|2\n"
            "9223372036854775807|integer|-9223372036854775808\n"
            "-9223372036854775808|integer|-9223372036854775807\n"
            "-1|integer|-1");
  // And listed in unsigned order.
  EXPECT_EQ(serials_of(store_->ssh_certificates().list({})), (std::vector<std::uint64_t>{0, 1, kTwo63 - 1, kTwo63, kMax}));
  // Serial 0 and 2^64 - 1 are distinct from everything, forever is kept.
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, kMax)->valid_before, kSshValidForever);
}

TEST_F(StoreSsh, SerialIsUniquePerCaAndNeedsAnExistingCa) {
  add_two_cas();
  add_cert(ops_.id, kTwo63);
  SshCertificateRecord again = make_cert(ops_.id, kTwo63, "bob");
  again.created_at = "";
  std::string message = expect_error([&] { store_->ssh_certificates().insert(again); }, ErrorCode::AlreadyExists);
  EXPECT_TRUE(contains(message, "'ops'")) << message;
  EXPECT_TRUE(contains(message, "9223372036854775808")) << message;
  EXPECT_EQ(again.id, 0);
  EXPECT_EQ(again.created_at, "");
  // A revoked record with a taken serial leaves no KRL entry behind.
  again.status = "revoked";
  again.revoked_at = "2026-02-01T00:00:00Z";
  expect_error([&] { store_->ssh_certificates().insert(again); }, ErrorCode::AlreadyExists);
  EXPECT_TRUE(store_->ssh_certificates().revocations(ops_.id).empty());
  // The same serial under another CA is fine.
  add_cert(hosts_.id, kTwo63);
  SshCertificateRecord orphan = make_cert(424242, 1);
  message = expect_error([&] { store_->ssh_certificates().insert(orphan); }, ErrorCode::NotFound);
  EXPECT_TRUE(contains(message, "424242")) << message;
  orphan.status = "revoked";
  orphan.revoked_at = "2026-02-01T00:00:00Z";
  expect_error([&] { store_->ssh_certificates().insert(orphan); }, ErrorCode::NotFound);
  EXPECT_EQ(store_->ssh_certificates().list({}).size(), 2u);
}

TEST_F(StoreSsh, CertificateRecordsThatBreakTheRulesAreRefused) {
  add_two_cas();
  auto rejected = [&](auto change, const std::string& names) {
    SshCertificateRecord r = make_cert(ops_.id, 1);
    change(r);
    std::string message = expect_error([&] { store_->ssh_certificates().insert(r); }, ErrorCode::InvalidArgument);
    EXPECT_TRUE(contains(message, names)) << message;
    EXPECT_EQ(r.id, 0);
  };
  rejected([](SshCertificateRecord& r) { r.type = "both"; }, "type");
  rejected([](SshCertificateRecord& r) { r.type = ""; }, "type");
  rejected([](SshCertificateRecord& r) { r.key_id.clear(); }, "key id");
  rejected([](SshCertificateRecord& r) { r.valid_before = r.valid_after; }, "valid_before");  // an empty interval
  rejected([](SshCertificateRecord& r) { r.valid_before = r.valid_after - 1; }, "valid_before");
  // Unsigned: 2^63 is after 2^63 - 1 (signed, it would be before).
  rejected([](SshCertificateRecord& r) { r.valid_after = kTwo63; r.valid_before = kTwo63 - 1; }, "valid_before");
  rejected([](SshCertificateRecord& r) { r.public_key_fingerprint = "MD5:" + fingerprint(1).substr(7); }, "fingerprint");
  rejected([](SshCertificateRecord& r) { r.public_key_fingerprint = "SHA256:abc"; }, "fingerprint");
  rejected([](SshCertificateRecord& r) { r.public_key_fingerprint = fingerprint(1).substr(0, 49) + "="; }, "fingerprint");
  rejected([](SshCertificateRecord& r) { r.public_key_fingerprint = fingerprint(1) + "A"; }, "fingerprint");
  rejected([](SshCertificateRecord& r) { r.public_key_blob.clear(); }, "public key");
  rejected([](SshCertificateRecord& r) { r.profile.clear(); }, "profile");
  rejected([](SshCertificateRecord& r) { r.status = "expired"; }, "status");
  rejected([](SshCertificateRecord& r) { r.status = "revoked"; }, "revoked_at");
  rejected([](SshCertificateRecord& r) { r.revoked_at = "2026-02-01T00:00:00Z"; }, "revoked_at");
  rejected([](SshCertificateRecord& r) { r.status = "revoked"; r.revoked_at = "yesterday"; }, "revoked_at");
  rejected([](SshCertificateRecord& r) { r.requester.clear(); }, "requester");
  rejected([](SshCertificateRecord& r) { r.certificate_blob.clear(); }, "certificate");
  rejected([](SshCertificateRecord& r) { r.created_at = "2026-13-01T00:00:00Z"; }, "created_at");
  EXPECT_TRUE(store_->ssh_certificates().list({}).empty());
  EXPECT_TRUE(store_->ssh_certificates().revocations(ops_.id).empty());
}

// ---- revocation ----

TEST_F(StoreSsh, RevokeSerialMarksTheCertificateRecordsItInTheKrlAndASecondRevokeSaysWhen) {
  add_two_cas();
  SshCertificateRecord c = add_cert(ops_.id, kMax);
  add_cert(hosts_.id, kMax);  // the same serial at another CA stays valid
  store_->ssh_certificates().revoke_serial(ops_.id, kMax, "2026-02-01T10:20:30Z");
  SshCertificateRecord expected = c;
  expected.status = "revoked";
  expected.revoked_at = "2026-02-01T10:20:30Z";
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, kMax), expected);
  EXPECT_EQ(store_->ssh_certificates().find(hosts_.id, kMax)->status, "valid");
  EXPECT_EQ(store_->ssh_certificates().revocations(ops_.id),
            std::vector<SshRevocation>{serial_entry(kMax, "2026-02-01T10:20:30Z")});
  EXPECT_TRUE(store_->ssh_certificates().revocations(hosts_.id).empty());

  std::string message = expect_error(
      [&] { store_->ssh_certificates().revoke_serial(ops_.id, kMax, "2026-03-01T00:00:00Z"); },
      ErrorCode::FailedPrecondition);
  EXPECT_EQ(message, "SSH certificate 18446744073709551615 of CA 'ops' was already revoked at 2026-02-01T10:20:30Z");
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, kMax), expected);  // the first revocation stands
  EXPECT_EQ(store_->ssh_certificates().revocations(ops_.id).size(), 1u);
}

TEST_F(StoreSsh, RevokeSerialOfUnknownOrMalformedInputChangesNothing) {
  add_two_cas();
  SshCertificateRecord c = add_cert(ops_.id, 5);
  std::string message = expect_error(
      [&] { store_->ssh_certificates().revoke_serial(ops_.id, 6, "2026-02-01T00:00:00Z"); }, ErrorCode::NotFound);
  EXPECT_EQ(message, "SSH CA 'ops' has no certificate with serial 6");
  // Another CA's serial is not this one's.
  expect_error([&] { store_->ssh_certificates().revoke_serial(hosts_.id, 5, "2026-02-01T00:00:00Z"); },
               ErrorCode::NotFound);
  message = expect_error([&] { store_->ssh_certificates().revoke_serial(424242, 5, "2026-02-01T00:00:00Z"); },
                         ErrorCode::NotFound);
  EXPECT_TRUE(contains(message, "424242")) << message;
  expect_error([&] { store_->ssh_certificates().revoke_serial(ops_.id, 5, "now"); }, ErrorCode::InvalidArgument);
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 5), c);
  EXPECT_TRUE(store_->ssh_certificates().revocations(ops_.id).empty());
  EXPECT_TRUE(store_->ssh_certificates().revocations(hosts_.id).empty());
}

TEST_F(StoreSsh, RevokeKeyIdMarksTheCasValidCertificatesWithItAndStaysForFutureOnes) {
  add_two_cas();
  add_cert(ops_.id, 1, "alice");
  add_cert(ops_.id, 2, "alice");
  add_cert(ops_.id, 3, "alice");
  add_cert(ops_.id, 4, "bob");
  add_cert(ops_.id, 5, "alice-2");
  add_cert(hosts_.id, 1, "alice");
  store_->ssh_certificates().revoke_serial(ops_.id, 3, "2026-01-15T00:00:00Z");

  EXPECT_EQ(store_->ssh_certificates().revoke_key_id(ops_.id, "alice", "2026-02-01T00:00:00Z"), 2u);
  auto status = [&](std::int64_t ca, std::uint64_t serial) {
    auto c = store_->ssh_certificates().find(ca, serial);
    return c->status + "@" + c->revoked_at.value_or("-");
  };
  EXPECT_EQ(status(ops_.id, 1), "revoked@2026-02-01T00:00:00Z");
  EXPECT_EQ(status(ops_.id, 2), "revoked@2026-02-01T00:00:00Z");
  EXPECT_EQ(status(ops_.id, 3), "revoked@2026-01-15T00:00:00Z");  // its first revocation stands
  EXPECT_EQ(status(ops_.id, 4), "valid@-");
  EXPECT_EQ(status(ops_.id, 5), "valid@-");
  EXPECT_EQ(status(hosts_.id, 1), "valid@-");

  // A certificate revoked by its key id cannot be revoked again by serial.
  std::string message = expect_error(
      [&] { store_->ssh_certificates().revoke_serial(ops_.id, 1, "2026-03-01T00:00:00Z"); },
      ErrorCode::FailedPrecondition);
  EXPECT_EQ(message, "SSH certificate 1 of CA 'ops' was already revoked at 2026-02-01T00:00:00Z");

  message = expect_error(
      [&] { store_->ssh_certificates().revoke_key_id(ops_.id, "alice", "2026-03-01T00:00:00Z"); },
      ErrorCode::FailedPrecondition);
  EXPECT_EQ(message, "key id 'alice' was already revoked by SSH CA 'ops' at 2026-02-01T00:00:00Z");

  EXPECT_EQ(store_->ssh_certificates().key_id_revoked_at(ops_.id, "alice"), "2026-02-01T00:00:00Z");
  EXPECT_EQ(store_->ssh_certificates().key_id_revoked_at(ops_.id, "bob"), std::nullopt);
  EXPECT_EQ(store_->ssh_certificates().key_id_revoked_at(hosts_.id, "alice"), std::nullopt) << "per CA";
  // A key id nobody has yet: the KRL revokes the certificates to come.
  EXPECT_EQ(store_->ssh_certificates().revoke_key_id(ops_.id, "mallory", "2026-02-02T00:00:00Z"), 0u);
  EXPECT_EQ(store_->ssh_certificates().revocations(ops_.id),
            (std::vector<SshRevocation>{serial_entry(3, "2026-01-15T00:00:00Z"),
                                        key_id_entry("alice", "2026-02-01T00:00:00Z"),
                                        key_id_entry("mallory", "2026-02-02T00:00:00Z")}));
  // Another CA keeps its own list.
  EXPECT_EQ(store_->ssh_certificates().revoke_key_id(hosts_.id, "alice", "2026-02-03T00:00:00Z"), 1u);
  EXPECT_EQ(store_->ssh_certificates().revocations(hosts_.id),
            std::vector<SshRevocation>{key_id_entry("alice", "2026-02-03T00:00:00Z")});
}

TEST_F(StoreSsh, RevokeKeyMarksTheCasValidCertificatesOfThatKey) {
  add_two_cas();
  add_cert(ops_.id, 1, "alice", 2000000000, 1);
  add_cert(ops_.id, 2, "alice-laptop", 2000000000, 1);
  add_cert(ops_.id, 3, "alice", 2000000000, 2);
  add_cert(hosts_.id, 1, "alice", 2000000000, 1);

  EXPECT_EQ(store_->ssh_certificates().revoke_key(ops_.id, key_blob(1), "2026-02-01T00:00:00Z"), 2u);
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 1)->status, "revoked");
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 2)->revoked_at, "2026-02-01T00:00:00Z");
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 3)->status, "valid");
  EXPECT_EQ(store_->ssh_certificates().find(hosts_.id, 1)->status, "valid");

  std::string message = expect_error(
      [&] { store_->ssh_certificates().revoke_key(ops_.id, key_blob(1), "2026-03-01T00:00:00Z"); },
      ErrorCode::FailedPrecondition);
  EXPECT_EQ(message, "this public key was already revoked by SSH CA 'ops' at 2026-02-01T00:00:00Z");
  EXPECT_EQ(store_->ssh_certificates().key_revoked_at(ops_.id, key_blob(1)), "2026-02-01T00:00:00Z");
  EXPECT_EQ(store_->ssh_certificates().key_revoked_at(ops_.id, key_blob(2)), std::nullopt);
  EXPECT_EQ(store_->ssh_certificates().key_revoked_at(hosts_.id, key_blob(1)), std::nullopt) << "per CA";
  // A key no certificate has: revoked as a plain key.
  EXPECT_EQ(store_->ssh_certificates().revoke_key(ops_.id, key_blob(9), "2026-02-02T00:00:00Z"), 0u);
  EXPECT_EQ(store_->ssh_certificates().revocations(ops_.id),
            (std::vector<SshRevocation>{key_entry(key_blob(1), "2026-02-01T00:00:00Z"),
                                        key_entry(key_blob(9), "2026-02-02T00:00:00Z")}));
}

TEST_F(StoreSsh, RevokeByKeyIdOrKeyRefusesBadInputAndUnknownCas) {
  add_two_cas();
  add_cert(ops_.id, 1);
  std::string message = expect_error(
      [&] { store_->ssh_certificates().revoke_key_id(ops_.id, "", "2026-02-01T00:00:00Z"); }, ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(message, "key id is empty")) << message;
  expect_error([&] { store_->ssh_certificates().revoke_key_id(ops_.id, "alice", "2026-02-01"); },
               ErrorCode::InvalidArgument);
  message = expect_error(
      [&] { store_->ssh_certificates().revoke_key(ops_.id, std::vector<std::uint8_t>{}, "2026-02-01T00:00:00Z"); },
      ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(message, "public key is empty")) << message;
  expect_error([&] { store_->ssh_certificates().revoke_key(ops_.id, key_blob(1), "tomorrow"); },
               ErrorCode::InvalidArgument);
  message = expect_error(
      [&] { store_->ssh_certificates().revoke_key_id(424242, "alice", "2026-02-01T00:00:00Z"); }, ErrorCode::NotFound);
  EXPECT_TRUE(contains(message, "424242")) << message;
  expect_error([&] { store_->ssh_certificates().revoke_key(424242, key_blob(1), "2026-02-01T00:00:00Z"); },
               ErrorCode::NotFound);
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 1)->status, "valid");
  EXPECT_TRUE(store_->ssh_certificates().revocations(ops_.id).empty());
  EXPECT_TRUE(store_->ssh_certificates().revocations(424242).empty());
}

TEST_F(StoreSsh, RevocationsListSerialsAscendingThenKeyIdsThenKeys) {
  add_two_cas();
  const std::string t = "2026-02-01T00:00:00Z";
  // Added in a scrambled order, each kind interleaved with the others.
  store_->ssh_certificates().revoke_key(ops_.id, bytes({0x02}), t);
  for (std::uint64_t serial : {kMax, std::uint64_t{1}, kTwo63, std::uint64_t{0}, kTwo63 - 1, std::uint64_t{256}}) {
    add_cert(ops_.id, serial);
    store_->ssh_certificates().revoke_serial(ops_.id, serial, t);
    if (serial == kTwo63) store_->ssh_certificates().revoke_key_id(ops_.id, "b", t);
  }
  store_->ssh_certificates().revoke_key(ops_.id, bytes({0x01, 0xff}), t);
  store_->ssh_certificates().revoke_key_id(ops_.id, "\xc3\xa9", t);
  store_->ssh_certificates().revoke_key(ops_.id, bytes({0x01}), t);
  store_->ssh_certificates().revoke_key_id(ops_.id, "B", t);
  store_->ssh_certificates().revoke_key_id(ops_.id, "a", t);
  store_->ssh_certificates().revoke_key(ops_.id, bytes({0x01, 0x00, 0x05}), t);

  EXPECT_EQ(store_->ssh_certificates().revocations(ops_.id),
            (std::vector<SshRevocation>{
                serial_entry(0, t), serial_entry(1, t), serial_entry(256, t), serial_entry(kTwo63 - 1, t),
                serial_entry(kTwo63, t), serial_entry(kMax, t),
                // byte order, as OpenSSH's krl.c (strcmp, memcmp then length) keeps them
                key_id_entry("B", t), key_id_entry("a", t), key_id_entry("b", t), key_id_entry("\xc3\xa9", t),
                key_entry(bytes({0x01}), t), key_entry(bytes({0x01, 0x00, 0x05}), t), key_entry(bytes({0x01, 0xff}), t),
                key_entry(bytes({0x02}), t)}));
}

TEST_F(StoreSsh, RevocationsJoinTheCallersTransactionAsWholeSteps) {
  add_two_cas();
  add_cert(ops_.id, 1, "alice");
  add_cert(ops_.id, 2, "bob");
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->ssh_certificates().revoke_key_id(ops_.id, "alice", "2026-02-01T00:00:00Z"), 1u);
    // rolled back: nothing of it stays
  }
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 1)->status, "valid");
  EXPECT_TRUE(store_->ssh_certificates().revocations(ops_.id).empty());
  {
    Transaction tx(*store_);
    EXPECT_EQ(store_->ssh_certificates().revoke_key_id(ops_.id, "alice", "2026-02-01T00:00:00Z"), 1u);
    // A failed step undoes itself only; the transaction goes on and commits.
    expect_error([&] { store_->ssh_certificates().revoke_key_id(ops_.id, "alice", "2026-02-02T00:00:00Z"); },
                 ErrorCode::FailedPrecondition);
    expect_error([&] { store_->ssh_certificates().revoke_serial(ops_.id, 3, "2026-02-02T00:00:00Z"); },
                 ErrorCode::NotFound);
    store_->ssh_certificates().revoke_serial(ops_.id, 2, "2026-02-03T00:00:00Z");
    tx.commit();
  }
  EXPECT_EQ(store_->ssh_certificates().revocations(ops_.id),
            (std::vector<SshRevocation>{serial_entry(2, "2026-02-03T00:00:00Z"),
                                        key_id_entry("alice", "2026-02-01T00:00:00Z")}));
  EXPECT_EQ(store_->ssh_certificates().find(ops_.id, 1)->revoked_at, "2026-02-01T00:00:00Z");
}

TEST_F(StoreSsh, RevocationsFromFourThreadsKeepCertificatesAndKrlInStep) {
  add_two_cas();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  {
    Transaction tx(*store_);
    for (int i = 0; i < kThreads * kPerThread; ++i) add_cert(ops_.id, kTwo63 + static_cast<std::uint64_t>(i));
    tx.commit();
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < kPerThread; ++i) {
          std::uint64_t serial = kTwo63 + static_cast<std::uint64_t>(t * kPerThread + i);
          if (i % 2 == 0) {
            store_->ssh_certificates().revoke_serial(ops_.id, serial, "2026-02-01T00:00:00Z");
          } else {
            Transaction tx(*store_);
            store_->ssh_certificates().revoke_serial(ops_.id, serial, "2026-02-01T00:00:00Z");
            tx.commit();
          }
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  auto entries = store_->ssh_certificates().revocations(ops_.id);
  ASSERT_EQ(entries.size(), static_cast<std::size_t>(kThreads * kPerThread));
  for (std::size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(entries[i].serial, kTwo63 + i);
  SshCertificateFilter revoked;
  revoked.status = "revoked";
  EXPECT_EQ(store_->ssh_certificates().list(revoked).size(), entries.size());
}

// ---- list and its filters ----

class StoreSshFilters : public StoreSsh {
 protected:
  static constexpr std::uint64_t kNow = 1000;

  void SetUp() override {
    StoreSsh::SetUp();
    add_two_cas();
    add_cert(ops_.id, 11, "alice", 500);                 // expired
    add_cert(ops_.id, 12, "alice", kNow);                // expired: OpenSSH refuses it from valid_before on
    add_cert(ops_.id, 13, "bob", kNow + 1);
    add_cert(ops_.id, 14, "alice", kSshValidForever);
    add_cert(ops_.id, 15, "bob", 2000);
    store_->ssh_certificates().revoke_serial(ops_.id, 15, "2026-02-01T00:00:00Z");  // revoked
    add_cert(ops_.id, 16, "carol", 400);
    store_->ssh_certificates().revoke_serial(ops_.id, 16, "2026-02-01T00:00:00Z");  // revoked and expired
    add_cert(ops_.id, kTwo63, "alice", 2000);            // same valid_before as 15 and 5: serial order decides
    add_cert(ops_.id, 5, "carol", 2000);
    add_cert(ops_.id, 17, "alice", kTwo63 + 10);         // beyond 2^63: after every smaller time
    add_cert(hosts_.id, 21, "alice", 1500);
  }

  std::vector<std::uint64_t> listed(const SshCertificateFilter& f) {
    return serials_of(store_->ssh_certificates().list(f));
  }
  SshCertificateFilter status(const std::string& s, std::uint64_t now = kNow) {
    SshCertificateFilter f;
    f.status = s;
    f.now = now;
    return f;
  }
};

TEST_F(StoreSshFilters, NoFilterListsAllByValidBeforeThenSerialAsUnsignedNumbers) {
  EXPECT_EQ(listed({}), (std::vector<std::uint64_t>{16, 11, 12, 13, 21, 5, 15, kTwo63, 17, 14}));
}

TEST_F(StoreSshFilters, StatusValidRevokedAndExpiredAgainstAnInjectedNow) {
  EXPECT_EQ(listed(status("valid")), (std::vector<std::uint64_t>{13, 21, 5, kTwo63, 17, 14}));
  EXPECT_EQ(listed(status("revoked")), (std::vector<std::uint64_t>{16, 15}));
  EXPECT_EQ(listed(status("expired")), (std::vector<std::uint64_t>{11, 12}));
  // A "now" beyond 2^63 compares as unsigned too: only 17 (just after it) and forever remain.
  EXPECT_EQ(listed(status("valid", kTwo63 + 9)), (std::vector<std::uint64_t>{17, 14}));
  EXPECT_EQ(listed(status("expired", kTwo63 + 10)), (std::vector<std::uint64_t>{11, 12, 13, 21, 5, kTwo63, 17}));
  // Without an injected now the clock decides: all of these times are long past, but forever.
  SshCertificateFilter by_clock;
  by_clock.status = "valid";
  EXPECT_EQ(listed(by_clock), (std::vector<std::uint64_t>{17, 14}));
}

TEST_F(StoreSshFilters, KeyIdAndCaNarrowTheResult) {
  SshCertificateFilter f;
  f.key_id = "alice";
  EXPECT_EQ(listed(f), (std::vector<std::uint64_t>{11, 12, 21, kTwo63, 17, 14}));
  f.ca_id = ops_.id;
  EXPECT_EQ(listed(f), (std::vector<std::uint64_t>{11, 12, kTwo63, 17, 14}));
  f.status = "valid";
  f.now = kNow;
  EXPECT_EQ(listed(f), (std::vector<std::uint64_t>{kTwo63, 17, 14}));
  f.key_id = "nobody";
  EXPECT_TRUE(listed(f).empty());

  SshCertificateFilter by_ca;
  by_ca.ca_id = hosts_.id;
  EXPECT_EQ(listed(by_ca), (std::vector<std::uint64_t>{21}));
  by_ca.ca_id = 424242;
  EXPECT_TRUE(listed(by_ca).empty());
}

TEST_F(StoreSshFilters, ListLeavesOutTheCertificateBlobAndKeepsEverythingElse) {
  auto records = store_->ssh_certificates().list({});
  ASSERT_EQ(records.size(), 10u);
  for (const SshCertificateRecord& r : records) {
    EXPECT_TRUE(r.certificate_blob.empty());
    SshCertificateRecord full = *store_->ssh_certificates().find(r.ca_id, r.serial);
    EXPECT_FALSE(full.certificate_blob.empty());
    full.certificate_blob.clear();
    EXPECT_EQ(r, full);
  }
}

TEST_F(StoreSshFilters, UnknownStatusesAreRefused) {
  for (const char* bad : {"expiring", "", "Valid"}) {
    std::string message = expect_error([&] { listed(status(bad)); }, ErrorCode::InvalidArgument);
    EXPECT_TRUE(contains(message, "'" + std::string(bad) + "'")) << message;
  }
}

// ---- ssh_keys ----

TEST_F(StoreSsh, KeyVersionsRoundTripInVersionOrderAndListByNameThenVersion) {
  SshKeyVersionRecord deploy2 = make_key_version("deploy", 2, 2);
  SshKeyVersionRecord deploy1 = make_key_version("deploy", 1, 1);
  deploy1.state = "retired";
  deploy1.retired_at = "2026-02-01T00:00:00Z";
  SshKeyVersionRecord backup1 = make_key_version("backup", 1, 3);
  backup1.key_type = "rsa-3072";
  backup1.created_at = "";
  store_->ssh_keys().insert_version(deploy2);  // out of order on purpose
  store_->ssh_keys().insert_version(deploy1);
  store_->ssh_keys().insert_version(backup1);
  EXPECT_GT(deploy2.id, 0);
  EXPECT_FALSE(backup1.created_at.empty());

  EXPECT_EQ(store_->ssh_keys().versions("deploy"), (std::vector<SshKeyVersionRecord>{deploy1, deploy2}));
  EXPECT_EQ(store_->ssh_keys().versions("backup"), std::vector<SshKeyVersionRecord>{backup1});
  EXPECT_TRUE(store_->ssh_keys().versions("nope").empty());
  EXPECT_EQ(store_->ssh_keys().list(), (std::vector<SshKeyVersionRecord>{backup1, deploy1, deploy2}));
}

TEST_F(StoreSsh, KeyVersionIsUniquePerNameAndACkaIdIsNeverReused) {
  SshKeyVersionRecord v1 = make_key_version("deploy", 1, 1);
  store_->ssh_keys().insert_version(v1);
  SshKeyVersionRecord again = make_key_version("deploy", 1, 2);
  again.created_at = "";
  std::string message = expect_error([&] { store_->ssh_keys().insert_version(again); }, ErrorCode::AlreadyExists);
  EXPECT_EQ(message, "SSH key 'deploy' already has a version 1");
  EXPECT_EQ(again.id, 0);
  EXPECT_EQ(again.created_at, "");

  SshKeyVersionRecord same_key = make_key_version("deploy", 2, 1);
  message = expect_error([&] { store_->ssh_keys().insert_version(same_key); }, ErrorCode::AlreadyExists);
  EXPECT_TRUE(contains(message, keyhold::to_hex(object_id(1001)))) << message;

  // Version 1 of another name is fine.
  SshKeyVersionRecord other = make_key_version("other", 1, 3);
  store_->ssh_keys().insert_version(other);
  EXPECT_EQ(store_->ssh_keys().list().size(), 2u);
}

TEST_F(StoreSsh, SetRetiredRetiresOnceAndSaysWhenAsked) {
  SshKeyVersionRecord v1 = make_key_version("deploy", 1, 1);
  SshKeyVersionRecord v2 = make_key_version("deploy", 2, 2);
  store_->ssh_keys().insert_version(v1);
  store_->ssh_keys().insert_version(v2);

  store_->ssh_keys().set_retired(v1.id, "2026-03-01T00:00:00Z");
  v1.state = "retired";
  v1.retired_at = "2026-03-01T00:00:00Z";
  EXPECT_EQ(store_->ssh_keys().versions("deploy"), (std::vector<SshKeyVersionRecord>{v1, v2}));

  std::string message =
      expect_error([&] { store_->ssh_keys().set_retired(v1.id, "2026-04-01T00:00:00Z"); }, ErrorCode::FailedPrecondition);
  EXPECT_EQ(message, "SSH key 'deploy' version 1 was already retired at 2026-03-01T00:00:00Z");
  message = expect_error([&] { store_->ssh_keys().set_retired(424242, "2026-04-01T00:00:00Z"); }, ErrorCode::NotFound);
  EXPECT_TRUE(contains(message, "424242")) << message;
  expect_error([&] { store_->ssh_keys().set_retired(v2.id, "soon"); }, ErrorCode::InvalidArgument);
  EXPECT_EQ(store_->ssh_keys().versions("deploy"), (std::vector<SshKeyVersionRecord>{v1, v2}));
}

TEST_F(StoreSsh, KeyVersionRecordsThatBreakTheRulesAreRefused) {
  auto rejected = [&](auto change, const std::string& names) {
    SshKeyVersionRecord r = make_key_version("deploy", 1, 1);
    change(r);
    std::string message = expect_error([&] { store_->ssh_keys().insert_version(r); }, ErrorCode::InvalidArgument);
    EXPECT_TRUE(contains(message, names)) << message;
    EXPECT_EQ(r.id, 0);
  };
  rejected([](SshKeyVersionRecord& r) { r.name.clear(); }, "name");
  rejected([](SshKeyVersionRecord& r) { r.version = 0; }, "version");
  rejected([](SshKeyVersionRecord& r) { r.version = -3; }, "version");
  rejected([](SshKeyVersionRecord& r) { r.key_object_id.clear(); }, "CKA_ID");
  rejected([](SshKeyVersionRecord& r) { r.key_type.clear(); }, "key type");
  rejected([](SshKeyVersionRecord& r) { r.public_key_blob.clear(); }, "public key");
  rejected([](SshKeyVersionRecord& r) { r.state = "destroyed"; }, "state");
  rejected([](SshKeyVersionRecord& r) { r.state = "retired"; }, "retired_at");
  rejected([](SshKeyVersionRecord& r) { r.retired_at = "2026-02-01T00:00:00Z"; }, "retired_at");
  rejected([](SshKeyVersionRecord& r) { r.state = "retired"; r.retired_at = "2026-02-01"; }, "retired_at");
  rejected([](SshKeyVersionRecord& r) { r.created_at = "2026-01-01T24:00:00Z"; }, "created_at");
  EXPECT_TRUE(store_->ssh_keys().list().empty());
}

// ---- the schema itself, for writers that bypass the store ----

TEST_F(StoreSsh, SchemaConstraintsHoldForWritersThatBypassTheStore) {
  add_two_cas();
  RawDb raw(db_path());
  ASSERT_EQ(raw.exec("PRAGMA foreign_keys = ON"), SQLITE_OK);
  const std::string ca = std::to_string(ops_.id);
  const std::string fp = "'" + fingerprint(1) + "'";
  auto certificate = [&](const std::string& serial, const std::string& values) {
    // values: type, key_id, principals, valid_after, valid_before, fingerprint, status, revoked_at
    return raw.exec("INSERT INTO ssh_certificates (ca_id, serial, type, key_id, principals, valid_after, valid_before, "
                    "public_key_fingerprint, status, revoked_at, public_key_blob, profile, requester, certificate_blob, "
                    "created_at) VALUES (" +
                    ca + ", " + serial + ", " + values + ", x'01', 'ops', 'cli', x'02', '2026-01-01T00:00:00Z')");
  };
  EXPECT_EQ(certificate("1", "'user', 'a', '[\"a\"]', 1, 2, " + fp + ", 'valid', NULL"), SQLITE_OK);
  EXPECT_EQ(certificate("-1", "'host', 'a', '[]', -2, -1, " + fp + ", 'revoked', '2026-02-01T00:00:00Z'"), SQLITE_OK);
  EXPECT_EQ(certificate("1", "'user', 'a', '[]', 1, 2, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(certificate("'x'", "'user', 'a', '[]', 1, 2, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2.5", "'user', 'a', '[]', 1, 2, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'both', 'a', '[]', 1, 2, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', '', '[]', 1, 2, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', 'a', '{}', 1, 2, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', 'a', '[', 1, 2, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', 'a', '[]', 2, 2, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', 'a', '[]', -1, 1, " + fp + ", 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', 'a', '[]', 1, 2, 'SHA256:x', 'valid', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', 'a', '[]', 1, 2, " + fp + ", 'expired', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', 'a', '[]', 1, 2, " + fp + ", 'revoked', NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(certificate("2", "'user', 'a', '[]', 1, 2, " + fp + ", 'valid', '2026-02-01T00:00:00Z'"),
            SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM ssh_certificates"), 2);
  EXPECT_EQ(raw.exec("UPDATE ssh_certificates SET status = 'revoked' WHERE serial = 1"), SQLITE_CONSTRAINT_CHECK);

  auto revocation = [&](const std::string& kind, const std::string& serial, const std::string& key_id,
                        const std::string& blob) {
    return raw.exec("INSERT INTO ssh_revocations (ca_id, kind, serial, key_id, public_key_blob, revoked_at) VALUES (" +
                    ca + ", '" + kind + "', " + serial + ", " + key_id + ", " + blob + ", '2026-02-01T00:00:00Z')");
  };
  EXPECT_EQ(revocation("serial", "-1", "NULL", "NULL"), SQLITE_OK);
  EXPECT_EQ(revocation("key_id", "NULL", "'a'", "NULL"), SQLITE_OK);
  EXPECT_EQ(revocation("key", "NULL", "NULL", "x'01'"), SQLITE_OK);
  EXPECT_EQ(revocation("serial", "-1", "NULL", "NULL"), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(revocation("key_id", "NULL", "'a'", "NULL"), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(revocation("key", "NULL", "NULL", "x'01'"), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(revocation("serial", "NULL", "NULL", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(revocation("serial", "2", "'a'", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(revocation("key_id", "NULL", "''", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(revocation("key_id", "3", "'b'", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(revocation("key", "NULL", "NULL", "x''"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(revocation("key", "NULL", "NULL", "'text'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(revocation("principal", "NULL", "'a'", "NULL"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("INSERT INTO ssh_revocations (ca_id, kind, serial, revoked_at) "
                     "VALUES (424242, 'serial', 9, '2026-02-01T00:00:00Z')"),
            SQLITE_CONSTRAINT_FOREIGNKEY);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM ssh_revocations"), 3);

  EXPECT_EQ(raw.exec("UPDATE ssh_cas SET krl_version = -1 WHERE id = " + ca), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("UPDATE ssh_cas SET name = 'hosts' WHERE id = " + ca), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(raw.exec("INSERT INTO ssh_keys (name, version, key_object_id, key_type, public_key_blob, state, created_at, "
                     "retired_at) VALUES ('k', 1, x'01', 'ecdsa-p256', x'02', 'retired', '2026-01-01T00:00:00Z', NULL)"),
            SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("INSERT INTO ssh_keys (name, version, key_object_id, key_type, public_key_blob, created_at) "
                     "VALUES ('k', 0, x'01', 'ecdsa-p256', x'02', '2026-01-01T00:00:00Z')"),
            SQLITE_CONSTRAINT_CHECK);
}

}  // namespace
