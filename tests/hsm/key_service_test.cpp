// service::KeyService over a real token and a real SQLite store: the rules
// that the CLI tests cannot reach from outside.
#include <gtest/gtest.h>

#include <filesystem>

#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/service/key_service.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

using testing::ThrowawayToken;

// The real store, except that inserting a key fails (a full disk, say).
class FailingInsertStore final : public store::Store, private store::KeyRepository {
 public:
  explicit FailingInsertStore(store::Store& inner) : inner_(inner) {}
  store::KeyRepository& keys() override { return *this; }
  store::CaRepository& cas() override { return inner_.cas(); }
  store::CertificateRepository& certificates() override { return inner_.certificates(); }
  store::SshCaRepository& ssh_cas() override { return inner_.ssh_cas(); }
  store::SshCertificateRepository& ssh_certificates() override { return inner_.ssh_certificates(); }
  store::SshKeyRepository& ssh_keys() override { return inner_.ssh_keys(); }
  store::KekRepository& keks() override { return inner_.keks(); }
  int schema_version() override { return inner_.schema_version(); }

 private:
  void begin_transaction() override { tx_ = std::make_unique<store::Transaction>(inner_); }
  void commit_transaction() override { tx_->commit(); }
  void rollback_transaction() noexcept override { tx_.reset(); }

  void insert(store::KeyRecord&) override { throw Error(ErrorCode::Unavailable, "store write failed (injected)"); }
  std::optional<store::KeyRecord> find_active(std::string_view name) override { return inner_.keys().find_active(name); }
  std::optional<store::KeyRecord> find_by_object_id(std::span<const std::uint8_t> id) override {
    return inner_.keys().find_by_object_id(id);
  }
  std::vector<store::KeyRecord> list(bool all) override { return inner_.keys().list(all); }
  void mark_destroyed(std::string_view name, std::string_view at) override { inner_.keys().mark_destroyed(name, at); }
  void set_used_by(std::int64_t key_id, std::optional<std::string_view> used_by) override {
    inner_.keys().set_used_by(key_id, used_by);
  }

  store::Store& inner_;
  std::unique_ptr<store::Transaction> tx_;
};

class KeyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_directory("keyhold-service");
    store_ = store::open_sqlite_store(dir_ / "keyhold.db");
    ring_ = crypto::make_token_key_ring(ThrowawayToken::get().open());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<crypto::KeyRing> ring_;
};

TEST_F(KeyServiceTest, AFailedStoreWriteDestroysTheNewTokenKeyAgain) {
  FailingInsertStore failing(*store_);
  service::KeyService keys(*ring_, failing);
  try {
    keys.create("orphan-candidate", crypto::KeyType::EcP256, std::nullopt);
    FAIL() << "create succeeded although the store could not record the key";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  }
  EXPECT_TRUE(ring_->find_by_label("orphan-candidate").empty()) << "a token key outlived its failed create";
  EXPECT_FALSE(store_->keys().find_active("orphan-candidate").has_value());
}

TEST_F(KeyServiceTest, SignsAndEncryptsThroughNamedKeysAndRefusesDestroyedOnes) {
  service::KeyService keys(*ring_, *store_);
  keys.create("svc-signer", crypto::KeyType::Ed25519, crypto::KeyPurpose::Sign);
  keys.create("svc-kek", crypto::KeyType::Aes256, crypto::KeyPurpose::Encrypt);

  std::vector<std::uint8_t> message = {'h', 'i'};
  auto signer = keys.signer("svc-signer");
  EXPECT_TRUE(keys.public_key("svc-signer")
                  .verify(crypto::SignatureAlgorithm::Ed25519, message,
                          signer->sign(crypto::SignatureAlgorithm::Ed25519, message)));
  auto kek = keys.kek("svc-kek");
  EXPECT_EQ(kek->decrypt(kek->encrypt(message, {}), {}).size(), 2u);
  EXPECT_THROW(keys.kek("svc-signer"), Error);
  EXPECT_THROW(keys.signer("svc-kek"), Error);

  keys.destroy("svc-signer");
  try {
    keys.signer("svc-signer");
    FAIL() << "a destroyed key was usable";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
  }
  service::KeyInventory inventory = keys.list(true);
  ASSERT_EQ(inventory.keys.size(), 2u);
  EXPECT_EQ(inventory.keys[0].record.name, "svc-kek");
  EXPECT_EQ(inventory.keys[1].record.state, "destroyed");
}

TEST_F(KeyServiceTest, AKeyLabelAlreadyInTheTokenIsNotTakenOver) {
  // Another keyhold store (or tool) made a key with this label in the same token.
  ring_->create("someone-elses", crypto::KeyType::EcP256);
  service::KeyService keys(*ring_, *store_);
  try {
    keys.create("someone-elses", crypto::KeyType::EcP256, std::nullopt);
    FAIL() << "create reused a label the token already had";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::AlreadyExists);
  }
  EXPECT_EQ(ring_->find_by_label("someone-elses").size(), 1u);
}

}  // namespace
}  // namespace keyhold
