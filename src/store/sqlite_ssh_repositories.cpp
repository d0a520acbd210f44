// The SQLite implementation of SshCaRepository, SshCertificateRepository and
// SshKeyRepository (tables of migration 4 in sqlite_store.cpp; published_krls
// of migration 6).
//
// Same rules as the other repositories: every call holds the connection's
// lock (and so joins its thread's open Transaction), values go through bound
// parameters of cached prepared statements, and records are checked before
// SQLite's CHECK constraints are, for a message that names the wrong field.
//
// Serials and validity times are unsigned 64-bit values kept as their bit
// pattern in SQLite's signed INTEGER (std::bit_cast both ways, exact for every
// value); SQL orders and compares them as unsigned through (x < 0, x).

#include <sqlite3.h>

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
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

std::int64_t to_db(std::uint64_t value) { return std::bit_cast<std::int64_t>(value); }
std::uint64_t from_db(std::int64_t value) { return std::bit_cast<std::uint64_t>(value); }

// "SHA256:" and the unpadded base64 of a SHA-256 digest, as ssh-keygen -l
// prints it: one spelling per key, so that equal keys have equal text.
bool is_sha256_fingerprint(std::string_view f) {
  static constexpr std::string_view kPrefix = "SHA256:";
  if (f.size() != kPrefix.size() + 43 || f.substr(0, kPrefix.size()) != kPrefix) return false;
  for (char c : f.substr(kPrefix.size())) {
    bool base64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (!base64) return false;
  }
  return true;
}

// ---- ssh_cas ----

constexpr const char* kSshCaColumns = "id, name, key_object_id, key_type, public_key_blob, krl_version, created_at";

SshCaRecord read_ssh_ca(const Query& q) {
  SshCaRecord r;
  r.id = q.integer(0);
  r.name = q.text(1);
  r.key_object_id = q.blob(2);
  r.key_type = q.text(3);
  r.public_key_blob = q.blob(4);
  r.krl_version = q.integer(5);
  r.created_at = q.text(6);
  return r;
}

// The rules of migration 4's CHECK constraints, first, for a message that
// says which field is wrong.
void validate(const SshCaRecord& r, const std::string& created_at) {
  require(!r.name.empty(), "SSH CA record: name is empty");
  std::string what = "SSH CA record for " + in_quotes(r.name);
  require(!r.key_object_id.empty(), what + ": key CKA_ID is empty");
  require(!r.key_type.empty(), what + ": key type is empty");
  require(!r.public_key_blob.empty(), what + ": public key is empty");
  require(r.krl_version >= 0, what + ": KRL version is negative");
  require_timestamp(created_at, "created_at", what);
}

// ---- published_krls ----

// krl last, so that the summary can leave it out.
constexpr const char* kPublishedKrlColumns =
    "ssh_ca_id, krl_version, generated_at, revocation_count, revocations_digest, stale, published_at";

PublishedKrlRecord read_published_krl(const Query& q, bool with_krl) {
  PublishedKrlRecord r;
  r.ssh_ca_id = q.integer(0);
  r.krl_version = q.integer(1);
  r.generated_at = q.text(2);
  r.revocation_count = q.integer(3);
  r.revocations_digest = q.blob(4);
  r.stale = q.integer(5) != 0;
  r.published_at = q.text(6);
  if (with_krl) r.krl = q.blob(7);
  return r;
}

// The rules of migration 6's CHECK constraints, first, for a message that
// says which field is wrong.
void validate(const PublishedKrlRecord& r, const std::string& published_at) {
  std::string what = "published KRL " + std::to_string(r.krl_version) + " of SSH CA " + std::to_string(r.ssh_ca_id);
  require(r.krl_version >= 1, what + ": KRL version must be 1 or more");
  require_timestamp(r.generated_at, "generated_at", what);
  require(r.revocation_count >= 0, what + ": revocation count is negative");
  require(r.revocations_digest.size() == 32, what + ": the revocations' digest is not 32 bytes (SHA-256)");
  require(!r.stale, what + ": a KRL is published current (stale false)");
  require(!r.krl.empty(), what + ": the KRL is empty");
  require_timestamp(published_at, "published_at", what);
}

