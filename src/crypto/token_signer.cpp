#include "keyhold/crypto/ecdsa_signature.hpp"
#include "openssl_util.hpp"
#include "token_keys.hpp"

namespace keyhold::crypto {
namespace {

// DigestInfo prefixes for RSASSA-PKCS1-v1_5 (RFC 8017 section 9.2, note 1).
constexpr std::uint8_t kDigestInfoSha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                              0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
constexpr std::uint8_t kDigestInfoSha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                              0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
constexpr std::uint8_t kDigestInfoSha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                              0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

struct DigestSpec {
  std::size_t size;
  std::span<const std::uint8_t> digest_info;
  CK_MECHANISM_TYPE hash_mechanism;
  CK_RSA_PKCS_MGF_TYPE mgf;
};

DigestSpec digest_spec(std::string_view name) {
  if (name == "SHA256") return {32, kDigestInfoSha256, CKM_SHA256, CKG_MGF1_SHA256};
  if (name == "SHA384") return {48, kDigestInfoSha384, CKM_SHA384, CKG_MGF1_SHA384};
  return {64, kDigestInfoSha512, CKM_SHA512, CKG_MGF1_SHA512};
}

// Fetched once: an implicit fetch per signature costs more than the hash itself.
const EVP_MD* fetched_digest(std::string_view name) {
  static EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  static EVP_MD* sha384 = EVP_MD_fetch(nullptr, "SHA384", nullptr);
  static EVP_MD* sha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  if (name == "SHA256") return sha256;
  if (name == "SHA384") return sha384;
  return sha512;
}

bool is_pss(SignatureAlgorithm algorithm) {
  return algorithm == SignatureAlgorithm::RsaPssSha256 || algorithm == SignatureAlgorithm::RsaPssSha384 ||
         algorithm == SignatureAlgorithm::RsaPssSha512;
}

bool is_ecdsa(SignatureAlgorithm algorithm) {
  return algorithm == SignatureAlgorithm::EcdsaSha256 || algorithm == SignatureAlgorithm::EcdsaSha384;
}

std::size_t signature_size(KeyType type) {
  switch (type) {
    case KeyType::Rsa2048: return 256;
    case KeyType::Rsa3072: return 384;
    case KeyType::Rsa4096: return 512;
    case KeyType::EcP256: return 64;
    case KeyType::EcP384: return 96;
    case KeyType::Ed25519: return 64;
    case KeyType::Aes256: return 0;
  }
  return 0;
}

}  // namespace

TokenSigner::TokenSigner(std::shared_ptr<hsm::Token> token, std::vector<std::uint8_t> id, KeyType type,
                         PublicKey public_key)
    : token_(std::move(token)),
      ref_{std::move(id), CKO_PRIVATE_KEY},
      type_(type),
      public_key_(std::move(public_key)),
      signature_size_(signature_size(type)) {}

void TokenSigner::require(SignatureAlgorithm algorithm) const {
  if (!can_sign_with(type_, algorithm)) {
    throw Error(ErrorCode::InvalidArgument, std::string(to_string(type_)) + " keys cannot make " +
                                                std::string(to_string(algorithm)) + " signatures");
  }
}

std::vector<std::uint8_t> TokenSigner::sign(SignatureAlgorithm algorithm,
                                            std::span<const std::uint8_t> message) const {
  require(algorithm);
  if (algorithm == SignatureAlgorithm::Ed25519) {
    // Pure EdDSA (RFC 8032) signs the message itself; CKM_EDDSA without parameters is Ed25519.
    CK_MECHANISM mechanism{CKM_EDDSA, nullptr, 0};
    return token_->sign(ref_, mechanism, message, signature_size_);
  }
  std::string_view name = digest_name(algorithm);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (EVP_Digest(message.data(), message.size(), digest, &digest_size, fetched_digest(name), nullptr) != 1) {
    throw_openssl(ErrorCode::Internal, "hashing the message to sign");
  }
  return sign_digest(algorithm, std::span<const std::uint8_t>(digest, digest_size));
}

std::vector<std::uint8_t> TokenSigner::sign_digest(SignatureAlgorithm algorithm,
                                                   std::span<const std::uint8_t> digest) const {
  require(algorithm);
  if (algorithm == SignatureAlgorithm::Ed25519) {
    throw Error(ErrorCode::InvalidArgument, "Ed25519 signs the message, not a digest");
  }
  DigestSpec spec = digest_spec(digest_name(algorithm));
  if (digest.size() != spec.size) {
    throw Error(ErrorCode::InvalidArgument, "a " + std::string(to_string(algorithm)) + " digest has " +
                                                std::to_string(spec.size) + " bytes, not " +
                                                std::to_string(digest.size()));
  }
  // Raw mechanisms over a locally computed digest: SoftHSM 2.6.1 has no
  // CKM_ECDSA_SHA256 and its multi-part hashed ECDSA is broken (SoftHSMv2 PR 683).
  if (is_ecdsa(algorithm)) {
    CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
    return ecdsa_raw_to_der(token_->sign(ref_, mechanism, digest, signature_size_));
  }
  if (is_pss(algorithm)) {
    CK_RSA_PKCS_PSS_PARAMS params{spec.hash_mechanism, spec.mgf, spec.size};
    CK_MECHANISM mechanism{CKM_RSA_PKCS_PSS, &params, sizeof params};
    return token_->sign(ref_, mechanism, digest, signature_size_);
  }
  std::uint8_t digest_info[19 + 64];
  std::copy(spec.digest_info.begin(), spec.digest_info.end(), digest_info);
  std::copy(digest.begin(), digest.end(), digest_info + spec.digest_info.size());
  CK_MECHANISM mechanism{CKM_RSA_PKCS, nullptr, 0};
  return token_->sign(ref_, mechanism,
                      std::span<const std::uint8_t>(digest_info, spec.digest_info.size() + digest.size()),
                      signature_size_);
}

}  // namespace keyhold::crypto
