// The SQLite implementation of CaRepository and CertificateRepository
// (tables of migration 2 in sqlite_store.cpp; published_crls and
// expired_certificates of migration 6).
//
// Same rules as the key repository there: every call holds the connection's
// lock (and so joins its thread's open Transaction), values go through bound
// parameters of cached prepared statements, and records are checked before
// SQLite's CHECK constraints are, for a message that names the wrong field.

#include <sqlite3.h>

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/store/store.hpp"
#include "sqlite_database.hpp"

namespace keyhold::store::sqlite_internal {
namespace {

// Lowercase hex of a positive serial's magnitude, no leading zeros, at most
// 20 bytes: the only form stored, so that a serial has exactly one spelling.
bool is_serial(std::string_view s) {
  if (s.empty() || s.size() > 40 || s[0] == '0') return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

void require_serial(std::string_view serial, std::string_view what) {
  require(is_serial(serial), std::string(what) + ": serial " + in_quotes(serial) +
                                 " is not lowercase hex without leading zeros (1 to 40 digits, not 0)");
}

bool is_revocation_reason(std::string_view reason) {
  for (std::string_view r : kRevocationReasons) {
    if (r == reason) return true;
  }
  return false;
}

void require_reason(std::string_view reason, std::string_view what) {
  std::string all;
  for (std::string_view r : kRevocationReasons) all += (all.empty() ? "" : ", ") + std::string(r);
  require(is_revocation_reason(reason),
          std::string(what) + ": revocation reason " + in_quotes(reason) + " is not one of " + all);
}


// ---- cas and ca_versions ----

constexpr const char* kCaColumns = "id, name, kind, parent_id, name_constraints, created_at";

CaRecord read_ca(const Query& q) {
  CaRecord r;
  r.id = q.integer(0);
  r.name = q.text(1);
  r.kind = q.text(2);
  if (!q.is_null(3)) r.parent_id = q.integer(3);
  if (!q.is_null(4)) r.name_constraints = q.text(4);
  r.created_at = q.text(5);
  return r;
}

constexpr const char* kVersionColumns =
    "id, ca_id, version, key_object_id, key_type, certificate_der, subject, subject_key_id, not_before, not_after, "
    "state, crl_number, created_at";

CaVersionRecord read_version(const Query& q) {
  CaVersionRecord r;
  r.id = q.integer(0);
  r.ca_id = q.integer(1);
  r.version = static_cast<int>(q.integer(2));
  r.key_object_id = q.blob(3);
  r.key_type = q.text(4);
  r.certificate_der = q.blob(5);
  r.subject = q.text(6);
  r.subject_key_id = q.blob(7);
  r.not_before = q.text(8);
  r.not_after = q.text(9);
  r.state = q.text(10);
  r.crl_number = q.integer(11);
  r.created_at = q.text(12);
  return r;
}

// The rules of migration 2's CHECK constraints (but JSON validity, which
// SQLite checks), first, for a message that says which field is wrong.
void validate(const CaRecord& r, const std::string& created_at) {
  require(!r.name.empty(), "CA record: name is empty");
  std::string what = "CA record for '" + r.name + "'";
  require(r.kind == kCaKindRoot || r.kind == kCaKindIntermediate || r.kind == kCaKindImported,
          what + ": kind " + in_quotes(r.kind) + " is not root, intermediate or imported");
  require(r.kind != kCaKindRoot || !r.parent_id, what + ": a root CA has no parent");
  require(r.kind != kCaKindIntermediate || r.parent_id, what + ": an intermediate CA needs a parent");
  require_timestamp(created_at, "created_at", what);
}

void validate(const CaVersionRecord& r, const std::string& created_at) {
  std::string what = "CA version record " + std::to_string(r.version) + " of CA " + std::to_string(r.ca_id);
  require(r.version >= 1, what + ": version must be 1 or more");
  require(!r.key_object_id.empty(), what + ": key CKA_ID is empty");
  require(!r.key_type.empty(), what + ": key type is empty");
  require(!r.certificate_der.empty(), what + ": certificate is empty");
  require(!r.subject.empty(), what + ": subject is empty");
  require_timestamp(r.not_before, "not_before", what);
  require_timestamp(r.not_after, "not_after", what);
  require(r.not_before <= r.not_after, what + ": not_after is before not_before");
  require(r.state == kStateActive || r.state == kStateRetired,
          what + ": state " + in_quotes(r.state) + " is not active or retired");
  require(r.crl_number >= 0, what + ": CRL number is negative");
  require_timestamp(created_at, "created_at", what);
}

void require_version_state(std::string_view state, std::int64_t version_id) {
  require(state == kStateActive || state == kStateRetired, "CA version " + std::to_string(version_id) + ": state " +
                                                               in_quotes(state) + " is not active or retired");
}

// ---- published_crls ----

// crl_der last, so that the summary can leave it out.
constexpr const char* kPublishedCrlColumns =
    "ca_version_id, crl_number, this_update, next_update, revoked_count, revoked_digest, stale, published_at";

PublishedCrlRecord read_published_crl(const Query& q, bool with_der) {
  PublishedCrlRecord r;
  r.ca_version_id = q.integer(0);
  r.crl_number = q.integer(1);
  r.this_update = q.text(2);
  r.next_update = q.text(3);
  r.revoked_count = q.integer(4);
  r.revoked_digest = q.blob(5);
  r.stale = q.integer(6) != 0;
  r.published_at = q.text(7);
  if (with_der) r.crl_der = q.blob(8);
  return r;
}

// The rules of migration 6's CHECK constraints, first, for a message that
// says which field is wrong.
void validate(const PublishedCrlRecord& r, const std::string& published_at) {
  std::string what = "published CRL " + std::to_string(r.crl_number) + " of CA version " + std::to_string(r.ca_version_id);
  require(r.crl_number >= 1, what + ": CRL number must be 1 or more");
  require_timestamp(r.this_update, "this_update", what);
  require_timestamp(r.next_update, "next_update", what);
  require(r.this_update < r.next_update, what + ": next_update is not after this_update");
  require(r.revoked_count >= 0, what + ": revoked count is negative");
  require(r.revoked_digest.size() == 32, what + ": the revoked set's digest is not 32 bytes (SHA-256)");
  require(!r.stale, what + ": a CRL is published current (stale false)");
  require(!r.crl_der.empty(), what + ": the CRL is empty");
  require_timestamp(published_at, "published_at", what);
}

class SqliteCaRepository final : public CaRepository {
 public:
  explicit SqliteCaRepository(Database& db)
      : db_(db),
        insert_(db.prepare("INSERT INTO cas (name, kind, parent_id, name_constraints, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
                           "prepare insert CA")),
        find_(db.prepare(std::string("SELECT ") + kCaColumns + " FROM cas WHERE name = ?1", "prepare find CA")),
        find_by_id_(db.prepare(std::string("SELECT ") + kCaColumns + " FROM cas WHERE id = ?1", "prepare find CA by id")),
        list_(db.prepare(std::string("SELECT ") + kCaColumns + " FROM cas ORDER BY name", "prepare list CAs")),
        insert_version_(db.prepare("INSERT INTO ca_versions (ca_id, version, key_object_id, key_type, certificate_der, "
                                   "subject, subject_key_id, not_before, not_after, state, crl_number, created_at) "
                                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                                   "prepare insert CA version")),
        versions_(db.prepare(std::string("SELECT ") + kVersionColumns +
                                 " FROM ca_versions WHERE ca_id = ?1 ORDER BY version",
                             "prepare list CA versions")),
        current_version_(db.prepare(std::string("SELECT ") + kVersionColumns +
                                        " FROM ca_versions WHERE ca_id = ?1 AND state = 'active' "
                                        "ORDER BY version DESC LIMIT 1",
                                    "prepare find current CA version")),
        find_version_(db.prepare(std::string("SELECT ") + kVersionColumns + " FROM ca_versions WHERE id = ?1",
                                 "prepare find CA version")),
        set_version_state_(db.prepare("UPDATE ca_versions SET state = ?2 WHERE id = ?1", "prepare set CA version state")),
        // One statement, so that the increment and the read are one atomic
        // step even outside a transaction and across processes.
        next_crl_number_(db.prepare("UPDATE cas SET crl_number = crl_number + 1 "
                                    "WHERE id = (SELECT ca_id FROM ca_versions WHERE id = ?1) RETURNING crl_number",
                                    "prepare next CRL number")),
        set_version_crl_number_(db.prepare("UPDATE ca_versions SET crl_number = ?2 WHERE id = ?1",
                                           "prepare set version CRL number")),
        raise_crl_number_(db.prepare("UPDATE cas SET crl_number = MAX(crl_number, ?2) WHERE id = ?1",
                                     "prepare raise CA CRL number")),
        published_crl_(db.prepare(std::string("SELECT ") + kPublishedCrlColumns +
                                      ", crl_der FROM published_crls WHERE ca_version_id = ?1",
                                  "prepare find published CRL")),
        published_crl_summary_(db.prepare(std::string("SELECT ") + kPublishedCrlColumns +
                                              " FROM published_crls WHERE ca_version_id = ?1",
                                          "prepare find published CRL summary")),
        // An older number never replaces a newer one: the WHERE of the
        // upsert leaves the row alone (and changes() at 0).
        publish_crl_(db.prepare("INSERT INTO published_crls (ca_version_id, crl_number, this_update, next_update, "
                                "revoked_count, revoked_digest, stale, crl_der, published_at) "
                                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8) "
                                "ON CONFLICT (ca_version_id) DO UPDATE SET crl_number = excluded.crl_number, "
                                "this_update = excluded.this_update, next_update = excluded.next_update, "
                                "revoked_count = excluded.revoked_count, revoked_digest = excluded.revoked_digest, "
                                "stale = 0, crl_der = excluded.crl_der, published_at = excluded.published_at "
                                "WHERE excluded.crl_number > published_crls.crl_number",
                                "prepare publish CRL")) {}

  void insert(CaRecord& record) override {
    static constexpr std::string_view kOp = "insert CA";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);

    auto lock = db_.lock_for(kOp);
    Query q(db_, insert_.get(), kOp);
    q.bind(1, record.name);
    q.bind(2, record.kind);
    q.bind(3, record.parent_id);
    q.bind(4, record.name_constraints);
    q.bind(5, created_at);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
      throw Error(ErrorCode::AlreadyExists, "a CA named '" + record.name + "' already exists");
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
      throw Error(ErrorCode::NotFound, "CA record for '" + record.name + "': no parent CA with id " +
                                           std::to_string(record.parent_id.value_or(0)));
    }
    if (rc == SQLITE_CONSTRAINT_CHECK &&
        std::string_view(sqlite3_errmsg(db_.handle())).find("cas_name_constraints_valid") !=
            std::string_view::npos) {
      throw Error(ErrorCode::InvalidArgument, "CA record for '" + record.name + "': name_constraints is not valid JSON");
    }
    if (rc != SQLITE_DONE) q.fail(rc);
    record.id = sqlite3_last_insert_rowid(db_.handle());
    record.created_at = std::move(created_at);
  }