class SqliteSshCaRepository final : public SshCaRepository {
 public:
  explicit SqliteSshCaRepository(Database& db)
      : db_(db),
        insert_(db.prepare("INSERT INTO ssh_cas (name, key_object_id, key_type, public_key_blob, krl_version, "
                           "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           "prepare insert SSH CA")),
        find_(db.prepare(std::string("SELECT ") + kSshCaColumns + " FROM ssh_cas WHERE name = ?1",
                         "prepare find SSH CA")),
        find_by_id_(db.prepare(std::string("SELECT ") + kSshCaColumns + " FROM ssh_cas WHERE id = ?1",
                               "prepare find SSH CA by id")),
        list_(db.prepare(std::string("SELECT ") + kSshCaColumns + " FROM ssh_cas ORDER BY name",
                         "prepare list SSH CAs")),
        // One statement, so that the increment and the read are one atomic
        // step even outside a transaction and across processes.
        next_krl_version_(db.prepare("UPDATE ssh_cas SET krl_version = krl_version + 1 WHERE id = ?1 "
                                     "RETURNING krl_version",
                                     "prepare next KRL version")),
        published_krl_(db.prepare(std::string("SELECT ") + kPublishedKrlColumns +
                                      ", krl FROM published_krls WHERE ssh_ca_id = ?1",
                                  "prepare find published KRL")),
        published_krl_summary_(db.prepare(std::string("SELECT ") + kPublishedKrlColumns +
                                              " FROM published_krls WHERE ssh_ca_id = ?1",
                                          "prepare find published KRL summary")),
        // An older version never replaces a newer one (as for CRLs).
        publish_krl_(db.prepare("INSERT INTO published_krls (ssh_ca_id, krl_version, generated_at, revocation_count, "
                                "revocations_digest, stale, krl, published_at) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7) "
                                "ON CONFLICT (ssh_ca_id) DO UPDATE SET krl_version = excluded.krl_version, "
                                "generated_at = excluded.generated_at, revocation_count = excluded.revocation_count, "
                                "revocations_digest = excluded.revocations_digest, stale = 0, krl = excluded.krl, "
                                "published_at = excluded.published_at "
                                "WHERE excluded.krl_version > published_krls.krl_version",
                                "prepare publish KRL")) {}

  void insert(SshCaRecord& record) override {
    static constexpr std::string_view kOp = "insert SSH CA";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);

    auto lock = db_.lock_for(kOp);
    Query q(db_, insert_.get(), kOp);
    q.bind(1, record.name);
    q.bind(2, std::span<const std::uint8_t>(record.key_object_id));
    q.bind(3, record.key_type);
    q.bind(4, std::span<const std::uint8_t>(record.public_key_blob));
    q.bind(5, record.krl_version);
    q.bind(6, created_at);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
      // SQLite names the constraint's columns (never values) in its message.
      if (std::string_view(sqlite3_errmsg(db_.handle())).find("ssh_cas.key_object_id") != std::string_view::npos) {
        throw Error(ErrorCode::AlreadyExists, "an SSH CA with key CKA_ID " + to_hex(record.key_object_id) +
                                                  " is already in the store");
      }
      throw Error(ErrorCode::AlreadyExists, "an SSH CA named '" + record.name + "' already exists");
    }
    if (rc != SQLITE_DONE) q.fail(rc);
    record.id = sqlite3_last_insert_rowid(db_.handle());
    record.created_at = std::move(created_at);
  }

  std::optional<SshCaRecord> find(std::string_view name) override {
    return select_one(db_, find_, "find SSH CA", read_ssh_ca, name);
  }

  std::optional<SshCaRecord> find_by_id(std::int64_t id) override {
    return select_one(db_, find_by_id_, "find SSH CA by id", read_ssh_ca, id);
  }

  std::vector<SshCaRecord> list() override { return select_all(db_, list_, "list SSH CAs", read_ssh_ca); }

  std::int64_t next_krl_version(std::int64_t ca_id) override {
    static constexpr std::string_view kOp = "take next KRL version";
    auto lock = db_.lock_for(kOp);
    Query q(db_, next_krl_version_.get(), kOp);
    q.bind(1, ca_id);
    if (!q.next()) throw Error(ErrorCode::NotFound, "no SSH CA with id " + std::to_string(ca_id));
    std::int64_t version = q.integer(0);
    q.run();  // to SQLITE_DONE: the statement (and, outside a transaction, its write) is complete
    return version;
  }

