// service::Operations over a real token, store, policy and audit log: every
// call is checked by the policy and leaves exactly one audit record.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/service/key_service.hpp"
#include "keyhold/service/operations.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

using testing::ThrowawayToken;

const char* kPolicy = R"(
[[rule]]
name = "payments"
identities = ["spiffe://example.org/payments"]
operations = ["kek.datakey", "kek.decrypt", "kek.rewrap"]
resources = ["kek:payments-*"]
[rule.when]
context = { tenant = "payments" }

[[rule]]
name = "web-team"
identities = ["web-team"]
operations = ["pki.issue"]
resources = ["ca:issuing-*"]
[rule.when]
dns_suffixes = [".web.example.org"]

[[rule]]
name = "ssh-users"
identities = ["spiffe://example.org/users/*"]
operations = ["ssh.sign"]
resources = ["ssh-ca:users-*"]
[rule.when]
principals = ["$identity"]
)";

// A P-256 CSR for the DNS names given (CN = the first).
std::string csr_for(const std::vector<std::string>& names) {
  CPtr<EVP_PKEY, &EVP_PKEY_free> key(EVP_EC_gen("P-256"));
  CPtr<X509_REQ, &X509_REQ_free> req(X509_REQ_new());
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(names[0].c_str()), -1,
                             -1, 0);
  std::string san;
  for (const std::string& n : names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
  STACK_OF(X509_EXTENSION)* extensions = sk_X509_EXTENSION_new_null();
  sk_X509_EXTENSION_push(extensions, X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str()));
  X509_REQ_add_extensions(req.get(), extensions);
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  X509_REQ_set_pubkey(req.get(), key.get());
  X509_REQ_sign(req.get(), key.get(), EVP_sha256());
  CPtr<BIO, &BIO_free> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

std::string ssh_user_key() {
  // An Ed25519 public key in OpenSSH form (any valid key will do).
  CPtr<EVP_PKEY, &EVP_PKEY_free> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  unsigned char raw[32];
  std::size_t length = sizeof raw;
  EVP_PKEY_get_raw_public_key(key.get(), raw, &length);
  std::vector<std::uint8_t> blob;
  auto put = [&](const void* data, std::size_t size) {
    for (int shift = 24; shift >= 0; shift -= 8) blob.push_back(static_cast<std::uint8_t>(size >> shift));
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    blob.insert(blob.end(), bytes, bytes + size);
  };
  put("ssh-ed25519", 11);
  put(raw, 32);
  return "ssh-ed25519 " + to_base64(blob) + " alice@laptop\n";
}

class OperationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One token for the whole binary: each test's CAs and KEKs get names of their own.
    std::string n = std::to_string(counter_++);
    issuing_ = "issuing-" + n;
    users_ = "users-" + n;
    payments_ = "payments-" + n;
    other_ = "other-" + n;
    dir_ = testing::make_temp_directory("keyhold-operations");
    store_ = store::open_sqlite_store(dir_ / "keyhold.db");
    token_ = ThrowawayToken::get().open();
    ring_ = crypto::make_token_key_ring(token_);
    keys_ = std::make_unique<service::KeyService>(*ring_, *store_);

    pki::AuthoritySettings pki_settings;
    pki::Profile server;
    server.name = "server";
    server.dns = {"*"};
    server.subject_fields = {"CN"};
    pki_settings.profiles["server"] = server;
    pki_ = std::make_unique<pki::Authority>(*keys_, *store_, pki_settings);
    pki::NewCa issuing;
    issuing.name = issuing_;
    issuing.subject = "CN=Operations Test CA";
    pki_->create_ca(issuing);

    ssh::AuthoritySettings ssh_settings;
    ssh::Profile user;
    user.name = "user";
    ssh_settings.profiles["user"] = user;
    ssh_ = std::make_unique<ssh::Authority>(*keys_, *store_, ssh_settings);
    ssh_->create_ca(users_, crypto::KeyType::Ed25519);

    envelope_ = std::make_unique<envelope::Service>(*store_, *keys_);
    envelope_->create_kek(payments_);
    envelope_->create_kek(other_);

    audit_key_ = keys_->create("audit-" + std::to_string(counter_++), crypto::KeyType::EcP256, std::nullopt).record;
    audit::LogSettings log;
    log.path = dir_ / "audit.log";
    log.checkpoint_every_records = 4;
    log.sync = [this](int fd) { return fail_syncs_ ? EIO : ::fdatasync(fd); };
    audit_ = std::make_unique<audit::Log>(log, ring_->signer(audit_key_.token_object_id));
    operations_ = std::make_unique<service::Operations>(*keys_, *pki_, *ssh_, *envelope_, *audit_,
                                                        authz::Policy::parse(kPolicy, "policy.toml"));
  }
  void TearDown() override {
    operations_.reset();
    audit_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::vector<nlohmann::json> events() {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_ / "audit.log");
    for (std::string line; std::getline(in, line);) {
      nlohmann::json record = nlohmann::json::parse(line);
      if (record["type"] == "event") out.push_back(record);
    }
    return out;
  }
  audit::VerifyResult verify() {
    return audit::verify(dir_ / "audit.log", ring_->public_key(audit_key_.token_object_id));
  }

  std::string issuing_, users_, payments_, other_;
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<crypto::KeyRing> ring_;
  std::unique_ptr<service::KeyService> keys_;
  std::unique_ptr<pki::Authority> pki_;
  std::unique_ptr<ssh::Authority> ssh_;
  std::unique_ptr<envelope::Service> envelope_;
  store::KeyRecord audit_key_;
  bool fail_syncs_ = false;
  std::unique_ptr<audit::Log> audit_;
  std::unique_ptr<service::Operations> operations_;
  static inline int counter_ = 0;
};

