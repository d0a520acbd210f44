#pragma once
// Signature algorithms keyhold makes with token keys.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "keyhold/crypto/key_type.hpp"

namespace keyhold::crypto {

enum class SignatureAlgorithm {
  RsaPkcs1Sha256,
  RsaPkcs1Sha384,
  RsaPkcs1Sha512,
  RsaPssSha256,
  RsaPssSha384,
  RsaPssSha512,
  EcdsaSha256,
  EcdsaSha384,
  Ed25519,
};

std::string_view to_string(SignatureAlgorithm algorithm) noexcept;  // "rsa-pkcs1-sha256", ...
std::optional<SignatureAlgorithm> parse_signature_algorithm(std::string_view text) noexcept;
// RSA: PKCS#1 v1.5 with SHA-256; P-256: ECDSA SHA-256; P-384: ECDSA SHA-384; Ed25519.
std::optional<SignatureAlgorithm> default_signature_algorithm(KeyType type) noexcept;
bool can_sign_with(KeyType type, SignatureAlgorithm algorithm) noexcept;
// OpenSSL digest name ("SHA256") or empty for Ed25519 (no pre-hash).
std::string_view digest_name(SignatureAlgorithm algorithm) noexcept;
// The DER AlgorithmIdentifier of the algorithm, byte for byte as RFC 5758
// (ECDSA: no parameters), RFC 8410 (Ed25519: no parameters), RFC 4055 (RSA:
// NULL parameters; PSS: hash, MGF1 with the same hash, salt = hash length)
// and OpenSSL encode it. Certificates, CSRs and CRLs carry exactly these.
std::span<const std::uint8_t> algorithm_identifier(SignatureAlgorithm algorithm) noexcept;
// The algorithm whose AlgorithmIdentifier is exactly der, if any.
std::optional<SignatureAlgorithm> algorithm_from_identifier(std::span<const std::uint8_t> der) noexcept;

}  // namespace keyhold::crypto