  std::optional<PublishedKrlRecord> published_krl(std::int64_t ca_id) override {
    return select_one(
        db_, published_krl_, "find published KRL", [](const Query& q) { return read_published_krl(q, true); }, ca_id);
  }

  std::optional<PublishedKrlRecord> published_krl_summary(std::int64_t ca_id) override {
    return select_one(
        db_, published_krl_summary_, "find published KRL summary",
        [](const Query& q) { return read_published_krl(q, false); }, ca_id);
  }

  bool publish_krl(PublishedKrlRecord& record) override {
    static constexpr std::string_view kOp = "publish KRL";
    std::string published_at = record.published_at.empty() ? now_utc() : record.published_at;
    validate(record, published_at);

    auto lock = db_.lock_for(kOp);
    Query q(db_, publish_krl_.get(), kOp);
    q.bind(1, record.ssh_ca_id);
    q.bind(2, record.krl_version);
    q.bind(3, record.generated_at);
    q.bind(4, record.revocation_count);
    q.bind(5, std::span<const std::uint8_t>(record.revocations_digest));
    q.bind(6, std::span<const std::uint8_t>(record.krl));
    q.bind(7, published_at);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
      throw Error(ErrorCode::NotFound, "no SSH CA with id " + std::to_string(record.ssh_ca_id));
    }
    if (rc != SQLITE_DONE) q.fail(rc);
    if (sqlite3_changes(db_.handle()) == 0) return false;
    record.published_at = std::move(published_at);
    return true;
  }

 private:
  Database& db_;
  Stmt insert_;
  Stmt find_;
  Stmt find_by_id_;
  Stmt list_;
  Stmt next_krl_version_;
  Stmt published_krl_;
  Stmt published_krl_summary_;
  Stmt publish_krl_;
};

// ---- ssh_certificates and ssh_revocations ----

// certificate_blob last, so that list() can leave it out.
constexpr const char* kSshCertificateColumns =
    "id, ca_id, serial, type, key_id, principals, valid_after, valid_before, public_key_fingerprint, "
    "public_key_blob, profile, status, revoked_at, requester, created_at";
constexpr int kBlobColumn = 15;

// Unsigned order of valid_before, then serial; id last for a total order
// (serials repeat across CAs).
constexpr const char* kSshCertificateOrder = " ORDER BY valid_before < 0, valid_before, serial < 0, serial, id";

SshCertificateRecord read_ssh_certificate(const Query& q, bool with_blob) {
  SshCertificateRecord r;
  r.id = q.integer(0);
  r.ca_id = q.integer(1);
  r.serial = from_db(q.integer(2));
  r.type = q.text(3);
  r.key_id = q.text(4);
  std::optional<std::vector<std::string>> principals = from_json_array(q.text(5));
  if (!principals) {
    throw Error(ErrorCode::Internal, "store: SSH certificate " + std::to_string(r.serial) + " of SSH CA " +
                                         std::to_string(r.ca_id) +
                                         " has principals that are not a JSON array of strings");
  }
  r.principals = std::move(*principals);
  r.valid_after = from_db(q.integer(6));
  r.valid_before = from_db(q.integer(7));
  r.public_key_fingerprint = q.text(8);
  r.public_key_blob = q.blob(9);
  r.profile = q.text(10);
  r.status = q.text(11);
  if (!q.is_null(12)) r.revoked_at = q.text(12);
  r.requester = q.text(13);
  r.created_at = q.text(14);
  if (with_blob) r.certificate_blob = q.blob(kBlobColumn);
  return r;
}

void validate(const SshCertificateRecord& r, const std::string& created_at) {
  std::string what = "SSH certificate record " + std::to_string(r.serial) + " of SSH CA " + std::to_string(r.ca_id);
  require(r.type == kSshCertificateUser || r.type == kSshCertificateHost,
          what + ": type " + in_quotes(r.type) + " is not user or host");
  require(!r.key_id.empty(), what + ": key id is empty");
  require(r.valid_after < r.valid_before, what + ": valid_before " + std::to_string(r.valid_before) +
                                              " is not after valid_after " + std::to_string(r.valid_after));
  require(is_sha256_fingerprint(r.public_key_fingerprint),
          what + ": public key fingerprint " + in_quotes(r.public_key_fingerprint) +
              " is not SHA256: and 43 base64 characters");
  require(!r.public_key_blob.empty(), what + ": public key is empty");
  require(!r.profile.empty(), what + ": profile is empty");
  require(r.status == kCertificateValid || r.status == kCertificateRevoked,
          what + ": status " + in_quotes(r.status) + " is not valid or revoked");
  require(r.revoked_at.has_value() == (r.status == kCertificateRevoked),
          what + ": revoked_at must be set exactly when the status is revoked");
  if (r.revoked_at) require_timestamp(*r.revoked_at, "revoked_at", what);
  require(!r.requester.empty(), what + ": requester is empty");
  require(!r.certificate_blob.empty(), what + ": certificate is empty");
  require_timestamp(created_at, "created_at", what);
}

