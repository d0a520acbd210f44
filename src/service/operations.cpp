#include "keyhold/service/operations.hpp"

#include <optional>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/log.hpp"
#include "keyhold/pki/renewal.hpp"
#include "keyhold/ssh/certificate.hpp"
#include "keyhold/ssh/public_key.hpp"

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

Operations::Operations(KeyService& keys, pki::Authority& pki, ssh::Authority& ssh, envelope::Service& envelope,
                       audit::Log& audit, authz::Policy policy)
    : keys_(keys),
      pki_(pki), ssh_(ssh), envelope_(envelope), audit_(audit),
      policy_(std::make_shared<const authz::Policy>(std::move(policy))) {}

void Operations::set_policy(authz::Policy policy) {
  std::atomic_store(&policy_, std::make_shared<const authz::Policy>(std::move(policy)));
}

void Operations::write(const Caller& caller, const std::string& operation, const std::string& resource,
                       const envelope::Context& context, const char* outcome, std::string_view code,
                       std::chrono::microseconds latency) {
  audit::Event event;
  event.request_id = caller.request_id;
  event.identity = caller.identity;
  event.client_address = caller.address;
  event.operation = operation;
  event.resource = resource;
  event.context = context;  // the encryption context only, never data
  event.outcome = outcome;
  event.error_code = std::string(code);
  event.latency = latency;
  audit_.append(event);  // durable before the caller hears anything
}

void Operations::record_refusal(const Caller& caller, const std::string& operation, const std::string& resource,
                                std::string_view code, std::chrono::microseconds latency) {
  write(caller, operation, resource, {}, code == to_string(ErrorCode::PermissionDenied) ? "denied" : "failed", code,
        latency);
}

void Operations::record_plain(const Caller& caller, const std::string& operation, std::optional<ErrorCode> code,
                              std::chrono::microseconds latency) {
  write(caller, operation, "", {}, code ? "failed" : "allowed", code ? to_string(*code) : "", latency);
}

