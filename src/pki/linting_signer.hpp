#pragma once
// Internal to src/pki: a Signer that lints the exact bytes it is asked to sign
// (a DER TBSCertificate or TBSCertList, handed over whole by keyhold's OpenSSL
// provider) and refuses to pass them to the token when the linter finds an
// error. This is where "lint before the token signs" is enforced.

#include <functional>
#include <memory>
#include <mutex>

#include "keyhold/core/error.hpp"
#include "keyhold/crypto/signer.hpp"
#include "keyhold/pki/lint.hpp"

namespace keyhold::pki {

class LintingSigner final : public crypto::Signer {
 public:
  using Linter = std::function<std::vector<LintFinding>(std::span<const std::uint8_t>)>;
  LintingSigner(std::shared_ptr<const crypto::Signer> inner, Linter linter)
      : inner_(std::move(inner)), linter_(std::move(linter)) {}

  crypto::KeyType key_type() const noexcept override { return inner_->key_type(); }
  const crypto::PublicKey& public_key() const noexcept override { return inner_->public_key(); }

  std::vector<std::uint8_t> sign(crypto::SignatureAlgorithm algorithm,
                                 std::span<const std::uint8_t> message) const override {
    std::vector<LintFinding> findings = linter_(message);
    {
      std::lock_guard lock(mutex_);
      findings_ = findings;
    }
    if (has_errors(findings)) throw Error(ErrorCode::FailedPrecondition, describe(findings));
    return inner_->sign(algorithm, message);
  }

  // Only whole messages can be linted: a digest cannot be.
  std::vector<std::uint8_t> sign_digest(crypto::SignatureAlgorithm, std::span<const std::uint8_t>) const override {
    throw Error(ErrorCode::Internal, "the CA signer signs whole to-be-signed structures only");
  }

  std::vector<LintFinding> findings() const {
    std::lock_guard lock(mutex_);
    return findings_;
  }

 private:
  std::shared_ptr<const crypto::Signer> inner_;
  Linter linter_;
  mutable std::mutex mutex_;
  mutable std::vector<LintFinding> findings_;
};

}  // namespace keyhold::pki
