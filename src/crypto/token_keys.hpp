#pragma once
// Internal to src/crypto: the token-backed Signer and Kek, and the PKCS#11
// encodings they share with TokenKeyRing.

#include <memory>
#include <span>
#include <vector>

#include "keyhold/crypto/kek.hpp"
#include "keyhold/crypto/signer.hpp"
#include "keyhold/hsm/token.hpp"

namespace keyhold::crypto {

// DER OIDs for CKA_EC_PARAMS (PKCS#11 v2.40 section 2.3.3: namedCurve OID).
inline constexpr std::uint8_t kOidP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
inline constexpr std::uint8_t kOidP384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
inline constexpr std::uint8_t kOidEd25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
// PKCS#11 3.0 also allows the curve name as a PrintableString.
inline constexpr std::uint8_t kNameEd25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's',
                                                '2',  '5',  '5', '1', '9'};

class TokenSigner final : public Signer {
 public:
  TokenSigner(std::shared_ptr<hsm::Token> token, std::vector<std::uint8_t> id, KeyType type, PublicKey public_key);
  KeyType key_type() const noexcept override { return type_; }
  const PublicKey& public_key() const noexcept override { return public_key_; }
  std::vector<std::uint8_t> sign(SignatureAlgorithm algorithm, std::span<const std::uint8_t> message) const override;
  std::vector<std::uint8_t> sign_digest(SignatureAlgorithm algorithm,
                                        std::span<const std::uint8_t> digest) const override;

 private:
  void require(SignatureAlgorithm algorithm) const;

  std::shared_ptr<hsm::Token> token_;
  hsm::ObjectRef ref_;
  KeyType type_;
  PublicKey public_key_;
  std::size_t signature_size_;  // what C_Sign returns for this key
};

class TokenKek final : public Kek {
 public:
  TokenKek(std::shared_ptr<hsm::Token> token, std::vector<std::uint8_t> id);
  SealedBytes encrypt(std::span<const std::uint8_t> plaintext,
                      std::span<const std::uint8_t> associated_data) const override;
  SealedBytes encrypt_with_iv_in_aad(std::span<const std::uint8_t> plaintext,
                                     const AssociatedDataOf& associated_data) const override;
  SecretBytes decrypt(const SealedBytes& sealed, std::span<const std::uint8_t> associated_data) const override;

 private:
  std::shared_ptr<hsm::Token> token_;
  hsm::ObjectRef ref_;
};

}  // namespace keyhold::crypto