template <class F>
auto Operations::run(const Caller& caller, authz::Request request, F&& operation, std::optional<authz::Request> also,
                     Access access) -> decltype(operation()) {
  SteadyClock::time_point started = SteadyClock::now();
  if (!audit_.healthy()) {
    throw Error(ErrorCode::Unavailable, "the audit log cannot be written, so nothing is carried out");
  }
  request.identity = caller.identity;
  auto record = [&](const char* outcome, std::string_view code) {
    write(caller, request.operation, request.resource, request.context, outcome, code,
          std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - started));
  };

  authz::Decision decision;
  if (caller.anonymous) {
    // The plain listener: public material only, never the policy's business.
    decision.allowed = access == Access::Public;
    if (!decision.allowed) decision.reason = request.operation + " on " + request.resource + " denied";
  } else if (access == Access::Filtered) {
    decision.allowed = true;  // the operation itself leaves out what the policy does not allow
  } else {
    std::shared_ptr<const authz::Policy> policy = std::atomic_load(&policy_);
    decision = policy->check(request);
    if (decision.allowed && also) {
      also->identity = caller.identity;
      decision = policy->check(*also);
    }
  }
  if (!decision.allowed) {
    // The caller hears only decision.reason; why is for the operator.
    if (!decision.detail.empty()) log::info("request " + caller.request_id + ": " + decision.reason + ": " + decision.detail);
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

envelope::KekInfo Operations::kek_show(const Caller& caller, const std::string& kek) {
  return run(caller, ask("kek.read", "kek:" + kek), [&] { return envelope_.show(kek); });
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

pki::IssuedCertificate Operations::pki_renew(const Caller& caller, const std::string& ca,
                                             const std::string& current_der, const std::string& csr) {
  std::span<const std::uint8_t> der(reinterpret_cast<const std::uint8_t*>(current_der.data()), current_der.size());
  pki::IssueRequest request;
  request.ca = ca;
  request.csr = csr;
  request.requester = caller.identity;
  // The policy sees what the renewed certificate will name (the CSR must name
  // what the current one names). An unknown certificate or an unreadable CSR
  // leaves the names out; the operation then refuses it, recorded.
  authz::Request check = ask("pki.renew", "ca:" + ca);
  std::optional<store::CertificateRecord> current;
  try {
    current = pki_.certificate(ca, pki::serial_of(der));
    request.profile = current->profile;
    check.profile = current->profile;
    pki::IssuanceRequest names = pki::requested_names(request);
    for (const auto& [field, value] : names.subject) {
      if (field == "CN") check.common_name = value;
    }
    check.dns_names = names.sans.dns;
    check.ip_addresses = names.sans.ip;
    check.uris = names.sans.uri;
    check.emails = names.sans.email;
  } catch (const Error&) {
  }
  return run(caller, std::move(check), [&]() -> pki::IssuedCertificate {
    if (!current || current->certificate_der != std::vector<std::uint8_t>(der.begin(), der.end())) {
      throw Error(ErrorCode::PermissionDenied, "the client certificate was not issued by CA '" + ca + "'");
    }
    if (current->status != "valid") {
      throw Error(ErrorCode::PermissionDenied, "the client certificate was revoked: it cannot renew itself");
    }
    auto not_after = parse_utc(current->not_after);
    if (!not_after || *not_after <= std::chrono::system_clock::now()) {
      throw Error(ErrorCode::PermissionDenied, "the client certificate has expired: it cannot renew itself");
    }
    pki::check_renewal_request(csr, der);
    return pki_.issue(request);
  });
}

ssh::SignedCertificate Operations::ssh_renew(const Caller& caller, const std::string& ca,
                                             const std::string& current_line, const std::string& new_public_key) {
  authz::Request check = ask("ssh.renew", "ssh-ca:" + ca);
  std::optional<ssh::ParsedCertificate> parsed;
  try {
    parsed = ssh::parse_certificate_line(current_line);
    check.principals = parsed->fields.principals;
  } catch (const Error&) {
  }
  return run(caller, std::move(check), [&]() -> ssh::SignedCertificate {
    if (!parsed) ssh::parse_certificate_line(current_line);  // throws what is wrong with it
    const ssh::CertificateFields& fields = parsed->fields;
    ssh::CaDetails details = ssh_.show_ca(ca);
    ssh::OpenSshPublicKey ca_key = ssh::parse_public_key_line(details.public_key_line);
    if (parsed->ca_key_blob != ca_key.blob || !ssh::verify_certificate_signature(*parsed)) {
      throw Error(ErrorCode::PermissionDenied, "the certificate was not signed by SSH CA '" + ca + "'");
    }
    store::SshCertificateFilter filter;
    filter.key_id = fields.key_id;
    std::optional<store::SshCertificateRecord> record;
    for (store::SshCertificateRecord& r : ssh_.certificates(ca, filter)) {
      if (r.serial == fields.serial) record = std::move(r);
    }
    if (!record || record->public_key_fingerprint != ssh::fingerprint_sha256(fields.subject.blob)) {
      throw Error(ErrorCode::PermissionDenied, "the certificate is not recorded by SSH CA '" + ca + "'");
    }
    if (record->status != "valid") throw Error(ErrorCode::PermissionDenied, "the certificate was revoked: it cannot be renewed");
    auto now = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    if (record->valid_before <= now) {
      throw Error(ErrorCode::PermissionDenied, "the certificate has expired: it cannot renew itself");
    }
    ssh::SignInput input;
    input.ca = ca;
    input.profile = record->profile;
    input.public_key = new_public_key.empty() ? ssh::authorized_keys_line(fields.subject.key, "") : new_public_key;
    input.kind = fields.type == ssh::CertificateType::Host ? ssh::CertificateKind::Host : ssh::CertificateKind::User;
    input.key_id = fields.key_id;
    input.principals = fields.principals;
    input.options = fields.critical_options;
    input.extensions = fields.extensions;
    input.no_default_extensions = true;  // exactly the extensions the current one has
    input.requester = caller.identity;
    return ssh_.sign(input);
  });
}

std::vector<std::string> Operations::pki_chain(const Caller& caller, const std::string& ca) {
  return run(
      caller, ask("pki.read", "ca:" + ca), [&] { return pki_.chain(ca); }, std::nullopt, Access::Public);
}

pki::CrlResult Operations::pki_crl(const Caller& caller, const std::string& ca) {
  return run(
      // The published CRL: signed again only when a revocation made it stale or it is due, so that
      // readers (anonymous ones too) never make the CA key sign.
      caller, ask("pki.read", "ca:" + ca), [&] { return pki_.published_crl(ca).crl; }, std::nullopt, Access::Public);
}

std::vector<store::CertificateRecord> Operations::pki_certificates(const Caller& caller, const std::string& ca,
                                                                   const store::CertificateFilter& filter) {
  return run(caller, ask("pki.read", "ca:" + ca), [&] { return pki_.certificates(ca, filter); });
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

std::size_t Operations::ssh_revoke_key_id(const Caller& caller, const std::string& ca, const std::string& key_id) {
  return run(caller, ask("ssh.revoke", "ssh-ca:" + ca), [&] { return ssh_.revoke_key_id(ca, key_id); });
}

std::size_t Operations::ssh_revoke_key(const Caller& caller, const std::string& ca, const std::string& public_key) {
  return run(caller, ask("ssh.revoke", "ssh-ca:" + ca), [&] { return ssh_.revoke_key(ca, public_key); });
}

ssh::CaDetails Operations::ssh_ca_key(const Caller& caller, const std::string& ca) {
  return run(
      caller, ask("ssh.read", "ssh-ca:" + ca), [&] { return ssh_.show_ca(ca); }, std::nullopt, Access::Public);
}

ssh::KrlResult Operations::ssh_krl(const Caller& caller, const std::string& ca) {
  return run(
      // The published KRL: made again only after a revocation.
      caller, ask("ssh.read", "ssh-ca:" + ca), [&] { return ssh_.published_krl(ca).krl; }, std::nullopt, Access::Public);
}

std::vector<store::SshCertificateRecord> Operations::ssh_certificates(const Caller& caller, const std::string& ca,
                                                                      const store::SshCertificateFilter& filter) {
  return run(caller, ask("ssh.read", "ssh-ca:" + ca), [&] { return ssh_.certificates(ca, filter); });
}

KeyInventory Operations::keys_list(const Caller& caller) {
  // Lists the keys the caller may read (keys.read on key:NAME); "key:*" only names the listing in the audit log.
  std::shared_ptr<const authz::Policy> policy = std::atomic_load(&policy_);
  auto readable = [&](const std::string& name) {
    authz::Request request = ask("keys.read", "key:" + name);
    request.identity = caller.identity;
    return policy->check(request).allowed;
  };
  return run(
      caller, ask("keys.read", "key:*"),
      [&] {
        KeyInventory all = keys_.list(false);
        KeyInventory shown;
        for (KeyDetails& key : all.keys) {
          if (readable(key.record.name)) shown.keys.push_back(std::move(key));
        }
        for (crypto::TokenKey& key : all.unmanaged) {
          if (readable(key.label)) shown.unmanaged.push_back(std::move(key));
        }
        return shown;
      },
      std::nullopt, Access::Filtered);
}

KeyDetails Operations::keys_show(const Caller& caller, const std::string& name) {
  return run(caller, ask("keys.read", "key:" + name), [&] { return keys_.show(name); });
}

KeyDetails Operations::keys_create(const Caller& caller, const std::string& name, crypto::KeyType type,
                                   std::optional<crypto::KeyPurpose> purpose) {
  return run(caller, ask("keys.create", "key:" + name), [&] { return keys_.create(name, type, purpose); });
}

}  // namespace keyhold::service
