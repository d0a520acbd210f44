#pragma once
// A public key, held as an OpenSSL EVP_PKEY (public half only). Immutable;
// safe to share between threads.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "keyhold/crypto/key_type.hpp"
#include "keyhold/crypto/signature_algorithm.hpp"

struct evp_pkey_st;

namespace keyhold::crypto {

class PublicKey {
 public:
  // Takes ownership of key (one reference).
  explicit PublicKey(evp_pkey_st* key);
  // From DER SubjectPublicKeyInfo; InvalidArgument when malformed.
  static PublicKey from_der(std::span<const std::uint8_t> der);
  // From PEM "PUBLIC KEY"; InvalidArgument when malformed.
  static PublicKey from_pem(std::string_view pem);

  // The keyhold type, when it is one keyhold makes (nullopt for e.g. P-521).
  std::optional<KeyType> type() const noexcept { return type_; }
  std::vector<std::uint8_t> der() const;  // SubjectPublicKeyInfo
  std::string pem() const;
  evp_pkey_st* evp() const noexcept { return key_.get(); }

  // Verifies a signature as Signer::sign produced it (OpenSSL, no token).
  bool verify(SignatureAlgorithm algorithm, std::span<const std::uint8_t> message,
              std::span<const std::uint8_t> signature) const;

  bool operator==(const PublicKey& other) const;

 private:
  std::shared_ptr<evp_pkey_st> key_;
  std::optional<KeyType> type_;
};

}  // namespace keyhold::crypto
