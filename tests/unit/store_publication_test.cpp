// keyhold::store's publication records (migration 6): the CRL each CA version
// published last, the KRL each SSH CA published last, their staleness after a
// revocation, and the expiry marks of keyhold maintain; on a real SQLite
// file, checked through the store's API and with the SQLite C API opened on
// the same file.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "keyhold/core/error.hpp"
#include "keyhold/store/store.hpp"
#include "support/store_testing.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using keyhold::testing::contains;
using keyhold::testing::expect_error;
using keyhold::testing::RawDb;
using keyhold::ErrorCode;
using keyhold::store::CaRecord;
using keyhold::store::CaVersionRecord;
using keyhold::store::CertificateFilter;
using keyhold::store::CertificateRecord;
using keyhold::store::KekRecord;
using keyhold::store::KekVersionRecord;
using keyhold::store::KeyRecord;
using keyhold::store::kSqliteSchemaVersion;
using keyhold::store::open_sqlite_store;
using keyhold::store::PublishedCrlRecord;
using keyhold::store::PublishedKrlRecord;
using keyhold::store::SshCaRecord;
using keyhold::store::SshCertificateRecord;
using keyhold::store::Store;
using keyhold::store::Transaction;

// Every test works in a directory of its own.
class TempDir : public keyhold::testing::TempDir {
 public:
  TempDir() : keyhold::testing::TempDir("keyhold-store-publication-test") {}
};

