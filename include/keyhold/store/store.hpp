#pragma once
// keyhold's metadata store: names, CKA_IDs, purposes, algorithms, states and
// timestamps of the keys keyhold manages, and the X.509 CAs, their versions
// and the certificates they issued (with their revocation state), the SSH
// CAs, the SSH certificates they signed and what their KRLs revoke, the
// versions of the SSH keys held in the token, and the key-encryption keys
// (KEKs) of envelope encryption with their versions and encryption counts;
// and what keyhold publishes: the CRL of each CA version and the KRL of each
// SSH CA as last signed, and which expired certificates were marked so.
// Never key material: private and secret keys stay in the token. Callers see
// only these interfaces; SQLite is the embedded implementation
// (open_sqlite_store), PostgreSQL comes later.
//
// Errors: every failure is a keyhold::Error. Codes used: InvalidArgument (a
// record that breaks a rule of the schema), NotFound, AlreadyExists,
// FailedPrecondition (the database is not a keyhold store, or its schema is
// newer than this build; misuse of a Transaction), Unavailable (the database
// cannot be opened, read or written, e.g. it stays locked), Internal.

#include <cstddef>
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
inline constexpr std::string_view kStateRetired = "retired";  // a CA version that no longer issues

inline constexpr std::string_view kCaKindRoot = "root";
inline constexpr std::string_view kCaKindIntermediate = "intermediate";
inline constexpr std::string_view kCaKindImported = "imported";

inline constexpr std::string_view kCertificateValid = "valid";
inline constexpr std::string_view kCertificateRevoked = "revoked";
inline constexpr std::string_view kCertificateExpired = "expired";  // a filter only: stored status stays "valid"

inline constexpr std::string_view kSshCertificateUser = "user";
inline constexpr std::string_view kSshCertificateHost = "host";
// An SSH certificate's valid_before that never comes (ssh-keygen's "forever").
inline constexpr std::uint64_t kSshValidForever = ~std::uint64_t{0};

// What an SSH KRL can revoke (OpenSSH PROTOCOL.krl sections).
inline constexpr std::string_view kSshRevokeSerial = "serial";  // a certificate serial of the CA
inline constexpr std::string_view kSshRevokeKeyId = "key_id";   // every certificate of the CA with that key id
inline constexpr std::string_view kSshRevokeKey = "key";        // an explicit public key (and its certificates)

// The states of a KEK version (KekVersionRecord::state).
inline constexpr std::string_view kKekVersionEnabled = "enabled";      // encrypts when newest enabled, else decrypts
inline constexpr std::string_view kKekVersionDisabled = "disabled";    // neither, until enabled again
inline constexpr std::string_view kKekVersionDestroyed = "destroyed";  // its token key is gone; final

// The CRL reason codes keyhold records (RFC 5280 section 5.3.1 names).
inline constexpr std::string_view kRevocationReasons[] = {
    "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation",
};

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
  std::optional<std::string> used_by;         // what uses the key, e.g. "ca:issuing:v2", "certificate:<serial>"; never empty

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

  // Records what uses the key of row id key_id (active or destroyed), or
  // clears it with nullopt. NotFound for an unknown id; InvalidArgument for an
  // empty string.
  virtual void set_used_by(std::int64_t key_id, std::optional<std::string_view> used_by) = 0;
};

// An X.509 CA: its name and place in the hierarchy. Its keys and certificates
// are its versions (CaVersionRecord); "ca rotate" adds a version.
struct CaRecord {
  std::int64_t id = 0;                          // row id, set by insert()
  std::string name;                             // unique; the naming rules are the callers' (as for keys)
  std::string kind;                             // "root" | "intermediate" | "imported"
  std::optional<std::int64_t> parent_id;        // the issuing CA: none for a root, required for an intermediate
  std::optional<std::string> name_constraints;  // JSON text, opaque to the store (must be valid JSON)
  std::string created_at;                       // insert() fills it when empty

  bool operator==(const CaRecord&) const = default;
};

