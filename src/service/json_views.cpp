#include "keyhold/service/json_views.hpp"

#include <algorithm>
#include <chrono>

#include "keyhold/core/encoding.hpp"

namespace keyhold::service {

std::string ssh_time_text(std::uint64_t seconds) {
  if (seconds == ~std::uint64_t{0}) return "forever";
  return format_utc(std::chrono::system_clock::time_point(std::chrono::seconds(static_cast<std::int64_t>(
      std::min<std::uint64_t>(seconds, std::uint64_t{253402300799})))));
}

nlohmann::json attributes_json(const crypto::SecurityAttributes& a) {
  return {{"private", a.private_object},       {"sensitive", a.sensitive},
          {"extractable", a.extractable},      {"always_sensitive", a.always_sensitive},
          {"never_extractable", a.never_extractable}, {"local", a.local},
          {"modifiable", a.modifiable}};
}

nlohmann::json token_key_json(const crypto::TokenKey& k) {
  nlohmann::json j = {{"label", k.label},
                      {"id", to_hex(k.id)},
                      {"class", k.kind == crypto::TokenKey::Kind::SecretKey ? "secret-key" : "private-key"},
                      {"token_type", k.token_type},
                      {"managed_type", k.type ? nlohmann::json(std::string(crypto::to_string(*k.type))) : nullptr},
                      {"uri", k.uri},
                      {"has_public_object", k.has_public_object},
                      {"attributes", attributes_json(k.attributes)},
                      {"usage", k.attributes.usages()},
                      {"exposure", k.attributes.exposure_reasons()}};
  return j;
}

nlohmann::json key_json(const KeyDetails& d) {
  nlohmann::json j = {{"name", d.record.name},
                      {"type", d.record.key_type},
                      {"purpose", d.record.purpose},
                      {"state", d.record.state},
                      {"id", to_hex(d.record.token_object_id)},
                      {"created_at", d.record.created_at},
                      {"destroyed_at", d.record.destroyed_at ? nlohmann::json(*d.record.destroyed_at) : nullptr},
                      {"in_token", d.token.has_value()},
                      {"used_by", d.record.used_by ? nlohmann::json(*d.record.used_by) : nullptr}};
  if (auto type = crypto::parse_key_type(d.record.key_type)) j["size"] = crypto::size_or_curve(*type);
  if (d.token) {
    j["uri"] = d.token->uri;
    j["has_public_object"] = d.token->has_public_object;
    j["attributes"] = attributes_json(d.token->attributes);
    j["usage"] = d.token->attributes.usages();
  }
  return j;
}

nlohmann::json kek_json(const envelope::KekInfo& k) {
  nlohmann::json versions = nlohmann::json::array();
  for (const auto& v : k.versions) {
    versions.push_back({{"version", v.record.version},
                        {"state", v.record.state},
                        {"primary", v.primary},
                        {"encryptions", v.record.encryptions},
                        {"created_at", v.record.created_at},
                        {"state_changed_at", v.record.state_changed_at ? nlohmann::json(*v.record.state_changed_at) : nullptr},
                        {"key_id", to_hex(v.record.key_object_id)}});
  }
  return {{"name", k.kek.name},
          {"kek_id", to_hex(k.kek.kek_id)},
          {"primary_version", k.primary_version},
          {"rotation_period_seconds", k.kek.rotation_period_seconds},
          {"max_encryptions", k.kek.max_encryptions},
          {"next_rotation_due", k.next_rotation_due ? nlohmann::json(*k.next_rotation_due) : nullptr},
          {"rotation_due", !k.due_reason.empty()},
          {"due_reason", k.due_reason},
          {"created_at", k.kek.created_at},
          {"versions", versions}};
}

nlohmann::json issued_certificate_json(const pki::IssuedCertificate& issued) {
  std::string chain;
  for (const std::string& pem : issued.chain_pem) chain += pem;
  return {{"serial", issued.record.serial},
          {"certificate", issued.pem},
          {"chain", chain},
          {"subject", issued.record.subject},
          {"sans", issued.record.sans},
          {"not_before", issued.record.not_before},
          {"not_after", issued.record.not_after},
          {"key_uri", issued.key_uri ? nlohmann::json(*issued.key_uri) : nullptr},
          {"warnings", issued.warnings}};
}

nlohmann::json certificate_json(const store::CertificateRecord& r) {
  return {{"serial", r.serial},
          {"subject", r.subject},
          {"sans", r.sans},
          {"profile", r.profile},
          {"not_before", r.not_before},
          {"not_after", r.not_after},
          {"status", r.status},
          {"revoked_at", r.revoked_at ? nlohmann::json(*r.revoked_at) : nullptr},
          {"reason", r.revocation_reason ? nlohmann::json(*r.revocation_reason) : nullptr},
          {"requester", r.requester}};
}

namespace {

// What every SSH certificate view starts with. The serial as a string: JSON
// readers such as jq round integers beyond 2^53.
nlohmann::json ssh_certificate_base(const store::SshCertificateRecord& r) {
  return {{"serial", std::to_string(r.serial)},
          {"type", r.type},
          {"key_id", r.key_id},
          {"principals", r.principals},
          {"valid_after", ssh_time_text(r.valid_after)},
          {"valid_before", ssh_time_text(r.valid_before)}};
}

}  // namespace

nlohmann::json ssh_certificate_json(const store::SshCertificateRecord& r, std::string_view status) {
  nlohmann::json j = ssh_certificate_base(r);
  j["fingerprint"] = r.public_key_fingerprint;
  j["profile"] = r.profile;
  j["status"] = status.empty() ? r.status : std::string(status);
  j["revoked_at"] = r.revoked_at ? nlohmann::json(*r.revoked_at) : nullptr;
  return j;
}

nlohmann::json signed_ssh_certificate_json(const ssh::SignedCertificate& s) {
  nlohmann::json j = ssh_certificate_base(s.record);
  j["certificate"] = s.certificate_line;
  j["warnings"] = s.warnings;
  return j;
}

}  // namespace keyhold::service
