#include "keyhold/crypto/public_key.hpp"

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "openssl_util.hpp"

namespace keyhold::crypto {
namespace {

std::optional<KeyType> deduce_type(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "ED25519")) return KeyType::Ed25519;
  if (EVP_PKEY_is_a(key, "RSA")) {
    switch (EVP_PKEY_get_bits(key)) {
      case 2048: return KeyType::Rsa2048;
      case 3072: return KeyType::Rsa3072;
      case 4096: return KeyType::Rsa4096;
      default: return std::nullopt;
    }
  }
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {};
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, nullptr) != 1) {
      return std::nullopt;
    }
    std::string_view name(group);
    if (name == "prime256v1" || name == "P-256") return KeyType::EcP256;
    if (name == "secp384r1" || name == "P-384") return KeyType::EcP384;
  }
  return std::nullopt;
}

}  // namespace

PublicKey::PublicKey(evp_pkey_st* key) : key_(key, EVP_PKEY_free), type_(deduce_type(key)) {}

PublicKey PublicKey::from_der(std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (key == nullptr || p != der.data() + der.size()) {
    EVP_PKEY_free(key);
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "not a DER SubjectPublicKeyInfo");
  }
  return PublicKey(key);
}

PublicKey PublicKey::from_pem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "not a PEM public key");
  }
  return PublicKey(key);
}

std::vector<std::uint8_t> PublicKey::der() const {
  unsigned char* out = nullptr;
  int length = i2d_PUBKEY(key_.get(), &out);
  if (length <= 0) throw_openssl(ErrorCode::Internal, "encoding a public key");
  std::vector<std::uint8_t> der(out, out + length);
  OPENSSL_free(out);
  return der;
}

std::string PublicKey::pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) throw_openssl(ErrorCode::Internal, "writing PEM");
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

bool PublicKey::verify(SignatureAlgorithm algorithm, std::span<const std::uint8_t> message,
                       std::span<const std::uint8_t> signature) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  std::string digest(digest_name(algorithm));
  if (EVP_DigestVerifyInit_ex(ctx.get(), &pctx, digest.empty() ? nullptr : digest.c_str(), nullptr, nullptr,
                              key_.get(), nullptr) != 1) {
    ERR_clear_error();
    return false;
  }
  switch (algorithm) {
    case SignatureAlgorithm::RsaPssSha256:
    case SignatureAlgorithm::RsaPssSha384:
    case SignatureAlgorithm::RsaPssSha512:
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
      break;
    default:
      break;
  }
  int ok = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(), message.size());
  ERR_clear_error();
  return ok == 1;
}

bool PublicKey::operator==(const PublicKey& other) const {
  return EVP_PKEY_eq(key_.get(), other.key_.get()) == 1;
}

}  // namespace keyhold::crypto