// One key + certificate of a CA. Versions are numbered 1, 2, ... per CA.
struct CaVersionRecord {
  std::int64_t id = 0;                      // row id, set by insert_version()
  std::int64_t ca_id = 0;
  int version = 0;                          // >= 1, unique per CA
  std::vector<std::uint8_t> key_object_id;  // CKA_ID of the CA key in the token
  std::string key_type;                     // "ec-p256" | ... (opaque text to the store)
  std::vector<std::uint8_t> certificate_der;
  std::string subject;                      // one-line RFC 4514 form, for display; not empty
  std::vector<std::uint8_t> subject_key_id;  // may be empty (an imported CA certificate without one)
  std::string not_before, not_after;        // RFC 3339 UTC like created_at; not_before <= not_after
  std::string state = "active";             // "active" | "retired"
  std::int64_t crl_number = 0;              // the last CRL number this version issued (0: none yet)
  std::string created_at;                   // insert_version() fills it when empty

  bool operator==(const CaVersionRecord&) const = default;
};

// A certificate a CA version issued.
struct CertificateRecord {
  std::int64_t id = 0;                   // row id, set by insert()
  std::string serial;                    // lowercase hex of the positive serial, no leading zeros ("5f3a..."), at most 40 digits
  std::int64_t ca_version_id = 0;
  std::string subject;                   // one-line RFC 4514 form; may be empty (SAN-only certificate)
  std::vector<std::string> sans;         // e.g. "dns:a.example", "ip:10.0.0.1" (opaque strings; stored as a JSON array)
  std::string profile;                   // not empty
  std::string not_before, not_after;     // RFC 3339 UTC; not_before <= not_after
  std::string status = "valid";          // "valid" | "revoked" (expiry is judged from not_after, never stored)
  std::optional<std::string> revoked_at;         // set exactly when revoked
  std::optional<std::string> revocation_reason;  // set exactly when revoked; one of kRevocationReasons
  std::string requester;                 // who asked for it; not empty
  std::optional<std::vector<std::uint8_t>> key_object_id;  // CKA_ID when keyhold generated the subject key in the token
  std::vector<std::uint8_t> certificate_der;               // empty in the results of CertificateRepository::list()
  std::string created_at;                // insert() fills it when empty

  bool operator==(const CertificateRecord&) const = default;
};

// One entry of a CRL.
struct RevokedEntry {
  std::string serial;      // as in CertificateRecord
  std::string revoked_at;  // RFC 3339 UTC
  std::string reason;      // one of kRevocationReasons

  bool operator==(const RevokedEntry&) const = default;
};

// Which certificates CertificateRepository::list() returns; every field set
// narrows the result (AND). Timestamps are RFC 3339 UTC like the records'.
struct CertificateFilter {
  std::optional<std::int64_t> ca_id;          // issued by any version of this CA
  std::optional<std::int64_t> ca_version_id;  // issued by this CA version
  // "valid": not revoked and not expired (not_after >= now); "revoked":
  // revoked, expired or not; "expired": not revoked and not_after < now.
  std::optional<std::string> status;
  std::optional<std::string> not_after_before;  // not_after < this ("expiring within": now + period)
  std::optional<std::string> now;               // what "valid"/"expired" are judged against; default: the clock
};

// The CRL a CA version published last: what `keyhold serve` answers and
// `keyhold maintain` writes out, so that serving a CRL signs nothing. One per
// CA version; a newer one (higher number) replaces it, an older one never does.
struct PublishedCrlRecord {
  std::int64_t ca_version_id = 0;
  std::int64_t crl_number = 0;               // >= 1
  std::string this_update, next_update;      // RFC 3339 UTC; this_update < next_update
  std::int64_t revoked_count = 0;            // how many entries it lists; >= 0
  std::vector<std::uint8_t> revoked_digest;  // SHA-256 of the revoked set it lists (the caller's encoding): 32 bytes
  // A certificate of the version was revoked after this CRL was recorded
  // (set by CertificateRepository::revoke and insert, in the same step):
  // the CRL no longer lists everything, and the next request republishes.
  bool stale = false;
  std::vector<std::uint8_t> crl_der;         // not empty; empty in published_crl_summary()
  std::string published_at;                  // publish_crl() fills it when empty

  bool operator==(const PublishedCrlRecord&) const = default;
};

// The cas and ca_versions tables.
// Thread-safety and transactions: as KeyRepository.
class CaRepository {
 public:
  virtual ~CaRepository() = default;