  std::optional<CaRecord> find(std::string_view name) override {
    return select_one(db_, find_, "find CA", read_ca, name);
  }

  std::optional<CaRecord> find_by_id(std::int64_t id) override {
    return select_one(db_, find_by_id_, "find CA by id", read_ca, id);
  }

  std::vector<CaRecord> list() override { return select_all(db_, list_, "list CAs", read_ca); }

  void insert_version(CaVersionRecord& record) override {
    static constexpr std::string_view kOp = "insert CA version";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);

    auto lock = db_.lock_for(kOp);
    Query q(db_, insert_version_.get(), kOp);
    q.bind(1, record.ca_id);
    q.bind(2, std::int64_t{record.version});
    q.bind(3, std::span<const std::uint8_t>(record.key_object_id));
    q.bind(4, record.key_type);
    q.bind(5, std::span<const std::uint8_t>(record.certificate_der));
    q.bind(6, record.subject);
    q.bind(7, std::span<const std::uint8_t>(record.subject_key_id));
    q.bind(8, record.not_before);
    q.bind(9, record.not_after);
    q.bind(10, record.state);
    q.bind(11, record.crl_number);
    q.bind(12, created_at);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
      throw Error(ErrorCode::AlreadyExists, "CA " + std::to_string(record.ca_id) + " already has a version " +
                                                std::to_string(record.version));
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
      throw Error(ErrorCode::NotFound, "no CA with id " + std::to_string(record.ca_id));
    }
    if (rc != SQLITE_DONE) q.fail(rc);
    record.id = sqlite3_last_insert_rowid(db_.handle());
    record.created_at = std::move(created_at);
    if (record.crl_number > 0) {
      // A version that already issued CRLs (imported): the CA's numbers go on from there.
      Query raise(db_, raise_crl_number_.get(), kOp);
      raise.bind(1, record.ca_id);
      raise.bind(2, record.crl_number);
      raise.run();
    }
  }

  std::vector<CaVersionRecord> versions(std::int64_t ca_id) override {
    return select_all(db_, versions_, "list CA versions", read_version, ca_id);
  }

  std::optional<CaVersionRecord> current_version(std::int64_t ca_id) override {
    return select_one(db_, current_version_, "find current CA version", read_version, ca_id);
  }

  std::optional<CaVersionRecord> find_version(std::int64_t version_id) override {
    return select_one(db_, find_version_, "find CA version", read_version, version_id);
  }

  void set_version_state(std::int64_t version_id, std::string_view state) override {
    static constexpr std::string_view kOp = "set CA version state";
    require_version_state(state, version_id);
    auto lock = db_.lock_for(kOp);
    Query q(db_, set_version_state_.get(), kOp);
    q.bind(1, version_id);
    q.bind(2, state);
    q.run();
    if (sqlite3_changes(db_.handle()) == 0) {
      throw Error(ErrorCode::NotFound, "no CA version with id " + std::to_string(version_id));
    }
  }

  std::int64_t next_crl_number(std::int64_t version_id) override {
    static constexpr std::string_view kOp = "take next CRL number";
    auto lock = db_.lock_for(kOp);
    Query q(db_, next_crl_number_.get(), kOp);
    q.bind(1, version_id);
    if (!q.next()) throw Error(ErrorCode::NotFound, "no CA version with id " + std::to_string(version_id));
    std::int64_t number = q.integer(0);
    q.run();  // to SQLITE_DONE: the statement (and, outside a transaction, its write) is complete
    Query record(db_, set_version_crl_number_.get(), kOp);
    record.bind(1, version_id);
    record.bind(2, number);
    record.run();
    return number;
  }

  std::optional<PublishedCrlRecord> published_crl(std::int64_t version_id) override {
    return select_one(
        db_, published_crl_, "find published CRL", [](const Query& q) { return read_published_crl(q, true); },
        version_id);
  }

  std::optional<PublishedCrlRecord> published_crl_summary(std::int64_t version_id) override {
    return select_one(
        db_, published_crl_summary_, "find published CRL summary",
        [](const Query& q) { return read_published_crl(q, false); }, version_id);
  }

  bool publish_crl(PublishedCrlRecord& record) override {
    static constexpr std::string_view kOp = "publish CRL";
    std::string published_at = record.published_at.empty() ? now_utc() : record.published_at;
    validate(record, published_at);

    auto lock = db_.lock_for(kOp);
    Query q(db_, publish_crl_.get(), kOp);
    q.bind(1, record.ca_version_id);
    q.bind(2, record.crl_number);
    q.bind(3, record.this_update);
    q.bind(4, record.next_update);
    q.bind(5, record.revoked_count);
    q.bind(6, std::span<const std::uint8_t>(record.revoked_digest));
    q.bind(7, std::span<const std::uint8_t>(record.crl_der));
    q.bind(8, published_at);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
      throw Error(ErrorCode::NotFound, "no CA version with id " + std::to_string(record.ca_version_id));
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
  Stmt insert_version_;
  Stmt versions_;
  Stmt current_version_;
  Stmt find_version_;
  Stmt set_version_state_;
  Stmt next_crl_number_;
  Stmt set_version_crl_number_;
  Stmt raise_crl_number_;
  Stmt published_crl_;
  Stmt published_crl_summary_;
  Stmt publish_crl_;
};

