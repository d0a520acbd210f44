#pragma once
// The X.509 certificate authority: root and intermediate CAs whose keys live
// in the token, issuance under profiles, revocation, CRLs and CA rotation.
// Every signature is made in the token through keyhold's OpenSSL provider,
// after the exact to-be-signed bytes passed the linter (pki/lint.hpp). Every
// issued certificate is in the store before it is returned.
//
// Not thread-safe for concurrent lifecycle changes of one CA (init, rotate);
// issuance, revocation and the published CRLs may run concurrently: issued
// certificates share durable commits (store::GroupCommit), what is immutable
// per CA version (its parsed certificate, chain and signer) is kept once,
// and a published CRL is signed once and then served from the store.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "keyhold/core/keyed_mutex.hpp"
#include "keyhold/crypto/key_type.hpp"
#include "keyhold/crypto/key_vault.hpp"
#include "keyhold/pki/profile.hpp"
#include "keyhold/store/group_commit.hpp"
#include "keyhold/store/store.hpp"

namespace keyhold::pki {

struct AuthoritySettings {
  std::map<std::string, Profile> profiles;
  std::chrono::seconds crl_next_update{7 * 24 * 3600};
  // The clock (tests move it; issue 7's --now never changes what is signed).
  std::function<std::chrono::system_clock::time_point()> now = [] { return std::chrono::system_clock::now(); };
};

struct CaDetails {
  store::CaRecord ca;
  std::vector<store::CaVersionRecord> versions;  // ascending; the last active one issues
  std::optional<std::string> parent_name;
  std::vector<std::string> warnings;  // from the operation that returned it
};

struct NewCa {
  std::string name;
  crypto::KeyType key_type = crypto::KeyType::EcP256;
  std::string subject;                          // "CN=...,O=..."
  std::optional<int> days;                      // default: 3650 for a root; 1825 for an intermediate, or less to end with its parent
  std::optional<std::string> parent;            // intermediate: the issuing CA
  std::optional<int> path_length;               // basicConstraints pathLenConstraint
  std::vector<std::string> permitted_dns;       // nameConstraints permitted dNSName subtrees
};

struct IssueRequest {
  std::string ca;
  std::string profile;
  std::optional<std::string> csr;               // PEM or DER text
  std::optional<crypto::KeyType> generate_key;  // or: a key made in the token for the subject
  std::optional<std::string> common_name;
  SubjectAltNames sans;                         // added to the CSR's own
  std::optional<int> days;
  std::string requester = "cli";
};

// What a certificate issued for request would name (subject, SANs) and its
// key, as Authority::issue computes them before the profile is applied: for
// a policy check before issuing. Throws what issue throws for a malformed
// CSR or an unusable request.
IssuanceRequest requested_names(const IssueRequest& request);

struct IssuedCertificate {
  store::CertificateRecord record;
  std::string pem;
  std::vector<std::string> chain_pem;           // issuer first, root last
  std::optional<std::string> key_uri;           // when the key was generated in the token
  std::vector<std::string> warnings;
};

struct CrlResult {
  std::vector<std::uint8_t> der;
  std::int64_t number = 0;
  int version = 0;                              // the CA version that signed it
  std::size_t revoked = 0;
  std::string this_update, next_update;         // RFC 3339 UTC
};

// When a published CRL is replaced by a fresh one although nothing was
// revoked: once less than crl_next_update / kCrlRepublishDivisor is left
// before its nextUpdate. With the default 7 days, a CRL is replaced after
// 3.5 days: relying parties that keep one until its nextUpdate always hold a
// CRL with days to spare, and a `keyhold maintain` run missed (or a server
// down) for less than that costs nothing.
inline constexpr int kCrlRepublishDivisor = 2;

// A CA version's CRL as published (see Authority::published_crl).
struct PublishedCrl {
  CrlResult crl;
  std::string due_at;     // RFC 3339 UTC: when it is due for republication (nextUpdate - crl_next_update / 2)
  bool published = false;  // this call signed and published it
  // Why it was published: "none published yet", "certificates revoked since
  // CRL N", "the revoked set differs from CRL N's", "CRL N was due at T",
  // "forced"; empty when it was not.
  std::string reason;
};

// How Authority::published_crl judges the published CRL.
struct PublicationCheck {
  // The time "due" is judged at (keyhold maintain --now); default: the
  // authority's clock. What is signed (thisUpdate, nextUpdate) always takes
  // the clock.
  std::optional<std::chrono::system_clock::time_point> now;
  // Also compare the revoked set in the store with the one the published CRL
  // lists (reads every revoked entry of the version). Every revocation made
  // through the store marks the published CRL stale anyway, so a server need
  // not; keyhold maintain does, for writers that bypassed keyhold.
  bool compare_revoked = false;
};

// A certificate keyhold maintain marked expired (Authority::mark_expired).
struct ExpiredCertificate {
  std::string ca;
  int ca_version = 0;
  store::CertificateRecord record;  // without its DER
};

enum class RevocationReason { Unspecified, KeyCompromise, CaCompromise, AffiliationChanged, Superseded, CessationOfOperation };
std::optional<RevocationReason> parse_revocation_reason(std::string_view text);
std::string_view to_string(RevocationReason reason);

class Authority {
 public:
  Authority(crypto::KeyVault& keys, store::Store& store, AuthoritySettings settings);