  // Adds the record and sets record.id (and created_at when it was empty);
  // record is unchanged when it throws. AlreadyExists for a taken name;
  // NotFound when parent_id names no CA; InvalidArgument when a field is
  // empty or malformed (kind, a root with a parent, an intermediate without
  // one, name_constraints that is not JSON, bad timestamp).
  virtual void insert(CaRecord& record) = 0;
  virtual std::optional<CaRecord> find(std::string_view name) = 0;
  virtual std::optional<CaRecord> find_by_id(std::int64_t id) = 0;
  // Every CA, ordered by name.
  virtual std::vector<CaRecord> list() = 0;

  // Adds the version and sets record.id (and created_at when it was empty);
  // record is unchanged when it throws. AlreadyExists for a taken
  // (ca_id, version); NotFound when ca_id names no CA; InvalidArgument when a
  // field is empty or malformed.
  virtual void insert_version(CaVersionRecord& record) = 0;
  // The CA's versions, by version ascending (empty for an unknown CA).
  virtual std::vector<CaVersionRecord> versions(std::int64_t ca_id) = 0;
  // The CA's highest active version: the one that issues. nullopt when none is active.
  virtual std::optional<CaVersionRecord> current_version(std::int64_t ca_id) = 0;
  virtual std::optional<CaVersionRecord> find_version(std::int64_t version_id) = 0;
  // "active" | "retired". NotFound for an unknown version; InvalidArgument for another state.
  virtual void set_version_state(std::int64_t version_id, std::string_view state) = 0;
  // The next CRL number for a CRL signed by this version: one more than the
  // last number of any version of the same CA (numbers count per CA, RFC
  // 5280 5.2.3), recorded on the CA and as the version's last number. The
  // first call for a new CA returns 1. Atomic on its own; run it inside a
  // Transaction with the CRL's other work, so that a failure gives the number
  // back. Concurrent callers (threads, or processes sharing the database)
  // never get the same number. Works on retired versions too (they keep
  // signing CRLs). NotFound for an unknown version.
  virtual std::int64_t next_crl_number(std::int64_t version_id) = 0;

  // The CRL the version published last, with its DER; nullopt when none.
  virtual std::optional<PublishedCrlRecord> published_crl(std::int64_t version_id) = 0;
  // The same without the DER (crl_der left empty): a cheap check of whether
  // the published CRL is still current, for every request of a server.
  virtual std::optional<PublishedCrlRecord> published_crl_summary(std::int64_t version_id) = 0;
  // Records record as its version's published CRL (stale cleared, record.stale
  // must be false) and fills published_at when empty. Replaces the one before
  // only when record's number is higher: otherwise nothing changes and it
  // returns false (a slower publisher never puts an older CRL back). Run it in
  // the Transaction that took the number (next_crl_number) and read the
  // revoked set, so that no revocation falls between them. NotFound for an
  // unknown version; InvalidArgument for a record that breaks the rules above.
  virtual bool publish_crl(PublishedCrlRecord& record) = 0;
};

// The certificates table.
// Thread-safety and transactions: as KeyRepository.
class CertificateRepository {
 public:
  virtual ~CertificateRepository() = default;

  // Adds the record and sets record.id (and created_at when it was empty);
  // record is unchanged when it throws. AlreadyExists when the serial is
  // taken (the caller retries with a new serial); NotFound when
  // ca_version_id names no CA version; InvalidArgument when a field is empty
  // or malformed (serial not in the form above, status, reason, revoked_at
  // and revocation_reason not set exactly when revoked, bad timestamp). A
  // record inserted as revoked marks its version's published CRL stale.
  virtual void insert(CertificateRecord& record) = 0;
  // The certificate with that serial (in the form above), with its DER.
  // nullopt when unknown; InvalidArgument for a serial not in that form.
  virtual std::optional<CertificateRecord> find(std::string_view serial) = 0;
  // The certificates the filter selects, ordered by not_after, then serial
  // (numerically). Without certificate_der (left empty, for speed: use find()).
  // InvalidArgument for an unknown status or a malformed timestamp.
  virtual std::vector<CertificateRecord> list(const CertificateFilter& filter) = 0;
  // Marks the certificate revoked at `at` for `reason` (one of
  // kRevocationReasons). NotFound for an unknown serial; FailedPrecondition
  // "certificate <serial> was already revoked at <time> (<reason>)" when it is
  // revoked already (the first revocation stands); InvalidArgument for a
  // malformed serial, time or reason.
  // The version's published CRL (if any) is marked stale in the same step.
  virtual void revoke(std::string_view serial, std::string_view at, std::string_view reason) = 0;
  // The revoked certificates of a CA version, for its CRL, ordered by serial
  // (numerically), expired ones included.
  virtual std::vector<RevokedEntry> revoked(std::int64_t ca_version_id) = 0;
  // How many certificates the CA version issued (valid, revoked or expired).
  virtual std::int64_t count(std::int64_t ca_version_id) = 0;
  // The latest not_after of the certificates the CA version issued (revoked
  // ones included); nullopt when it issued none. A version whose certificates
  // have all expired need not publish CRLs any more.
  virtual std::optional<std::string> last_not_after(std::int64_t ca_version_id) = 0;

