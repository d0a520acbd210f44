// pki::Authority and the lint gate over a real token and store: what the
// command-line tests cannot reach.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <map>
#include <mutex>

#include "../../src/pki/linting_signer.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/crypto/openssl_provider.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/pki/authority.hpp"
#include "keyhold/service/key_service.hpp"
#include "support/call_counter.hpp"
#include "support/process.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

using testing::ThrowawayToken;

using testing::CallCounter;

pki::Profile open_profile() {
  pki::Profile p;
  p.name = "server";
  p.dns = {"*"};
  p.subject_fields = {"CN", "O"};
  return p;
}

class AuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_directory("keyhold-authority");
    store_ = store::open_sqlite_store(dir_ / "keyhold.db");
    token_ = ThrowawayToken::get().open();
    ring_ = crypto::make_token_key_ring(token_);
    keys_ = std::make_unique<service::KeyService>(*ring_, *store_);
    pki::AuthoritySettings settings;
    settings.profiles["server"] = open_profile();
    authority_ = std::make_unique<pki::Authority>(*keys_, *store_, settings);
  }
  void TearDown() override {
    authority_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A self-signed CA certificate for a token key, signed in the token through the provider.
  std::string self_signed_ca(const crypto::TokenKey& key, bool with_ski = true, long not_before_offset = -60) {
    auto signer = ring_->signer(key.id);
    X509* x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234567);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("Imported CA"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_gmtime_adj(X509_getm_notBefore(x), not_before_offset);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
    X509_set_pubkey(x, signer->public_key().evp());
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    X509_EXTENSION* bc = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    X509_EXTENSION* ku = X509V3_EXT_conf_nid(nullptr, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    X509_add_ext(x, bc, -1);
    X509_add_ext(x, ku, -1);
    X509_EXTENSION_free(bc);
    X509_EXTENSION_free(ku);
    if (with_ski) {
      X509_EXTENSION* ski = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_key_identifier, "hash");
      X509_add_ext(x, ski, -1);
      X509_EXTENSION_free(ski);
    }
    auto pkey = crypto::make_token_pkey(signer);
    auto md = crypto::make_sign_context(pkey.get(), *crypto::default_signature_algorithm(signer->key_type()));
    EXPECT_GT(X509_sign_ctx(x, md.get()), 0);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, x);
    char* data = nullptr;
    long length = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(length));
    BIO_free(bio);
    X509_free(x);
    return pem;
  }

  pki::IssueRequest leaf_request(const std::string& ca, const std::string& host) {
    pki::IssueRequest r;
    r.ca = ca;
    r.profile = "server";
    r.generate_key = crypto::KeyType::EcP256;
    r.common_name = host;
    return r;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<crypto::KeyRing> ring_;
  std::unique_ptr<service::KeyService> keys_;
  std::unique_ptr<pki::Authority> authority_;
};