std::vector<std::uint8_t> bytes(std::initializer_list<int> values) {
  std::vector<std::uint8_t> out;
  for (int v : values) out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

std::vector<std::uint8_t> id16(int n, int fill) {
  std::vector<std::uint8_t> id(16, static_cast<std::uint8_t>(fill));
  id[0] = static_cast<std::uint8_t>(n);
  id[1] = static_cast<std::uint8_t>(n >> 8);
  return id;
}

std::vector<std::uint8_t> digest(int n) { return std::vector<std::uint8_t>(32, static_cast<std::uint8_t>(n)); }

CaVersionRecord make_version(std::int64_t ca_id, int version) {
  CaVersionRecord r;
  r.ca_id = ca_id;
  r.version = version;
  r.key_object_id = id16(100 * static_cast<int>(ca_id) + version, 0x5a);
  r.key_type = "ec-p256";
  r.certificate_der = bytes({0x30, 0x82, 0x01, version});
  r.subject = "CN=CA " + std::to_string(ca_id);
  r.subject_key_id = bytes({0x01, version});
  r.not_before = "2026-01-01T00:00:00Z";
  r.not_after = "2036-01-01T00:00:00Z";
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

CertificateRecord make_certificate(const std::string& serial, std::int64_t version_id, const std::string& not_after) {
  CertificateRecord r;
  r.serial = serial;
  r.ca_version_id = version_id;
  r.subject = "CN=host-" + serial + ".example";
  r.profile = "server";
  r.not_before = "2026-01-01T00:00:00Z";
  r.not_after = not_after;
  r.requester = "cli";
  r.certificate_der = bytes({0x30, 0x82, 0x02, 0x00});
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

PublishedCrlRecord make_crl(std::int64_t version_id, std::int64_t number) {
  PublishedCrlRecord r;
  r.ca_version_id = version_id;
  r.crl_number = number;
  r.this_update = "2026-03-01T00:00:00Z";
  r.next_update = "2026-03-08T00:00:00Z";
  r.revoked_count = number;
  r.revoked_digest = digest(static_cast<int>(number));
  r.crl_der = bytes({0x30, 0x82, 0x01, static_cast<int>(number & 0xff)});
  r.published_at = "2026-03-01T00:00:01Z";
  return r;
}

SshCaRecord make_ssh_ca(const std::string& name, int n) {
  SshCaRecord r;
  r.name = name;
  r.key_object_id = id16(n, 0x3c);
  r.key_type = "ed25519";
  r.public_key_blob = bytes({0, 0, 0, 11, 's', 's', 'h', n});
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

SshCertificateRecord make_ssh_certificate(std::int64_t ca_id, std::uint64_t serial, const std::string& key_id, int key) {
  SshCertificateRecord r;
  r.ca_id = ca_id;
  r.serial = serial;
  r.type = "user";
  r.key_id = key_id;
  r.principals = {"alice"};
  r.valid_after = 100;
  r.valid_before = 2000000000;
  r.public_key_fingerprint = "SHA256:" + std::string(42, 'A') + std::to_string(key % 10);
  r.public_key_blob = bytes({0, 0, 0, 11, 'k', 'e', 'y', key});
  r.profile = "user";
  r.requester = "cli";
  r.certificate_blob = bytes({0, 0, 0, 28, 'c', 'e', 'r', 't', static_cast<int>(serial & 0xff)});
  r.created_at = "2026-01-01T00:00:00Z";
  return r;
}

PublishedKrlRecord make_krl(std::int64_t ca_id, std::int64_t version) {
  PublishedKrlRecord r;
  r.ssh_ca_id = ca_id;
  r.krl_version = version;
  r.generated_at = "2026-03-01T00:00:00Z";
  r.revocation_count = version;
  r.revocations_digest = digest(static_cast<int>(version));
  r.krl = bytes({'S', 'S', 'H', 'K', 'R', 'L', '\n', 0, static_cast<int>(version & 0xff)});
  r.published_at = "2026-03-01T00:00:01Z";
  return r;
}

class StorePublication : public ::testing::Test {
 protected:
  fs::path db_path() const { return dir_.path() / "keyhold.db"; }

  void SetUp() override {
    store_ = open_sqlite_store(db_path());
    root_.name = "root";
    root_.kind = "root";
    root_.created_at = "2026-01-01T00:00:00Z";
    store_->cas().insert(root_);
    v1_ = make_version(root_.id, 1);
    store_->cas().insert_version(v1_);
    v2_ = make_version(root_.id, 2);
    store_->cas().insert_version(v2_);
    ops_ = make_ssh_ca("ops", 1);
    store_->ssh_cas().insert(ops_);
    hosts_ = make_ssh_ca("hosts", 2);
    store_->ssh_cas().insert(hosts_);
  }

  bool crl_stale(std::int64_t version_id) { return store_->cas().published_crl_summary(version_id).value().stale; }
  bool krl_stale(std::int64_t ca_id) { return store_->ssh_cas().published_krl_summary(ca_id).value().stale; }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  CaRecord root_;
  CaVersionRecord v1_, v2_;
  SshCaRecord ops_, hosts_;
};

// ---- schema and migration ----

TEST_F(StorePublication, NewFileHasThePublicationTablesAndTriggers) {
  EXPECT_EQ(store_->schema_version(), kSqliteSchemaVersion);
  EXPECT_GE(kSqliteSchemaVersion, 6);  // the publication tables came with migration 6
  RawDb raw(db_path());
  for (const char* table : {"published_crls", "published_krls", "expired_certificates"}) {
    EXPECT_EQ(raw.integer(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '") + table + "'"),
              1)
        << table;
  }
  for (const char* trigger : {"published_crls_number_increases", "published_krls_version_increases"}) {
    EXPECT_EQ(
        raw.integer(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = '") + trigger + "'"),
        1)
        << trigger;
  }
}

class StorePublicationMigration : public StorePublication {
 protected:
  // A version-5 file with rows in every table of migrations 1 to 5.
  // Migrations 1 to 5 are released and never change, and migration 6 only
  // adds its own tables: a file of this build without them, at user_version
  // 5, is what the previous keyhold left.
  void make_version5_file() {
    KeyRecord key;
    key.name = "ca-key";
    key.token_object_id = id16(9, 0x01);
    key.key_type = "ec-p256";
    key.purpose = "sign";
    key.created_at = "2025-01-01T00:00:00Z";
    key.used_by = "ca:root:v1";
    store_->keys().insert(key);
    CertificateRecord cert = make_certificate("5f3a", v1_.id, "2027-01-01T00:00:00Z");
    store_->certificates().insert(cert);
    store_->certificates().revoke("5f3a", "2026-02-01T00:00:00Z", "superseded");
    store_->cas().next_crl_number(v1_.id);
    store_->ssh_cas().next_krl_version(ops_.id);
    store_->ssh_certificates().revoke_key_id(ops_.id, "mallory", "2026-02-01T00:00:00Z");
    KekRecord kek;
    kek.name = "app";
    kek.kek_id = id16(1, 0x4b);
    kek.max_encryptions = 100;
    kek.created_at = "2026-01-01T00:00:00Z";
    store_->keks().insert(kek);
    KekVersionRecord kv;
    kv.kek_id = kek.id;
    kv.version = 1;
    kv.key_object_id = id16(1, 0x6b);
    kv.created_at = "2026-01-01T00:00:00Z";
    store_->keks().insert_version(kv);
    store_->keks().reserve_encryptions(kv.id, 7);
    store_.reset();

    RawDb raw(db_path());
    ASSERT_EQ(raw.exec("DROP TABLE expired_certificates; DROP TABLE published_krls; DROP TABLE published_crls; "
                       "PRAGMA user_version = 5;"),
              SQLITE_OK);
    ASSERT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE tbl_name LIKE 'published%' "
                          "OR tbl_name = 'expired_certificates'"),
              0);
    ASSERT_EQ(raw.text("PRAGMA integrity_check"), "ok");
  }

  // Everything of the file but the tables of migration 6: schema and rows.
  std::string everything_else(RawDb& raw) {
    std::string out = raw.rows("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name NOT LIKE 'published%' "
                               "AND tbl_name <> 'expired_certificates' ORDER BY name");
    for (const char* table : {"keys", "cas", "ca_versions", "certificates", "ssh_cas", "ssh_certificates",
                              "ssh_revocations", "ssh_keys", "keks", "kek_versions"}) {
      out += "\n--" + std::string(table) + "\n" + raw.rows(std::string("SELECT * FROM ") + table + " ORDER BY id");
    }
    return out;
  }
};

TEST_F(StorePublicationMigration, UpgradesAVersion5FileInPlaceKeepingItsRows) {
  make_version5_file();
  std::string before;
  {
    RawDb raw(db_path());
    before = everything_else(raw);
  }
  ASSERT_TRUE(contains(before, "5f3a")) << before;
  ASSERT_TRUE(contains(before, "mallory")) << before;

  {
    auto store = open_sqlite_store(db_path());
    EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
    // The existing records read as before; nothing is published yet, and the new tables work.
    EXPECT_EQ(store->certificates().find("5f3a")->revocation_reason, "superseded");
    EXPECT_EQ(store->keks().find("app")->max_encryptions, 100u);
    EXPECT_FALSE(store->cas().published_crl(v1_.id).has_value());
    EXPECT_FALSE(store->ssh_cas().published_krl(ops_.id).has_value());
    PublishedCrlRecord crl = make_crl(v1_.id, 2);
    EXPECT_TRUE(store->cas().publish_crl(crl));
    EXPECT_EQ(store->cas().published_crl(v1_.id), crl);
    PublishedKrlRecord krl = make_krl(ops_.id, 2);
    EXPECT_TRUE(store->ssh_cas().publish_krl(krl));
    EXPECT_EQ(store->certificates().mark_expired("2028-01-01T00:00:00Z", "2028-01-01T00:00:00Z").size(), 0u);
  }
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(everything_else(raw), before);
  EXPECT_EQ(raw.text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.text("PRAGMA foreign_key_check"), "");
  // Reopening changes nothing more.
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
  EXPECT_EQ(store->cas().published_crl(v1_.id)->crl_number, 2);
}

TEST_F(StorePublicationMigration, AFailedMigration6LeavesTheVersion5FileAsItWas) {
  make_version5_file();
  std::string before;
  {
    RawDb raw(db_path());
    // Something migration 6 cannot create over, after its first table.
    ASSERT_EQ(raw.exec("CREATE TABLE expired_certificates (x)"), SQLITE_OK);
    before = everything_else(raw);
  }
  expect_error([&] { open_sqlite_store(db_path()); }, ErrorCode::Internal);
  {
    RawDb raw(db_path());
    EXPECT_EQ(raw.integer("PRAGMA user_version"), 5);
    EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE tbl_name LIKE 'published%'"), 0);
    EXPECT_EQ(raw.text("SELECT sql FROM sqlite_master WHERE name = 'expired_certificates'"),
              "CREATE TABLE expired_certificates (x)");
    EXPECT_EQ(everything_else(raw), before);
    EXPECT_EQ(raw.text("PRAGMA integrity_check"), "ok");
    ASSERT_EQ(raw.exec("DROP TABLE expired_certificates"), SQLITE_OK);
  }
  // Once the obstacle is gone the migration runs.
  auto store = open_sqlite_store(db_path());
  EXPECT_EQ(store->schema_version(), kSqliteSchemaVersion);
}

// ---- published CRLs ----

TEST_F(StorePublication, PublishedCrlRoundTripsEveryFieldAndTheSummaryLeavesOutTheDer) {
  EXPECT_FALSE(store_->cas().published_crl(v1_.id).has_value());
  EXPECT_FALSE(store_->cas().published_crl_summary(v1_.id).has_value());
  PublishedCrlRecord crl = make_crl(v1_.id, 3);
  ASSERT_TRUE(store_->cas().publish_crl(crl));
  EXPECT_EQ(store_->cas().published_crl(v1_.id), crl);
  PublishedCrlRecord summary = crl;
  summary.crl_der.clear();
  EXPECT_EQ(store_->cas().published_crl_summary(v1_.id), summary);
  // One per version: the other version has none.
  EXPECT_FALSE(store_->cas().published_crl(v2_.id).has_value());

  // published_at is filled when empty.
  PublishedCrlRecord fresh = make_crl(v2_.id, 4);
  fresh.published_at.clear();
  ASSERT_TRUE(store_->cas().publish_crl(fresh));
  EXPECT_EQ(fresh.published_at.size(), 20u);
  EXPECT_EQ(store_->cas().published_crl(v2_.id)->published_at, fresh.published_at);
}

TEST_F(StorePublication, AHigherNumberReplacesThePublishedCrlAndAnOlderOneNeverDoes) {
  PublishedCrlRecord five = make_crl(v1_.id, 5);
  ASSERT_TRUE(store_->cas().publish_crl(five));
  PublishedCrlRecord older = make_crl(v1_.id, 4);
  EXPECT_FALSE(store_->cas().publish_crl(older));
  PublishedCrlRecord same = make_crl(v1_.id, 5);
  same.next_update = "2026-04-01T00:00:00Z";
  EXPECT_FALSE(store_->cas().publish_crl(same));
  EXPECT_EQ(store_->cas().published_crl(v1_.id), five);

  PublishedCrlRecord newer = make_crl(v1_.id, 9);
  newer.this_update = "2026-03-05T00:00:00Z";
  newer.next_update = "2026-03-12T00:00:00Z";
  ASSERT_TRUE(store_->cas().publish_crl(newer));
  EXPECT_EQ(store_->cas().published_crl(v1_.id), newer);
  RawDb raw(db_path());
  EXPECT_EQ(raw.integer("SELECT count(*) FROM published_crls"), 1);
}

TEST_F(StorePublication, PublishedCrlRecordsThatBreakTheRulesAreRefusedAndChangeNothing) {
  auto refused = [&](auto change, const std::string& says) {
    PublishedCrlRecord r = make_crl(v1_.id, 2);
    change(r);
    std::string message = expect_error([&] { store_->cas().publish_crl(r); }, ErrorCode::InvalidArgument);
    EXPECT_TRUE(contains(message, says)) << message;
  };
  refused([](PublishedCrlRecord& r) { r.crl_number = 0; }, "CRL number must be 1 or more");
  refused([](PublishedCrlRecord& r) { r.this_update = "2026-03-01 00:00:00"; }, "this_update");
  refused([](PublishedCrlRecord& r) { r.next_update = "soon"; }, "next_update");
  refused([](PublishedCrlRecord& r) { r.next_update = r.this_update; }, "next_update is not after this_update");
  refused([](PublishedCrlRecord& r) { r.revoked_count = -1; }, "revoked count is negative");
  refused([](PublishedCrlRecord& r) { r.revoked_digest.pop_back(); }, "not 32 bytes");
  refused([](PublishedCrlRecord& r) { r.stale = true; }, "stale");
  refused([](PublishedCrlRecord& r) { r.crl_der.clear(); }, "the CRL is empty");
  refused([](PublishedCrlRecord& r) { r.published_at = "yesterday"; }, "published_at");
  EXPECT_FALSE(store_->cas().published_crl(v1_.id).has_value());

  PublishedCrlRecord unknown = make_crl(424242, 1);
  std::string message = expect_error([&] { store_->cas().publish_crl(unknown); }, ErrorCode::NotFound);
  EXPECT_TRUE(contains(message, "no CA version with id 424242")) << message;
}

TEST_F(StorePublication, ARevocationLeavesOnlyItsVersionsPublishedCrlStaleAndPublishingClearsIt) {
  CertificateRecord a = make_certificate("a1", v1_.id, "2027-01-01T00:00:00Z");
  store_->certificates().insert(a);
  CertificateRecord b = make_certificate("b2", v2_.id, "2027-01-01T00:00:00Z");
  store_->certificates().insert(b);
  PublishedCrlRecord one = make_crl(v1_.id, 1);
  PublishedCrlRecord two = make_crl(v2_.id, 2);
  ASSERT_TRUE(store_->cas().publish_crl(one));
  ASSERT_TRUE(store_->cas().publish_crl(two));
  EXPECT_FALSE(crl_stale(v1_.id));

  store_->certificates().revoke("a1", "2026-03-02T00:00:00Z", "keyCompromise");
  EXPECT_TRUE(crl_stale(v1_.id));
  EXPECT_FALSE(crl_stale(v2_.id));
  // The rest of the published CRL stays as it was.
  PublishedCrlRecord stale = one;
  stale.stale = true;
  EXPECT_EQ(store_->cas().published_crl(v1_.id), stale);

  // A refused revocation changes nothing.
  expect_error([&] { store_->certificates().revoke("b2", "2026-03-02T00:00:00Z", "nonsense"); },
               ErrorCode::InvalidArgument);
  expect_error([&] { store_->certificates().revoke("ffff", "2026-03-02T00:00:00Z", "superseded"); },
               ErrorCode::NotFound);
  EXPECT_FALSE(crl_stale(v2_.id));

  // The next publication is current again.
  PublishedCrlRecord three = make_crl(v1_.id, 3);
  ASSERT_TRUE(store_->cas().publish_crl(three));
  EXPECT_FALSE(crl_stale(v1_.id));
  // Revoking an already revoked certificate changes nothing either.
  expect_error([&] { store_->certificates().revoke("a1", "2026-03-03T00:00:00Z", "superseded"); },
               ErrorCode::FailedPrecondition);
  EXPECT_FALSE(crl_stale(v1_.id));

  // A certificate inserted as revoked leaves its version's CRL stale too.
  CertificateRecord c = make_certificate("c3", v2_.id, "2027-01-01T00:00:00Z");
  c.status = "revoked";
  c.revoked_at = "2026-03-04T00:00:00Z";
  c.revocation_reason = "unspecified";
  store_->certificates().insert(c);
  EXPECT_TRUE(crl_stale(v2_.id));
  EXPECT_FALSE(crl_stale(v1_.id));
}

TEST_F(StorePublication, ARevocationRolledBackWithItsTransactionLeavesTheCrlCurrent) {
  CertificateRecord a = make_certificate("a1", v1_.id, "2027-01-01T00:00:00Z");
  store_->certificates().insert(a);
  PublishedCrlRecord one = make_crl(v1_.id, 1);
  ASSERT_TRUE(store_->cas().publish_crl(one));
  {
    Transaction tx(*store_);
    store_->certificates().revoke("a1", "2026-03-02T00:00:00Z", "superseded");
    EXPECT_TRUE(crl_stale(v1_.id));
  }
  EXPECT_FALSE(crl_stale(v1_.id));
  EXPECT_EQ(store_->certificates().find("a1")->status, "valid");
  {
    Transaction tx(*store_);
    store_->certificates().revoke("a1", "2026-03-02T00:00:00Z", "superseded");
    tx.commit();
  }
  EXPECT_TRUE(crl_stale(v1_.id));
}

TEST_F(StorePublication, ARevocationBetweenTakingANumberAndPublishingWaitsForThePublication) {
  // Another connection (another process) revokes while this one publishes
  // in a transaction: the revocation waits, then leaves the new CRL stale.
  CertificateRecord a = make_certificate("a1", v1_.id, "2027-01-01T00:00:00Z");
  store_->certificates().insert(a);
  auto other = open_sqlite_store(db_path());
  std::atomic<bool> revoked{false};
  std::thread revoker;
  {
    Transaction tx(*store_);
    std::int64_t number = store_->cas().next_crl_number(v1_.id);
    EXPECT_TRUE(store_->certificates().revoked(v1_.id).empty());
    revoker = std::thread([&] {
      other->certificates().revoke("a1", "2026-03-02T00:00:00Z", "superseded");
      revoked = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(revoked.load());  // waits for the write lock
    PublishedCrlRecord crl = make_crl(v1_.id, number);
    crl.revoked_count = 0;
    ASSERT_TRUE(store_->cas().publish_crl(crl));
    tx.commit();
  }
  revoker.join();
  EXPECT_TRUE(revoked.load());
  EXPECT_TRUE(crl_stale(v1_.id));
}

// ---- last_not_after and expiry marks ----

TEST_F(StorePublication, LastNotAfterIsTheLatestOfTheVersionsCertificatesRevokedOnesIncluded) {
  EXPECT_FALSE(store_->certificates().last_not_after(v1_.id).has_value());
  CertificateRecord a = make_certificate("a1", v1_.id, "2027-01-01T00:00:00Z");
  CertificateRecord b = make_certificate("b2", v1_.id, "2028-06-01T00:00:00Z");
  CertificateRecord c = make_certificate("c3", v2_.id, "2030-01-01T00:00:00Z");
  for (CertificateRecord* r : {&a, &b, &c}) store_->certificates().insert(*r);
  store_->certificates().revoke("b2", "2026-03-01T00:00:00Z", "superseded");
  EXPECT_EQ(store_->certificates().last_not_after(v1_.id), "2028-06-01T00:00:00Z");
  EXPECT_EQ(store_->certificates().last_not_after(v2_.id), "2030-01-01T00:00:00Z");
}

TEST_F(StorePublication, MarkExpiredMarksEachExpiredCertificateOnceAndLeavesTheStatusAndFiltersAlone) {
  CertificateRecord gone = make_certificate("a1", v1_.id, "2026-02-01T00:00:00Z");
  CertificateRecord also_gone = make_certificate("b2", v2_.id, "2026-01-15T00:00:00Z");
  CertificateRecord revoked = make_certificate("c3", v1_.id, "2026-01-20T00:00:00Z");
  CertificateRecord alive = make_certificate("d4", v1_.id, "2026-06-01T00:00:00Z");
  for (CertificateRecord* r : {&gone, &also_gone, &revoked, &alive}) store_->certificates().insert(*r);
  store_->certificates().revoke("c3", "2026-01-10T00:00:00Z", "superseded");
  CertificateFilter expired;
  expired.status = "expired";
  expired.now = "2026-03-01T00:00:00Z";
  std::vector<CertificateRecord> before = store_->certificates().list(expired);

  std::vector<CertificateRecord> marked = store_->certificates().mark_expired("2026-03-01T00:00:00Z", "2026-03-01T00:05:00Z");
  ASSERT_EQ(marked.size(), 2u);
  EXPECT_EQ(marked[0].serial, "b2");  // by not_after
  EXPECT_EQ(marked[1].serial, "a1");
  EXPECT_EQ(marked[0].status, "valid");
  EXPECT_TRUE(marked[0].certificate_der.empty());
  EXPECT_EQ(store_->certificates().expired_marked_at("a1"), "2026-03-01T00:05:00Z");
  EXPECT_FALSE(store_->certificates().expired_marked_at("c3").has_value());  // revoked: not "expired"
  EXPECT_FALSE(store_->certificates().expired_marked_at("d4").has_value());
  EXPECT_FALSE(store_->certificates().expired_marked_at("ffff").has_value());

  // The filters and the records are as they were.
  EXPECT_EQ(store_->certificates().list(expired), before);
  EXPECT_EQ(store_->certificates().find("a1")->status, "valid");
  CertificateFilter valid;
  valid.status = "valid";
  valid.now = "2026-03-01T00:00:00Z";
  ASSERT_EQ(store_->certificates().list(valid).size(), 1u);

  // Once marked, never again; a later expiry is marked at its turn.
  EXPECT_TRUE(store_->certificates().mark_expired("2026-03-02T00:00:00Z", "2026-03-02T00:00:00Z").empty());
  marked = store_->certificates().mark_expired("2026-07-01T00:00:00Z", "2026-07-01T00:00:00Z");
  ASSERT_EQ(marked.size(), 1u);
  EXPECT_EQ(marked[0].serial, "d4");
  EXPECT_EQ(store_->certificates().expired_marked_at("a1"), "2026-03-01T00:05:00Z");

  expect_error([&] { store_->certificates().mark_expired("now", "2026-07-01T00:00:00Z"); }, ErrorCode::InvalidArgument);
  expect_error([&] { store_->certificates().mark_expired("2026-07-01T00:00:00Z", ""); }, ErrorCode::InvalidArgument);
  expect_error([&] { store_->certificates().expired_marked_at("0x12"); }, ErrorCode::InvalidArgument);
}

// ---- published KRLs ----

TEST_F(StorePublication, PublishedKrlRoundTripsAndAHigherVersionReplacesIt) {
  EXPECT_FALSE(store_->ssh_cas().published_krl(ops_.id).has_value());
  PublishedKrlRecord two = make_krl(ops_.id, 2);
  ASSERT_TRUE(store_->ssh_cas().publish_krl(two));
  EXPECT_EQ(store_->ssh_cas().published_krl(ops_.id), two);
  PublishedKrlRecord summary = two;
  summary.krl.clear();
  EXPECT_EQ(store_->ssh_cas().published_krl_summary(ops_.id), summary);
  EXPECT_FALSE(store_->ssh_cas().published_krl(hosts_.id).has_value());

  PublishedKrlRecord one = make_krl(ops_.id, 1);
  EXPECT_FALSE(store_->ssh_cas().publish_krl(one));
  EXPECT_EQ(store_->ssh_cas().published_krl(ops_.id), two);
  PublishedKrlRecord three = make_krl(ops_.id, 3);
  ASSERT_TRUE(store_->ssh_cas().publish_krl(three));
  EXPECT_EQ(store_->ssh_cas().published_krl(ops_.id), three);

  auto refused = [&](auto change, const std::string& says) {
    PublishedKrlRecord r = make_krl(hosts_.id, 1);
    change(r);
    std::string message = expect_error([&] { store_->ssh_cas().publish_krl(r); }, ErrorCode::InvalidArgument);
    EXPECT_TRUE(contains(message, says)) << message;
  };
  refused([](PublishedKrlRecord& r) { r.krl_version = 0; }, "KRL version must be 1 or more");
  refused([](PublishedKrlRecord& r) { r.generated_at = "then"; }, "generated_at");
  refused([](PublishedKrlRecord& r) { r.revocation_count = -2; }, "revocation count is negative");
  refused([](PublishedKrlRecord& r) { r.revocations_digest = digest(1); r.revocations_digest.push_back(0); }, "not 32 bytes");
  refused([](PublishedKrlRecord& r) { r.stale = true; }, "stale");
  refused([](PublishedKrlRecord& r) { r.krl.clear(); }, "the KRL is empty");
  EXPECT_FALSE(store_->ssh_cas().published_krl(hosts_.id).has_value());
  PublishedKrlRecord unknown = make_krl(4242, 1);
  expect_error([&] { store_->ssh_cas().publish_krl(unknown); }, ErrorCode::NotFound);
}

TEST_F(StorePublication, EverySshRevocationLeavesOnlyItsCasPublishedKrlStale) {
  SshCertificateRecord c1 = make_ssh_certificate(ops_.id, 1, "alice", 1);
  store_->ssh_certificates().insert(c1);
  auto publish_both = [&](std::int64_t version) {
    PublishedKrlRecord a = make_krl(ops_.id, version);
    PublishedKrlRecord b = make_krl(hosts_.id, version);
    ASSERT_TRUE(store_->ssh_cas().publish_krl(a));
    ASSERT_TRUE(store_->ssh_cas().publish_krl(b));
    ASSERT_FALSE(krl_stale(ops_.id));
  };

  publish_both(1);
  store_->ssh_certificates().revoke_serial(ops_.id, 1, "2026-03-01T00:00:00Z");
  EXPECT_TRUE(krl_stale(ops_.id));
  EXPECT_FALSE(krl_stale(hosts_.id));

  publish_both(2);
  EXPECT_EQ(store_->ssh_certificates().revoke_key_id(ops_.id, "bob", "2026-03-01T00:00:00Z"), 0u);
  EXPECT_TRUE(krl_stale(ops_.id));

  publish_both(3);
  store_->ssh_certificates().revoke_key(ops_.id, bytes({0, 0, 0, 11, 'k', 'e', 'y', 9}), "2026-03-01T00:00:00Z");
  EXPECT_TRUE(krl_stale(ops_.id));

  publish_both(4);
  SshCertificateRecord c2 = make_ssh_certificate(ops_.id, 2, "carol", 2);
  c2.status = "revoked";
  c2.revoked_at = "2026-03-01T00:00:00Z";
  store_->ssh_certificates().insert(c2);
  EXPECT_TRUE(krl_stale(ops_.id));
  EXPECT_FALSE(krl_stale(hosts_.id));

  // Refused revocations change nothing.
  publish_both(5);
  expect_error([&] { store_->ssh_certificates().revoke_serial(ops_.id, 1, "2026-03-02T00:00:00Z"); },
               ErrorCode::FailedPrecondition);
  expect_error([&] { store_->ssh_certificates().revoke_key_id(ops_.id, "bob", "2026-03-02T00:00:00Z"); },
               ErrorCode::FailedPrecondition);
  expect_error([&] { store_->ssh_certificates().revoke_serial(ops_.id, 99, "2026-03-02T00:00:00Z"); },
               ErrorCode::NotFound);
  EXPECT_FALSE(krl_stale(ops_.id));
}

// ---- concurrency ----

TEST_F(StorePublication, ConcurrentPublishersFromFourConnectionsLeaveTheHighestNumber) {
  constexpr int kThreads = 4;
  constexpr int kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> published{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto store = open_sqlite_store(db_path());
      for (int i = 0; i < kEach; ++i) {
        // Numbers interleave across threads and arrive out of order.
        std::int64_t number = 1 + i * kThreads + (kThreads - 1 - t);
        PublishedCrlRecord crl = make_crl(v1_.id, number);
        if (store->cas().publish_crl(crl)) ++published;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_GE(published.load(), 1);
  EXPECT_EQ(store_->cas().published_crl(v1_.id)->crl_number, kThreads * kEach);
}

// ---- the schema itself, for writers that bypass the store ----

TEST_F(StorePublication, SchemaConstraintsHoldForWritersThatBypassTheStore) {
  RawDb raw(db_path());
  ASSERT_EQ(raw.exec("PRAGMA foreign_keys = ON"), SQLITE_OK);
  const std::string v1 = std::to_string(v1_.id);
  const std::string d32 = "x'" + std::string(64, 'a') + "'";
  const std::string at = "'2026-03-01T00:00:00Z'";
  auto crl = [&](const std::string& version, const std::string& number, const std::string& this_update,
                 const std::string& next_update, const std::string& count, const std::string& digest32,
                 const std::string& stale, const std::string& der) {
    return raw.exec("INSERT INTO published_crls (ca_version_id, crl_number, this_update, next_update, revoked_count, "
                    "revoked_digest, stale, crl_der, published_at) VALUES (" +
                    version + ", " + number + ", " + this_update + ", " + next_update + ", " + count + ", " + digest32 +
                    ", " + stale + ", " + der + ", " + at + ")");
  };
  const std::string next = "'2026-03-08T00:00:00Z'";
  EXPECT_EQ(crl(v1, "0", at, next, "0", d32, "0", "x'30'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(crl(v1, "1", at, at, "0", d32, "0", "x'30'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(crl(v1, "1", "'2026-03-01'", next, "0", d32, "0", "x'30'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(crl(v1, "1", at, next, "-1", d32, "0", "x'30'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(crl(v1, "1", at, next, "0", "x'aa'", "0", "x'30'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(crl(v1, "1", at, next, "0", d32, "2", "x'30'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(crl(v1, "1", at, next, "0", d32, "0", "x''"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(crl(v1, "1", at, next, "0", d32, "0", "'30'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(crl("424242", "1", at, next, "0", d32, "0", "x'30'"), SQLITE_CONSTRAINT_FOREIGNKEY);
  EXPECT_EQ(crl(v1, "5", at, next, "0", d32, "0", "x'30'"), SQLITE_OK);
  EXPECT_EQ(crl(v1, "6", at, next, "0", d32, "0", "x'30'"), SQLITE_CONSTRAINT_UNIQUE);  // one per version
  // The number only goes up, and a row stays with its version; stale may change.
  EXPECT_EQ(raw.exec("UPDATE published_crls SET crl_number = 4"), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE published_crls SET crl_number = 5"), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE published_crls SET ca_version_id = " + std::to_string(v2_.id) + ", crl_number = 9"),
            SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE published_crls SET crl_number = 6"), SQLITE_OK);
  EXPECT_EQ(raw.exec("UPDATE published_crls SET stale = 1"), SQLITE_OK);

  const std::string ops = std::to_string(ops_.id);
  auto krl = [&](const std::string& ca, const std::string& version, const std::string& generated,
                 const std::string& count, const std::string& digest32, const std::string& bytes_) {
    return raw.exec("INSERT INTO published_krls (ssh_ca_id, krl_version, generated_at, revocation_count, "
                    "revocations_digest, krl, published_at) VALUES (" +
                    ca + ", " + version + ", " + generated + ", " + count + ", " + digest32 + ", " + bytes_ + ", " + at +
                    ")");
  };
  EXPECT_EQ(krl(ops, "0", at, "0", d32, "x'53'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(krl(ops, "1", "'now'", "0", d32, "x'53'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(krl(ops, "1", at, "-1", d32, "x'53'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(krl(ops, "1", at, "0", "x''", "x'53'"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(krl(ops, "1", at, "0", d32, "x''"), SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(krl("4242", "1", at, "0", d32, "x'53'"), SQLITE_CONSTRAINT_FOREIGNKEY);
  EXPECT_EQ(krl(ops, "2", at, "0", d32, "x'53'"), SQLITE_OK);
  EXPECT_EQ(krl(ops, "3", at, "0", d32, "x'53'"), SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(raw.exec("UPDATE published_krls SET krl_version = 1"), SQLITE_CONSTRAINT_TRIGGER);
  EXPECT_EQ(raw.exec("UPDATE published_krls SET krl_version = 3"), SQLITE_OK);

  CertificateRecord a = make_certificate("a1", v1_.id, "2026-02-01T00:00:00Z");
  store_->certificates().insert(a);
  EXPECT_EQ(raw.exec("INSERT INTO expired_certificates (certificate_id, marked_at) VALUES (" + std::to_string(a.id) +
                     ", '2026-03-01')"),
            SQLITE_CONSTRAINT_CHECK);
  EXPECT_EQ(raw.exec("INSERT INTO expired_certificates (certificate_id, marked_at) VALUES (424242, " + at + ")"),
            SQLITE_CONSTRAINT_FOREIGNKEY);
  EXPECT_EQ(raw.exec("INSERT INTO expired_certificates (certificate_id, marked_at) VALUES (" + std::to_string(a.id) +
                     ", " + at + ")"),
            SQLITE_OK);
  EXPECT_EQ(raw.exec("INSERT INTO expired_certificates (certificate_id, marked_at) VALUES (" + std::to_string(a.id) +
                     ", " + at + ")"),
            SQLITE_CONSTRAINT_PRIMARYKEY);
  EXPECT_EQ(raw.text("PRAGMA foreign_key_check"), "");
}

}  // namespace