  // Marks expired, at `at`, every certificate that the "expired" filter
  // selects at `now` (not revoked, not_after < now) and that is not marked
  // yet, and returns those it marked, ordered as list() orders them and
  // without their DER. The status stays "valid": expiry is judged from
  // not_after everywhere, so the filters mean what they meant; the mark
  // records that `keyhold maintain` saw the certificate expire, so that it
  // reports each expiry once. One atomic step. InvalidArgument for a
  // malformed time.
  virtual std::vector<CertificateRecord> mark_expired(std::string_view now, std::string_view at) = 0;
  // When the certificate was marked expired; nullopt when it is not marked
  // (or unknown). InvalidArgument for a malformed serial.
  virtual std::optional<std::string> expired_marked_at(std::string_view serial) = 0;
};

// ---- SSH ----
//
// Serials and validity times of SSH certificates are unsigned 64-bit values
// (draft-miller-ssh-cert): the SQLite store keeps their bit pattern in a
// signed INTEGER column and gives back exactly the value stored, and orders
// and compares them as unsigned numbers (2^63 comes after 2^63 - 1).

// An SSH CA: one key in the token, which signs user and host certificates and
// the CA's KRLs.
struct SshCaRecord {
  std::int64_t id = 0;                        // row id, set by insert()
  std::string name;                           // unique, not empty; the naming rules are the callers' (as for keys)
  std::vector<std::uint8_t> key_object_id;    // CKA_ID of the CA key in the token; not empty, unique among SSH CAs
  std::string key_type;                       // "ed25519" | "ec-p256" | ... (opaque text to the store); not empty
  std::vector<std::uint8_t> public_key_blob;  // the CA's OpenSSH public key wire blob (RFC 4253 6.6); not empty
  std::int64_t krl_version = 0;               // the last KRL version issued (0: none yet); >= 0
  std::string created_at;                     // RFC 3339 UTC like the others; insert() fills it when empty

  bool operator==(const SshCaRecord&) const = default;
};

// An SSH certificate an SSH CA signed.
struct SshCertificateRecord {
  std::int64_t id = 0;                        // row id, set by insert()
  std::int64_t ca_id = 0;
  std::uint64_t serial = 0;                   // any value, 0 included; unique per CA
  std::string type;                           // "user" | "host"
  std::string key_id;                         // not empty
  std::vector<std::string> principals;        // may be empty (stored as a JSON array of strings)
  std::uint64_t valid_after = 0;              // seconds since the epoch; valid_after < valid_before
  std::uint64_t valid_before = 0;             // kSshValidForever: forever
  std::string public_key_fingerprint;         // of the subject key: "SHA256:" + unpadded base64 (43 characters)
  std::vector<std::uint8_t> public_key_blob;  // the subject key's wire blob; not empty
  std::string profile;                        // not empty
  std::string status = "valid";               // "valid" | "revoked" (expiry is judged from valid_before, never stored)
  std::optional<std::string> revoked_at;      // set exactly when revoked
  std::string requester;                      // who asked for it; not empty
  std::vector<std::uint8_t> certificate_blob;  // the certificate's wire blob; empty in the results of list()
  std::string created_at;                     // insert() fills it when empty

  bool operator==(const SshCertificateRecord&) const = default;
};

