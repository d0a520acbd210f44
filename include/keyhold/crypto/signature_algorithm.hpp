#pragma once
// Signature algorithms keyhold makes with token keys.

#include <optional>
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

}  // namespace keyhold::crypto
