#pragma once
// The JSON form of keyhold's records, one definition shared by the command
// line (--json) and the HTTP API, so that both say the same thing the same way.

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "keyhold/crypto/key_ring.hpp"
#include "keyhold/envelope/service.hpp"
#include "keyhold/pki/authority.hpp"
#include "keyhold/service/key_service.hpp"
#include "keyhold/ssh/authority.hpp"
#include "keyhold/store/store.hpp"

namespace keyhold::service {

// An SSH validity bound as RFC 3339 UTC, or "forever".
std::string ssh_time_text(std::uint64_t seconds);

nlohmann::json attributes_json(const crypto::SecurityAttributes& attributes);
nlohmann::json token_key_json(const crypto::TokenKey& key);
nlohmann::json key_json(const KeyDetails& key);
nlohmann::json kek_json(const envelope::KekInfo& kek);
// What ca issue / POST .../issue return: serial, certificate, chain (PEM, issuer first), subject, sans,
// validity, key_uri (null unless the key was made in the token), warnings.
nlohmann::json issued_certificate_json(const pki::IssuedCertificate& issued);
// An issued X.509 certificate as listed (no certificate body).
nlohmann::json certificate_json(const store::CertificateRecord& record);
// An SSH certificate as listed; status overrides the stored one when given ("expired").
nlohmann::json ssh_certificate_json(const store::SshCertificateRecord& record, std::string_view status = {});
// What ssh sign returns: serial, type, key id, principals, validity, the certificate line, warnings.
nlohmann::json signed_ssh_certificate_json(const ssh::SignedCertificate& signed_certificate);

}  // namespace keyhold::service