// One entry of an SSH CA's KRL: exactly one of serial, key_id and
// public_key_blob is set, the one its kind names.
struct SshRevocation {
  std::string kind;  // kSshRevokeSerial | kSshRevokeKeyId | kSshRevokeKey
  std::optional<std::uint64_t> serial;
  std::optional<std::string> key_id;
  std::optional<std::vector<std::uint8_t>> public_key_blob;
  std::string revoked_at;  // RFC 3339 UTC

  bool operator==(const SshRevocation&) const = default;
};

// Which certificates SshCertificateRepository::list() returns; every field
// set narrows the result (AND).
struct SshCertificateFilter {
  std::optional<std::int64_t> ca_id;
  // "valid": not revoked and not expired; "revoked": revoked, expired or
  // not; "expired": not revoked and expired. Expired as OpenSSH judges it
  // (sshkey_cert_check_authority): valid_before <= now, so a certificate is
  // expired from its valid_before second on. Not-yet-valid certificates
  // count as valid.
  std::optional<std::string> status;
  std::optional<std::uint64_t> now;  // seconds since the epoch that status is judged at; default: the clock
  std::optional<std::string> key_id;  // exactly this key id
};

// One version of an SSH key held in the token. "ssh rotate-key" adds a
// version; "ssh retire-key" retires one (its token key is destroyed), and its
// row stays for the history.
struct SshKeyVersionRecord {
  std::int64_t id = 0;                        // row id, set by insert_version()
  std::string name;                           // not empty; the naming rules are the callers' (as for keys)
  int version = 0;                            // >= 1, unique per name
  std::vector<std::uint8_t> key_object_id;    // CKA_ID of the private and public key objects; not empty, never reused
  std::string key_type;                       // "ecdsa-p256" | ... (opaque text to the store); not empty
  std::vector<std::uint8_t> public_key_blob;  // the OpenSSH public key wire blob; not empty
  std::string state = "active";               // "active" | "retired"
  std::string created_at;                     // insert_version() fills it when empty
  std::optional<std::string> retired_at;      // set exactly when retired

  bool operator==(const SshKeyVersionRecord&) const = default;
};

// The KRL an SSH CA published last: what `keyhold serve` answers and
// `keyhold maintain` writes out. One per SSH CA; a newer one (higher version)
// replaces it, an older one never does.
struct PublishedKrlRecord {
  std::int64_t ssh_ca_id = 0;
  std::int64_t krl_version = 0;                  // >= 1
  std::string generated_at;                      // RFC 3339 UTC: the KRL's generated_date
  std::int64_t revocation_count = 0;             // entries it lists (serials, key ids and keys); >= 0
  std::vector<std::uint8_t> revocations_digest;  // SHA-256 of the entries it lists (the caller's encoding): 32 bytes
  // A revocation of the CA was recorded after this KRL (set by
  // SshCertificateRepository's revoke calls and insert, in the same step).
  bool stale = false;
  std::vector<std::uint8_t> krl;                 // not empty; empty in published_krl_summary()
  std::string published_at;                      // publish_krl() fills it when empty

  bool operator==(const PublishedKrlRecord&) const = default;
};

// The ssh_cas table.
// Thread-safety and transactions: as KeyRepository.
class SshCaRepository {
 public:
  virtual ~SshCaRepository() = default;

  // Adds the record and sets record.id (and created_at when it was empty);
  // record is unchanged when it throws. AlreadyExists for a taken name or a
  // CKA_ID another SSH CA has (two CAs on one key would share trust but not
  // KRLs); InvalidArgument when a field is empty or malformed.
  virtual void insert(SshCaRecord& record) = 0;
  virtual std::optional<SshCaRecord> find(std::string_view name) = 0;
  virtual std::optional<SshCaRecord> find_by_id(std::int64_t id) = 0;
  // Every SSH CA, ordered by name.
  virtual std::vector<SshCaRecord> list() = 0;
  // The next KRL version of the CA: one more than the last, recorded on the
  // CA (the first call for a new CA returns 1). Atomic on its own; run it
  // inside a Transaction with the KRL's other work (reading revocations()),
  // so that a failure gives the number back and the KRL matches its version.
  // Concurrent callers (threads, or processes sharing the database) never get
  // the same number. NotFound for an unknown CA.
  virtual std::int64_t next_krl_version(std::int64_t ca_id) = 0;