const service::Caller kPayments{"spiffe://example.org/payments", "127.0.0.1:40000", "req-1"};

TEST_F(OperationsTest, AllowedDeniedAndFailedCallsEachLeaveOneVerifiableAuditRecord) {
  envelope::Context tenant = {{"tenant", "payments"}};
  envelope::DataKey key = operations_->datakey(kPayments, payments_, tenant, 32);
  EXPECT_EQ(operations_->decrypt(kPayments, payments_, key.ciphertext, tenant).plaintext.size(), 32u);

  // The context constraint: another tenant is refused, naming only operation and resource.
  try {
    operations_->datakey(kPayments, payments_, {{"tenant", "billing"}}, 32);
    ADD_FAILURE() << "allowed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::PermissionDenied);
    EXPECT_EQ(std::string(e.what()), "kek.datakey on kek:" + payments_ + " denied");
  }
  // Another KEK in the path: denied before anything is decrypted.
  EXPECT_THROW(operations_->decrypt(kPayments, other_, key.ciphertext, tenant), Error);
  // The path's KEK allowed, but the ciphertext is another KEK's: failed.
  envelope::Ciphertext foreign = envelope_->encrypt(other_, std::span<const std::uint8_t>(), tenant);
  EXPECT_THROW(operations_->decrypt(kPayments, payments_, foreign, tenant), Error);
  // An unknown caller gets nothing.
  EXPECT_THROW(operations_->datakey({"mallory", "10.0.0.9:1", "req-x"}, payments_, tenant, 32), Error);

  std::vector<nlohmann::json> records = events();
  ASSERT_EQ(records.size(), 6u);
  std::vector<std::string> outcomes;
  for (const auto& r : records) outcomes.push_back(r["outcome"]);
  EXPECT_EQ(outcomes, (std::vector<std::string>{"allowed", "allowed", "denied", "denied", "failed", "denied"}));
  EXPECT_EQ(records[0]["operation"], "kek.datakey");
  EXPECT_EQ(records[0]["resource"], "kek:" + payments_);
  EXPECT_EQ(records[0]["identity"], "spiffe://example.org/payments");
  EXPECT_EQ(records[0]["client_address"], "127.0.0.1:40000");
  EXPECT_EQ(records[0]["context"]["tenant"], "payments");
  EXPECT_EQ(records[2]["error_code"], "permission_denied");
  EXPECT_EQ(records[4]["error_code"], "invalid_argument");
  // No data key in the log.
  std::ifstream in(dir_ / "audit.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(log.find(to_base64(key.plaintext.view())), std::string::npos);
  audit::VerifyResult verified = verify();
  EXPECT_TRUE(verified.ok) << verified.problem;
  EXPECT_GE(verified.checkpoints, 1u);
}

TEST_F(OperationsTest, RewrapNeedsBothContextsAllowed) {
  envelope::Context tenant = {{"tenant", "payments"}};
  envelope::DataKey key = operations_->datakey(kPayments, payments_, tenant, 32);
  EXPECT_NO_THROW(operations_->rewrap(kPayments, payments_, key.ciphertext, tenant, std::nullopt));
  EXPECT_THROW(operations_->rewrap(kPayments, payments_, key.ciphertext, tenant, envelope::Context{{"tenant", "x"}}),
               Error);
  std::vector<nlohmann::json> records = events();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[2]["outcome"], "denied");
}