  // Replaces the issuance profiles (keyhold serve on SIGHUP); issuances
  // already under way keep the profiles they started with. Thread-safe.
  void set_profiles(std::map<std::string, Profile> profiles);

  CaDetails create_ca(const NewCa& request);
  // Adopts a CA whose key is already in the token (found by CKA_ID or label
  // from the URI): the certificate's key must be that key.
  CaDetails import_ca(const std::string& name, std::string_view certificate, std::string_view key_uri);
  // A new key and certificate for the CA: same subject, new key and SKI,
  // signed by the parent (or itself); issuance moves to the new version.
  CaDetails rotate(const std::string& name);
  CaDetails show(const std::string& name);
  std::vector<CaDetails> list();
  // A version's certificate (default: the current one) and its issuers up to the root, PEM.
  std::vector<std::string> chain(const std::string& name, std::optional<int> version = std::nullopt);

  IssuedCertificate issue(const IssueRequest& request);
  // Records the revocation; the published CRL of the version that issued the
  // certificate is left stale by it (in the same store step), so that the
  // next published_crl() call signs a CRL that lists it.
  store::CertificateRecord revoke(const std::string& ca, const std::string& serial_hex, RevocationReason reason);
  // A complete CRL for one version (default: current) of the CA, signed in
  // the token, with a new CRL number (keyhold ca crl). It is not recorded as
  // the published CRL: that is publish_crl's and published_crl's.
  CrlResult crl(const std::string& ca, std::optional<int> version = std::nullopt);

