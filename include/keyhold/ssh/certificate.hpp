#pragma once
// OpenSSH certificates, the "v01" format of OpenSSH's PROTOCOL.certkeys
// (also draft-miller-ssh-cert): a plain public key, identity and usage
// fields, signed by a CA key held in a PKCS#11 token.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keyhold/crypto/signer.hpp"
#include "keyhold/ssh/public_key.hpp"

namespace keyhold::ssh {

// SSH_CERT_TYPE_USER / SSH_CERT_TYPE_HOST (PROTOCOL.certkeys).
enum class CertificateType : std::uint32_t { User = 1, Host = 2 };

inline constexpr std::uint64_t kValidForever = 0xffffffffffffffffULL;
// sshkey.c's SSHKEY_CERT_MAX_PRINCIPALS: OpenSSH refuses certificates with more.
inline constexpr std::size_t kMaxPrincipals = 256;

// The fields of a certificate.
struct CertificateFields {
  std::vector<std::uint8_t> nonce;  // 32 random bytes (caller supplies)
  OpenSshPublicKey subject;         // the key being certified (its comment is not part of the certificate)
  std::uint64_t serial = 0;
  CertificateType type = CertificateType::User;
  std::string key_id;
  std::vector<std::string> principals;
  std::uint64_t valid_after = 0, valid_before = 0;  // seconds since the epoch; valid_before kValidForever = forever
  // name -> value as text: "force-command" -> "CMD", "source-address" ->
  // "10.0.0.0/8,192.168.1.1", "verify-required" -> "" (a flag).
  std::vector<std::pair<std::string, std::string>> critical_options;
  std::vector<std::string> extensions;  // names; all have empty data in OpenSSH
};

// The certificate key type for a subject type: "ssh-ed25519" ->
// "ssh-ed25519-cert-v01@openssh.com", ... InvalidArgument for other types.
std::string certificate_type_name(std::string_view subject_type);

// Builds the certificate, signs it with the CA's Signer and returns the
// complete certificate blob. The CA signs with ssh-ed25519 (Ed25519),
// ecdsa-sha2-nistp256 (ECDSA SHA-256), ecdsa-sha2-nistp384 (ECDSA SHA-384),
// and for RSA CAs always rsa-sha2-512 (RFC 8332; never ssh-rsa/SHA-1).
// Critical options and extensions are written sorted by name
// (PROTOCOL.certkeys requires it); a critical option's data is a string
// holding its value, or empty for a flag (empty value).
// Throws InvalidArgument, before anything is signed, for: a nonce shorter
// than 16 bytes; a subject blob that parse_public_key_blob refuses or whose
// type differs from subject.type; a key id that is empty or has control
// characters; no principals (OpenSSH reads that as "any principal"), more
// than kMaxPrincipals, a principal that is empty or has a control character,
// a space or a comma; valid_before <= valid_after; duplicate or empty
// option/extension names, names or values with control characters;
// force-command or source-address without a value, verify-required with one;
// critical options on a host certificate (ssh refuses those:
// sshkey_cert_check_host); a CA key type that cannot sign SSH certificates.
// Thread-safe if the Signer is. The signature is not verified here (callers
// that want a self-check use verify_certificate_signature).
std::vector<std::uint8_t> sign_certificate(const crypto::Signer& ca, const CertificateFields& fields);

// "ssh-ed25519-cert-v01@openssh.com AAAA... comment" (no comment when empty).
// InvalidArgument when the blob does not start with a certificate type or the
// comment has control characters.
std::string certificate_line(std::span<const std::uint8_t> certificate_blob, std::string_view comment);

struct ParsedCertificate {
  CertificateFields fields;
  std::vector<std::uint8_t> ca_key_blob;   // the signature key (a plain key blob)
  std::string signature_algorithm;         // "ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", ...
  std::vector<std::uint8_t> signature;     // the signature data after the algorithm name (RFC 4253 section 6.6)
  std::vector<std::uint8_t> signed_bytes;  // everything the signature covers: the blob up to the signature key
};

// Takes a certificate blob apart (the subset keyhold handles: the subject
// and CA key types parse_public_key_blob accepts). Throws InvalidArgument for
// malformed or trailing data, an unknown certificate type or type code, a
// certificate as CA key, critical options or extensions out of order or
// repeated, a critical option value that is not one string, an extension
// with data, principals or key ids with control characters, a signature
// algorithm that does not fit the CA key, and ssh-rsa (SHA-1) signatures.
// Does not check the signature (verify_certificate_signature does).
ParsedCertificate parse_certificate(std::span<const std::uint8_t> certificate_blob);
// A *-cert.pub line "TYPE BASE64 [comment]"; the comment lands in
// fields.subject.comment. Also refuses a type in the line differing from the blob's.
ParsedCertificate parse_certificate_line(std::string_view line);

// Checks the signature over signed_bytes with the CA key, using OpenSSL (no
// token): for self-checks and tests. False for any malformed or wrong signature.
bool verify_certificate_signature(const ParsedCertificate& certificate);
// The same against a CA key the caller has already decoded (its blob must be
// the certificate's): saves decoding the CA key again, which for an EC key
// costs a point check (about 0.12 ms for P-256).
bool verify_certificate_signature(const ParsedCertificate& certificate, const OpenSshPublicKey& ca);

}  // namespace keyhold::ssh