  // The KRL the CA published last, with its bytes; nullopt when none.
  virtual std::optional<PublishedKrlRecord> published_krl(std::int64_t ca_id) = 0;
  // The same without the bytes (krl left empty), for a cheap check.
  virtual std::optional<PublishedKrlRecord> published_krl_summary(std::int64_t ca_id) = 0;
  // Records record as its CA's published KRL, as CaRepository::publish_crl
  // does for CRLs: stale cleared (record.stale must be false), replaced only
  // by a higher version (else false and nothing changes). Run it in the
  // Transaction that took the version and read revocations(). NotFound for an
  // unknown CA; InvalidArgument for a malformed record.
  virtual bool publish_krl(PublishedKrlRecord& record) = 0;
};

// The ssh_certificates table and the KRL entries (ssh_revocations).
// Thread-safety and transactions: as KeyRepository. Each revoke_* call is
// atomic on its own (its KRL entry and the certificates it marks together,
// and the CA's published KRL marked stale).
class SshCertificateRepository {
 public:
  virtual ~SshCertificateRepository() = default;

  // Adds the record and sets record.id (and created_at when it was empty);
  // record is unchanged when it throws. A record inserted as revoked also
  // gets its serial in the KRL. AlreadyExists when (ca_id, serial) is taken
  // (the caller draws a new serial); NotFound when ca_id names no SSH CA;
  // InvalidArgument when a field is empty or malformed (type, status,
  // revoked_at not set exactly when revoked, valid_after not before
  // valid_before, fingerprint not "SHA256:" + 43 base64 characters, bad
  // timestamp).
  virtual void insert(SshCertificateRecord& record) = 0;
  // The CA's certificate with that serial, with its blob; nullopt when unknown.
  virtual std::optional<SshCertificateRecord> find(std::int64_t ca_id, std::uint64_t serial) = 0;
  // The certificates the filter selects, ordered by valid_before, then
  // serial (both as unsigned numbers), then id. Without certificate_blob
  // (left empty, for speed: use find()). InvalidArgument for an unknown status.
  virtual std::vector<SshCertificateRecord> list(const SshCertificateFilter& filter) = 0;

  // Revokes the CA's certificate with that serial at `at` (RFC 3339 UTC):
  // marks it revoked and puts its serial in the KRL. NotFound for a serial
  // the CA never signed; FailedPrecondition "SSH certificate <serial> of CA
  // '<name>' was already revoked at <time>" when it is revoked already, by
  // serial, key id or key (the first revocation stands); InvalidArgument for
  // a malformed time.
  virtual void revoke_serial(std::int64_t ca_id, std::uint64_t serial, std::string_view at) = 0;
  // Puts the key id in the CA's KRL, which revokes every certificate of the
  // CA with that key id, signed before or after, and marks the CA's valid
  // certificates with that key id revoked at `at`. Returns how many it
  // marked (0 when none has it yet). FailedPrecondition "key id '<id>' was
  // already revoked by SSH CA '<name>' at <time>" when the KRL has it
  // already (the first revocation stands); NotFound for an unknown CA;
  // InvalidArgument for an empty key id or a malformed time.
  virtual std::size_t revoke_key_id(std::int64_t ca_id, std::string_view key_id, std::string_view at) = 0;
  // The same for an explicit public key (its wire blob): the KRL revokes the
  // key, and the CA's valid certificates whose public_key_blob is that blob
  // are marked revoked. FailedPrecondition "this public key was already
  // revoked by SSH CA '<name>' at <time>"; InvalidArgument for an empty blob.
  virtual std::size_t revoke_key(std::int64_t ca_id, std::span<const std::uint8_t> public_key_blob,
                                 std::string_view at) = 0;
  // Everything the CA's KRL lists: serials (ascending, as unsigned numbers),
  // then key ids (byte order), then keys (byte order of their blobs): the
  // orders OpenSSH's krl.c keeps. Empty for an unknown CA.
  virtual std::vector<SshRevocation> revocations(std::int64_t ca_id) = 0;
  // When the CA's KRL revoked this key id, or this public key (its wire
  // blob); nullopt when it does not. For refusing to certify them again.
  virtual std::optional<std::string> key_id_revoked_at(std::int64_t ca_id, std::string_view key_id) = 0;
  virtual std::optional<std::string> key_revoked_at(std::int64_t ca_id, std::span<const std::uint8_t> public_key_blob) = 0;
};