std::uint64_t now_seconds() {
  auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count());
}

class SqliteSshCertificateRepository final : public SshCertificateRepository {
 public:
  explicit SqliteSshCertificateRepository(Database& db)
      : db_(db),
        insert_(db.prepare("INSERT INTO ssh_certificates (ca_id, serial, type, key_id, principals, valid_after, "
                           "valid_before, public_key_fingerprint, public_key_blob, profile, status, revoked_at, "
                           "requester, certificate_blob, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                           "prepare insert SSH certificate")),
        find_(db.prepare(std::string("SELECT ") + kSshCertificateColumns +
                             ", certificate_blob FROM ssh_certificates WHERE ca_id = ?1 AND serial = ?2",
                         "prepare find SSH certificate")),
        ca_name_(db.prepare("SELECT name FROM ssh_cas WHERE id = ?1", "prepare find SSH CA name")),
        revoke_serial_(db.prepare("UPDATE ssh_certificates SET status = 'revoked', revoked_at = ?3 "
                                  "WHERE ca_id = ?1 AND serial = ?2 AND status = 'valid'",
                                  "prepare revoke SSH certificate")),
        revoked_at_(db.prepare("SELECT revoked_at FROM ssh_certificates WHERE ca_id = ?1 AND serial = ?2",
                               "prepare read SSH certificate revocation")),
        revoke_by_key_id_(db.prepare("UPDATE ssh_certificates SET status = 'revoked', revoked_at = ?3 "
                                     "WHERE ca_id = ?1 AND key_id = ?2 AND status = 'valid'",
                                     "prepare revoke SSH certificates by key id")),
        revoke_by_key_(db.prepare("UPDATE ssh_certificates SET status = 'revoked', revoked_at = ?3 "
                                  "WHERE ca_id = ?1 AND public_key_blob = ?2 AND status = 'valid'",
                                  "prepare revoke SSH certificates by key")),
        // One statement per kind, so that each binds its value to the column
        // of its kind (the others stay NULL, as the CHECK constraints want).
        add_serial_(db.prepare("INSERT INTO ssh_revocations (ca_id, kind, serial, revoked_at) "
                               "VALUES (?1, 'serial', ?2, ?3)",
                               "prepare add KRL serial")),
        add_key_id_(db.prepare("INSERT INTO ssh_revocations (ca_id, kind, key_id, revoked_at) "
                               "VALUES (?1, 'key_id', ?2, ?3)",
                               "prepare add KRL key id")),
        add_key_(db.prepare("INSERT INTO ssh_revocations (ca_id, kind, public_key_blob, revoked_at) "
                            "VALUES (?1, 'key', ?2, ?3)",
                            "prepare add KRL key")),
        key_id_revoked_at_(db.prepare("SELECT revoked_at FROM ssh_revocations "
                                      "WHERE ca_id = ?1 AND kind = 'key_id' AND key_id = ?2",
                                      "prepare read KRL key id")),
        key_revoked_at_(db.prepare("SELECT revoked_at FROM ssh_revocations "
                                   "WHERE ca_id = ?1 AND kind = 'key' AND public_key_blob = ?2",
                                   "prepare read KRL key")),
        // One statement: one snapshot, whatever the caller's transaction.
        revocations_(db.prepare("SELECT kind, serial, key_id, public_key_blob, revoked_at FROM ssh_revocations "
                                "WHERE ca_id = ?1 ORDER BY CASE kind WHEN 'serial' THEN 0 WHEN 'key_id' THEN 1 "
                                "ELSE 2 END, serial < 0, serial, key_id, public_key_blob",
                                "prepare list KRL entries")),
        stale_krl_(db.prepare("UPDATE published_krls SET stale = 1 WHERE ssh_ca_id = ?1 AND stale = 0",
                              "prepare mark published KRL stale")) {}

  void insert(SshCertificateRecord& record) override {
    static constexpr std::string_view kOp = "insert SSH certificate";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);
    std::string principals = to_json_array(record.principals);

    auto lock = db_.lock_for(kOp);
    // A certificate recorded as revoked goes into the KRL with it.
    std::optional<AtomicStep> step;
    if (record.status == kCertificateRevoked) step.emplace(db_, kOp);
    {
      Query q(db_, insert_.get(), kOp);
      q.bind(1, record.ca_id);
      q.bind(2, to_db(record.serial));
      q.bind(3, record.type);
      q.bind(4, record.key_id);
      q.bind(5, principals);
      q.bind(6, to_db(record.valid_after));
      q.bind(7, to_db(record.valid_before));
      q.bind(8, record.public_key_fingerprint);
      q.bind(9, std::span<const std::uint8_t>(record.public_key_blob));
      q.bind(10, record.profile);
      q.bind(11, record.status);
      q.bind(12, record.revoked_at);
      q.bind(13, record.requester);
      q.bind(14, std::span<const std::uint8_t>(record.certificate_blob));
      q.bind(15, created_at);
      int rc = q.step_rc();
      if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        throw Error(ErrorCode::AlreadyExists, "SSH CA " + ca_label(record.ca_id) +
                                                  " already has a certificate with serial " +
                                                  std::to_string(record.serial));
      }
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) throw no_such_ca(record.ca_id);
      if (rc != SQLITE_DONE) q.fail(rc);
    }
    std::int64_t id = sqlite3_last_insert_rowid(db_.handle());
    if (step) {
      add_revocation(add_serial_, record.ca_id, to_db(record.serial), *record.revoked_at, kOp);
      step->commit();
    }
    record.id = id;
    record.created_at = std::move(created_at);
  }

  std::optional<SshCertificateRecord> find(std::int64_t ca_id, std::uint64_t serial) override {
    return select_one(
        db_, find_, "find SSH certificate", [](const Query& q) { return read_ssh_certificate(q, true); }, ca_id,
        to_db(serial));
  }

  std::vector<SshCertificateRecord> list(const SshCertificateFilter& filter) override {
    static constexpr std::string_view kOp = "list SSH certificates";
    std::optional<std::uint64_t> now;
    if (filter.status) {
      const std::string& s = *filter.status;
      require(s == kCertificateValid || s == kCertificateRevoked || s == kCertificateExpired,
              "list SSH certificates: status " + in_quotes(s) + " is not valid, revoked or expired");
      if (s != kCertificateRevoked) now = filter.now.value_or(now_seconds());
    }

    // Only the fragments of the filters in use; values are bound, never
    // written into the SQL. OpenSSH: expired when now >= valid_before.
    std::string sql = std::string("SELECT ") + kSshCertificateColumns + " FROM ssh_certificates WHERE 1";
    if (filter.ca_id) sql += " AND ca_id = ?1";
    if (filter.status == kCertificateValid) {
      sql += " AND status = 'valid' AND (valid_before < 0, valid_before) > (?2 < 0, ?2)";
    }
    if (filter.status == kCertificateExpired) {
      sql += " AND status = 'valid' AND (valid_before < 0, valid_before) <= (?2 < 0, ?2)";
    }
    if (filter.status == kCertificateRevoked) sql += " AND status = 'revoked'";
    if (filter.key_id) sql += " AND key_id = ?3";
    sql += kSshCertificateOrder;

    auto lock = db_.lock_for(kOp);
    auto it = list_.find(sql);
    if (it == list_.end()) it = list_.emplace(sql, db_.prepare(sql, "prepare list SSH certificates")).first;
    Query q(db_, it->second.get(), kOp);
    if (filter.ca_id) q.bind(1, *filter.ca_id);
    if (now) q.bind(2, to_db(*now));
    if (filter.key_id) q.bind(3, *filter.key_id);
    std::vector<SshCertificateRecord> out;
    while (q.next()) out.push_back(read_ssh_certificate(q, false));
    return out;
  }

  void revoke_serial(std::int64_t ca_id, std::uint64_t serial, std::string_view at) override {
    static constexpr std::string_view kOp = "revoke SSH certificate";
    require_timestamp(at, "time",
                      "revoke SSH certificate " + std::to_string(serial) + " of SSH CA " + std::to_string(ca_id));

    auto lock = db_.lock_for(kOp);
    AtomicStep step(db_, kOp);
    {
      Query q(db_, revoke_serial_.get(), kOp);
      q.bind(1, ca_id);
      q.bind(2, to_db(serial));
      q.bind(3, at);
      q.run();
    }
    if (sqlite3_changes(db_.handle()) == 1) {
      add_revocation(add_serial_, ca_id, to_db(serial), at, kOp);
      step.commit();
      return;
    }
    // Nothing changed: unknown, or revoked already (by serial, key id or
    // key). The step holds the write lock, so this reads what the UPDATE saw.
    std::optional<std::string> revoked_at;
    {
      Query q(db_, revoked_at_.get(), kOp);
      q.bind(1, ca_id);
      q.bind(2, to_db(serial));
      if (!q.next()) {
        throw Error(ErrorCode::NotFound,
                    "SSH CA " + ca_label(ca_id) + " has no certificate with serial " + std::to_string(serial));
      }
      revoked_at = q.text(0);
    }
    throw Error(ErrorCode::FailedPrecondition, "SSH certificate " + std::to_string(serial) + " of CA " +
                                                   ca_label(ca_id) + " was already revoked at " + *revoked_at);
  }

  std::size_t revoke_key_id(std::int64_t ca_id, std::string_view key_id, std::string_view at) override {
    static constexpr std::string_view kOp = "revoke SSH key id";
    std::string what = "revoke key id " + in_quotes(key_id) + " of SSH CA " + std::to_string(ca_id);
    require(!key_id.empty(), "revoke key id of SSH CA " + std::to_string(ca_id) + ": key id is empty");
    require_timestamp(at, "time", what);
    return revoke_all(
        kOp, add_key_id_, key_id_revoked_at_, revoke_by_key_id_, ca_id, key_id, at,
        [&] { return "key id " + in_quotes(key_id); });
  }

  std::size_t revoke_key(std::int64_t ca_id, std::span<const std::uint8_t> public_key_blob,
                         std::string_view at) override {
    static constexpr std::string_view kOp = "revoke SSH public key";
    require(!public_key_blob.empty(), "revoke public key of SSH CA " + std::to_string(ca_id) + ": public key is empty");
    require_timestamp(at, "time", "revoke public key of SSH CA " + std::to_string(ca_id));
    return revoke_all(kOp, add_key_, key_revoked_at_, revoke_by_key_, ca_id, public_key_blob, at,
                      [] { return std::string("this public key"); });
  }

  std::optional<std::string> key_id_revoked_at(std::int64_t ca_id, std::string_view key_id) override {
    return select_one(db_, key_id_revoked_at_, "read KRL key id", [](const Query& q) { return q.text(0); }, ca_id, key_id);
  }
  std::optional<std::string> key_revoked_at(std::int64_t ca_id, std::span<const std::uint8_t> public_key_blob) override {
    return select_one(db_, key_revoked_at_, "read KRL key", [](const Query& q) { return q.text(0); }, ca_id,
                      public_key_blob);
  }

  std::vector<SshRevocation> revocations(std::int64_t ca_id) override {
    return select_all(
        db_, revocations_, "list KRL entries",
        [](const Query& q) {
          SshRevocation r;
          r.kind = q.text(0);
          if (!q.is_null(1)) r.serial = from_db(q.integer(1));
          if (!q.is_null(2)) r.key_id = q.text(2);
          if (!q.is_null(3)) r.public_key_blob = q.blob(3);
          r.revoked_at = q.text(4);
          return r;
        },
        ca_id);
  }

 private:
  // "'name'" of the SSH CA, or "id N" when there is none; for messages, with
  // the lock held.
  std::string ca_label(std::int64_t ca_id) {
    Query q(db_, ca_name_.get(), "find SSH CA name");
    q.bind(1, ca_id);
    if (q.next()) return in_quotes(q.text(0));
    return "id " + std::to_string(ca_id);
  }

  Error no_such_ca(std::int64_t ca_id) const {
    return Error(ErrorCode::NotFound, "no SSH CA with id " + std::to_string(ca_id));
  }

  // A KRL entry of the kind add inserts (value bound to ?2), with the lock held.
  template <class Value>
  void add_revocation(const Stmt& add, std::int64_t ca_id, const Value& value, std::string_view at,
                      std::string_view op) {
    Query q(db_, add.get(), op);
    q.bind(1, ca_id);
    q.bind(2, value);
    q.bind(3, at);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) throw no_such_ca(ca_id);
    if (rc != SQLITE_DONE) q.fail(rc);
    mark_krl_stale(ca_id, op);
  }

  // Every KRL entry leaves the CA's published KRL stale, in the entry's step.
  void mark_krl_stale(std::int64_t ca_id, std::string_view op) {
    Query q(db_, stale_krl_.get(), op);
    q.bind(1, ca_id);
    q.run();
  }

  // revoke_key_id and revoke_key: the KRL entry, then the certificates it
  // covers, in one step.
  template <class Value, class Describe>
  std::size_t revoke_all(std::string_view op, const Stmt& add, const Stmt& revoked_at, const Stmt& mark,
                         std::int64_t ca_id, const Value& value, std::string_view at, Describe describe) {
    auto lock = db_.lock_for(op);
    AtomicStep step(db_, op);
    {
      Query q(db_, add.get(), op);
      q.bind(1, ca_id);
      q.bind(2, value);
      q.bind(3, at);
      int rc = q.step_rc();
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) throw no_such_ca(ca_id);
      if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        // The step holds the write lock: the entry is there to read.
        Query first(db_, revoked_at.get(), op);
        first.bind(1, ca_id);
        first.bind(2, value);
        std::string when = first.next() ? first.text(0) : "an unknown time";
        throw Error(ErrorCode::FailedPrecondition,
                    describe() + " was already revoked by SSH CA " + ca_label(ca_id) + " at " + when);
      }
      if (rc != SQLITE_DONE) q.fail(rc);
    }
    mark_krl_stale(ca_id, op);
    {
      Query q(db_, mark.get(), op);
      q.bind(1, ca_id);
      q.bind(2, value);
      q.bind(3, at);
      q.run();
    }
    auto marked = static_cast<std::size_t>(sqlite3_changes(db_.handle()));
    step.commit();
    return marked;
  }

  Database& db_;
  Stmt insert_;
  Stmt find_;
  Stmt ca_name_;
  Stmt revoke_serial_;
  Stmt revoked_at_;
  Stmt revoke_by_key_id_;
  Stmt revoke_by_key_;
  Stmt add_serial_;
  Stmt add_key_id_;
  Stmt add_key_;
  Stmt key_id_revoked_at_;
  Stmt key_revoked_at_;
  Stmt revocations_;
  Stmt stale_krl_;
  std::map<std::string, Stmt> list_;  // by SQL: one per combination of filters used
};