TEST_F(OperationsTest, PkiIssueIsJudgedOnTheNamesTheCertificateWouldHold) {
  service::Caller web{"web-team", "127.0.0.1:1", "req-2"};
  pki::IssuedCertificate issued =
      operations_->pki_issue(web, {issuing_, "server", csr_for({"www.web.example.org", "api.web.example.org"}), 30});
  EXPECT_FALSE(issued.pem.empty());
  EXPECT_EQ(issued.record.requester, "web-team");
  EXPECT_THROW(operations_->pki_issue(web, {issuing_, "server", csr_for({"www.web.example.org", "evil.example.com"}), 30}),
               Error);
  EXPECT_THROW(operations_->pki_issue(web, {issuing_, "server", "not a CSR", 30}), Error);
  std::vector<nlohmann::json> records = events();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0]["outcome"], "allowed");
  EXPECT_EQ(records[1]["outcome"], "denied");
  EXPECT_EQ(records[2]["outcome"], "denied") << "an unreadable CSR names nothing the policy allows";
}

TEST_F(OperationsTest, SshSignOnlyForTheCallersOwnName) {
  service::Caller alice{"spiffe://example.org/users/alice", "127.0.0.1:2", "req-3"};
  ssh::SignInput input;
  input.ca = users_;
  input.public_key = ssh_user_key();
  input.key_id = "alice";
  input.principals = {"alice"};
  ssh::SignedCertificate signed_certificate = operations_->ssh_sign(alice, input);
  EXPECT_EQ(signed_certificate.record.requester, "spiffe://example.org/users/alice");
  input.principals = {"root"};
  EXPECT_THROW(operations_->ssh_sign(alice, input), Error);
  EXPECT_EQ(events().size(), 2u);
}

TEST_F(OperationsTest, ABrokenAuditLogStopsEveryOperationBeforeItHappens) {
  envelope::Context tenant = {{"tenant", "payments"}};
  operations_->datakey(kPayments, payments_, tenant, 32);
  std::uint64_t count = envelope_->show(payments_).versions[0].record.encryptions;
  fail_syncs_ = true;
  // The record of this one cannot be made durable: the caller is told so.
  EXPECT_THROW(operations_->datakey(kPayments, payments_, tenant, 32), Error);
  EXPECT_FALSE(audit_->healthy());
  std::uint64_t after_failure = envelope_->show(payments_).versions[0].record.encryptions;
  // From now on nothing is carried out at all.
  try {
    operations_->datakey(kPayments, payments_, tenant, 32);
    ADD_FAILURE() << "carried out unaudited";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  }
  EXPECT_EQ(envelope_->show(payments_).versions[0].record.encryptions, after_failure);
  EXPECT_GT(after_failure, count);
}

TEST_F(OperationsTest, ANewPolicyTakesEffectAtOnce) {
  envelope::Context tenant = {{"tenant", "payments"}};
  EXPECT_NO_THROW(operations_->datakey(kPayments, payments_, tenant, 32));
  operations_->set_policy(authz::Policy::parse("", "empty.toml"));
  EXPECT_THROW(operations_->datakey(kPayments, payments_, tenant, 32), Error);
  operations_->set_policy(authz::Policy::parse(authz::dev_policy_toml(), "dev.toml"));
  EXPECT_NO_THROW(operations_->datakey({"admin", "127.0.0.1:3", "req-4"}, payments_, {}, 16));
}

}  // namespace
}  // namespace keyhold
