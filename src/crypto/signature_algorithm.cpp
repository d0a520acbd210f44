#include "keyhold/crypto/signature_algorithm.hpp"

#include <algorithm>
#include <array>

namespace keyhold::crypto {
namespace {

// AlgorithmIdentifiers as OpenSSL 3 writes them (checked against
// `openssl req -x509` output for each algorithm).
constexpr std::uint8_t kIdRsaPkcs1Sha256[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
constexpr std::uint8_t kIdRsaPkcs1Sha384[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00};
constexpr std::uint8_t kIdRsaPkcs1Sha512[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00};
constexpr std::uint8_t kIdRsaPssSha256[] = {0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20};
constexpr std::uint8_t kIdRsaPssSha384[] = {0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x30};
constexpr std::uint8_t kIdRsaPssSha512[] = {0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x40};
constexpr std::uint8_t kIdEcdsaSha256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
constexpr std::uint8_t kIdEcdsaSha384[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
constexpr std::uint8_t kIdEd25519[] = {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70};

struct AlgorithmInfo {
  SignatureAlgorithm algorithm;
  std::string_view name;
  std::string_view digest;
  std::span<const std::uint8_t> identifier;
};

constexpr std::array<AlgorithmInfo, 9> kAlgorithms{{
    {SignatureAlgorithm::RsaPkcs1Sha256, "rsa-pkcs1-sha256", "SHA256", kIdRsaPkcs1Sha256},
    {SignatureAlgorithm::RsaPkcs1Sha384, "rsa-pkcs1-sha384", "SHA384", kIdRsaPkcs1Sha384},
    {SignatureAlgorithm::RsaPkcs1Sha512, "rsa-pkcs1-sha512", "SHA512", kIdRsaPkcs1Sha512},
    {SignatureAlgorithm::RsaPssSha256, "rsa-pss-sha256", "SHA256", kIdRsaPssSha256},
    {SignatureAlgorithm::RsaPssSha384, "rsa-pss-sha384", "SHA384", kIdRsaPssSha384},
    {SignatureAlgorithm::RsaPssSha512, "rsa-pss-sha512", "SHA512", kIdRsaPssSha512},
    {SignatureAlgorithm::EcdsaSha256, "ecdsa-sha256", "SHA256", kIdEcdsaSha256},
    {SignatureAlgorithm::EcdsaSha384, "ecdsa-sha384", "SHA384", kIdEcdsaSha384},
    {SignatureAlgorithm::Ed25519, "ed25519", "", kIdEd25519},
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

std::span<const std::uint8_t> algorithm_identifier(SignatureAlgorithm algorithm) noexcept {
  return info(algorithm).identifier;
}

std::optional<SignatureAlgorithm> algorithm_from_identifier(std::span<const std::uint8_t> der) noexcept {
  for (const AlgorithmInfo& i : kAlgorithms) {
    if (std::equal(der.begin(), der.end(), i.identifier.begin(), i.identifier.end())) return i.algorithm;
  }
  return std::nullopt;
}

}  // namespace keyhold::crypto