  // The CRL of one version (default: the current one) of the CA as
  // published: the CRL recorded as published, unless there is none, a
  // certificate of the version was revoked since (revoke() leaves it stale),
  // or it is due (less than crl_next_update / kCrlRepublishDivisor left
  // before its nextUpdate, judged at check.now); then a fresh one is signed
  // in the token (a new CRL number), recorded as published and returned.
  // For keyhold serve (GET /v1/pki/{ca}/crl) and keyhold maintain.
  // Thread-safe. When nothing changed it signs nothing: one store read of
  // the published CRL's summary, and its DER from memory (read from the store
  // when another thread or process published it). Callers that find it out
  // of date at once sign one CRL between them (per version, per process).
  // NotFound for an unknown CA or version; what signing throws otherwise (a
  // CA key gone from the token, an expired CA certificate, ...), with the
  // published CRL left as it was.
  PublishedCrl published_crl(const std::string& ca, std::optional<int> version = std::nullopt,
                             const PublicationCheck& check = {});
  // The CRL recorded as published for the version (default: current) as it
  // is, stale or due or not, without signing anything; nullopt when none was
  // published. For a server that would rather serve a CRL that is due (but
  // before its nextUpdate) than an error while the token cannot sign.
  // Thread-safe.
  std::optional<PublishedCrl> last_published_crl(const std::string& ca, std::optional<int> version = std::nullopt);
  // A fresh CRL for the version (default: current), signed and recorded as
  // published whatever the state of the one before. Thread-safe.
  PublishedCrl publish_crl(const std::string& ca, std::optional<int> version = std::nullopt);
  // The versions of the CA whose CRLs keyhold keeps published, ascending: the
  // current one, and every other that issued a certificate (revoked or not)
  // whose not_after is not before now (a relying party may still check it).
  std::vector<int> crl_versions(const std::string& ca, std::chrono::system_clock::time_point now);
  // Marks expired every certificate of every CA that is expired at now (not
  // revoked, not_after < now) and not marked yet (store::CertificateRepository::
  // mark_expired, marked at now), and returns them, by not_after. Status and
  // filters are unchanged: expiry is still judged from not_after.
  std::vector<ExpiredCertificate> mark_expired(std::chrono::system_clock::time_point now);
  std::vector<store::CertificateRecord> certificates(const std::string& ca, const store::CertificateFilter& filter);
  // One certificate the CA issued, by serial (NotFound otherwise).
  store::CertificateRecord certificate(const std::string& ca, const std::string& serial_hex);
  // Which version of the CA issued a certificate it recorded.
  int issuing_version(const std::string& ca, const store::CertificateRecord& record);

  // Commits that recorded issued certificates so far (benchmarks: how much group commit batches).
  std::uint64_t certificate_commits() const { return certificate_commits_.commits(); }

 private:
  struct VersionState;
  struct CaContext;
  CaContext load(const std::string& name, bool for_signing);
  store::CaVersionRecord find_version(const CaContext& context, std::optional<int> number);
  void refuse_if_revoked(const CaContext& context);
  std::shared_ptr<const VersionState> state_of(const store::CaRecord& ca, const store::CaVersionRecord& version,
                                               int depth = 0);
  std::shared_ptr<const crypto::Signer> signer_of(const store::CaVersionRecord& version);
  // Signs a complete CRL of the version listing revoked, with the next CRL
  // number; call it inside a store::Transaction (the number is given back
  // when it rolls back).
  CrlResult sign_crl(const store::CaRecord& ca, const store::CaVersionRecord& version,
                     const std::vector<store::RevokedEntry>& revoked);
  // published_crl and publish_crl once the version is known.
  PublishedCrl publish_if_needed(const store::CaRecord& ca, const store::CaVersionRecord& version,
                                 std::chrono::system_clock::time_point now, bool compare_revoked, bool force);
  std::shared_ptr<const store::PublishedCrlRecord> cached_crl(std::int64_t version_id, std::int64_t number);
  PublishedCrl published_view(const store::CaVersionRecord& version, const store::PublishedCrlRecord& record);
  bool crl_due(const store::PublishedCrlRecord& record, std::chrono::system_clock::time_point now) const;
  // Records a new CA certificate under the parent version that issued it, so that the parent can revoke it.
  void record_ca_certificate(const CaContext& parent, const std::vector<std::uint8_t>& der, const std::string& ca_name,
                             const std::vector<std::uint8_t>& key_id, const std::string& now);

  crypto::KeyVault& keys_;
  store::Store& store_;
  AuthoritySettings settings_;  // its profiles are only the initial ones: see profiles_
  std::shared_ptr<const std::map<std::string, Profile>> profiles_;  // swapped atomically
  store::GroupCommit certificate_commits_;
  std::mutex cache_mutex_;
  std::map<std::int64_t, std::shared_ptr<const VersionState>> states_;  // by CA version id; immutable
  std::map<std::int64_t, std::shared_ptr<const crypto::Signer>> signers_;
  std::mutex published_mutex_;
  std::map<std::int64_t, std::shared_ptr<const store::PublishedCrlRecord>> published_;  // by CA version id: last seen
  KeyedMutex publishing_;  // by CA version id: one signer at a time
};

}  // namespace keyhold::pki