// ---- ssh_keys ----

constexpr const char* kSshKeyColumns =
    "id, name, version, key_object_id, key_type, public_key_blob, state, created_at, retired_at";

SshKeyVersionRecord read_ssh_key(const Query& q) {
  SshKeyVersionRecord r;
  r.id = q.integer(0);
  r.name = q.text(1);
  r.version = static_cast<int>(q.integer(2));
  r.key_object_id = q.blob(3);
  r.key_type = q.text(4);
  r.public_key_blob = q.blob(5);
  r.state = q.text(6);
  r.created_at = q.text(7);
  if (!q.is_null(8)) r.retired_at = q.text(8);
  return r;
}

void validate(const SshKeyVersionRecord& r, const std::string& created_at) {
  require(!r.name.empty(), "SSH key record: name is empty");
  std::string what = "SSH key record " + in_quotes(r.name) + " version " + std::to_string(r.version);
  require(r.version >= 1, what + ": version must be 1 or more");
  require(!r.key_object_id.empty(), what + ": CKA_ID is empty");
  require(!r.key_type.empty(), what + ": key type is empty");
  require(!r.public_key_blob.empty(), what + ": public key is empty");
  require(r.state == kStateActive || r.state == kStateRetired,
          what + ": state " + in_quotes(r.state) + " is not active or retired");
  require(r.retired_at.has_value() == (r.state == kStateRetired),
          what + ": retired_at must be set exactly when the state is retired");
  if (r.retired_at) require_timestamp(*r.retired_at, "retired_at", what);
  require_timestamp(created_at, "created_at", what);
}

