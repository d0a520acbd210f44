#pragma once
// The seam between what needs a signature (X.509 and SSH authorities, the
// audit log) and the token that makes it. Implementations keep the private
// key inside the token.

#include <cstdint>
#include <span>
#include <vector>

#include "keyhold/crypto/key_type.hpp"
#include "keyhold/crypto/public_key.hpp"
#include "keyhold/crypto/signature_algorithm.hpp"

namespace keyhold::crypto {

class Signer {
 public:
  virtual ~Signer() = default;

  virtual KeyType key_type() const noexcept = 0;
  virtual const PublicKey& public_key() const noexcept = 0;

  // Signs message, hashing it outside the token first where the algorithm
  // hashes (the token gets the digest). Returns the signature as X.509 and
  // OpenSSL encode it: DER Ecdsa-Sig-Value for ECDSA, raw bytes for RSA and
  // Ed25519. Throws InvalidArgument when the algorithm does not fit the key.
  // Thread-safe.
  virtual std::vector<std::uint8_t> sign(SignatureAlgorithm algorithm,
                                         std::span<const std::uint8_t> message) const = 0;

  // Signs a digest computed by the caller (not for Ed25519, which signs the
  // message itself). Same encoding and errors as sign().
  virtual std::vector<std::uint8_t> sign_digest(SignatureAlgorithm algorithm,
                                                std::span<const std::uint8_t> digest) const = 0;
};

}  // namespace keyhold::crypto
