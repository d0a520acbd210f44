#include <algorithm>

#include "keyhold/core/process.hpp"
#include "openssl_util.hpp"
#include "token_keys.hpp"

namespace keyhold::crypto {
namespace {

constexpr std::size_t kTagBytes = 16;
constexpr std::size_t kIvBytes = 12;
constexpr std::size_t kIvsPerBatch = 64;

// A fresh random 96-bit IV (NIST SP 800-38D section 8.2.2) from the token's
// RNG. One C_GenerateRandom per IV would cost a token round trip per
// encryption, so each thread draws 64 at a time. A batch is never used across
// fork(): the child would reuse the parent's next IVs under the same key,
// which breaks GCM.
void next_iv(hsm::Token& token, std::array<std::uint8_t, kIvBytes>& iv) {
  struct Batch {
    std::array<std::uint8_t, kIvBytes * kIvsPerBatch> bytes;
    std::size_t used = kIvBytes * kIvsPerBatch;
    std::uint64_t generation = 0;
  };
  thread_local Batch batch;
  if (batch.used == batch.bytes.size() || batch.generation != fork_generation()) {
    std::vector<std::uint8_t> drawn = token.random(batch.bytes.size());
    std::copy(drawn.begin(), drawn.end(), batch.bytes.begin());
    batch.used = 0;
    batch.generation = fork_generation();
  }
  std::copy_n(batch.bytes.begin() + static_cast<std::ptrdiff_t>(batch.used), kIvBytes, iv.begin());
  batch.used += kIvBytes;
}

}  // namespace

TokenKek::TokenKek(std::shared_ptr<hsm::Token> token, std::vector<std::uint8_t> id)
    : token_(std::move(token)), ref_{std::move(id), CKO_SECRET_KEY} {}

SealedBytes TokenKek::encrypt(std::span<const std::uint8_t> plaintext,
                              std::span<const std::uint8_t> associated_data) const {
  std::vector<std::uint8_t> copy(associated_data.begin(), associated_data.end());
  return encrypt_with_iv_in_aad(plaintext, [&](const std::array<std::uint8_t, kIvBytes>&) { return copy; });
}

SealedBytes TokenKek::encrypt_with_iv_in_aad(std::span<const std::uint8_t> plaintext,
                                             const AssociatedDataOf& associated_data_of) const {
  SealedBytes sealed;
  // A random IV per message; the caller bounds the number of messages per
  // key well below 2^32 (NIST SP 800-38D section 8.3).
  next_iv(*token_, sealed.iv);
  std::vector<std::uint8_t> associated_data = associated_data_of(sealed.iv);
  CK_GCM_PARAMS params{sealed.iv.data(), sealed.iv.size(), sealed.iv.size() * 8,
                       const_cast<std::uint8_t*>(associated_data.data()), associated_data.size(), kTagBytes * 8};
  CK_MECHANISM mechanism{CKM_AES_GCM, &params, sizeof params};
  sealed.ciphertext = token_->encrypt(ref_, mechanism, plaintext, plaintext.size() + kTagBytes);
  return sealed;
}

SecretBytes TokenKek::decrypt(const SealedBytes& sealed, std::span<const std::uint8_t> associated_data) const {
  if (sealed.ciphertext.size() < kTagBytes) {
    throw Error(ErrorCode::InvalidArgument, "the ciphertext is shorter than its authentication tag");
  }
  std::array<std::uint8_t, 12> iv = sealed.iv;
  CK_GCM_PARAMS params{iv.data(), iv.size(), iv.size() * 8, const_cast<std::uint8_t*>(associated_data.data()),
                       associated_data.size(), kTagBytes * 8};
  CK_MECHANISM mechanism{CKM_AES_GCM, &params, sizeof params};
  try {
    return token_->decrypt(ref_, mechanism, sealed.ciphertext);
  } catch (const Error& e) {
    // Errors are mapped by operation: SoftHSM 2.6.1 reports a failed GCM tag
    // check as CKR_GENERAL_ERROR, other tokens as CKR_ENCRYPTED_DATA_INVALID.
    auto rv = e.ck_rv();
    if (rv && (*rv == CKR_GENERAL_ERROR || *rv == CKR_ENCRYPTED_DATA_INVALID || *rv == CKR_FUNCTION_FAILED ||
               *rv == CKR_ENCRYPTED_DATA_LEN_RANGE)) {
      throw Error(ErrorCode::InvalidArgument,
                  "decryption failed: the ciphertext was altered, or the key or context does not match");
    }
    throw;
  }
}

}  // namespace keyhold::crypto