// The ssh_keys table: every version of every SSH key held in the token.
// Thread-safety and transactions: as KeyRepository.
class SshKeyRepository {
 public:
  virtual ~SshKeyRepository() = default;

  // Adds the version and sets record.id (and created_at when it was empty);
  // record is unchanged when it throws. AlreadyExists for a taken
  // (name, version) or a CKA_ID another version has (retiring one would
  // destroy the other's key); InvalidArgument when a field is empty or
  // malformed (version < 1, state, retired_at not set exactly when retired,
  // bad timestamp).
  virtual void insert_version(SshKeyVersionRecord& record) = 0;
  // The key's versions, by version ascending (empty for an unknown name).
  virtual std::vector<SshKeyVersionRecord> versions(std::string_view name) = 0;
  // Every version of every key, ordered by name, then version.
  virtual std::vector<SshKeyVersionRecord> list() = 0;
  // Marks the version of row id retired at `at` (RFC 3339 UTC). NotFound for
  // an unknown id; FailedPrecondition "SSH key '<name>' version <v> was
  // already retired at <time>" when it is retired already; InvalidArgument
  // for a malformed time.
  virtual void set_retired(std::int64_t id, std::string_view at) = 0;
};

// ---- envelope encryption: KEKs ----
//
// A KEK is an AES-256 key held in the token under versions 1..n; the newest
// enabled version is primary (encrypts), older enabled ones only decrypt.
// Ciphertexts name the KEK by its kek_id and the version by its number. The
// store keeps only metadata and each version's encryption count.
//
// Counts and limits are unsigned in the API but at most 2^63 - 1
// (kKekMaxCount): the SQLite store keeps them as plain non-negative INTEGERs,
// so that SQL compares them as numbers, and refuses larger values.
inline constexpr std::uint64_t kKekMaxCount = (std::uint64_t{1} << 63) - 1;

// A KEK: its name, the id ciphertexts carry, and its rotation policy.
struct KekRecord {
  std::int64_t id = 0;                       // row id, set by insert()
  std::string name;                          // unique, not empty; the naming rules are the callers' (as for keys)
  std::vector<std::uint8_t> kek_id;          // 16 random bytes, unique: what ciphertexts name
  std::int64_t rotation_period_seconds = 0;  // >= 0; 0: no rotation by age
  std::uint64_t max_encryptions = 0;         // rotate a version once it has done this many: 1..kKekMaxCount
  std::string created_at;                    // RFC 3339 UTC like the others; insert() fills it when empty

  bool operator==(const KekRecord&) const = default;
};

// One version of a KEK: one AES-256 key in the token.
struct KekVersionRecord {
  std::int64_t id = 0;                          // row id, set by insert_version()
  std::int64_t kek_id = 0;                      // KekRecord::id
  std::uint32_t version = 0;                    // 1, 2, ...
  std::vector<std::uint8_t> key_object_id;      // CKA_ID of the AES key in the token; not empty, unique across versions
  std::string state = "enabled";                // kKekVersionEnabled | kKekVersionDisabled | kKekVersionDestroyed
  std::uint64_t encryptions = 0;                // reserved count (never lower than the encryptions done), <= 2^63-1
  std::string created_at;                       // insert_version() fills it when empty
  std::optional<std::string> state_changed_at;  // when last disabled/enabled/destroyed; unset until the first change

  bool operator==(const KekVersionRecord&) const = default;
};

// The keks and kek_versions tables.
// Thread-safety and transactions: as KeyRepository.
class KekRepository {
 public:
  virtual ~KekRepository() = default;

