// The SQLite implementation of keyhold::store: the connection (Database, see
// sqlite_database.hpp for its concurrency model), the schema and the key
// repository.
//
// Schema versions are tracked with PRAGMA user_version (the number of
// migrations applied) and the file is marked as keyhold's with
// PRAGMA application_id, so that another application's database is refused
// rather than altered.
//
// The PKI repositories live in sqlite_pki_repositories.cpp, the SSH ones in
// sqlite_ssh_repositories.cpp, the KEK one in sqlite_kek_repositories.cpp; the
// files share what sqlite_database.hpp holds. The published CRLs and KRLs
// (migration 6) belong to the CA and SSH CA repositories.

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>
#include <memory>
#include <mutex>
#include <system_error>
#include <utility>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/log.hpp"
#include "keyhold/store/store.hpp"
#include "sqlite_database.hpp"

namespace keyhold::store {
namespace sqlite_internal {
namespace {

constexpr int kBusyTimeoutMs = 5000;
constexpr int kApplicationId = 0x4b484c44;  // "KHLD"

// Applied in order, each in its own transaction; migration i (1-based) takes
// user_version from i-1 to i. Never edit a released entry: append a new one.
constexpr const char* kMigrations[] = {
    // 1: the keys table. A name is unique among ACTIVE keys only (partial
    // index), so a destroyed key's row stays for audit and its name can be
    // reused; a CKA_ID is unique across all rows, forever. Timestamps must be
    // "YYYY-MM-DDTHH:MM:SSZ" so that text order is time order.
    R"sql(
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
)sql",
    // 2: X.509 CAs, their versions (key + certificate; "ca rotate" adds one),
    // the certificates they issued, and what uses each key. Same timestamp
    // rule as migration 1. A serial is lowercase hex without leading zeros,
    // so that equal serials are equal text and (length, text) is numeric
    // order. revoked_at and revocation_reason are set exactly when revoked.
    // certificates_revoked_by_version covers the CRL query (serial order
    // included), so that it reads no certificate row.
    R"sql(
ALTER TABLE keys ADD COLUMN used_by TEXT
  CONSTRAINT keys_used_by_valid CHECK (used_by IS NULL OR length(used_by) > 0);

CREATE TABLE cas (
  id               INTEGER PRIMARY KEY,
  name             TEXT NOT NULL CONSTRAINT cas_name_valid CHECK (length(name) > 0),
  kind             TEXT NOT NULL CONSTRAINT cas_kind_valid CHECK (kind IN ('root', 'intermediate', 'imported')),
  parent_id        INTEGER CONSTRAINT cas_parent_id_valid
                     CHECK ((kind <> 'root' OR parent_id IS NULL) AND (kind <> 'intermediate' OR parent_id IS NOT NULL)),
  name_constraints TEXT CONSTRAINT cas_name_constraints_valid
                     CHECK (name_constraints IS NULL OR json_valid(name_constraints)),
  created_at       TEXT NOT NULL CONSTRAINT cas_created_at_valid
                     CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT cas_parent_id_fk FOREIGN KEY (parent_id) REFERENCES cas (id),
  CONSTRAINT cas_name_unique UNIQUE (name)
);
CREATE INDEX cas_parent_id ON cas (parent_id);

CREATE TABLE ca_versions (
  id              INTEGER PRIMARY KEY,
  ca_id           INTEGER NOT NULL,
  version         INTEGER NOT NULL CONSTRAINT ca_versions_version_valid
                    CHECK (typeof(version) = 'integer' AND version >= 1),
  key_object_id   BLOB NOT NULL CONSTRAINT ca_versions_key_object_id_valid
                    CHECK (typeof(key_object_id) = 'blob' AND length(key_object_id) > 0),
  key_type        TEXT NOT NULL CONSTRAINT ca_versions_key_type_valid CHECK (length(key_type) > 0),
  certificate_der BLOB NOT NULL CONSTRAINT ca_versions_certificate_der_valid
                    CHECK (typeof(certificate_der) = 'blob' AND length(certificate_der) > 0),
  subject         TEXT NOT NULL CONSTRAINT ca_versions_subject_valid CHECK (length(subject) > 0),
  subject_key_id  BLOB NOT NULL CONSTRAINT ca_versions_subject_key_id_valid CHECK (typeof(subject_key_id) = 'blob'),
  not_before      TEXT NOT NULL CONSTRAINT ca_versions_not_before_valid
                    CHECK (not_before GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  not_after       TEXT NOT NULL CONSTRAINT ca_versions_not_after_valid
                    CHECK (not_after GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'
                           AND not_after >= not_before),
  state           TEXT NOT NULL DEFAULT 'active'
                    CONSTRAINT ca_versions_state_valid CHECK (state IN ('active', 'retired')),
  crl_number      INTEGER NOT NULL DEFAULT 0 CONSTRAINT ca_versions_crl_number_valid
                    CHECK (typeof(crl_number) = 'integer' AND crl_number >= 0),
  created_at      TEXT NOT NULL CONSTRAINT ca_versions_created_at_valid
                    CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT ca_versions_ca_id_fk FOREIGN KEY (ca_id) REFERENCES cas (id),
  CONSTRAINT ca_versions_version_unique UNIQUE (ca_id, version)
);

CREATE TABLE certificates (
  id                INTEGER PRIMARY KEY,
  serial            TEXT NOT NULL CONSTRAINT certificates_serial_valid
                      CHECK (length(serial) <= 40 AND serial GLOB '[1-9a-f]*' AND NOT serial GLOB '*[^0-9a-f]*'),
  ca_version_id     INTEGER NOT NULL,
  subject           TEXT NOT NULL,
  sans              TEXT NOT NULL DEFAULT '[]' CONSTRAINT certificates_sans_valid
                      CHECK (json_valid(sans) AND json_type(sans) = 'array'),
  profile           TEXT NOT NULL CONSTRAINT certificates_profile_valid CHECK (length(profile) > 0),
  not_before        TEXT NOT NULL CONSTRAINT certificates_not_before_valid
                      CHECK (not_before GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  not_after         TEXT NOT NULL CONSTRAINT certificates_not_after_valid
                      CHECK (not_after GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'
                             AND not_after >= not_before),
  status            TEXT NOT NULL DEFAULT 'valid'
                      CONSTRAINT certificates_status_valid CHECK (status IN ('valid', 'revoked')),
  revoked_at        TEXT CONSTRAINT certificates_revoked_at_valid
                      CHECK ((revoked_at IS NULL) = (status = 'valid') AND (revoked_at IS NULL OR
                        revoked_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z')),
  revocation_reason TEXT CONSTRAINT certificates_revocation_reason_valid
                      CHECK ((revocation_reason IS NULL) = (status = 'valid') AND (revocation_reason IS NULL OR
                        revocation_reason IN ('unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged',
                                              'superseded', 'cessationOfOperation'))),
  requester         TEXT NOT NULL CONSTRAINT certificates_requester_valid CHECK (length(requester) > 0),
  key_object_id     BLOB CONSTRAINT certificates_key_object_id_valid
                      CHECK (key_object_id IS NULL OR (typeof(key_object_id) = 'blob' AND length(key_object_id) > 0)),
  certificate_der   BLOB NOT NULL CONSTRAINT certificates_certificate_der_valid
                      CHECK (typeof(certificate_der) = 'blob' AND length(certificate_der) > 0),
  created_at        TEXT NOT NULL CONSTRAINT certificates_created_at_valid
                      CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT certificates_ca_version_id_fk FOREIGN KEY (ca_version_id) REFERENCES ca_versions (id),
  CONSTRAINT certificates_serial_unique UNIQUE (serial)
);
CREATE INDEX certificates_by_version ON certificates (ca_version_id, not_after);
CREATE INDEX certificates_by_not_after ON certificates (not_after);
CREATE INDEX certificates_revoked_by_version
  ON certificates (ca_version_id, length(serial), serial, revoked_at, revocation_reason, status)
  WHERE status = 'revoked';
)sql",
    // 3: CRL numbers count per CA, not per version: after a rotation both
    // versions publish CRLs under the same issuer name, and RFC 5280 5.2.3
    // wants the numbers of one issuer to keep increasing.
    R"sql(
ALTER TABLE cas ADD COLUMN crl_number INTEGER NOT NULL DEFAULT 0
  CONSTRAINT cas_crl_number_valid CHECK (crl_number >= 0);
UPDATE cas SET crl_number = (SELECT COALESCE(MAX(crl_number), 0) FROM ca_versions WHERE ca_versions.ca_id = cas.id);
)sql",
    // 4: the SSH CA. Serials and validity times are unsigned 64-bit values
    // stored as their bit pattern in a signed INTEGER: unsigned order is
    // (x < 0, x), which the row-value comparisons and indexes below use.
    // ssh_revocations is what a CA's KRL lists (OpenSSH PROTOCOL.krl):
    // exactly the column its kind names is set, and each value appears once
    // per CA (partial unique indexes: a plain UNIQUE would let NULLs repeat).
    // A CKA_ID belongs to one SSH CA and one SSH key version: two CAs on one
    // key would share trust but not KRLs, and retiring a version destroys its
    // token key. ssh_keys holds every version of the SSH keys kept in the
    // token. Same timestamp rule as migration 1.
    R"sql(
CREATE TABLE ssh_cas (
  id              INTEGER PRIMARY KEY,
  name            TEXT NOT NULL CONSTRAINT ssh_cas_name_valid CHECK (length(name) > 0),
  key_object_id   BLOB NOT NULL CONSTRAINT ssh_cas_key_object_id_valid
                    CHECK (typeof(key_object_id) = 'blob' AND length(key_object_id) > 0),
  key_type        TEXT NOT NULL CONSTRAINT ssh_cas_key_type_valid CHECK (length(key_type) > 0),
  public_key_blob BLOB NOT NULL CONSTRAINT ssh_cas_public_key_blob_valid
                    CHECK (typeof(public_key_blob) = 'blob' AND length(public_key_blob) > 0),
  krl_version     INTEGER NOT NULL DEFAULT 0 CONSTRAINT ssh_cas_krl_version_valid
                    CHECK (typeof(krl_version) = 'integer' AND krl_version >= 0),
  created_at      TEXT NOT NULL CONSTRAINT ssh_cas_created_at_valid
                    CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT ssh_cas_name_unique UNIQUE (name),
  CONSTRAINT ssh_cas_key_object_id_unique UNIQUE (key_object_id)
);

CREATE TABLE ssh_certificates (
  id                     INTEGER PRIMARY KEY,
  ca_id                  INTEGER NOT NULL,
  serial                 INTEGER NOT NULL CONSTRAINT ssh_certificates_serial_valid CHECK (typeof(serial) = 'integer'),
  type                   TEXT NOT NULL CONSTRAINT ssh_certificates_type_valid CHECK (type IN ('user', 'host')),
  key_id                 TEXT NOT NULL CONSTRAINT ssh_certificates_key_id_valid CHECK (length(key_id) > 0),
  principals             TEXT NOT NULL DEFAULT '[]' CONSTRAINT ssh_certificates_principals_valid
                           CHECK (json_valid(principals) AND json_type(principals) = 'array'),
  valid_after            INTEGER NOT NULL CONSTRAINT ssh_certificates_valid_after_valid
                           CHECK (typeof(valid_after) = 'integer'),
  valid_before           INTEGER NOT NULL CONSTRAINT ssh_certificates_valid_before_valid
                           CHECK (typeof(valid_before) = 'integer'
                                  AND (valid_after < 0, valid_after) < (valid_before < 0, valid_before)),
  public_key_fingerprint TEXT NOT NULL CONSTRAINT ssh_certificates_public_key_fingerprint_valid
                           CHECK (length(public_key_fingerprint) = 50 AND public_key_fingerprint GLOB 'SHA256:*'
                                  AND NOT substr(public_key_fingerprint, 8) GLOB '*[^A-Za-z0-9+/]*'),
  public_key_blob        BLOB NOT NULL CONSTRAINT ssh_certificates_public_key_blob_valid
                           CHECK (typeof(public_key_blob) = 'blob' AND length(public_key_blob) > 0),
  profile                TEXT NOT NULL CONSTRAINT ssh_certificates_profile_valid CHECK (length(profile) > 0),
  status                 TEXT NOT NULL DEFAULT 'valid'
                           CONSTRAINT ssh_certificates_status_valid CHECK (status IN ('valid', 'revoked')),
  revoked_at             TEXT CONSTRAINT ssh_certificates_revoked_at_valid
                           CHECK ((revoked_at IS NULL) = (status = 'valid') AND (revoked_at IS NULL OR
                             revoked_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z')),
  requester              TEXT NOT NULL CONSTRAINT ssh_certificates_requester_valid CHECK (length(requester) > 0),
  certificate_blob       BLOB NOT NULL CONSTRAINT ssh_certificates_certificate_blob_valid
                           CHECK (typeof(certificate_blob) = 'blob' AND length(certificate_blob) > 0),
  created_at             TEXT NOT NULL CONSTRAINT ssh_certificates_created_at_valid
                           CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT ssh_certificates_ca_id_fk FOREIGN KEY (ca_id) REFERENCES ssh_cas (id),
  CONSTRAINT ssh_certificates_serial_unique UNIQUE (ca_id, serial)
);
CREATE INDEX ssh_certificates_by_ca
  ON ssh_certificates (ca_id, valid_before < 0, valid_before, serial < 0, serial);
CREATE INDEX ssh_certificates_by_valid_before
  ON ssh_certificates (valid_before < 0, valid_before, serial < 0, serial);
CREATE INDEX ssh_certificates_by_key_id ON ssh_certificates (ca_id, key_id);

CREATE TABLE ssh_revocations (
  id              INTEGER PRIMARY KEY,
  ca_id           INTEGER NOT NULL,
  kind            TEXT NOT NULL CONSTRAINT ssh_revocations_kind_valid CHECK (kind IN ('serial', 'key_id', 'key')),
  serial          INTEGER CONSTRAINT ssh_revocations_serial_valid
                    CHECK ((serial IS NOT NULL) = (kind = 'serial') AND (serial IS NULL OR typeof(serial) = 'integer')),
  key_id          TEXT CONSTRAINT ssh_revocations_key_id_valid
                    CHECK ((key_id IS NOT NULL) = (kind = 'key_id') AND (key_id IS NULL OR length(key_id) > 0)),
  public_key_blob BLOB CONSTRAINT ssh_revocations_public_key_blob_valid
                    CHECK ((public_key_blob IS NOT NULL) = (kind = 'key') AND (public_key_blob IS NULL OR
                      (typeof(public_key_blob) = 'blob' AND length(public_key_blob) > 0))),
  revoked_at      TEXT NOT NULL CONSTRAINT ssh_revocations_revoked_at_valid
                    CHECK (revoked_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT ssh_revocations_ca_id_fk FOREIGN KEY (ca_id) REFERENCES ssh_cas (id)
);
CREATE UNIQUE INDEX ssh_revocations_serial_unique
  ON ssh_revocations (ca_id, serial < 0, serial) WHERE kind = 'serial';
CREATE UNIQUE INDEX ssh_revocations_key_id_unique ON ssh_revocations (ca_id, key_id) WHERE kind = 'key_id';
CREATE UNIQUE INDEX ssh_revocations_key_unique ON ssh_revocations (ca_id, public_key_blob) WHERE kind = 'key';

CREATE TABLE ssh_keys (
  id              INTEGER PRIMARY KEY,
  name            TEXT NOT NULL CONSTRAINT ssh_keys_name_valid CHECK (length(name) > 0),
  version         INTEGER NOT NULL CONSTRAINT ssh_keys_version_valid
                    CHECK (typeof(version) = 'integer' AND version >= 1),
  key_object_id   BLOB NOT NULL CONSTRAINT ssh_keys_key_object_id_valid
                    CHECK (typeof(key_object_id) = 'blob' AND length(key_object_id) > 0),
  key_type        TEXT NOT NULL CONSTRAINT ssh_keys_key_type_valid CHECK (length(key_type) > 0),
  public_key_blob BLOB NOT NULL CONSTRAINT ssh_keys_public_key_blob_valid
                    CHECK (typeof(public_key_blob) = 'blob' AND length(public_key_blob) > 0),
  state           TEXT NOT NULL DEFAULT 'active'
                    CONSTRAINT ssh_keys_state_valid CHECK (state IN ('active', 'retired')),
  created_at      TEXT NOT NULL CONSTRAINT ssh_keys_created_at_valid
                    CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  retired_at      TEXT CONSTRAINT ssh_keys_retired_at_valid
                    CHECK ((retired_at IS NULL) = (state = 'active') AND (retired_at IS NULL OR
                      retired_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z')),
  CONSTRAINT ssh_keys_version_unique UNIQUE (name, version),
  CONSTRAINT ssh_keys_key_object_id_unique UNIQUE (key_object_id)
);
)sql",
    // 5: the KEKs of envelope encryption. A KEK has a 16-byte kek_id, which
    // ciphertexts carry, and versions 1..n, each an AES-256 key in the token
    // (key_object_id: its CKA_ID, never shared by two versions). Counts are
    // plain non-negative INTEGERs (at most 2^63 - 1): an addition past that
    // would turn into a REAL, which the typeof checks refuse. A version enters
    // as the KEK's next number and enabled; state_changed_at is set once it has
    // changed state, and always for a disabled or destroyed version. The
    // triggers keep what CHECK constraints cannot see (the old row, the other
    // rows): versions are numbered without gaps, a destroyed version is final
    // (its token key is gone), an encryption count never goes down (AES-GCM's
    // limit per key depends on it), and the ids ciphertexts and the token rely
    // on never change. Same timestamp rule as migration 1.
    R"sql(
CREATE TABLE keks (
  id                      INTEGER PRIMARY KEY,
  name                    TEXT NOT NULL CONSTRAINT keks_name_valid CHECK (length(name) > 0),
  kek_id                  BLOB NOT NULL CONSTRAINT keks_kek_id_valid
                            CHECK (typeof(kek_id) = 'blob' AND length(kek_id) = 16),
  rotation_period_seconds INTEGER NOT NULL DEFAULT 0 CONSTRAINT keks_rotation_period_seconds_valid
                            CHECK (typeof(rotation_period_seconds) = 'integer' AND rotation_period_seconds >= 0),
  max_encryptions         INTEGER NOT NULL CONSTRAINT keks_max_encryptions_valid
                            CHECK (typeof(max_encryptions) = 'integer' AND max_encryptions >= 1),
  created_at              TEXT NOT NULL CONSTRAINT keks_created_at_valid
                            CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT keks_name_unique UNIQUE (name),
  CONSTRAINT keks_kek_id_unique UNIQUE (kek_id)
);

CREATE TABLE kek_versions (
  id               INTEGER PRIMARY KEY,
  kek_id           INTEGER NOT NULL,
  version          INTEGER NOT NULL CONSTRAINT kek_versions_version_valid
                     CHECK (typeof(version) = 'integer' AND version >= 1 AND version <= 4294967295),
  key_object_id    BLOB NOT NULL CONSTRAINT kek_versions_key_object_id_valid
                     CHECK (typeof(key_object_id) = 'blob' AND length(key_object_id) > 0),
  state            TEXT NOT NULL DEFAULT 'enabled'
                     CONSTRAINT kek_versions_state_valid CHECK (state IN ('enabled', 'disabled', 'destroyed')),
  encryptions      INTEGER NOT NULL DEFAULT 0 CONSTRAINT kek_versions_encryptions_valid
                     CHECK (typeof(encryptions) = 'integer' AND encryptions >= 0),
  created_at       TEXT NOT NULL CONSTRAINT kek_versions_created_at_valid
                     CHECK (created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  state_changed_at TEXT CONSTRAINT kek_versions_state_changed_at_valid
                     CHECK ((state = 'enabled' OR state_changed_at IS NOT NULL) AND (state_changed_at IS NULL OR
                       state_changed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z')),
  CONSTRAINT kek_versions_kek_id_fk FOREIGN KEY (kek_id) REFERENCES keks (id),
  CONSTRAINT kek_versions_version_unique UNIQUE (kek_id, version),
  CONSTRAINT kek_versions_key_object_id_unique UNIQUE (key_object_id)
);

CREATE TRIGGER kek_versions_insert_valid BEFORE INSERT ON kek_versions
  WHEN NEW.state IS NOT 'enabled' OR NEW.state_changed_at IS NOT NULL
    OR NEW.version IS NOT (SELECT COALESCE(MAX(version), 0) + 1 FROM kek_versions WHERE kek_id = NEW.kek_id)
BEGIN
  SELECT RAISE(ABORT, 'kek_versions: a new version must be the next number of its KEK, enabled, never changed');
END;
CREATE TRIGGER kek_versions_destroyed_final BEFORE UPDATE ON kek_versions
  WHEN OLD.state = 'destroyed'
BEGIN
  SELECT RAISE(ABORT, 'kek_versions: a destroyed version is final');
END;
CREATE TRIGGER kek_versions_encryptions_never_decrease BEFORE UPDATE OF encryptions ON kek_versions
  WHEN NEW.encryptions < OLD.encryptions
BEGIN
  SELECT RAISE(ABORT, 'kek_versions: an encryption count never goes down');
END;
CREATE TRIGGER kek_versions_ids_fixed BEFORE UPDATE OF kek_id, version, key_object_id ON kek_versions
  WHEN NEW.kek_id IS NOT OLD.kek_id OR NEW.version IS NOT OLD.version OR NEW.key_object_id IS NOT OLD.key_object_id
BEGIN
  SELECT RAISE(ABORT, 'kek_versions: kek_id, version and key_object_id never change');
END;
CREATE TRIGGER keks_kek_id_fixed BEFORE UPDATE OF kek_id ON keks
  WHEN NEW.kek_id IS NOT OLD.kek_id
BEGIN
  SELECT RAISE(ABORT, 'keks: kek_id never changes');
END;
)sql",
    // 6: what keyhold publishes. published_crls holds the CRL each CA
    // version signed last for publication and published_krls the KRL each
    // SSH CA did: what keyhold serve answers and keyhold maintain writes out,
    // so that serving one signs nothing. One row per version or CA (UNIQUE),
    // replaced only by a higher number (the triggers; a raw writer too).
    // stale is set by every revocation recorded after the row (the
    // repositories' revoke and insert calls, in the same step), so that the
    // next request republishes; the digest (SHA-256 of the revoked set the
    // CRL or KRL lists) lets keyhold maintain compare the whole set.
    // expired_certificates has one row per certificate that keyhold maintain
    // marked expired, with when: a certificate's status stays 'valid' (expiry
    // is judged from not_after), and the mark makes maintain report each
    // expiry once. New tables only: the released ones stay as they were.
    // Same timestamp rule as migration 1.
    R"sql(
CREATE TABLE published_crls (
  id             INTEGER PRIMARY KEY,
  ca_version_id  INTEGER NOT NULL,
  crl_number     INTEGER NOT NULL CONSTRAINT published_crls_crl_number_valid
                   CHECK (typeof(crl_number) = 'integer' AND crl_number >= 1),
  this_update    TEXT NOT NULL CONSTRAINT published_crls_this_update_valid
                   CHECK (this_update GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  next_update    TEXT NOT NULL CONSTRAINT published_crls_next_update_valid
                   CHECK (next_update GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'
                          AND next_update > this_update),
  revoked_count  INTEGER NOT NULL CONSTRAINT published_crls_revoked_count_valid
                   CHECK (typeof(revoked_count) = 'integer' AND revoked_count >= 0),
  revoked_digest BLOB NOT NULL CONSTRAINT published_crls_revoked_digest_valid
                   CHECK (typeof(revoked_digest) = 'blob' AND length(revoked_digest) = 32),
  stale          INTEGER NOT NULL DEFAULT 0 CONSTRAINT published_crls_stale_valid CHECK (stale IN (0, 1)),
  crl_der        BLOB NOT NULL CONSTRAINT published_crls_crl_der_valid
                   CHECK (typeof(crl_der) = 'blob' AND length(crl_der) > 0),
  published_at   TEXT NOT NULL CONSTRAINT published_crls_published_at_valid
                   CHECK (published_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT published_crls_ca_version_id_fk FOREIGN KEY (ca_version_id) REFERENCES ca_versions (id),
  CONSTRAINT published_crls_ca_version_id_unique UNIQUE (ca_version_id)
);
CREATE TRIGGER published_crls_number_increases BEFORE UPDATE OF crl_number, ca_version_id ON published_crls
  WHEN NEW.crl_number <= OLD.crl_number OR NEW.ca_version_id IS NOT OLD.ca_version_id
BEGIN
  SELECT RAISE(ABORT, 'published_crls: a published CRL is replaced only by a higher number of the same version');
END;

CREATE TABLE published_krls (
  id                 INTEGER PRIMARY KEY,
  ssh_ca_id          INTEGER NOT NULL,
  krl_version        INTEGER NOT NULL CONSTRAINT published_krls_krl_version_valid
                       CHECK (typeof(krl_version) = 'integer' AND krl_version >= 1),
  generated_at       TEXT NOT NULL CONSTRAINT published_krls_generated_at_valid
                       CHECK (generated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  revocation_count   INTEGER NOT NULL CONSTRAINT published_krls_revocation_count_valid
                       CHECK (typeof(revocation_count) = 'integer' AND revocation_count >= 0),
  revocations_digest BLOB NOT NULL CONSTRAINT published_krls_revocations_digest_valid
                       CHECK (typeof(revocations_digest) = 'blob' AND length(revocations_digest) = 32),
  stale              INTEGER NOT NULL DEFAULT 0 CONSTRAINT published_krls_stale_valid CHECK (stale IN (0, 1)),
  krl                BLOB NOT NULL CONSTRAINT published_krls_krl_valid CHECK (typeof(krl) = 'blob' AND length(krl) > 0),
  published_at       TEXT NOT NULL CONSTRAINT published_krls_published_at_valid
                       CHECK (published_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT published_krls_ssh_ca_id_fk FOREIGN KEY (ssh_ca_id) REFERENCES ssh_cas (id),
  CONSTRAINT published_krls_ssh_ca_id_unique UNIQUE (ssh_ca_id)
);
CREATE TRIGGER published_krls_version_increases BEFORE UPDATE OF krl_version, ssh_ca_id ON published_krls
  WHEN NEW.krl_version <= OLD.krl_version OR NEW.ssh_ca_id IS NOT OLD.ssh_ca_id
BEGIN
  SELECT RAISE(ABORT, 'published_krls: a published KRL is replaced only by a higher version of the same CA');
END;

CREATE TABLE expired_certificates (
  certificate_id INTEGER PRIMARY KEY,
  marked_at      TEXT NOT NULL CONSTRAINT expired_certificates_marked_at_valid
                   CHECK (marked_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
  CONSTRAINT expired_certificates_certificate_id_fk FOREIGN KEY (certificate_id) REFERENCES certificates (id)
);
)sql",
};
constexpr int kLatestVersion = static_cast<int>(std::size(kMigrations));
static_assert(kLatestVersion == kSqliteSchemaVersion, "store.hpp's kSqliteSchemaVersion must name the last migration");

std::string code_name(int rc) {
  static constexpr std::pair<int, const char*> kNames[] = {
      {SQLITE_CONSTRAINT_UNIQUE, "SQLITE_CONSTRAINT_UNIQUE"},
      {SQLITE_CONSTRAINT_PRIMARYKEY, "SQLITE_CONSTRAINT_PRIMARYKEY"},
      {SQLITE_CONSTRAINT_CHECK, "SQLITE_CONSTRAINT_CHECK"},
      {SQLITE_CONSTRAINT_NOTNULL, "SQLITE_CONSTRAINT_NOTNULL"},
      {SQLITE_CONSTRAINT_FOREIGNKEY, "SQLITE_CONSTRAINT_FOREIGNKEY"},
      {SQLITE_CONSTRAINT_TRIGGER, "SQLITE_CONSTRAINT_TRIGGER"},
      {SQLITE_ERROR, "SQLITE_ERROR"}, {SQLITE_INTERNAL, "SQLITE_INTERNAL"},
      {SQLITE_PERM, "SQLITE_PERM"}, {SQLITE_ABORT, "SQLITE_ABORT"},
      {SQLITE_BUSY, "SQLITE_BUSY"}, {SQLITE_LOCKED, "SQLITE_LOCKED"},
      {SQLITE_NOMEM, "SQLITE_NOMEM"}, {SQLITE_READONLY, "SQLITE_READONLY"},
      {SQLITE_INTERRUPT, "SQLITE_INTERRUPT"}, {SQLITE_IOERR, "SQLITE_IOERR"},
      {SQLITE_CORRUPT, "SQLITE_CORRUPT"}, {SQLITE_NOTFOUND, "SQLITE_NOTFOUND"},
      {SQLITE_FULL, "SQLITE_FULL"}, {SQLITE_CANTOPEN, "SQLITE_CANTOPEN"},
      {SQLITE_PROTOCOL, "SQLITE_PROTOCOL"}, {SQLITE_SCHEMA, "SQLITE_SCHEMA"},
      {SQLITE_TOOBIG, "SQLITE_TOOBIG"}, {SQLITE_CONSTRAINT, "SQLITE_CONSTRAINT"},
      {SQLITE_MISMATCH, "SQLITE_MISMATCH"}, {SQLITE_MISUSE, "SQLITE_MISUSE"},
      {SQLITE_NOLFS, "SQLITE_NOLFS"}, {SQLITE_AUTH, "SQLITE_AUTH"},
      {SQLITE_RANGE, "SQLITE_RANGE"}, {SQLITE_NOTADB, "SQLITE_NOTADB"},
  };
  for (auto [code, name] : kNames) {
    if (code == rc) return name;
  }
  for (auto [code, name] : kNames) {
    if (code == (rc & 0xff)) return std::string(name) + "/" + std::to_string(rc);
  }
  return "SQLite code " + std::to_string(rc);
}

ErrorCode code_for(int rc) {
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY: return ErrorCode::AlreadyExists;
    case SQLITE_CONSTRAINT_FOREIGNKEY: return ErrorCode::FailedPrecondition;
    default: break;
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_NOLFS:
    case SQLITE_AUTH:
    case SQLITE_PROTOCOL: return ErrorCode::Unavailable;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: return ErrorCode::FailedPrecondition;
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH: return ErrorCode::InvalidArgument;
    default: return ErrorCode::Internal;
  }
}

// Creates the file with open(2) so that its mode is 0600 whatever the umask:
// SQLite would create it (and, after it, its -wal and -shm files, which copy
// the database's mode) as 0644 under the usual umask.
void create_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      throw Error(ErrorCode::Unavailable,
                  "cannot create directory " + path.parent_path().string() + " for store: " + ec.message());
    }
  }
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    if (err != EEXIST) {
      throw Error(ErrorCode::Unavailable,
                  "cannot create store " + path.string() + ": " + std::generic_category().message(err));
    }
    if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
      throw Error(ErrorCode::FailedPrecondition, "store " + path.string() + " is not a regular file");
    }
    return;  // an existing file: SQLite says below what is wrong with it, if anything
  }
  // A umask such as 0277 would have left 0400, which SQLite cannot write.
  int rc = ::fchmod(fd, 0600);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    throw Error(ErrorCode::Unavailable,
                "cannot set mode 0600 on store " + path.string() + ": " + std::generic_category().message(err));
  }
}

}  // namespace

Error Database::error(int rc, std::string_view op) const {
  return Error(code_for(rc), "store " + path_ + ": " + std::string(op) + " failed: " + sqlite3_errmsg(db_.get()) +
                                 " (" + code_name(rc) + ")");
}

Database::Database(std::filesystem::path path) : path_(std::filesystem::absolute(path).string()) {
  // An absolute path never starts with "file:", so SQLite cannot read it as a URI.
  create_file(path_);

  sqlite3* raw = nullptr;
  // No SQLITE_OPEN_CREATE: create_file made it. NOMUTEX: mutex_ serialises.
  int rc = sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  db_.reset(raw);
  if (rc != SQLITE_OK) {
    std::string detail = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    throw Error(code_for(rc), "cannot open store " + path_ + ": " + detail + " (" + code_name(rc) + ")");
  }
  sqlite3_extended_result_codes(db_.get(), 1);
  sqlite3_busy_timeout(db_.get(), kBusyTimeoutMs);

  // Before anything writes to the file: it must be keyhold's, and a version we know.
  check_ownership();

  // The answer is the mode in effect: some file systems cannot do WAL.
  {
    Stmt stmt = prepare("PRAGMA journal_mode = WAL", "set journal mode");
    Query q(*this, stmt.get(), "set journal mode");
    std::string mode = q.next() ? q.text(0) : "";
    if (mode != "wal") {
      throw Error(ErrorCode::Unavailable,
                  "store " + path_ + ": cannot use WAL journal mode (SQLite kept '" + mode + "')");
    }
  }
  exec("PRAGMA foreign_keys = ON", "enable foreign keys");
  migrate();
}

int Database::try_pragma_int(const char* sql, std::int64_t& value) noexcept {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db_.get(), sql, -1, &raw, nullptr);
  Stmt stmt(raw);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_ROW) {
    value = sqlite3_column_int64(stmt.get(), 0);
    return SQLITE_OK;
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

void Database::check_ownership() {
  std::int64_t version = 0;
  // The first read of the file: where a file that is no database shows.
  if (int rc = try_pragma_int("PRAGMA user_version", version); rc != SQLITE_OK) {
    if ((rc & 0xff) == SQLITE_NOTADB) {
      throw Error(ErrorCode::FailedPrecondition, "store " + path_ + " is not an SQLite database (" + code_name(rc) + ")");
    }
    throw error(rc, "read schema version");
  }
  if (version > kLatestVersion) {
    throw Error(ErrorCode::FailedPrecondition,
                "store " + path_ + " has schema version " + std::to_string(version) +
                    ", newer than the latest this keyhold build knows (" + std::to_string(kLatestVersion) +
                    "); use a newer keyhold");
  }
  std::int64_t app_id = pragma_int("PRAGMA application_id", "read application id");
  if (app_id == kApplicationId) return;
  if (app_id != 0 || version != 0) {
    throw Error(ErrorCode::FailedPrecondition,
                "store " + path_ + " is an SQLite database of another application (application_id " +
                    std::to_string(app_id) + ", user_version " + std::to_string(version) + "), not a keyhold store");
  }
  if (pragma_int("SELECT count(*) FROM sqlite_master", "read schema") != 0) {
    throw Error(ErrorCode::FailedPrecondition,
                "store " + path_ + " already holds tables that are not keyhold's; refusing to add keyhold's to it");
  }
}

void Database::migrate() {
  for (;;) {
    if (pragma_int("PRAGMA user_version", "read schema version") >= kLatestVersion) return;
    exec("BEGIN IMMEDIATE", "begin migration");
    try {
      // Re-read under the write lock: another process may have migrated meanwhile.
      std::int64_t version = pragma_int("PRAGMA user_version", "read schema version");
      if (version > kLatestVersion) {
        check_ownership();  // throws, naming both versions
      }
      if (version < kLatestVersion) {
        std::string op = "apply migration " + std::to_string(version + 1);
        exec(kMigrations[version], op);
        if (version == 0) exec(("PRAGMA application_id = " + std::to_string(kApplicationId)).c_str(), op);
        // PRAGMA takes no bound parameters; the value is our own counter.
        exec(("PRAGMA user_version = " + std::to_string(version + 1)).c_str(), op);
      }
      exec("COMMIT", "commit migration");
    } catch (...) {
      if (sqlite3_get_autocommit(db_.get()) == 0) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }
}

void Database::check_usable(std::string_view op) const {
  if (broken_) {
    throw Error(ErrorCode::Unavailable, "store " + path_ + ": cannot " + std::string(op) +
                                            ": a rollback failed earlier and the connection is unusable; reopen the store");
  }
  // SQLite rolls a transaction back by itself after some errors (SQLITE_FULL,
  // SQLITE_IOERR, ...); going on would run the rest of the caller's unit of
  // work in autocommit mode, one statement at a time.
  if (tx_open_ && sqlite3_get_autocommit(db_.get()) != 0) {
    throw Error(ErrorCode::FailedPrecondition, "store " + path_ + ": cannot " + std::string(op) +
                                                   ": the open transaction was rolled back after an earlier error");
  }
}

void Database::begin() {
  mutex_.lock();  // held until commit() or rollback()
  try {
    if (tx_open_) {
      throw Error(ErrorCode::FailedPrecondition,
                  "store " + path_ + ": this thread already has a transaction open on the store; "
                                     "nested transactions are not supported");
    }
    check_usable("begin transaction");
    exec("BEGIN IMMEDIATE", "begin transaction");
    tx_open_ = true;
  } catch (...) {
    mutex_.unlock();
    throw;
  }
}

void Database::commit() {
  std::unique_lock lock(mutex_, std::adopt_lock);  // begin()'s lock, released on return
  tx_open_ = false;
  if (broken_ || sqlite3_get_autocommit(db_.get()) != 0) {
    throw Error(ErrorCode::FailedPrecondition,
                "store " + path_ + ": cannot commit: the transaction was rolled back after an earlier error");
  }
  int rc = sqlite3_exec(db_.get(), "COMMIT", nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK) return;
  Error failure = error(rc, "commit transaction");
  if (sqlite3_get_autocommit(db_.get()) == 0 &&
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr) != SQLITE_OK) {
    broken_ = true;
    log::error("store " + path_ + ": rollback after a failed commit failed; the connection is unusable");
  }
  throw failure;
}

void Database::rollback() noexcept {
  std::unique_lock lock(mutex_, std::adopt_lock);
  tx_open_ = false;
  if (sqlite3_get_autocommit(db_.get()) != 0) return;  // SQLite already rolled it back
  int rc = sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK || sqlite3_get_autocommit(db_.get()) == 0) {
    broken_ = true;
    log::error("store " + path_ + ": rollback failed (" + code_name(rc) + "); the connection is unusable");
  }
}

namespace {

constexpr const char* kKeyColumns =
    "id, name, token_object_id, key_type, purpose, state, created_at, destroyed_at, used_by";

KeyRecord read_key(const Query& q) {
  KeyRecord r;
  r.id = q.integer(0);
  r.name = q.text(1);
  r.token_object_id = q.blob(2);
  r.key_type = q.text(3);
  r.purpose = q.text(4);
  r.state = q.text(5);
  r.created_at = q.text(6);
  if (!q.is_null(7)) r.destroyed_at = q.text(7);
  if (!q.is_null(8)) r.used_by = q.text(8);
  return r;
}

// The same rules as the CHECK constraints of migration 1, checked first for a
// message that says which field is wrong.
void validate(const KeyRecord& r, const std::string& created_at) {
  require(!r.name.empty(), "key record: name is empty");
  std::string what = "key record for " + in_quotes(r.name);
  require(!r.token_object_id.empty(), what + ": CKA_ID is empty");
  require(!r.key_type.empty(), what + ": key type is empty");
  require(r.purpose == "sign" || r.purpose == "encrypt",
          what + ": purpose " + in_quotes(r.purpose) + " is not sign or encrypt");
  require(r.state == kStateActive || r.state == kStateDestroyed,
          what + ": state " + in_quotes(r.state) + " is not active or destroyed");
  require_timestamp(created_at, "created_at", what);
  require(r.destroyed_at.has_value() == (r.state == kStateDestroyed),
          what + ": destroyed_at must be set exactly when the state is destroyed");
  require(!r.destroyed_at || is_utc_timestamp(*r.destroyed_at),
          what + ": destroyed_at is not " + std::string(kTimestampExample));
  require(!r.used_by || !r.used_by->empty(),
          what + ": used_by is empty (leave it unset when nothing uses the key)");
}

class SqliteKeyRepository final : public KeyRepository {
 public:
  explicit SqliteKeyRepository(Database& db)
      : db_(db),
        insert_(db.prepare("INSERT INTO keys (name, token_object_id, key_type, purpose, state, created_at, destroyed_at, "
                           "used_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           "prepare insert key")),
        find_active_(db.prepare(std::string("SELECT ") + kKeyColumns + " FROM keys WHERE name = ?1 AND state = 'active'",
                                "prepare find active key")),
        find_by_object_id_(db.prepare(std::string("SELECT ") + kKeyColumns + " FROM keys WHERE token_object_id = ?1",
                                      "prepare find key by CKA_ID")),
        list_(db.prepare(std::string("SELECT ") + kKeyColumns +
                             " FROM keys WHERE ?1 OR state = 'active' ORDER BY name, created_at, id",
                         "prepare list keys")),
        mark_destroyed_(db.prepare("UPDATE keys SET state = 'destroyed', destroyed_at = ?2 "
                                   "WHERE name = ?1 AND state = 'active'",
                                   "prepare mark key destroyed")),
        set_used_by_(db.prepare("UPDATE keys SET used_by = ?2 WHERE id = ?1", "prepare set key used_by")) {}

  void insert(KeyRecord& record) override {
    static constexpr std::string_view kOp = "insert key";
    std::string created_at = record.created_at.empty() ? now_utc() : record.created_at;
    validate(record, created_at);

    auto lock = db_.lock_for(kOp);
    Query q(db_, insert_.get(), kOp);
    q.bind(1, record.name);
    q.bind(2, std::span<const std::uint8_t>(record.token_object_id));
    q.bind(3, record.key_type);
    q.bind(4, record.purpose);
    q.bind(5, record.state);
    q.bind(6, created_at);
    q.bind(7, record.destroyed_at);
    q.bind(8, record.used_by);
    int rc = q.step_rc();
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
      // SQLite names the constraint's columns (never values) in its message.
      std::string_view what = sqlite3_errmsg(db_.handle());
      if (what.find("keys.token_object_id") != std::string_view::npos) {
        throw Error(ErrorCode::AlreadyExists,
                    "a key with CKA_ID " + to_hex(record.token_object_id) + " is already in the store");
      }
      if (what.find("keys.name") != std::string_view::npos) {
        throw Error(ErrorCode::AlreadyExists, "an active key named '" + record.name + "' already exists");
      }
    }
    if (rc != SQLITE_DONE) q.fail(rc);
    record.id = sqlite3_last_insert_rowid(db_.handle());
    record.created_at = std::move(created_at);
  }

  std::optional<KeyRecord> find_active(std::string_view name) override {
    return select_one(db_, find_active_, "find active key", read_key, name);
  }

  std::optional<KeyRecord> find_by_object_id(std::span<const std::uint8_t> id) override {
    return select_one(db_, find_by_object_id_, "find key by CKA_ID", read_key, id);
  }

  std::vector<KeyRecord> list(bool include_destroyed) override {
    return select_all(db_, list_, "list keys", read_key, std::int64_t{include_destroyed ? 1 : 0});
  }

  void mark_destroyed(std::string_view name, std::string_view at) override {
    static constexpr std::string_view kOp = "mark key destroyed";
    require_timestamp(at, "time", "destroy key " + in_quotes(name));
    auto lock = db_.lock_for(kOp);
    Query q(db_, mark_destroyed_.get(), kOp);
    q.bind(1, name);
    q.bind(2, at);
    q.run();
    if (sqlite3_changes(db_.handle()) == 0) {
      throw Error(ErrorCode::NotFound, "no active key named '" + std::string(name) + "'");
    }
  }

  void set_used_by(std::int64_t key_id, std::optional<std::string_view> used_by) override {
    static constexpr std::string_view kOp = "set key used_by";
    require(!used_by || !used_by->empty(), "set used_by of key " + std::to_string(key_id) +
                                               ": used_by is empty (pass nullopt when nothing uses the key)");
    auto lock = db_.lock_for(kOp);
    Query q(db_, set_used_by_.get(), kOp);
    q.bind(1, key_id);
    q.bind(2, used_by);
    q.run();
    if (sqlite3_changes(db_.handle()) == 0) {
      throw Error(ErrorCode::NotFound, "no key with id " + std::to_string(key_id));
    }
  }

 private:
  Database& db_;
  Stmt insert_;
  Stmt find_active_;
  Stmt find_by_object_id_;
  Stmt list_;
  Stmt mark_destroyed_;
  Stmt set_used_by_;
};

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const std::filesystem::path& path)
      : db_(path),
        keys_(db_),
        cas_(make_ca_repository(db_)),
        certificates_(make_certificate_repository(db_)),
        ssh_cas_(make_ssh_ca_repository(db_)),
        ssh_certificates_(make_ssh_certificate_repository(db_)),
        ssh_keys_(make_ssh_key_repository(db_)),
        keks_(make_kek_repository(db_)) {}

  KeyRepository& keys() override { return keys_; }
  CaRepository& cas() override { return *cas_; }
  CertificateRepository& certificates() override { return *certificates_; }
  SshCaRepository& ssh_cas() override { return *ssh_cas_; }
  SshCertificateRepository& ssh_certificates() override { return *ssh_certificates_; }
  SshKeyRepository& ssh_keys() override { return *ssh_keys_; }
  KekRepository& keks() override { return *keks_; }

  int schema_version() override {
    static constexpr std::string_view kOp = "read schema version";
    auto lock = db_.lock_for(kOp);
    return static_cast<int>(db_.pragma_int("PRAGMA user_version", kOp));
  }

 protected:
  void begin_transaction() override { db_.begin(); }
  void commit_transaction() override { db_.commit(); }
  void rollback_transaction() noexcept override { db_.rollback(); }

 private:
  Database db_;  // declared first: destroyed after the statements below
  SqliteKeyRepository keys_;
  std::unique_ptr<CaRepository> cas_;
  std::unique_ptr<CertificateRepository> certificates_;
  std::unique_ptr<SshCaRepository> ssh_cas_;
  std::unique_ptr<SshCertificateRepository> ssh_certificates_;
  std::unique_ptr<SshKeyRepository> ssh_keys_;
  std::unique_ptr<KekRepository> keks_;
};

}  // namespace
}  // namespace sqlite_internal

Transaction::Transaction(Store& store) : store_(&store) { store.begin_transaction(); }

Transaction::Transaction(Transaction&& other) noexcept : store_(std::exchange(other.store_, nullptr)) {}

Transaction& Transaction::operator=(Transaction&& other) noexcept {
  if (this != &other) {
    rollback();
    store_ = std::exchange(other.store_, nullptr);
  }
  return *this;
}

Transaction::~Transaction() { rollback(); }

void Transaction::commit() {
  if (store_ == nullptr) {
    throw Error(ErrorCode::FailedPrecondition, "store: commit of a transaction that already ended");
  }
  // Over whatever happens: the store has committed or rolled back.
  std::exchange(store_, nullptr)->commit_transaction();
}

void Transaction::rollback() noexcept {
  if (store_ != nullptr) std::exchange(store_, nullptr)->rollback_transaction();
}

std::unique_ptr<Store> open_sqlite_store(const std::filesystem::path& path) {
  return std::make_unique<sqlite_internal::SqliteStore>(path);
}

}  // namespace keyhold::store