TEST_F(AuthorityTest, ImportsACaWhoseKeyKeyholdMadeAndIssuesWithIt) {
  service::KeyDetails key = keys_->create("imported-ca-key", crypto::KeyType::EcP256, std::nullopt);
  std::string pem = self_signed_ca(*key.token);
  pki::CaDetails ca = authority_->import_ca("imported", pem, key.token->uri);
  EXPECT_EQ(ca.ca.kind, "imported");
  ASSERT_EQ(ca.versions.size(), 1u);
  EXPECT_EQ(ca.versions[0].key_object_id, key.token->id);
  // The key is now in use: it cannot be destroyed, nor adopted by another CA.
  EXPECT_EQ(keys_->show("imported-ca-key").record.used_by, "ca:imported:v1");
  EXPECT_THROW(keys_->destroy("imported-ca-key"), Error);
  EXPECT_THROW(authority_->import_ca("imported-twice", pem, key.token->uri), Error);

  pki::IssuedCertificate leaf = authority_->issue(leaf_request("imported", "leaf.imported.test"));
  auto dir = dir_ / "verify";
  std::filesystem::create_directory(dir);
  testing::write_file((dir / "ca.pem").string(), pem);
  testing::write_file((dir / "leaf.pem").string(), leaf.pem);
  testing::ProcessResult r =
      testing::run_process({"openssl", "verify", "-x509_strict", "-CAfile", (dir / "ca.pem").string(), (dir / "leaf.pem").string()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(AuthorityTest, ImportsAKeyMadeByAnotherToolButRefusesMismatchesAndUnsafeKeys) {
  // A sensitive, never-extractable key made by pkcs11-tool, not by keyhold.
  std::string pin = ThrowawayToken::get().pin_text();
  std::vector<std::string> tool = {"pkcs11-tool", "--module", ThrowawayToken::module_path(), "--token-label",
                                   ThrowawayToken::get().label(), "--login", "--pin", pin};
  auto run_tool = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = tool;
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run_process(argv);
  };
  ASSERT_EQ(run_tool({"--keypairgen", "--key-type", "EC:prime256v1", "--label", "hsm-team-ca", "--id", "cafe01", "--usage-sign"}).exit_code, 0);
  std::optional<crypto::TokenKey> key = ring_->find(*from_hex("cafe01"));
  ASSERT_TRUE(key.has_value());
  std::string pem = self_signed_ca(*key);
  pki::CaDetails ca = authority_->import_ca("hsm-team", pem, "pkcs11:object=hsm-team-ca;type=private");
  EXPECT_EQ(ca.versions[0].key_object_id, *from_hex("cafe01"));
  EXPECT_EQ(keys_->show("ca.hsm-team.v1").record.used_by, "ca:hsm-team:v1");

  // The certificate of one key with the URI of another: refused, nothing stored.
  service::KeyDetails other = keys_->create("other-key", crypto::KeyType::EcP256, std::nullopt);
  try {
    authority_->import_ca("mismatch", pem, other.token->uri);
    FAIL() << "imported a certificate for another key";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("is not the public key of"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(store_->cas().find("mismatch").has_value());

  // An extractable key is refused with the reason.
  ASSERT_EQ(run_tool({"--keypairgen", "--key-type", "EC:prime256v1", "--label", "leaky-ca", "--id", "cafe02", "--usage-sign",
                      "--extractable"}).exit_code, 0);
  try {
    authority_->import_ca("leaky", pem, "pkcs11:id=%ca%fe%02");
    FAIL() << "imported an extractable key";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::PermissionDenied);
    EXPECT_NE(std::string(e.what()).find("CKA_EXTRACTABLE is TRUE"), std::string::npos) << e.what();
  }
  // A CA certificate without a subjectKeyIdentifier: refused.
  service::KeyDetails bare = keys_->create("bare-ca-key", crypto::KeyType::EcP256, std::nullopt);
  EXPECT_THROW(authority_->import_ca("bare", self_signed_ca(*bare.token, false), bare.token->uri), Error);
}

TEST_F(AuthorityTest, ACaValidFromThisSecondIssuesAtOnce) {
  // Tools like certtool start a CA's validity now: a leaf must not start before it.
  service::KeyDetails key = keys_->create("fresh-ca-key", crypto::KeyType::EcP256, std::nullopt);
  authority_->import_ca("fresh", self_signed_ca(*key.token, true, 0), key.token->uri);
  pki::IssuedCertificate leaf = authority_->issue(leaf_request("fresh", "fresh.example.test"));
  EXPECT_GE(leaf.record.not_before, authority_->show("fresh").versions[0].not_before);
}

TEST_F(AuthorityTest, ACaKeyThatMayAlsoDeriveIsImportedWithAWarning) {
  std::string pin = ThrowawayToken::get().pin_text();
  testing::ProcessResult made = testing::run_process(
      {"pkcs11-tool", "--module", ThrowawayToken::module_path(), "--token-label", ThrowawayToken::get().label(), "--login",
       "--pin", pin, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "two-faced", "--id", "cafe03", "--usage-sign",
       "--usage-derive"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::optional<crypto::TokenKey> key = ring_->find(*from_hex("cafe03"));
  ASSERT_TRUE(key.has_value());
  ASSERT_TRUE(key->attributes.derive);
  pki::CaDetails ca = authority_->import_ca("two-faced", self_signed_ca(*key), "pkcs11:id=%ca%fe%03");
  ASSERT_EQ(ca.warnings.size(), 1u);
  EXPECT_NE(ca.warnings[0].find("derive"), std::string::npos) << ca.warnings[0];
  // A key keyhold made for a CA draws no such warning.
  service::KeyDetails own = keys_->create("sign-only-ca-key", crypto::KeyType::EcP256, std::nullopt);
  EXPECT_TRUE(authority_->import_ca("sign-only", self_signed_ca(*own.token), own.token->uri).warnings.empty());
}

TEST_F(AuthorityTest, ALintFailureMeansTheTokenIsNeverAskedToSign) {
  service::KeyDetails key = keys_->create("lint-gate", crypto::KeyType::EcP256, std::nullopt);
  auto refusing = std::make_shared<pki::LintingSigner>(keys_->signer("lint-gate"), [](std::span<const std::uint8_t>) {
    return std::vector<pki::LintFinding>{{"serial.positive", pki::Severity::Error, "serial is negative"}};
  });
  auto pkey = crypto::make_token_pkey(refusing);
  auto md = crypto::make_sign_context(pkey.get(), crypto::SignatureAlgorithm::EcdsaSha256);
  X509* x = X509_new();
  X509_set_version(x, X509_VERSION_3);
  X509_set_pubkey(x, keys_->public_key("lint-gate").evp());
  CallCounter calls(token_->module());
  EXPECT_LE(X509_sign_ctx(x, md.get()), 0);
  ERR_clear_error();
  X509_free(x);
  EXPECT_EQ(calls["C_Sign"], 0) << "the token signed bytes the linter refused";
  EXPECT_EQ(refusing->findings().size(), 1u);
}

TEST_F(AuthorityTest, CrlNumbersIncreaseByOneAndIssuanceRecordsBeforeReturning) {
  pki::NewCa root{"r", crypto::KeyType::EcP256, "CN=Numbers Root", 3650, std::nullopt, std::nullopt, {}};
  authority_->create_ca(root);
  EXPECT_EQ(authority_->crl("r").number, 1);
  EXPECT_EQ(authority_->crl("r").number, 2);
  pki::IssuedCertificate leaf = authority_->issue(leaf_request("r", "n.example.test"));
  std::optional<store::CertificateRecord> stored = store_->certificates().find(leaf.record.serial);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->certificate_der, leaf.record.certificate_der);
  EXPECT_TRUE(leaf.key_uri.has_value());
  authority_->revoke("r", leaf.record.serial, pki::RevocationReason::CessationOfOperation);
  pki::CrlResult crl = authority_->crl("r");
  EXPECT_EQ(crl.number, 3);
  EXPECT_EQ(crl.revoked, 1u);
}

}  // namespace
}  // namespace keyhold
