#pragma once
// Internal to src/pki: OpenSSL X.509 building blocks with keyhold's rules.

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/crypto/public_key.hpp"
#include "keyhold/pki/profile.hpp"

namespace keyhold::pki {

using X509Ptr = CPtr<X509, &X509_free>;
using X509NamePtr = CPtr<X509_NAME, &X509_NAME_free>;
using X509ReqPtr = CPtr<X509_REQ, &X509_REQ_free>;
using X509CrlPtr = CPtr<X509_CRL, &X509_CRL_free>;

using Clock = std::chrono::system_clock;

// Throws Internal with what and the oldest OpenSSL error, clearing the queue.
[[noreturn]] void openssl_failure(std::string_view what);

// "CN=Example Root CA,O=Example,C=DE" (RFC 4514 order as written, '\,' escapes
// a comma) or OpenSSL's "/CN=.../O=...". Attributes: CN, O, OU, C, ST, L, DC,
// serialNumber. InvalidArgument for anything else, empty values, control
// characters, or a country that is not two letters.
std::vector<std::pair<std::string, std::string>> parse_distinguished_name(std::string_view text);
X509NamePtr make_name(const std::vector<std::pair<std::string, std::string>>& attributes);
std::string name_to_string(const X509_NAME* name);  // one line, RFC 2253 style
std::vector<std::uint8_t> name_der(const X509_NAME* name);

std::vector<std::uint8_t> certificate_der(const X509* certificate);
X509Ptr certificate_from_der(std::span<const std::uint8_t> der);
// PEM or DER; InvalidArgument when neither.
X509Ptr parse_certificate(std::string_view pem_or_der);
std::string certificate_pem(std::span<const std::uint8_t> der);  // written from the DER, no parse

Clock::time_point asn1_time_point(const ASN1_TIME* time);
std::string rfc3339(Clock::time_point t);

// RFC 5280 4.2.1.2 method 1: SHA-1 of the certificate's subjectPublicKey BIT
// STRING (read from the certificate once its public key is set).
std::vector<std::uint8_t> key_identifier(const X509* certificate);
std::vector<std::uint8_t> subject_key_identifier(const X509* certificate);  // empty when absent

// Adds an extension from OpenSSL's configuration syntax; values must come
// from keyhold's fixed vocabularies or validated input (no user commas).
void add_extension(X509* certificate, X509V3_CTX* ctx, int nid, const std::string& value);
void add_subject_alt_names(X509* certificate, const SubjectAltNames& sans, bool critical);
void add_key_identifiers(X509* certificate, const std::vector<std::uint8_t>& subject_key_id,
                         const std::vector<std::uint8_t>& authority_key_id);

// The subject alternative names of a certificate or request, as text.
SubjectAltNames subject_alt_names(const STACK_OF(GENERAL_NAME) * names);
std::vector<std::string> san_strings(const SubjectAltNames& sans);  // "dns:a.example", "ip:10.0.0.1", ...

// A CSR: parsed, its signature checked (proof of possession), its key and
// requested names extracted. InvalidArgument for malformed input, a bad
// signature, or more than 64 KiB.
struct CertificateRequest {
  X509ReqPtr request;
  crypto::PublicKey public_key;
  RequestKey key;
  std::vector<std::pair<std::string, std::string>> subject;
  SubjectAltNames sans;
};
CertificateRequest parse_certificate_request(std::string_view pem_or_der);
RequestKey describe_key(EVP_PKEY* key);

}  // namespace keyhold::pki