class SqliteSshKeyRepository final : public SshKeyRepository {
 public:
  explicit SqliteSshKeyRepository(Database& db)
      : db_(db),
        insert_(db.prepare("INSERT INTO ssh_keys (name, version, key_object_id, key_type, public_key_blob, state, "
                           "created_at, retired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           "prepare insert SSH key version")),
        versions_(db.prepare(std::string("SELECT ") + kSshKeyColumns + " FROM ssh_keys WHERE name = ?1 ORDER BY version",
                             "prepare list SSH key versions")),
        list_(db.prepare(std::string("SELECT ") + kSshKeyColumns + " FROM ssh_keys ORDER BY name, version",
                         "prepare list SSH keys")),
        retire_(db.prepare("UPDATE ssh_keys SET state = 'retired', retired_at = ?2 WHERE id = ?1 AND state = 'active'",
                           "prepare retire SSH key version")),
        find_(db.prepare("SELECT name, version, retired_at FROM ssh_keys WHERE id = ?1",
                         "prepare find SSH key version")) {}

  void insert_version(SshKeyVersionRecord& record) override {
    static constexpr std::string_view kOp = "insert SSH key version";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);

    auto lock = db_.lock_for(kOp);
    Query q(db_, insert_.get(), kOp);
    q.bind(1, record.name);
    q.bind(2, std::int64_t{record.version});
    q.bind(3, std::span<const std::uint8_t>(record.key_object_id));
    q.bind(4, record.key_type);
    q.bind(5, std::span<const std::uint8_t>(record.public_key_blob));
    q.bind(6, record.state);
    q.bind(7, created_at);
    q.bind(8, record.retired_at);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
      // SQLite names the constraint's columns (never values) in its message.
      if (std::string_view(sqlite3_errmsg(db_.handle())).find("ssh_keys.key_object_id") != std::string_view::npos) {
        throw Error(ErrorCode::AlreadyExists, "an SSH key version with CKA_ID " + to_hex(record.key_object_id) +
                                                  " is already in the store");
      }
      throw Error(ErrorCode::AlreadyExists, "SSH key '" + record.name + "' already has a version " +
                                                std::to_string(record.version));
    }
    if (rc != SQLITE_DONE) q.fail(rc);
    record.id = sqlite3_last_insert_rowid(db_.handle());
    record.created_at = std::move(created_at);
  }

