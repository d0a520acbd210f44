#pragma once
// A key-encryption key in the token: AES-256-GCM with associated data. The
// key never leaves the token; plaintext comes back in a wiped buffer.

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "keyhold/core/secret.hpp"

namespace keyhold::crypto {

struct SealedBytes {
  std::array<std::uint8_t, 12> iv{};       // random, never reused under one key
  std::vector<std::uint8_t> ciphertext;    // ciphertext followed by the 16-byte GCM tag
};

class Kek {
 public:
  virtual ~Kek() = default;
  // Thread-safe.
  virtual SealedBytes encrypt(std::span<const std::uint8_t> plaintext,
                              std::span<const std::uint8_t> associated_data) const = 0;
  // The same, for associated data that covers the IV (a ciphertext header):
  // the IV is drawn first and handed to associated_data.
  using AssociatedDataOf = std::function<std::vector<std::uint8_t>(const std::array<std::uint8_t, 12>& iv)>;
  virtual SealedBytes encrypt_with_iv_in_aad(std::span<const std::uint8_t> plaintext,
                                             const AssociatedDataOf& associated_data) const = 0;
  // Throws InvalidArgument when the ciphertext, IV or associated data do not
  // authenticate (altered ciphertext, wrong context, wrong key).
  virtual SecretBytes decrypt(const SealedBytes& sealed, std::span<const std::uint8_t> associated_data) const = 0;
};

}  // namespace keyhold::crypto
