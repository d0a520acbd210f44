#include "keyhold/ssh/public_key.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <memory>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/ssh/wire.hpp"

namespace keyhold::ssh {
namespace {

std::vector<std::uint8_t> bignum_param(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) {
    throw Error(ErrorCode::Internal, std::string("cannot read RSA parameter ") + name);
  }
  std::vector<std::uint8_t> out(static_cast<std::size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  BN_free(bn);
  return out;
}

std::vector<std::uint8_t> octet_param(EVP_PKEY* key, const char* name) {
  std::size_t length = 0;
  if (EVP_PKEY_get_octet_string_param(key, name, nullptr, 0, &length) != 1) {
    throw Error(ErrorCode::Internal, std::string("cannot read key parameter ") + name);
  }
  std::vector<std::uint8_t> out(length);
  EVP_PKEY_get_octet_string_param(key, name, out.data(), out.size(), &length);
  out.resize(length);
  return out;
}

}  // namespace

std::string key_type_name(const crypto::PublicKey& key) {
  auto type = key.type();
  if (!type) throw Error(ErrorCode::InvalidArgument, "this key type has no OpenSSH name keyhold supports");
  switch (*type) {
    case crypto::KeyType::Ed25519: return "ssh-ed25519";
    case crypto::KeyType::EcP256: return "ecdsa-sha2-nistp256";
    case crypto::KeyType::EcP384: return "ecdsa-sha2-nistp384";
    case crypto::KeyType::Rsa2048:
    case crypto::KeyType::Rsa3072:
    case crypto::KeyType::Rsa4096: return "ssh-rsa";
    case crypto::KeyType::Aes256: break;
  }
  throw Error(ErrorCode::InvalidArgument, "an AES key has no OpenSSH form");
}

std::vector<std::uint8_t> public_key_blob(const crypto::PublicKey& key) {
  std::string name = key_type_name(key);
  WireWriter w;
  w.string(name);
  EVP_PKEY* evp = key.evp();
  if (name == "ssh-ed25519") {
    std::uint8_t raw[32];
    std::size_t length = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(evp, raw, &length) != 1 || length != 32) {
      throw Error(ErrorCode::Internal, "cannot read the Ed25519 public key");
    }
    w.string(std::span<const std::uint8_t>(raw, length));  // RFC 8709 section 4
  } else if (name == "ssh-rsa") {
    // RFC 4253 section 6.6: e before n.
    w.mpint(bignum_param(evp, OSSL_PKEY_PARAM_RSA_E));
    w.mpint(bignum_param(evp, OSSL_PKEY_PARAM_RSA_N));
  } else {
    // RFC 5656 section 3.1: curve identifier, then Q as an uncompressed point.
    w.string(name == "ecdsa-sha2-nistp256" ? "nistp256" : "nistp384");
    w.string(octet_param(evp, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY));
  }
  return w.bytes();
}

std::string authorized_keys_line(const crypto::PublicKey& key, std::string_view comment) {
  std::string line = key_type_name(key) + " " + to_base64(public_key_blob(key));
  if (!comment.empty()) line += " " + std::string(comment);
  return line;
}

std::string fingerprint_sha256(const crypto::PublicKey& key) {
  std::vector<std::uint8_t> blob = public_key_blob(key);
  unsigned char digest[32];
  unsigned int length = 0;
  EVP_Digest(blob.data(), blob.size(), digest, &length, EVP_sha256(), nullptr);
  std::string b64 = to_base64(std::span<const std::uint8_t>(digest, length));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();  // ssh-keygen prints it unpadded
  return "SHA256:" + b64;
}

}  // namespace keyhold::ssh