  std::vector<SshKeyVersionRecord> versions(std::string_view name) override {
    return select_all(db_, versions_, "list SSH key versions", read_ssh_key, name);
  }

  std::vector<SshKeyVersionRecord> list() override { return select_all(db_, list_, "list SSH keys", read_ssh_key); }

  void set_retired(std::int64_t id, std::string_view at) override {
    static constexpr std::string_view kOp = "retire SSH key version";
    require_timestamp(at, "time", "retire SSH key version " + std::to_string(id));
    auto lock = db_.lock_for(kOp);
    {
      Query q(db_, retire_.get(), kOp);
      q.bind(1, id);
      q.bind(2, at);
      q.run();
    }
    if (sqlite3_changes(db_.handle()) == 1) return;
    // Nothing changed: unknown, or retired already. A retirement is never
    // undone, so what this reads outside a transaction still holds.
    Query q(db_, find_.get(), kOp);
    q.bind(1, id);
    if (!q.next()) throw Error(ErrorCode::NotFound, "no SSH key version with id " + std::to_string(id));
    throw Error(ErrorCode::FailedPrecondition, "SSH key " + in_quotes(q.text(0)) + " version " +
                                                   std::to_string(q.integer(1)) + " was already retired at " +
                                                   q.text(2));
  }

 private:
  Database& db_;
  Stmt insert_;
  Stmt versions_;
  Stmt list_;
  Stmt retire_;
  Stmt find_;
};

}  // namespace

std::unique_ptr<SshCaRepository> make_ssh_ca_repository(Database& db) {
  return std::make_unique<SqliteSshCaRepository>(db);
}

std::unique_ptr<SshCertificateRepository> make_ssh_certificate_repository(Database& db) {
  return std::make_unique<SqliteSshCertificateRepository>(db);
}

std::unique_ptr<SshKeyRepository> make_ssh_key_repository(Database& db) {
  return std::make_unique<SqliteSshKeyRepository>(db);
}

}  // namespace keyhold::store::sqlite_internal
