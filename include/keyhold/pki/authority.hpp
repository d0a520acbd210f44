#pragma once
// The X.509 certificate authority: root and intermediate CAs whose keys live
// in the token, issuance under profiles, revocation, CRLs and CA rotation.
// Every signature is made in the token through keyhold's OpenSSL provider,
// after the exact to-be-signed bytes passed the linter (pki/lint.hpp). Every
// issued certificate is in the store before it is returned.
//
// Not thread-safe for concurrent lifecycle changes of one CA (init, rotate);
// issuance and revocation may run concurrently: issued certificates share
// durable commits (store::GroupCommit), and what is immutable per CA version
// (its parsed certificate, chain and signer) is kept once.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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
  store::CertificateRecord revoke(const std::string& ca, const std::string& serial_hex, RevocationReason reason);
  // A complete CRL for one version (default: current) of the CA, signed in the token.
  CrlResult crl(const std::string& ca, std::optional<int> version = std::nullopt);
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
};

}  // namespace keyhold::pki