// ---- certificates ----

// certificate_der last, so that list() can leave it out.
constexpr const char* kCertificateColumns =
    "id, serial, ca_version_id, subject, sans, profile, not_before, not_after, status, revoked_at, "
    "revocation_reason, requester, key_object_id, created_at";
constexpr int kDerColumn = 14;

// Numeric order of canonical serials: fewer digits first, then text.
constexpr const char* kSerialOrder = "length(serial), serial";

CertificateRecord read_certificate(const Query& q, bool with_der) {
  CertificateRecord r;
  r.id = q.integer(0);
  r.serial = q.text(1);
  r.ca_version_id = q.integer(2);
  r.subject = q.text(3);
  std::optional<std::vector<std::string>> sans = from_json_array(q.text(4));
  if (!sans) {
    throw Error(ErrorCode::Internal, "store: certificate " + r.serial + " has sans that are not a JSON array of strings");
  }
  r.sans = std::move(*sans);
  r.profile = q.text(5);
  r.not_before = q.text(6);
  r.not_after = q.text(7);
  r.status = q.text(8);
  if (!q.is_null(9)) r.revoked_at = q.text(9);
  if (!q.is_null(10)) r.revocation_reason = q.text(10);
  r.requester = q.text(11);
  if (!q.is_null(12)) r.key_object_id = q.blob(12);
  r.created_at = q.text(13);
  if (with_der) r.certificate_der = q.blob(kDerColumn);
  return r;
}

