#include "keyhold/crypto/signature_algorithm.hpp"

#include <array>

namespace keyhold::crypto {
namespace {

struct AlgorithmInfo {
  SignatureAlgorithm algorithm;
  std::string_view name;
  std::string_view digest;
};

constexpr std::array<AlgorithmInfo, 9> kAlgorithms{{
    {SignatureAlgorithm::RsaPkcs1Sha256, "rsa-pkcs1-sha256", "SHA256"},
    {SignatureAlgorithm::RsaPkcs1Sha384, "rsa-pkcs1-sha384", "SHA384"},
    {SignatureAlgorithm::RsaPkcs1Sha512, "rsa-pkcs1-sha512", "SHA512"},
    {SignatureAlgorithm::RsaPssSha256, "rsa-pss-sha256", "SHA256"},
    {SignatureAlgorithm::RsaPssSha384, "rsa-pss-sha384", "SHA384"},
    {SignatureAlgorithm::RsaPssSha512, "rsa-pss-sha512", "SHA512"},
    {SignatureAlgorithm::EcdsaSha256, "ecdsa-sha256", "SHA256"},
    {SignatureAlgorithm::EcdsaSha384, "ecdsa-sha384", "SHA384"},
    {SignatureAlgorithm::Ed25519, "ed25519", ""},
}};

const AlgorithmInfo& info(SignatureAlgorithm algorithm) noexcept {
  for (const AlgorithmInfo& i : kAlgorithms) {
    if (i.algorithm == algorithm) return i;
  }
  return kAlgorithms[0];
}

bool is_rsa(KeyType type) noexcept {
  return type == KeyType::Rsa2048 || type == KeyType::Rsa3072 || type == KeyType::Rsa4096;
}

}  // namespace

std::string_view to_string(SignatureAlgorithm algorithm) noexcept { return info(algorithm).name; }

std::optional<SignatureAlgorithm> parse_signature_algorithm(std::string_view text) noexcept {
  for (const AlgorithmInfo& i : kAlgorithms) {
    if (i.name == text) return i.algorithm;
  }
  return std::nullopt;
}

std::optional<SignatureAlgorithm> default_signature_algorithm(KeyType type) noexcept {
  if (is_rsa(type)) return SignatureAlgorithm::RsaPkcs1Sha256;
  switch (type) {
    case KeyType::EcP256: return SignatureAlgorithm::EcdsaSha256;
    case KeyType::EcP384: return SignatureAlgorithm::EcdsaSha384;
    case KeyType::Ed25519: return SignatureAlgorithm::Ed25519;
    default: return std::nullopt;
  }
}

bool can_sign_with(KeyType type, SignatureAlgorithm algorithm) noexcept {
  switch (algorithm) {
    case SignatureAlgorithm::RsaPkcs1Sha256:
    case SignatureAlgorithm::RsaPkcs1Sha384:
    case SignatureAlgorithm::RsaPkcs1Sha512:
    case SignatureAlgorithm::RsaPssSha256:
    case SignatureAlgorithm::RsaPssSha384:
    case SignatureAlgorithm::RsaPssSha512:
      return is_rsa(type);
    // Either ECDSA hash on either curve is valid X9.62; keyhold's defaults pair them by strength.
    case SignatureAlgorithm::EcdsaSha256:
    case SignatureAlgorithm::EcdsaSha384:
      return type == KeyType::EcP256 || type == KeyType::EcP384;
    case SignatureAlgorithm::Ed25519:
      return type == KeyType::Ed25519;
  }
  return false;
}

std::string_view digest_name(SignatureAlgorithm algorithm) noexcept { return info(algorithm).digest; }

}  // namespace keyhold::crypto
