#include "keyhold/service/operations.hpp"

#include <optional>

#include "keyhold/core/error.hpp"

namespace keyhold::service {
namespace {

using SteadyClock = std::chrono::steady_clock;

authz::Request ask(std::string operation, std::string resource, const envelope::Context& context = {}) {
  authz::Request request;
  request.operation = std::move(operation);
  request.resource = std::move(resource);
  request.context = context;
  return request;
}

}  // namespace

Operations::Operations(pki::Authority& pki, ssh::Authority& ssh, envelope::Service& envelope, audit::Log& audit,
                       authz::Policy policy)
    : pki_(pki), ssh_(ssh), envelope_(envelope), audit_(audit),
      policy_(std::make_shared<const authz::Policy>(std::move(policy))) {}

void Operations::set_policy(authz::Policy policy) {
  std::atomic_store(&policy_, std::make_shared<const authz::Policy>(std::move(policy)));
}

template <class F>
auto Operations::run(const Caller& caller, authz::Request request, F&& operation, std::optional<authz::Request> also)
    -> decltype(operation()) {
  SteadyClock::time_point started = SteadyClock::now();
  if (!audit_.healthy()) {
    throw Error(ErrorCode::Unavailable, "the audit log cannot be written, so nothing is carried out");
  }
  request.identity = caller.identity;
  audit::Event event;
  event.request_id = caller.request_id;
  event.identity = caller.identity;
  event.client_address = caller.address;
  event.operation = request.operation;
  event.resource = request.resource;
  event.context = request.context;  // the encryption context only, never data
  auto record = [&](const char* outcome, std::string_view code) {
    event.outcome = outcome;
    event.error_code = std::string(code);
    event.latency = std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - started);
    audit_.append(event);  // durable before the caller hears anything
  };

  std::shared_ptr<const authz::Policy> policy = std::atomic_load(&policy_);
  authz::Decision decision = policy->check(request);
  if (decision.allowed && also) {
    also->identity = caller.identity;
    decision = policy->check(*also);
  }
  if (!decision.allowed) {
    record("denied", to_string(ErrorCode::PermissionDenied));
    throw Error(ErrorCode::PermissionDenied, decision.reason);
  }
  std::optional<decltype(operation())> result;
  try {
    result.emplace(operation());
  } catch (const Error& e) {
    record("failed", to_string(e.code()));
    throw;
  } catch (...) {
    record("failed", to_string(ErrorCode::Internal));
    throw;
  }
  record("allowed", "");
  return std::move(*result);
}

envelope::DataKey Operations::datakey(const Caller& caller, const std::string& kek, const envelope::Context& context,
                                      std::size_t bytes) {
  authz::Request request = ask("kek.datakey", "kek:" + kek, context);
  return run(caller, std::move(request), [&] { return envelope_.generate_data_key(kek, context, bytes); });
}

envelope::Ciphertext Operations::encrypt(const Caller& caller, const std::string& kek,
                                         std::span<const std::uint8_t> plaintext, const envelope::Context& context) {
  authz::Request request = ask("kek.encrypt", "kek:" + kek, context);
  return run(caller, std::move(request), [&] { return envelope_.encrypt(kek, plaintext, context); });
}

envelope::Decrypted Operations::decrypt(const Caller& caller, const std::string& kek,
                                        const envelope::Ciphertext& ciphertext, const envelope::Context& context) {
  authz::Request request = ask("kek.decrypt", "kek:" + kek, context);
  return run(caller, std::move(request), [&] { return envelope_.decrypt(ciphertext, context, kek); });
}

envelope::Ciphertext Operations::rewrap(const Caller& caller, const std::string& kek,
                                        const envelope::Ciphertext& ciphertext, const envelope::Context& context,
                                        const std::optional<envelope::Context>& new_context) {
  // Both contexts must be allowed (by the same policy), before anything is decrypted.
  authz::Request request = ask("kek.rewrap", "kek:" + kek, context);
  std::optional<authz::Request> target;
  if (new_context) target = ask("kek.rewrap", "kek:" + kek, *new_context);
  return run(
      caller, std::move(request), [&] { return envelope_.rewrap(ciphertext, context, new_context, kek); },
      std::move(target));
}

envelope::KekInfo Operations::rotate_kek(const Caller& caller, const std::string& kek) {
  authz::Request request = ask("kek.rotate", "kek:" + kek);
  return run(caller, std::move(request), [&] { return envelope_.rotate(kek); });
}

pki::IssuedCertificate Operations::pki_issue(const Caller& caller, const PkiIssue& issue) {
  pki::IssueRequest request;
  request.ca = issue.ca;
  request.profile = issue.profile;
  request.csr = issue.csr;
  request.days = issue.days;
  request.requester = caller.identity;
  authz::Request check = ask("pki.issue", "ca:" + issue.ca);
  check.profile = issue.profile;
  // The names the certificate would hold are what the policy judges; a CSR
  // that cannot be read is recorded as a failed request.
  std::optional<pki::IssuanceRequest> names;
  try {
    names = pki::requested_names(request);
  } catch (const Error&) {
    return run(caller, std::move(check), [&] { return pki_.issue(request); });
  }
  for (const auto& [field, value] : names->subject) {
    if (field == "CN") check.common_name = value;
  }
  check.dns_names = names->sans.dns;
  check.ip_addresses = names->sans.ip;
  check.uris = names->sans.uri;
  check.emails = names->sans.email;
  return run(caller, std::move(check), [&] { return pki_.issue(request); });
}

store::CertificateRecord Operations::pki_revoke(const Caller& caller, const std::string& ca,
                                                const std::string& serial_hex, pki::RevocationReason reason) {
  authz::Request request = ask("pki.revoke", "ca:" + ca);
  return run(caller, std::move(request), [&] { return pki_.revoke(ca, serial_hex, reason); });
}

ssh::SignedCertificate Operations::ssh_sign(const Caller& caller, ssh::SignInput input) {
  input.requester = caller.identity;
  authz::Request request = ask("ssh.sign", "ssh-ca:" + input.ca);
  request.principals = input.principals;
  request.profile = input.profile.value_or(input.kind == ssh::CertificateKind::User ? "user" : "host");
  return run(caller, std::move(request), [&] { return ssh_.sign(input); });
}

store::SshCertificateRecord Operations::ssh_revoke_serial(const Caller& caller, const std::string& ca,
                                                          std::uint64_t serial) {
  authz::Request request = ask("ssh.revoke", "ssh-ca:" + ca);
  return run(caller, std::move(request), [&] { return ssh_.revoke_serial(ca, serial); });
}

}  // namespace keyhold::service