void validate(const CertificateRecord& r, const std::string& created_at) {
  std::string what = "certificate record " + in_quotes(r.serial);
  require_serial(r.serial, "certificate record");
  require(!r.profile.empty(), what + ": profile is empty");
  require(!r.requester.empty(), what + ": requester is empty");
  require_timestamp(r.not_before, "not_before", what);
  require_timestamp(r.not_after, "not_after", what);
  require(r.not_before <= r.not_after, what + ": not_after is before not_before");
  require(r.status == kCertificateValid || r.status == kCertificateRevoked,
          what + ": status " + in_quotes(r.status) + " is not valid or revoked");
  bool revoked = r.status == kCertificateRevoked;
  require(r.revoked_at.has_value() == revoked && r.revocation_reason.has_value() == revoked,
          what + ": revoked_at and revocation_reason must be set exactly when the status is revoked");
  if (r.revoked_at) require_timestamp(*r.revoked_at, "revoked_at", what);
  if (r.revocation_reason) require_reason(*r.revocation_reason, what);
  require(!r.key_object_id || !r.key_object_id->empty(), what + ": key CKA_ID is set but empty");
  require(!r.certificate_der.empty(), what + ": certificate is empty");
  require_timestamp(created_at, "created_at", what);
}

class SqliteCertificateRepository final : public CertificateRepository {
 public:
  explicit SqliteCertificateRepository(Database& db)
      : db_(db),
        insert_(db.prepare("INSERT INTO certificates (serial, ca_version_id, subject, sans, profile, not_before, "
                           "not_after, status, revoked_at, revocation_reason, requester, key_object_id, certificate_der, "
                           "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                           "prepare insert certificate")),
        find_(db.prepare(std::string("SELECT ") + kCertificateColumns +
                             ", certificate_der FROM certificates WHERE serial = ?1",
                         "prepare find certificate")),
        revoke_(db.prepare("UPDATE certificates SET status = 'revoked', revoked_at = ?2, revocation_reason = ?3 "
                           "WHERE serial = ?1 AND status = 'valid'",
                           "prepare revoke certificate")),
        revocation_(db.prepare("SELECT revoked_at, revocation_reason FROM certificates WHERE serial = ?1",
                               "prepare read revocation")),
        // status = 'revoked' literally: the partial index covers this query.
        revoked_(db.prepare(std::string("SELECT serial, revoked_at, revocation_reason FROM certificates "
                                        "WHERE ca_version_id = ?1 AND status = 'revoked' ORDER BY ") +
                                kSerialOrder,
                            "prepare list revoked certificates")),
        count_(db.prepare("SELECT count(*) FROM certificates WHERE ca_version_id = ?1", "prepare count certificates")),
        // certificates_by_version (ca_version_id, not_after) answers it from its last entry.
        last_not_after_(db.prepare("SELECT max(not_after) FROM certificates WHERE ca_version_id = ?1",
                                   "prepare read last not_after")),
        stale_by_version_(db.prepare("UPDATE published_crls SET stale = 1 WHERE ca_version_id = ?1 AND stale = 0",
                                     "prepare mark published CRL stale")),
        stale_by_serial_(db.prepare("UPDATE published_crls SET stale = 1 WHERE stale = 0 AND ca_version_id = "
                                    "(SELECT ca_version_id FROM certificates WHERE serial = ?1)",
                                    "prepare mark published CRL stale")),
        // The same condition in both: the step holds the write lock, so the
        // rows read are the rows marked.
        to_mark_expired_(db.prepare(std::string("SELECT ") + kCertificateColumns +
                                        " FROM certificates c WHERE status = 'valid' AND not_after < ?1 AND NOT EXISTS "
                                        "(SELECT 1 FROM expired_certificates e WHERE e.certificate_id = c.id) "
                                        "ORDER BY not_after, " + kSerialOrder + ", id",
                                    "prepare list certificates to mark expired")),
        mark_expired_(db.prepare("INSERT INTO expired_certificates (certificate_id, marked_at) SELECT id, ?2 "
                                 "FROM certificates c WHERE status = 'valid' AND not_after < ?1 AND NOT EXISTS "
                                 "(SELECT 1 FROM expired_certificates e WHERE e.certificate_id = c.id)",
                                 "prepare mark certificates expired")),
        expired_marked_at_(db.prepare("SELECT e.marked_at FROM expired_certificates e JOIN certificates c "
                                      "ON c.id = e.certificate_id WHERE c.serial = ?1",
                                      "prepare read expiry mark")) {}

  void insert(CertificateRecord& record) override {
    static constexpr std::string_view kOp = "insert certificate";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);
    std::string sans = to_json_array(record.sans);

    auto lock = db_.lock_for(kOp);
    // A certificate recorded as revoked leaves its version's published CRL stale, in the same step.
    std::optional<AtomicStep> step;
    if (record.status == kCertificateRevoked) step.emplace(db_, kOp);
    {
      Query q(db_, insert_.get(), kOp);
      q.bind(1, record.serial);
      q.bind(2, record.ca_version_id);
      q.bind(3, record.subject);
      q.bind(4, sans);
      q.bind(5, record.profile);
      q.bind(6, record.not_before);
      q.bind(7, record.not_after);
      q.bind(8, record.status);
      q.bind(9, record.revoked_at);
      q.bind(10, record.revocation_reason);
      q.bind(11, record.requester);
      q.bind(12, record.key_object_id);
      q.bind(13, std::span<const std::uint8_t>(record.certificate_der));
      q.bind(14, created_at);
      int rc = q.step_rc();
      if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        throw Error(ErrorCode::AlreadyExists, "a certificate with serial " + record.serial + " is already in the store");
      }
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        throw Error(ErrorCode::NotFound, "certificate record " + in_quotes(record.serial) + ": no CA version with id " +
                                             std::to_string(record.ca_version_id));
      }
      if (rc != SQLITE_DONE) q.fail(rc);
    }
    std::int64_t id = sqlite3_last_insert_rowid(db_.handle());
    if (step) {
      {
        Query stale(db_, stale_by_version_.get(), kOp);
        stale.bind(1, record.ca_version_id);
        stale.run();
      }
      step->commit();
    }
    record.id = id;
    record.created_at = std::move(created_at);
  }

  std::optional<CertificateRecord> find(std::string_view serial) override {
    require_serial(serial, "find certificate");
    return select_one(db_, find_, "find certificate", [](const Query& q) { return read_certificate(q, true); }, serial);
  }

  std::vector<CertificateRecord> list(const CertificateFilter& filter) override {
    static constexpr std::string_view kOp = "list certificates";
    std::string now;
    if (filter.status) {
      const std::string& s = *filter.status;
      require(s == kCertificateValid || s == kCertificateRevoked || s == kCertificateExpired,
              "list certificates: status " + in_quotes(s) + " is not valid, revoked or expired");
      if (s != kCertificateRevoked) now = filter.now.value_or(now_utc());
    }
    if (filter.now) require_timestamp(*filter.now, "now", "list certificates");
    if (filter.not_after_before) require_timestamp(*filter.not_after_before, "not_after_before", "list certificates");

    // Only the fragments of the filters in use, so that SQLite can pick the
    // index that fits; values are bound, never written into the SQL.
    std::string sql = std::string("SELECT ") + kCertificateColumns + " FROM certificates WHERE 1";
    if (filter.ca_id) sql += " AND ca_version_id IN (SELECT id FROM ca_versions WHERE ca_id = ?1)";
    if (filter.ca_version_id) sql += " AND ca_version_id = ?2";
    if (filter.status == kCertificateValid) sql += " AND status = 'valid' AND not_after >= ?3";
    if (filter.status == kCertificateExpired) sql += " AND status = 'valid' AND not_after < ?3";
    if (filter.status == kCertificateRevoked) sql += " AND status = 'revoked'";
    if (filter.not_after_before) sql += " AND not_after < ?4";
    sql += std::string(" ORDER BY not_after, ") + kSerialOrder + ", id";

    auto lock = db_.lock_for(kOp);
    auto it = list_.find(sql);
    if (it == list_.end()) it = list_.emplace(sql, db_.prepare(sql, "prepare list certificates")).first;
    Query q(db_, it->second.get(), kOp);
    if (filter.ca_id) q.bind(1, *filter.ca_id);
    if (filter.ca_version_id) q.bind(2, *filter.ca_version_id);
    if (!now.empty()) q.bind(3, now);
    if (filter.not_after_before) q.bind(4, *filter.not_after_before);
    std::vector<CertificateRecord> out;
    while (q.next()) out.push_back(read_certificate(q, false));
    return out;
  }

  void revoke(std::string_view serial, std::string_view at, std::string_view reason) override {
    static constexpr std::string_view kOp = "revoke certificate";
    std::string what = "revoke certificate " + in_quotes(serial);
    require_serial(serial, "revoke certificate");
    require_timestamp(at, "time", what);
    require_reason(reason, what);

    auto lock = db_.lock_for(kOp);
    // The revocation and the published CRL it leaves stale, together.
    AtomicStep step(db_, kOp);
    {
      Query q(db_, revoke_.get(), kOp);
      q.bind(1, serial);
      q.bind(2, at);
      q.bind(3, reason);
      q.run();
    }
    if (sqlite3_changes(db_.handle()) == 1) {
      {
        Query stale(db_, stale_by_serial_.get(), kOp);
        stale.bind(1, serial);
        stale.run();
      }
      step.commit();
      return;
    }
    // Nothing changed: unknown, or revoked already. The step holds the write
    // lock, so this reads what the UPDATE saw.
    Query q(db_, revocation_.get(), kOp);
    q.bind(1, serial);
    if (!q.next()) throw Error(ErrorCode::NotFound, "no certificate with serial " + std::string(serial));
    throw Error(ErrorCode::FailedPrecondition, "certificate " + std::string(serial) + " was already revoked at " +
                                                   q.text(0) + " (" + q.text(1) + ")");
  }

  std::vector<RevokedEntry> revoked(std::int64_t ca_version_id) override {
    return select_all(
        db_, revoked_, "list revoked certificates",
        [](const Query& q) { return RevokedEntry{q.text(0), q.text(1), q.text(2)}; }, ca_version_id);
  }

  std::int64_t count(std::int64_t ca_version_id) override {
    static constexpr std::string_view kOp = "count certificates";
    auto lock = db_.lock_for(kOp);
    Query q(db_, count_.get(), kOp);
    q.bind(1, ca_version_id);
    return q.next() ? q.integer(0) : 0;
  }

  std::optional<std::string> last_not_after(std::int64_t ca_version_id) override {
    static constexpr std::string_view kOp = "read last not_after";
    auto lock = db_.lock_for(kOp);
    Query q(db_, last_not_after_.get(), kOp);
    q.bind(1, ca_version_id);
    if (!q.next() || q.is_null(0)) return std::nullopt;
    return q.text(0);
  }

  std::vector<CertificateRecord> mark_expired(std::string_view now, std::string_view at) override {
    static constexpr std::string_view kOp = "mark certificates expired";
    require_timestamp(now, "now", "mark certificates expired");
    require_timestamp(at, "time", "mark certificates expired");
    auto lock = db_.lock_for(kOp);
    AtomicStep step(db_, kOp);
    std::vector<CertificateRecord> marked;
    {
      Query q(db_, to_mark_expired_.get(), kOp);
      q.bind(1, now);
      while (q.next()) marked.push_back(read_certificate(q, false));
    }
    if (marked.empty()) return marked;
    {
      Query q(db_, mark_expired_.get(), kOp);
      q.bind(1, now);
      q.bind(2, at);
      q.run();
    }
    step.commit();
    return marked;
  }

  std::optional<std::string> expired_marked_at(std::string_view serial) override {
    require_serial(serial, "read expiry mark");
    return select_one(db_, expired_marked_at_, "read expiry mark", [](const Query& q) { return q.text(0); }, serial);
  }

 private:
  Database& db_;
  Stmt insert_;
  Stmt find_;
  Stmt revoke_;
  Stmt revocation_;
  Stmt revoked_;
  Stmt count_;
  Stmt last_not_after_;
  Stmt stale_by_version_;
  Stmt stale_by_serial_;
  Stmt to_mark_expired_;
  Stmt mark_expired_;
  Stmt expired_marked_at_;
  std::map<std::string, Stmt> list_;  // by SQL: one per combination of filters used
};

}  // namespace

std::unique_ptr<CaRepository> make_ca_repository(Database& db) { return std::make_unique<SqliteCaRepository>(db); }

std::unique_ptr<CertificateRepository> make_certificate_repository(Database& db) {
  return std::make_unique<SqliteCertificateRepository>(db);
}

}  // namespace keyhold::store::sqlite_internal