  // Adds the KEK and sets record.id (and created_at when it was empty);
  // record is unchanged when it throws. AlreadyExists for a taken name or
  // kek_id; InvalidArgument for malformed fields (empty name, kek_id not 16
  // bytes, negative rotation period, max_encryptions 0 or above
  // kKekMaxCount, bad timestamp).
  virtual void insert(KekRecord& record) = 0;
  virtual std::optional<KekRecord> find(std::string_view name) = 0;
  // The KEK a ciphertext names; nullopt when unknown (any length may be asked).
  virtual std::optional<KekRecord> find_by_kek_id(std::span<const std::uint8_t> kek_id) = 0;
  // Every KEK, ordered by name.
  virtual std::vector<KekRecord> list() = 0;
  // Sets the KEK's rotation policy. NotFound for an unknown id;
  // InvalidArgument for values insert() refuses.
  virtual void update_policy(std::int64_t id, std::int64_t rotation_period_seconds, std::uint64_t max_encryptions) = 0;

  // Adds the version and sets record.id (and created_at when it was empty);
  // record is unchanged when it throws. The version must be exactly one more
  // than the KEK's last (1 for a new KEK) and enabled, with
  // state_changed_at unset. AlreadyExists for a taken (kek_id, version) or a
  // key_object_id any version of any KEK has; NotFound when kek_id names no
  // KEK; InvalidArgument otherwise for malformed fields (version not last+1,
  // state, empty CKA_ID, encryptions above kKekMaxCount, bad timestamp).
  virtual void insert_version(KekVersionRecord& record) = 0;
  // The KEK's versions, by version ascending (empty for an unknown KEK).
  virtual std::vector<KekVersionRecord> versions(std::int64_t kek_id) = 0;
  virtual std::optional<KekVersionRecord> find_version(std::int64_t kek_id, std::uint32_t version) = 0;
  // Moves the version of row id version_id to state at `at` (RFC 3339 UTC,
  // recorded as state_changed_at): enabled <-> disabled, and enabled or
  // disabled -> destroyed, which is final. FailedPrecondition "KEK '<name>'
  // version <v> was destroyed at <t>" for any change of a destroyed version,
  // and "KEK '<name>' version <v> is already <state>" for the state it has;
  // NotFound for an unknown id; InvalidArgument for another state or a
  // malformed time.
  virtual void set_state(std::int64_t version_id, std::string_view state, std::string_view at) = 0;
  // Adds n (1..kKekMaxCount) to the version's encryption count and returns
  // the count before the addition: the caller may do encryptions number
  // before .. before+n-1. One atomic write: committed on its own, or part of
  // the caller's Transaction when its thread has one open (a rollback gives
  // the count back). Concurrent callers (threads, or processes sharing the
  // database) get disjoint ranges. Callers reserve before they encrypt, so
  // after a crash the stored count is >= the real count. The store does not
  // compare the count with max_encryptions: that is the caller's policy.
  // FailedPrecondition when the version is not enabled ("... was destroyed
  // at <t>" for a destroyed one) or when the count would pass kKekMaxCount;
  // NotFound for an unknown id; InvalidArgument for n 0 or above kKekMaxCount.
  virtual std::uint64_t reserve_encryptions(std::int64_t version_id, std::uint64_t n) = 0;
};

// An open store. Thread-safe: the SQLite store serialises every call on its
// one connection (a mutex), so calls from many threads are fine but do not run
// in parallel. Several processes may share one SQLite file. Must outlive the
// repositories and Transactions taken from it.
class Store {
 public:
  virtual ~Store() = default;

  virtual KeyRepository& keys() = 0;
  virtual CaRepository& cas() = 0;
  virtual CertificateRepository& certificates() = 0;
  virtual SshCaRepository& ssh_cas() = 0;
  virtual SshCertificateRepository& ssh_certificates() = 0;
  virtual SshKeyRepository& ssh_keys() = 0;
  virtual KekRepository& keks() = 0;

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

// The schema version open_sqlite_store brings a database to (the number of
// migrations this build knows).
inline constexpr int kSqliteSchemaVersion = 6;

// Opens (creating it when missing) the SQLite store at path: the parent
// directory is created when missing and the file with mode 0600 whatever the
// umask; WAL journal mode, busy timeout 5000 ms, foreign keys on; pending
// migrations are applied. FailedPrecondition when the file is not an SQLite
// database, belongs to another application, or has a schema newer than this
// build knows; Unavailable when it cannot be opened.
std::unique_ptr<Store> open_sqlite_store(const std::filesystem::path& path);

}  // namespace keyhold::store
