// Keys in a real SoftHSM token through crypto::KeyRing: every key type is
// created with the right attributes, signs or encrypts, and the results are
// checked by OpenSSL (in process and the openssl command) on the exported
// public key.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "keyhold/core/encoding.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/token.hpp"
#include "support/process.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

using crypto::KeyType;
using crypto::SignatureAlgorithm;
using testing::ThrowawayToken;

class KeyRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_ = ThrowawayToken::get().open();
    ring_ = crypto::make_token_key_ring(token_);
  }
  std::string unique(const std::string& base) { return base + "-" + std::to_string(counter_++); }

  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<crypto::KeyRing> ring_;
  static inline int counter_ = 0;
};

std::vector<std::uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

class SigningKeyTest : public KeyRingTest, public ::testing::WithParamInterface<KeyType> {};

TEST_P(SigningKeyTest, CreatesNonExtractableSignOnlyKeyWhoseSignaturesOpenSslVerifies) {
  KeyType type = GetParam();
  std::string label = unique(std::string(crypto::to_string(type)));
  crypto::TokenKey key = ring_->create(label, type);

  EXPECT_EQ(key.label, label);
  EXPECT_EQ(key.id.size(), 16u);
  ASSERT_TRUE(key.type.has_value());
  EXPECT_EQ(*key.type, type);
  EXPECT_TRUE(key.has_public_object);
  const crypto::SecurityAttributes& a = key.attributes;
  EXPECT_TRUE(a.private_object);
  EXPECT_TRUE(a.sensitive);
  EXPECT_FALSE(a.extractable);
  EXPECT_TRUE(a.always_sensitive);
  EXPECT_TRUE(a.never_extractable);
  EXPECT_TRUE(a.local);
  EXPECT_FALSE(a.modifiable);
  EXPECT_EQ(a.usages(), std::vector<std::string>{"sign"});
  EXPECT_NE(key.uri.find("object=" + label), std::string::npos) << key.uri;
  EXPECT_NE(key.uri.find("type=private"), std::string::npos) << key.uri;

  crypto::PublicKey public_key = ring_->public_key(key.id);
  ASSERT_EQ(public_key.type(), type);
  auto signer = ring_->signer(key.id);
  std::vector<std::uint8_t> message = bytes("keyhold signs this message in the token");

  std::vector<SignatureAlgorithm> algorithms;
  for (SignatureAlgorithm alg :
       {SignatureAlgorithm::RsaPkcs1Sha256, SignatureAlgorithm::RsaPkcs1Sha384, SignatureAlgorithm::RsaPkcs1Sha512,
        SignatureAlgorithm::RsaPssSha256, SignatureAlgorithm::RsaPssSha512, SignatureAlgorithm::EcdsaSha256,
        SignatureAlgorithm::EcdsaSha384, SignatureAlgorithm::Ed25519}) {
    if (crypto::can_sign_with(type, alg)) algorithms.push_back(alg);
  }
  ASSERT_FALSE(algorithms.empty());
  for (SignatureAlgorithm alg : algorithms) {
    std::vector<std::uint8_t> signature = signer->sign(alg, message);
    EXPECT_TRUE(public_key.verify(alg, message, signature)) << crypto::to_string(alg);
    std::vector<std::uint8_t> tampered = message;
    tampered[0] ^= 1;
    EXPECT_FALSE(public_key.verify(alg, tampered, signature)) << crypto::to_string(alg);
  }

  // The openssl command, an independent peer, verifies the default algorithm.
  auto dir = testing::make_temp_directory("keyhold-verify");
  std::string pub = (dir / "key.pem").string(), msg = (dir / "msg").string(), sig = (dir / "sig").string();
  testing::write_file(pub, public_key.pem());
  testing::write_file(msg, std::string(message.begin(), message.end()));
  SignatureAlgorithm alg = *crypto::default_signature_algorithm(type);
  std::vector<std::uint8_t> signature = signer->sign(alg, message);
  testing::write_file(sig, std::string(signature.begin(), signature.end()));
  std::vector<std::string> verify = {"openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-sigfile", sig};
  if (type == KeyType::Ed25519) {
    verify.insert(verify.end(), {"-rawin", "-in", msg});
  } else {
    verify.insert(verify.end(), {"-rawin", "-digest", alg == SignatureAlgorithm::EcdsaSha384 ? "sha384" : "sha256", "-in", msg});
  }
  testing::ProcessResult r = testing::run_process(verify);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("Signature Verified Successfully"), std::string::npos) << r.out << r.err;
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(EveryKeyPairType, SigningKeyTest,
                         ::testing::Values(KeyType::Rsa2048, KeyType::Rsa3072, KeyType::Rsa4096, KeyType::EcP256,
                                           KeyType::EcP384, KeyType::Ed25519),
                         [](const auto& info) {
                           std::string name(crypto::to_string(info.param));
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

TEST_F(KeyRingTest, Aes256KeyEncryptsAndDecryptsWithAssociatedDataOnly) {
  crypto::TokenKey key = ring_->create(unique("kek"), KeyType::Aes256);
  EXPECT_EQ(key.kind, crypto::TokenKey::Kind::SecretKey);
  EXPECT_EQ(key.type, KeyType::Aes256);
  EXPECT_FALSE(key.has_public_object);
  EXPECT_TRUE(key.attributes.exposure_reasons().empty());
  EXPECT_EQ(key.attributes.usages(), (std::vector<std::string>{"encrypt", "decrypt"}));
  EXPECT_NE(key.uri.find("type=secret-key"), std::string::npos) << key.uri;

  auto kek = ring_->kek(key.id);
  std::vector<std::uint8_t> plaintext(32, 0x5a), context = bytes("tenant=payments");
  crypto::SealedBytes sealed = kek->encrypt(plaintext, context);
  EXPECT_EQ(sealed.ciphertext.size(), plaintext.size() + 16);
  EXPECT_NE(std::vector<std::uint8_t>(sealed.ciphertext.begin(), sealed.ciphertext.begin() + 32), plaintext);
  SecretBytes opened = kek->decrypt(sealed, context);
  EXPECT_EQ(std::vector<std::uint8_t>(opened.view().begin(), opened.view().end()), plaintext);

  // Wrong context, altered ciphertext: a clear InvalidArgument, never plaintext.
  try {
    kek->decrypt(sealed, bytes("tenant=other"));
    FAIL() << "decrypt with the wrong context succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
  }
  crypto::SealedBytes altered = sealed;
  altered.ciphertext[3] ^= 0x80;
  EXPECT_THROW(kek->decrypt(altered, context), Error);
  // The session that failed was not poisoned: the next decrypt works.
  EXPECT_EQ(kek->decrypt(sealed, context).size(), 32u);

  EXPECT_THROW(ring_->public_key(key.id), Error);
  EXPECT_THROW(ring_->signer(key.id), Error);
}

TEST_F(KeyRingTest, IvsAreNeverRepeatedAcrossEncryptionsOrAcrossFork) {
  crypto::TokenKey key = ring_->create(unique("iv-kek"), KeyType::Aes256);
  auto kek = ring_->kek(key.id);
  std::vector<std::uint8_t> plaintext(16, 1);
  std::set<std::array<std::uint8_t, 12>> seen;
  for (int i = 0; i < 500; ++i) EXPECT_TRUE(seen.insert(kek->encrypt(plaintext, {}).iv).second) << i;

  // IVs are drawn in batches per thread: a forked child must not take the
  // parent's next ones (same key, same IV breaks GCM).
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::array<std::uint8_t, 12> iv{};
    try {
      iv = kek->encrypt(plaintext, {}).iv;
    } catch (...) {
    }
    (void)!::write(fds[1], iv.data(), iv.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::array<std::uint8_t, 12> child_iv{};
  ASSERT_EQ(::read(fds[0], child_iv.data(), child_iv.size()), 12);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_NE(child_iv, (std::array<std::uint8_t, 12>{})) << "the child could not encrypt";
  std::array<std::uint8_t, 12> parent_next = kek->encrypt(plaintext, {}).iv;
  EXPECT_NE(child_iv, parent_next) << "parent and child used the same IV under one key";
  EXPECT_EQ(seen.count(child_iv), 0u);
}

TEST_F(KeyRingTest, DestroyRemovesPrivateAndPublicObjects) {
  crypto::TokenKey key = ring_->create(unique("doomed"), KeyType::EcP256);
  ASSERT_TRUE(ring_->find(key.id).has_value());
  ring_->destroy(key.id);
  EXPECT_FALSE(ring_->find(key.id).has_value());
  EXPECT_THROW(ring_->public_key(key.id), Error);
  try {
    ring_->destroy(key.id);
    FAIL() << "destroying twice succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
  }
}

TEST_F(KeyRingTest, ListShowsEveryKeyWithItsKind) {
  crypto::TokenKey a = ring_->create(unique("listed-ec"), KeyType::EcP256);
  crypto::TokenKey b = ring_->create(unique("listed-aes"), KeyType::Aes256);
  std::vector<crypto::TokenKey> keys = ring_->list();
  auto find = [&](const std::vector<std::uint8_t>& id) {
    for (const auto& k : keys) {
      if (k.id == id) return &k;
    }
    return static_cast<const crypto::TokenKey*>(nullptr);
  };
  ASSERT_NE(find(a.id), nullptr);
  ASSERT_NE(find(b.id), nullptr);
  EXPECT_EQ(find(a.id)->label, a.label);
  EXPECT_TRUE(find(a.id)->has_public_object);
  EXPECT_EQ(find(b.id)->kind, crypto::TokenKey::Kind::SecretKey);
}

TEST_F(KeyRingTest, DescribeNamesTheTokenAndFindsEveryMechanismKeyholdNeeds) {
  crypto::TokenSummary s = ring_->describe();
  EXPECT_EQ(s.label, ThrowawayToken::get().label());
  EXPECT_EQ(s.manufacturer, "SoftHSM project");
  EXPECT_NE(s.uri.find("token=" + s.label), std::string::npos);
  EXPECT_TRUE(s.missing_for.empty()) << s.missing_for.front();
  EXPECT_NE(std::find(s.mechanisms.begin(), s.mechanisms.end(), "CKM_ECDSA"), s.mechanisms.end());
}

}  // namespace
}  // namespace keyhold
