#pragma once
// The service's operations as a remote caller reaches them (keyhold serve):
// each one checks the policy for the caller, carries the operation out
// through the authorities and the envelope service, and writes exactly one
// audit record (allowed, denied or failed) that is durable before the call
// returns or throws.
//
// Nothing happens unaudited: when the audit log is broken, every call throws
// Unavailable before doing anything. (If the log breaks while an operation
// is carried out, the operation has happened but the call still throws
// Unavailable; the record could not be written.)
//
// Thread-safe. The policy can be replaced at any time (SIGHUP).

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "keyhold/audit/log.hpp"
#include "keyhold/authz/policy.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/envelope/service.hpp"
#include "keyhold/pki/authority.hpp"
#include "keyhold/service/key_service.hpp"
#include "keyhold/ssh/authority.hpp"

namespace keyhold::service {

// Who asks: the identity of a verified client certificate, and where from.
// An anonymous caller (the plain-HTTP listener: no identity) may only read
// public material -- CA chains, CRLs, SSH CA keys, KRLs -- without a policy
// check; everything else is denied to it.
struct Caller {
  std::string identity;
  std::string address;
  std::string request_id;
  bool anonymous = false;
};

struct PkiIssue {
  std::string ca;
  std::string profile;
  std::string csr;  // PEM
  std::optional<int> days;
};

class Operations {
 public:
  Operations(KeyService& keys, pki::Authority& pki, ssh::Authority& ssh, envelope::Service& envelope,
             audit::Log& audit, authz::Policy policy);

  void set_policy(authz::Policy policy);

  // kek.*
  envelope::DataKey datakey(const Caller& caller, const std::string& kek, const envelope::Context& context,
                            std::size_t bytes);
  envelope::Ciphertext encrypt(const Caller& caller, const std::string& kek, std::span<const std::uint8_t> plaintext,
                               const envelope::Context& context);
  // The KEK in the request is checked by the policy before anything is
  // decrypted; a ciphertext made under another KEK is refused.
  envelope::Decrypted decrypt(const Caller& caller, const std::string& kek, const envelope::Ciphertext& ciphertext,
                              const envelope::Context& context);
  envelope::Ciphertext rewrap(const Caller& caller, const std::string& kek, const envelope::Ciphertext& ciphertext,
                              const envelope::Context& context, const std::optional<envelope::Context>& new_context);
  envelope::KekInfo rotate_kek(const Caller& caller, const std::string& kek);
  envelope::KekInfo kek_show(const Caller& caller, const std::string& kek);  // kek.read

  // pki.*
  pki::IssuedCertificate pki_issue(const Caller& caller, const PkiIssue& request);
  store::CertificateRecord pki_revoke(const Caller& caller, const std::string& ca, const std::string& serial_hex,
                                      pki::RevocationReason reason);
  // pki.renew: the caller's own client certificate (DER, as verified in the
  // TLS handshake) renews itself: it must have been issued by ca and be
  // recorded there as valid and unexpired (else PermissionDenied), and csr
  // must name exactly its subject and subjectAltNames (else InvalidArgument);
  // issued under the same profile. The policy judges pki.renew with those names.
  pki::IssuedCertificate pki_renew(const Caller& caller, const std::string& ca, const std::string& current_der,
                                   const std::string& csr);
  // pki.read (public: chain and CRL).
  std::vector<std::string> pki_chain(const Caller& caller, const std::string& ca);
  pki::CrlResult pki_crl(const Caller& caller, const std::string& ca);
  std::vector<store::CertificateRecord> pki_certificates(const Caller& caller, const std::string& ca,
                                                         const store::CertificateFilter& filter);

  // ssh.*
  ssh::SignedCertificate ssh_sign(const Caller& caller, ssh::SignInput input);
  store::SshCertificateRecord ssh_revoke_serial(const Caller& caller, const std::string& ca, std::uint64_t serial);
  std::size_t ssh_revoke_key_id(const Caller& caller, const std::string& ca, const std::string& key_id);
  std::size_t ssh_revoke_key(const Caller& caller, const std::string& ca, const std::string& public_key);
  // ssh.read (public: CA key and KRL).
  ssh::CaDetails ssh_ca_key(const Caller& caller, const std::string& ca);
  ssh::KrlResult ssh_krl(const Caller& caller, const std::string& ca);
  // ssh.renew: a certificate of this CA (its line, signed by the CA,
  // recorded as valid and unexpired) signed again for new_public_key (empty:
  // the same key) with the same type, key id, principals, options and
  // extensions, under the same profile's validity. The policy judges
  // ssh.renew with those principals for the caller (the mTLS identity).
  ssh::SignedCertificate ssh_renew(const Caller& caller, const std::string& ca, const std::string& current_line,
                                   const std::string& new_public_key);
  std::vector<store::SshCertificateRecord> ssh_certificates(const Caller& caller, const std::string& ca,
                                                            const store::SshCertificateFilter& filter);

  // keys.*: a listing holds only the keys the caller may keys.read.
  KeyInventory keys_list(const Caller& caller);
  KeyDetails keys_show(const Caller& caller, const std::string& name);
  KeyDetails keys_create(const Caller& caller, const std::string& name, crypto::KeyType type,
                         std::optional<crypto::KeyPurpose> purpose);

  // Writes the one audit record of a request that was refused before it
  // reached an operation (unknown route, malformed body, rate limit): outcome
  // "failed" with the error code given ("invalid_argument",
  // "method_not_allowed", ...), or "denied" for "permission_denied".
  // operation and resource as far as known (may be empty). Throws
  // Unavailable when the audit log is broken.
  void record_refusal(const Caller& caller, const std::string& operation, const std::string& resource,
                      std::string_view code, std::chrono::microseconds latency);
  // The one audit record of a request that needs no policy and touches no
  // key (health, metrics): outcome "allowed" or "failed" by code.
  void record_plain(const Caller& caller, const std::string& operation, std::optional<ErrorCode> code,
                    std::chrono::microseconds latency);

  // The audit log is writable (not broken).
  bool audit_healthy() const { return audit_.healthy(); }

 private:
  // Checks request (and also, when given, with the same policy), carries
  // operation out, and writes the one audit record.
  // Policy: checked against the policy; Public: also for anonymous callers;
  // Filtered: the operation filters its result by the policy itself.
  enum class Access { Policy, Public, Filtered };
  template <class F>
  auto run(const Caller& caller, authz::Request request, F&& operation, std::optional<authz::Request> also = std::nullopt,
           Access access = Access::Policy) -> decltype(operation());
  void write(const Caller& caller, const std::string& operation, const std::string& resource,
             const envelope::Context& context, const char* outcome, std::string_view code,
             std::chrono::microseconds latency);

  KeyService& keys_;
  pki::Authority& pki_;
  ssh::Authority& ssh_;
  envelope::Service& envelope_;
  audit::Log& audit_;
  std::shared_ptr<const authz::Policy> policy_;  // swapped atomically
};

}  // namespace keyhold::service
