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
#include "keyhold/envelope/service.hpp"
#include "keyhold/pki/authority.hpp"
#include "keyhold/ssh/authority.hpp"

namespace keyhold::service {

// Who asks: the identity of a verified client certificate, and where from.
struct Caller {
  std::string identity;
  std::string address;
  std::string request_id;
};

struct PkiIssue {
  std::string ca;
  std::string profile;
  std::string csr;  // PEM
  std::optional<int> days;
};

class Operations {
 public:
  Operations(pki::Authority& pki, ssh::Authority& ssh, envelope::Service& envelope, audit::Log& audit,
             authz::Policy policy);

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

  // pki.*
  pki::IssuedCertificate pki_issue(const Caller& caller, const PkiIssue& request);
  store::CertificateRecord pki_revoke(const Caller& caller, const std::string& ca, const std::string& serial_hex,
                                      pki::RevocationReason reason);

  // ssh.*
  ssh::SignedCertificate ssh_sign(const Caller& caller, ssh::SignInput input);
  store::SshCertificateRecord ssh_revoke_serial(const Caller& caller, const std::string& ca, std::uint64_t serial);

 private:
  // Checks request (and also, when given, with the same policy), carries
  // operation out, and writes the one audit record.
  template <class F>
  auto run(const Caller& caller, authz::Request request, F&& operation, std::optional<authz::Request> also = std::nullopt)
      -> decltype(operation());

  pki::Authority& pki_;
  ssh::Authority& ssh_;
  envelope::Service& envelope_;
  audit::Log& audit_;
  std::shared_ptr<const authz::Policy> policy_;  // swapped atomically
};

}  // namespace keyhold::service
