// The keyhold OpenSSL provider with real SoftHSM keys: certificates, CRLs,
// CSRs and OCSP responses signed by plain OpenSSL calls and checked by
// OpenSSL with the public key and by the openssl command; TLS 1.3 handshakes
// with the token key; and the guarantees around it: no private key in
// OpenSSL, the whole message reaches the signer, errors reach the OpenSSL
// error queue, and other keys never reach the provider.
#include <gtest/gtest.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/crypto/openssl_provider.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/token.hpp"
#include "support/process.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

using crypto::KeyType;
using crypto::SignatureAlgorithm;
using testing::ThrowawayToken;

using X509Ptr = CPtr<X509, &X509_free>;
using X509CrlPtr = CPtr<X509_CRL, &X509_CRL_free>;
using X509ReqPtr = CPtr<X509_REQ, &X509_REQ_free>;
using X509StorePtr = CPtr<X509_STORE, &X509_STORE_free>;
using X509ExtensionPtr = CPtr<X509_EXTENSION, &X509_EXTENSION_free>;
using X509RevokedPtr = CPtr<X509_REVOKED, &X509_REVOKED_free>;
using OcspBasicPtr = CPtr<OCSP_BASICRESP, &OCSP_BASICRESP_free>;
using OcspCertIdPtr = CPtr<OCSP_CERTID, &OCSP_CERTID_free>;
using Asn1TimePtr = CPtr<ASN1_TIME, &ASN1_TIME_free>;
using Asn1IntegerPtr = CPtr<ASN1_INTEGER, &ASN1_INTEGER_free>;
using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using EvpPkeyCtxPtr = CPtr<EVP_PKEY_CTX, &EVP_PKEY_CTX_free>;
using EvpMdCtxPtr = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using BioPtr = CPtr<BIO, &BIO_free_all>;
using BignumPtr = CPtr<BIGNUM, &BN_free>;
using SslCtxPtr = CPtr<SSL_CTX, &SSL_CTX_free>;
using SslPtr = CPtr<SSL, &SSL_free>;
using Bytes = std::vector<std::uint8_t>;

void free_params(OSSL_PARAM* params) { OSSL_PARAM_free(params); }
using ParamsPtr = CPtr<OSSL_PARAM, &free_params>;

// Every error on the queue as text, clearing it.
std::string openssl_errors() {
  BioPtr bio(BIO_new(BIO_s_mem()));
  ERR_print_errors(bio.get());
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

template <class T>
Bytes der_of(int (*encode)(const T*, unsigned char**), const T* object) {
  unsigned char* out = nullptr;
  int size = encode(object, &out);
  if (size <= 0) return {};
  Bytes der(out, out + size);
  OPENSSL_free(out);
  return der;
}

Bytes to_bytes(std::span<const std::uint8_t> span) { return {span.begin(), span.end()}; }

// An application's own library context with the default provider, standing
// for "any context that is not keyhold's".
OSSL_LIB_CTX* application_context() {
  static OSSL_LIB_CTX* const libctx = [] {
    OSSL_LIB_CTX* created = OSSL_LIB_CTX_new();
    OSSL_PROVIDER_load(created, "default");
    return created;
  }();
  return libctx;
}

std::string provider_name(const OSSL_PROVIDER* provider) {
  return provider != nullptr ? OSSL_PROVIDER_get0_name(provider) : "(none)";
}

// The token and one key per type, made once for the whole binary and
// released before the shared main finalises the module.
class TokenKeys : public ::testing::Environment {
 public:
  static TokenKeys& get() { return *instance_; }

  std::shared_ptr<const crypto::Signer> signer(KeyType type) {
    std::lock_guard lock(mutex_);
    open_ring();
    auto& signer = signers_[type];
    if (!signer) {
      crypto::TokenKey key = ring_->create("provider-" + std::string(crypto::to_string(type)) + "-" +
                                               std::to_string(signers_.size()),
                                           type);
      signer = ring_->signer(key.id);
    }
    return signer;
  }

  // Another key of the same type, for "different key" checks.
  std::shared_ptr<const crypto::Signer> other_signer(KeyType type) {
    std::lock_guard lock(mutex_);
    open_ring();
    auto& signer = others_[type];
    if (!signer) {
      crypto::TokenKey key = ring_->create("provider-other-" + std::string(crypto::to_string(type)), type);
      signer = ring_->signer(key.id);
    }
    return signer;
  }

  void TearDown() override {
    std::lock_guard lock(mutex_);
    signers_.clear();
    others_.clear();
    ring_.reset();
    token_.reset();
  }

  static inline TokenKeys* instance_ = nullptr;

 private:
  void open_ring() {
    if (!ring_) {
      token_ = ThrowawayToken::get().open();
      ring_ = crypto::make_token_key_ring(token_);
    }
  }

  std::mutex mutex_;
  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<crypto::KeyRing> ring_;
  std::map<KeyType, std::shared_ptr<const crypto::Signer>> signers_;
  std::map<KeyType, std::shared_ptr<const crypto::Signer>> others_;
};

[[maybe_unused]] ::testing::Environment* const kTokenKeys = [] {
  TokenKeys::instance_ = new TokenKeys;
  return ::testing::AddGlobalTestEnvironment(TokenKeys::instance_);
}();

// Delegates to a real signer and records what it was asked to sign.
class RecordingSigner final : public crypto::Signer {
 public:
  explicit RecordingSigner(std::shared_ptr<const crypto::Signer> inner) : inner_(std::move(inner)) {}
  KeyType key_type() const noexcept override { return inner_->key_type(); }
  const crypto::PublicKey& public_key() const noexcept override { return inner_->public_key(); }
  std::vector<std::uint8_t> sign(SignatureAlgorithm algorithm, std::span<const std::uint8_t> message) const override {
    {
      std::lock_guard lock(mutex_);
      messages_.emplace_back(message.begin(), message.end());
      algorithms_.push_back(algorithm);
    }
    return inner_->sign(algorithm, message);
  }
  std::vector<std::uint8_t> sign_digest(SignatureAlgorithm algorithm,
                                        std::span<const std::uint8_t> digest) const override {
    ++digest_calls_;
    return inner_->sign_digest(algorithm, digest);
  }

  std::vector<Bytes> messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  std::vector<SignatureAlgorithm> algorithms() const {
    std::lock_guard lock(mutex_);
    return algorithms_;
  }
  int digest_calls() const { return digest_calls_; }

 private:
  std::shared_ptr<const crypto::Signer> inner_;
  mutable std::mutex mutex_;
  mutable std::vector<Bytes> messages_;
  mutable std::vector<SignatureAlgorithm> algorithms_;
  mutable std::atomic<int> digest_calls_{0};
};

// A signer whose token fails: the public key is real, signing throws.
class FailingSigner final : public crypto::Signer {
 public:
  explicit FailingSigner(std::shared_ptr<const crypto::Signer> inner) : inner_(std::move(inner)) {}
  KeyType key_type() const noexcept override { return inner_->key_type(); }
  const crypto::PublicKey& public_key() const noexcept override { return inner_->public_key(); }
  std::vector<std::uint8_t> sign(SignatureAlgorithm, std::span<const std::uint8_t>) const override {
    throw Error(ErrorCode::Unavailable, "the token was unplugged");
  }
  std::vector<std::uint8_t> sign_digest(SignatureAlgorithm, std::span<const std::uint8_t>) const override {
    throw Error(ErrorCode::Unavailable, "the token was unplugged");
  }

 private:
  std::shared_ptr<const crypto::Signer> inner_;
};

void add_extension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509ExtensionPtr extension(X509V3_EXT_nconf_nid(nullptr, ctx, nid, value));
  ASSERT_TRUE(extension) << value << openssl_errors();
  ASSERT_EQ(X509_add_ext(cert, extension.get(), -1), 1);
}

void set_random_serial(ASN1_INTEGER* serial) {
  unsigned char bytes[16];
  ASSERT_EQ(RAND_bytes(bytes, sizeof bytes), 1);
  bytes[0] = static_cast<unsigned char>((bytes[0] & 0x7f) | 0x40);  // positive, 16 bytes
  BignumPtr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
  ASSERT_TRUE(bn && BN_to_ASN1_INTEGER(bn.get(), serial) != nullptr);
}

// An unsigned self-signed CA certificate for the signer's public key (the
// public key from the default provider: see openssl_provider.hpp).
X509Ptr unsigned_certificate(const crypto::Signer& signer, const std::string& common_name) {
  X509Ptr cert(X509_new());
  EXPECT_EQ(X509_set_version(cert.get(), X509_VERSION_3), 1);
  set_random_serial(X509_get_serialNumber(cert.get()));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  EXPECT_EQ(X509_set_pubkey(cert.get(), signer.public_key().evp()), 1);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature,keyCertSign,cRLSign");
  add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  add_extension(cert.get(), &ctx, NID_subject_alt_name, "DNS:localhost");
  return cert;
}

X509Ptr signed_certificate(const crypto::Signer& signer, EVP_PKEY* key, SignatureAlgorithm algorithm,
                           const std::string& common_name = "keyhold provider test") {
  X509Ptr cert = unsigned_certificate(signer, common_name);
  ERR_clear_error();
  auto ctx = crypto::make_sign_context(key, algorithm);
  EXPECT_GT(X509_sign_ctx(cert.get(), ctx.get()), 0) << openssl_errors();
  // OpenSSL's own fallbacks on the way to the provider leave no error behind.
  EXPECT_EQ(ERR_peek_error(), 0u) << openssl_errors();
  return cert;
}

std::string pem_of(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

template <class T>
std::string pem_with(int (*write)(BIO*, const T*), const T* object) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  write(bio.get(), object);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

// The n-th element (0-based) of the DER SEQUENCE der, as its full TLV.
Bytes sequence_element(const Bytes& der, int n) {
  auto read_length = [&](std::size_t& at) -> std::size_t {
    std::size_t length = der.at(at++);
    if (length & 0x80) {
      std::size_t count = length & 0x7f;
      length = 0;
      while (count-- > 0) length = (length << 8) | der.at(at++);
    }
    return length;
  };
  std::size_t at = 1;
  read_length(at);
  for (int i = 0;; ++i) {
    std::size_t start = at++;
    std::size_t length = read_length(at);
    if (i == n) return Bytes(der.begin() + static_cast<long>(start), der.begin() + static_cast<long>(at + length));
    at += length;
  }
}

struct TempDir {
  std::filesystem::path path = testing::make_temp_directory("keyhold-provider");
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name, const std::string& content) const {
    std::string p = (path / name).string();
    testing::write_file(p, content);
    return p;
  }
};

struct Case {
  KeyType type;
  SignatureAlgorithm algorithm;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string name = std::string(crypto::to_string(info.param.type)) + "_" +
                     std::string(crypto::to_string(info.param.algorithm));
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

const Case kCases[] = {
    {KeyType::Rsa2048, SignatureAlgorithm::RsaPkcs1Sha256}, {KeyType::Rsa2048, SignatureAlgorithm::RsaPssSha256},
    {KeyType::EcP256, SignatureAlgorithm::EcdsaSha256},     {KeyType::EcP384, SignatureAlgorithm::EcdsaSha384},
    {KeyType::Ed25519, SignatureAlgorithm::Ed25519},
};

class ProviderSigning : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    signer_ = TokenKeys::get().signer(GetParam().type);
    key_ = crypto::make_token_pkey(signer_);
    ASSERT_TRUE(key_);
    public_key_ = signer_->public_key().evp();
  }
  SignatureAlgorithm algorithm() const { return GetParam().algorithm; }
  Bytes expected_identifier() const { return to_bytes(crypto::algorithm_identifier(algorithm())); }

  std::shared_ptr<const crypto::Signer> signer_;
  EvpPkeyPtr key_;
  EVP_PKEY* public_key_ = nullptr;
};

TEST_P(ProviderSigning, CertificateVerifiesWithThePublicKeyAndTheOpensslCommand) {
  X509Ptr cert = signed_certificate(*signer_, key_.get(), algorithm());
  EXPECT_EQ(X509_verify(cert.get(), public_key_), 1) << openssl_errors();

  const ASN1_BIT_STRING* signature = nullptr;
  const X509_ALGOR* outer = nullptr;
  X509_get0_signature(&signature, &outer, cert.get());
  EXPECT_EQ(der_of(i2d_X509_ALGOR, outer), expected_identifier());
  EXPECT_EQ(der_of(i2d_X509_ALGOR, X509_get0_tbs_sigalg(cert.get())), expected_identifier());

  TempDir dir;
  std::string path = dir.file("cert.pem", pem_of(cert.get()));
  testing::ProcessResult r =
      testing::run_process({"openssl", "verify", "-x509_strict", "-check_ss_sig", "-CAfile", path, path});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(": OK"), std::string::npos) << r.out << r.err;
}

TEST_P(ProviderSigning, CrlVerifiesWithThePublicKeyAndTheOpensslCommand) {
  X509Ptr cert = signed_certificate(*signer_, key_.get(), algorithm());
  X509CrlPtr crl(X509_CRL_new());
  ASSERT_EQ(X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2), 1);
  ASSERT_EQ(X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(cert.get())), 1);
  Asn1TimePtr now(X509_gmtime_adj(nullptr, 0)), next(X509_gmtime_adj(nullptr, 7 * 24 * 3600));
  ASSERT_EQ(X509_CRL_set1_lastUpdate(crl.get(), now.get()), 1);
  ASSERT_EQ(X509_CRL_set1_nextUpdate(crl.get(), next.get()), 1);
  X509RevokedPtr revoked(X509_REVOKED_new());
  Asn1IntegerPtr serial(ASN1_INTEGER_new());
  ASN1_INTEGER_set(serial.get(), 4242);
  ASSERT_EQ(X509_REVOKED_set_serialNumber(revoked.get(), serial.get()), 1);
  ASSERT_EQ(X509_REVOKED_set_revocationDate(revoked.get(), now.get()), 1);
  ASSERT_EQ(X509_CRL_add0_revoked(crl.get(), revoked.release()), 1);
  X509_CRL_sort(crl.get());

  auto ctx = crypto::make_sign_context(key_.get(), algorithm());
  ASSERT_GT(X509_CRL_sign_ctx(crl.get(), ctx.get()), 0) << openssl_errors();
  EXPECT_EQ(X509_CRL_verify(crl.get(), public_key_), 1) << openssl_errors();

  const ASN1_BIT_STRING* signature = nullptr;
  const X509_ALGOR* outer = nullptr;
  X509_CRL_get0_signature(crl.get(), &signature, &outer);
  EXPECT_EQ(der_of(i2d_X509_ALGOR, outer), expected_identifier());
  unsigned char* tbs = nullptr;
  int tbs_size = i2d_re_X509_CRL_tbs(crl.get(), &tbs);
  ASSERT_GT(tbs_size, 0);
  Bytes tbs_der(tbs, tbs + tbs_size);
  OPENSSL_free(tbs);
  EXPECT_EQ(sequence_element(tbs_der, 1), expected_identifier());  // after the version

  TempDir dir;
  std::string ca = dir.file("ca.pem", pem_of(cert.get()));
  std::string path = dir.file("crl.pem", pem_with(PEM_write_bio_X509_CRL, static_cast<const X509_CRL*>(crl.get())));
  testing::ProcessResult r = testing::run_process({"openssl", "crl", "-in", path, "-CAfile", ca, "-noout"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("verify OK"), std::string::npos) << r.out << r.err;
}

TEST_P(ProviderSigning, CsrVerifiesWithThePublicKeyAndTheOpensslCommand) {
  X509ReqPtr req(X509_REQ_new());
  ASSERT_EQ(X509_REQ_set_version(req.get(), X509_REQ_VERSION_1), 1);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("keyhold csr"), -1,
                             -1, 0);
  ASSERT_EQ(X509_REQ_set_pubkey(req.get(), public_key_), 1);
  auto ctx = crypto::make_sign_context(key_.get(), algorithm());
  ASSERT_GT(X509_REQ_sign_ctx(req.get(), ctx.get()), 0) << openssl_errors();
  EXPECT_EQ(X509_REQ_verify(req.get(), public_key_), 1) << openssl_errors();

  const ASN1_BIT_STRING* signature = nullptr;
  const X509_ALGOR* outer = nullptr;
  X509_REQ_get0_signature(req.get(), &signature, &outer);
  EXPECT_EQ(der_of(i2d_X509_ALGOR, outer), expected_identifier());

  TempDir dir;
  std::string path = dir.file("req.pem", pem_with(PEM_write_bio_X509_REQ, static_cast<const X509_REQ*>(req.get())));
  testing::ProcessResult r = testing::run_process({"openssl", "req", "-verify", "-noout", "-in", path});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("verify OK"), std::string::npos) << r.out << r.err;
}

TEST_P(ProviderSigning, OcspResponseVerifiesWithTheSignerCertificateTrusted) {
  X509Ptr cert = signed_certificate(*signer_, key_.get(), algorithm());
  OcspBasicPtr response(OCSP_BASICRESP_new());
  OcspCertIdPtr id(OCSP_cert_to_id(nullptr, cert.get(), cert.get()));
  ASSERT_TRUE(id);
  Asn1TimePtr now(X509_gmtime_adj(nullptr, 0)), next(X509_gmtime_adj(nullptr, 3600));
  ASSERT_NE(OCSP_basic_add1_status(response.get(), id.get(), V_OCSP_CERTSTATUS_GOOD, 0, nullptr, now.get(),
                                   next.get()),
            nullptr);
  auto ctx = crypto::make_sign_context(key_.get(), algorithm());
  ASSERT_EQ(OCSP_basic_sign_ctx(response.get(), cert.get(), ctx.get(), nullptr, 0), 1) << openssl_errors();
  EXPECT_EQ(der_of(i2d_X509_ALGOR, OCSP_resp_get0_tbs_sigalg(response.get())), expected_identifier());

  X509StorePtr store(X509_STORE_new());
  ASSERT_EQ(X509_STORE_add_cert(store.get(), cert.get()), 1);
  EXPECT_EQ(OCSP_basic_verify(response.get(), nullptr, store.get(), 0), 1) << openssl_errors();
}

TEST_P(ProviderSigning, TheSignerGetsTheWholeToBeSignedBytesAndNoDigest) {
  auto recorder = std::make_shared<RecordingSigner>(signer_);
  EvpPkeyPtr key = crypto::make_token_pkey(recorder);
  X509Ptr cert = signed_certificate(*recorder, key.get(), algorithm());
  EXPECT_EQ(X509_verify(cert.get(), public_key_), 1) << openssl_errors();

  unsigned char* tbs = nullptr;
  int tbs_size = i2d_re_X509_tbs(cert.get(), &tbs);
  ASSERT_GT(tbs_size, 0);
  Bytes expected(tbs, tbs + tbs_size);
  OPENSSL_free(tbs);
  ASSERT_EQ(recorder->messages().size(), 1u);
  EXPECT_EQ(recorder->messages()[0], expected);
  EXPECT_EQ(recorder->algorithms()[0], algorithm());
  EXPECT_EQ(recorder->digest_calls(), 0);
}

TEST_P(ProviderSigning, NoPrivateKeyIsInOpenSsl) {
  X509Ptr cert = signed_certificate(*signer_, key_.get(), algorithm());
  ASSERT_EQ(X509_verify(cert.get(), public_key_), 1);

  // No private parameter can be read ...
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_RSA_D, &bn), 0);
  EXPECT_EQ(EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_PRIV_KEY, &bn), 0);
  EXPECT_EQ(bn, nullptr);
  unsigned char raw[256];
  std::size_t raw_size = 0;
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(key_.get(), OSSL_PKEY_PARAM_PRIV_KEY, raw, sizeof raw, &raw_size), 0);

  // ... nor exported, in any form.
  OSSL_PARAM* params = nullptr;
  EXPECT_EQ(EVP_PKEY_todata(key_.get(), EVP_PKEY_KEYPAIR, &params), 0);
  EXPECT_EQ(params, nullptr);
  EXPECT_NE(openssl_errors().find("the private key stays in the token"), std::string::npos);
  unsigned char* der = nullptr;
  EXPECT_LE(i2d_PrivateKey(key_.get(), &der), 0);
  EXPECT_EQ(der, nullptr);
  BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr), 0);
  EXPECT_EQ(BIO_pending(bio.get()), 0);
  ERR_clear_error();

  // The public half is exportable, and is the signer's.
  ASSERT_EQ(EVP_PKEY_todata(key_.get(), EVP_PKEY_PUBLIC_KEY, &params), 1) << openssl_errors();
  ParamsPtr owned(params);
  EXPECT_EQ(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_D), nullptr);
  EXPECT_EQ(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PRIV_KEY), nullptr);
  EvpPkeyCtxPtr pctx(EVP_PKEY_CTX_new_from_pkey(nullptr, public_key_, nullptr));
  EVP_PKEY* copy = nullptr;
  ASSERT_EQ(EVP_PKEY_fromdata_init(pctx.get()), 1);
  ASSERT_EQ(EVP_PKEY_fromdata(pctx.get(), &copy, EVP_PKEY_PUBLIC_KEY, params), 1) << openssl_errors();
  EvpPkeyPtr copied(copy);
  EXPECT_EQ(EVP_PKEY_eq(copied.get(), public_key_), 1);
}

INSTANTIATE_TEST_SUITE_P(EveryKeyType, ProviderSigning, ::testing::ValuesIn(kCases), case_name);

// ---------------------------------------------------------------------------

class ProviderKey : public ::testing::TestWithParam<KeyType> {
 protected:
  void SetUp() override {
    signer_ = TokenKeys::get().signer(GetParam());
    key_ = crypto::make_token_pkey(signer_);
    public_key_ = signer_->public_key().evp();
  }
  std::shared_ptr<const crypto::Signer> signer_;
  EvpPkeyPtr key_;
  EVP_PKEY* public_key_ = nullptr;
};

TEST_P(ProviderKey, PublicParametersAreThoseOfTheDefaultProvidersKey) {
  ERR_clear_error();
  EXPECT_EQ(provider_name(EVP_PKEY_get0_provider(key_.get())), "keyhold");
  EXPECT_EQ(provider_name(EVP_PKEY_get0_provider(public_key_)), "default");
  EXPECT_EQ(EVP_PKEY_get_bits(key_.get()), EVP_PKEY_get_bits(public_key_));
  EXPECT_EQ(EVP_PKEY_get_security_bits(key_.get()), EVP_PKEY_get_security_bits(public_key_));
  EXPECT_EQ(EVP_PKEY_get_size(key_.get()), EVP_PKEY_get_size(public_key_));
  EXPECT_GT(EVP_PKEY_get_size(key_.get()), 0);

  // EVP_PKEY_eq both ways (it cross-exports the public key), with a clean error queue.
  EXPECT_EQ(EVP_PKEY_eq(key_.get(), public_key_), 1) << openssl_errors();
  EXPECT_EQ(EVP_PKEY_eq(public_key_, key_.get()), 1) << openssl_errors();
  EvpPkeyPtr again = crypto::make_token_pkey(signer_);
  EXPECT_EQ(EVP_PKEY_eq(key_.get(), again.get()), 1);
  auto other = TokenKeys::get().other_signer(GetParam());
  EvpPkeyPtr other_key = crypto::make_token_pkey(other);
  EXPECT_EQ(EVP_PKEY_eq(key_.get(), other_key.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq(other->public_key().evp(), key_.get()), 0);
  ERR_clear_error();
  EXPECT_EQ(EVP_PKEY_eq(public_key_, key_.get()), 1);
  EXPECT_EQ(ERR_peek_error(), 0u) << openssl_errors();

  // The SubjectPublicKeyInfo, through the default provider's encoder in keyhold's context.
  unsigned char* der = nullptr;
  int size = i2d_PUBKEY(key_.get(), &der);
  ASSERT_GT(size, 0) << openssl_errors();
  Bytes spki(der, der + size);
  OPENSSL_free(der);
  EXPECT_EQ(spki, signer_->public_key().der());

  char digest[64] = {};
  switch (GetParam()) {
    case KeyType::Rsa2048: {
      EXPECT_TRUE(EVP_PKEY_is_a(key_.get(), "RSA"));
      EXPECT_TRUE(EVP_PKEY_is_a(key_.get(), "rsaEncryption"));
      BIGNUM *n = nullptr, *e = nullptr, *pn = nullptr, *pe = nullptr;
      ASSERT_EQ(EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_RSA_N, &n), 1);
      ASSERT_EQ(EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_RSA_E, &e), 1);
      ASSERT_EQ(EVP_PKEY_get_bn_param(public_key_, OSSL_PKEY_PARAM_RSA_N, &pn), 1);
      ASSERT_EQ(EVP_PKEY_get_bn_param(public_key_, OSSL_PKEY_PARAM_RSA_E, &pe), 1);
      EXPECT_EQ(BN_cmp(n, pn), 0);
      EXPECT_EQ(BN_cmp(e, pe), 0);
      BN_free(n);
      BN_free(e);
      BN_free(pn);
      BN_free(pe);
      EXPECT_EQ(EVP_PKEY_get_default_digest_name(key_.get(), digest, sizeof digest), 1);
      EXPECT_STREQ(digest, "SHA256");
      break;
    }
    case KeyType::EcP256:
    case KeyType::EcP384: {
      EXPECT_TRUE(EVP_PKEY_is_a(key_.get(), "EC"));
      char group[64] = {};
      ASSERT_EQ(EVP_PKEY_get_group_name(key_.get(), group, sizeof group, nullptr), 1);
      EXPECT_STREQ(group, GetParam() == KeyType::EcP256 ? "prime256v1" : "secp384r1");
      unsigned char* point = nullptr;
      unsigned char* expected = nullptr;
      std::size_t point_size = EVP_PKEY_get1_encoded_public_key(key_.get(), &point);
      std::size_t expected_size = EVP_PKEY_get1_encoded_public_key(public_key_, &expected);
      ASSERT_GT(point_size, 0u);
      EXPECT_EQ(Bytes(point, point + point_size), Bytes(expected, expected + expected_size));
      OPENSSL_free(point);
      OPENSSL_free(expected);
      EXPECT_EQ(EVP_PKEY_get_default_digest_name(key_.get(), digest, sizeof digest), 1);
      EXPECT_STREQ(digest, GetParam() == KeyType::EcP256 ? "SHA256" : "SHA384");
      break;
    }
    case KeyType::Ed25519: {
      EXPECT_TRUE(EVP_PKEY_is_a(key_.get(), "ED25519"));
      unsigned char raw[64], expected[64];
      std::size_t raw_size = 0, expected_size = 0;
      ASSERT_EQ(EVP_PKEY_get_octet_string_param(key_.get(), OSSL_PKEY_PARAM_PUB_KEY, raw, sizeof raw, &raw_size), 1);
      ASSERT_EQ(EVP_PKEY_get_octet_string_param(public_key_, OSSL_PKEY_PARAM_PUB_KEY, expected, sizeof expected,
                                                &expected_size),
                1);
      EXPECT_EQ(Bytes(raw, raw + raw_size), Bytes(expected, expected + expected_size));
      EXPECT_EQ(raw_size, 32u);
      // Like OpenSSL's own Ed25519: a mandatory "no digest".
      EXPECT_EQ(EVP_PKEY_get_default_digest_name(key_.get(), digest, sizeof digest), 2);
      EXPECT_STREQ(digest, "UNDEF");
      break;
    }
    default:
      FAIL();
  }
}

// The key signs wherever the EVP_MD_CTX lives: in the default context
// OpenSSL finds no "KEYHOLD-*" signature and takes the key's own provider.
TEST_P(ProviderKey, SignsInPiecesAndOneShotFromTheDefaultLibraryContext) {
  Bytes message(100000);
  for (std::size_t i = 0; i < message.size(); ++i) message[i] = static_cast<std::uint8_t>(i * 7);
  SignatureAlgorithm algorithm = *crypto::default_signature_algorithm(GetParam());
  std::string digest(crypto::digest_name(algorithm));

  for (OSSL_LIB_CTX* libctx : {static_cast<OSSL_LIB_CTX*>(nullptr), crypto::openssl_context(), application_context()}) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    ASSERT_EQ(EVP_DigestSignInit_ex(ctx.get(), &pctx, digest.empty() ? nullptr : digest.c_str(), libctx, nullptr,
                                    key_.get(), nullptr),
              1)
        << openssl_errors();
    EXPECT_EQ(provider_name(EVP_PKEY_CTX_get0_provider(pctx)), "keyhold");
    std::size_t size = 0;
    if (GetParam() == KeyType::Ed25519) {
      // One-shot only, as OpenSSL's Ed25519.
      EXPECT_EQ(EVP_DigestSignUpdate(ctx.get(), message.data(), 10), 0);
      ERR_clear_error();
      ASSERT_EQ(EVP_DigestSign(ctx.get(), nullptr, &size, message.data(), message.size()), 1) << openssl_errors();
      Bytes signature(size);
      ASSERT_EQ(EVP_DigestSign(ctx.get(), signature.data(), &size, message.data(), message.size()), 1)
          << openssl_errors();
      signature.resize(size);
      EXPECT_TRUE(signer_->public_key().verify(algorithm, message, signature));
      continue;
    }
    for (std::size_t at = 0; at < message.size(); at += 30001) {
      std::size_t piece = std::min<std::size_t>(30001, message.size() - at);
      ASSERT_EQ(EVP_DigestSignUpdate(ctx.get(), message.data() + at, piece), 1) << openssl_errors();
    }
    ASSERT_EQ(EVP_DigestSignFinal(ctx.get(), nullptr, &size), 1) << openssl_errors();
    Bytes signature(size);
    ASSERT_EQ(EVP_DigestSignFinal(ctx.get(), signature.data(), &size), 1) << openssl_errors();
    signature.resize(size);
    EXPECT_TRUE(signer_->public_key().verify(algorithm, message, signature));

    EvpMdCtxPtr one_shot(EVP_MD_CTX_new());
    ASSERT_EQ(EVP_DigestSignInit_ex(one_shot.get(), nullptr, digest.c_str(), libctx, nullptr, key_.get(), nullptr), 1);
    ASSERT_EQ(EVP_DigestSign(one_shot.get(), nullptr, &size, message.data(), message.size()), 1);
    signature.assign(size, 0);
    ASSERT_EQ(EVP_DigestSign(one_shot.get(), signature.data(), &size, message.data(), message.size()), 1)
        << openssl_errors();
    signature.resize(size);
    EXPECT_TRUE(signer_->public_key().verify(algorithm, message, signature));
  }
}

TEST_P(ProviderKey, RawDigestSigningIsNotOffered) {
  // Every signature goes through Signer::sign with the whole message.
  EvpPkeyCtxPtr pctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  ASSERT_TRUE(pctx);
  EXPECT_LE(EVP_PKEY_sign_init(pctx.get()), 0);
  EvpPkeyCtxPtr in_keyhold(EVP_PKEY_CTX_new_from_pkey(crypto::openssl_context(), key_.get(), nullptr));
  EXPECT_LE(EVP_PKEY_sign_init(in_keyhold.get()), 0);
  ERR_clear_error();
}

TEST_P(ProviderKey, KeepsItsSignerAliveAndDupShares) {
  auto wrapper = std::make_shared<RecordingSigner>(signer_);
  std::weak_ptr<RecordingSigner> watch = wrapper;
  EvpPkeyPtr key = crypto::make_token_pkey(std::move(wrapper));
  EXPECT_FALSE(watch.expired());
  EvpPkeyPtr copy(EVP_PKEY_dup(key.get()));
  ASSERT_TRUE(copy) << openssl_errors();
  key.reset();
  EXPECT_FALSE(watch.expired());
  X509Ptr cert = signed_certificate(*signer_, copy.get(), *crypto::default_signature_algorithm(GetParam()));
  EXPECT_EQ(X509_verify(cert.get(), public_key_), 1);
  copy.reset();
  EXPECT_TRUE(watch.expired());
}

INSTANTIATE_TEST_SUITE_P(EveryKeyType, ProviderKey,
                         ::testing::Values(KeyType::Rsa2048, KeyType::EcP256, KeyType::EcP384, KeyType::Ed25519),
                         [](const auto& info) {
                           std::string name(crypto::to_string(info.param));
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

// ---------------------------------------------------------------------------
// TLS 1.3 with the token key, the server's SSL_CTX in either library context.

struct TlsCase {
  KeyType type;
  bool application_context;    // the server's SSL_CTX there, else in the default context
  const char* groups = nullptr;  // the client's key exchange groups, else OpenSSL's
};

struct HandshakeResult {
  bool completed = false;
  int peer_signature_nid = NID_undef;
  long verify_result = -1;
  int version = 0;
  std::string received;
};

HandshakeResult tls13_handshake(OSSL_LIB_CTX* server_libctx, X509* cert, EVP_PKEY* key, bool key_first,
                                const char* groups = nullptr) {
  HandshakeResult result;
  SslCtxPtr server_ctx(SSL_CTX_new_ex(server_libctx, nullptr, TLS_server_method()));
  EXPECT_TRUE(server_ctx) << openssl_errors();
  if (!server_ctx) return result;
  SSL_CTX_set_min_proto_version(server_ctx.get(), TLS1_3_VERSION);
  if (key_first) {
    EXPECT_EQ(SSL_CTX_use_PrivateKey(server_ctx.get(), key), 1) << openssl_errors();
    EXPECT_EQ(SSL_CTX_use_certificate(server_ctx.get(), cert), 1) << openssl_errors();
  } else {
    EXPECT_EQ(SSL_CTX_use_certificate(server_ctx.get(), cert), 1) << openssl_errors();
    EXPECT_EQ(SSL_CTX_use_PrivateKey(server_ctx.get(), key), 1) << openssl_errors();
  }
  EXPECT_EQ(SSL_CTX_check_private_key(server_ctx.get()), 1) << openssl_errors();

  SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_min_proto_version(client_ctx.get(), TLS1_3_VERSION);
  if (groups != nullptr) {
    EXPECT_EQ(SSL_CTX_set1_groups_list(client_ctx.get(), groups), 1);
  }
  SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_PEER, nullptr);
  EXPECT_EQ(X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx.get()), cert), 1);

  SslPtr server(SSL_new(server_ctx.get())), client(SSL_new(client_ctx.get()));
  EXPECT_EQ(SSL_set1_host(client.get(), "localhost"), 1);
  BIO *server_bio = nullptr, *client_bio = nullptr;
  EXPECT_EQ(BIO_new_bio_pair(&server_bio, 0, &client_bio, 0), 1);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());

  bool client_done = false, server_done = false;
  for (int round = 0; round < 50 && !(client_done && server_done); ++round) {
    for (auto [ssl, done] : {std::pair{client.get(), &client_done}, std::pair{server.get(), &server_done}}) {
      if (*done) continue;
      int r = SSL_do_handshake(ssl);
      if (r == 1) {
        *done = true;
        continue;
      }
      int error = SSL_get_error(ssl, r);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
        ADD_FAILURE() << (ssl == client.get() ? "client" : "server") << " handshake failed: " << error << " "
                      << openssl_errors();
        return result;
      }
    }
  }
  result.completed = client_done && server_done;
  result.verify_result = SSL_get_verify_result(client.get());
  result.version = SSL_version(client.get());
  SSL_get_peer_signature_type_nid(client.get(), &result.peer_signature_nid);

  const char text[] = "hello from the token key";
  EXPECT_EQ(SSL_write(server.get(), text, sizeof text - 1), static_cast<int>(sizeof text - 1));
  char buffer[64] = {};
  int read = SSL_read(client.get(), buffer, sizeof buffer);
  if (read > 0) result.received.assign(buffer, static_cast<std::size_t>(read));
  return result;
}

class ProviderTls : public ::testing::TestWithParam<TlsCase> {};

TEST_P(ProviderTls, HandshakeCompletesWithTheTokenKeyAndAVerifyingClient) {
  KeyType type = GetParam().type;
  auto signer = TokenKeys::get().signer(type);
  auto recorder = std::make_shared<RecordingSigner>(signer);
  EvpPkeyPtr key = crypto::make_token_pkey(recorder);
  X509Ptr cert = signed_certificate(*signer, key.get(), *crypto::default_signature_algorithm(type), "localhost");
  std::size_t before = recorder->messages().size();

  OSSL_LIB_CTX* libctx = GetParam().application_context ? application_context() : nullptr;
  HandshakeResult result = tls13_handshake(libctx, cert.get(), key.get(), /*key_first=*/false, GetParam().groups);
  EXPECT_TRUE(result.completed);
  EXPECT_EQ(result.version, TLS1_3_VERSION);
  EXPECT_EQ(result.verify_result, X509_V_OK);
  EXPECT_EQ(result.received, "hello from the token key");
  switch (type) {
    case KeyType::Rsa2048: EXPECT_EQ(result.peer_signature_nid, NID_rsassaPss); break;
    case KeyType::Ed25519: EXPECT_EQ(result.peer_signature_nid, NID_ED25519); break;
    default: EXPECT_EQ(result.peer_signature_nid, NID_X9_62_id_ecPublicKey); break;
  }
  // The CertificateVerify was made by the signer, over the TLS 1.3 content
  // (64 spaces, the context string, the transcript hash).
  std::vector<Bytes> messages = recorder->messages();
  ASSERT_EQ(messages.size(), before + 1);
  const Bytes& content = messages.back();
  ASSERT_GT(content.size(), 64u);
  EXPECT_EQ(Bytes(content.begin(), content.begin() + 64), Bytes(64, 0x20));
  std::string context(content.begin() + 64, content.begin() + 64 + 33);
  EXPECT_EQ(context, "TLS 1.3, server CertificateVerify");
  EXPECT_EQ(recorder->digest_calls(), 0);
}

INSTANTIATE_TEST_SUITE_P(KeyTypesAndContexts, ProviderTls,
                         ::testing::Values(TlsCase{KeyType::EcP256, false}, TlsCase{KeyType::EcP256, true},
                                           TlsCase{KeyType::Rsa2048, false}, TlsCase{KeyType::Rsa2048, true},
                                           TlsCase{KeyType::Ed25519, false}, TlsCase{KeyType::Ed25519, true},
                                           TlsCase{KeyType::EcP256, false, "P-256"},
                                           TlsCase{KeyType::EcP384, true, "P-384"}),
                         [](const auto& info) {
                           std::string name(crypto::to_string(info.param.type));
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           name += info.param.application_context ? "_ApplicationContext" : "_DefaultContext";
                           if (info.param.groups != nullptr) name += "_EcdheGroup";
                           return name;
                         });

TEST(ProviderTlsOrder, KeyBeforeCertificateAlsoMatches) {
  auto signer = TokenKeys::get().signer(KeyType::EcP256);
  EvpPkeyPtr key = crypto::make_token_pkey(signer);
  X509Ptr cert = signed_certificate(*signer, key.get(), SignatureAlgorithm::EcdsaSha256, "localhost");
  HandshakeResult result = tls13_handshake(nullptr, cert.get(), key.get(), /*key_first=*/true);
  EXPECT_TRUE(result.completed);
  EXPECT_EQ(result.verify_result, X509_V_OK);
}

TEST(ProviderTlsOrder, AKeyThatDoesNotMatchTheCertificateIsRefused) {
  auto signer = TokenKeys::get().signer(KeyType::EcP256);
  EvpPkeyPtr key = crypto::make_token_pkey(signer);
  EvpPkeyPtr other = crypto::make_token_pkey(TokenKeys::get().other_signer(KeyType::EcP256));
  X509Ptr cert = signed_certificate(*signer, key.get(), SignatureAlgorithm::EcdsaSha256, "localhost");
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  ASSERT_EQ(SSL_CTX_use_certificate(ctx.get(), cert.get()), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), other.get()), 0);
  ERR_clear_error();
}

TEST(ProviderTlsOrder, AnSslCtxBelongsInTheDefaultContextNotKeyholds) {
  // keyhold's context holds no ciphers on purpose (openssl_provider.hpp).
  SslCtxPtr ctx(SSL_CTX_new_ex(crypto::openssl_context(), nullptr, TLS_server_method()));
  EXPECT_FALSE(ctx);
  EXPECT_NE(openssl_errors().find("no ciphers"), std::string::npos);
}

// ---------------------------------------------------------------------------

TEST(ProviderContract, MakeSignContextRefusesAnAlgorithmThatDoesNotFitTheKey) {
  struct Misfit {
    KeyType type;
    SignatureAlgorithm algorithm;
  };
  for (Misfit m : {Misfit{KeyType::EcP256, SignatureAlgorithm::RsaPkcs1Sha256},
                   Misfit{KeyType::EcP256, SignatureAlgorithm::Ed25519},
                   Misfit{KeyType::Ed25519, SignatureAlgorithm::EcdsaSha256},
                   Misfit{KeyType::Rsa2048, SignatureAlgorithm::Ed25519},
                   Misfit{KeyType::Rsa2048, SignatureAlgorithm::EcdsaSha384}}) {
    EvpPkeyPtr key = crypto::make_token_pkey(TokenKeys::get().signer(m.type));
    try {
      crypto::make_sign_context(key.get(), m.algorithm);
      ADD_FAILURE() << crypto::to_string(m.type) << " with " << crypto::to_string(m.algorithm);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    }
  }
  // A software key is not a token key.
  EvpPkeyPtr software(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  try {
    crypto::make_sign_context(software.get(), SignatureAlgorithm::EcdsaSha256);
    ADD_FAILURE() << "a software key was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
  }
  try {
    crypto::make_token_pkey(nullptr);
    ADD_FAILURE() << "a null signer was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
  }
}

TEST(ProviderContract, RefusesDigestsAndPssParametersKeyholdDoesNotUse) {
  EvpPkeyPtr ec = crypto::make_token_pkey(TokenKeys::get().signer(KeyType::EcP256));
  EvpPkeyPtr rsa = crypto::make_token_pkey(TokenKeys::get().signer(KeyType::Rsa2048));
  EvpPkeyPtr ed = crypto::make_token_pkey(TokenKeys::get().signer(KeyType::Ed25519));
  auto init = [](EVP_PKEY* key, const char* digest, EVP_PKEY_CTX** pctx = nullptr) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    int ok = EVP_DigestSignInit_ex(ctx.get(), pctx, digest, nullptr, nullptr, key, nullptr);
    ERR_clear_error();
    return std::pair{ok, std::move(ctx)};
  };
  EXPECT_NE(init(ec.get(), "SHA512").first, 1);
  EXPECT_NE(init(ec.get(), "SHA1").first, 1);
  EXPECT_NE(init(rsa.get(), "SHA1").first, 1);
  EXPECT_NE(init(rsa.get(), "SHA224").first, 1);
  EXPECT_NE(init(ed.get(), "SHA512").first, 1);
  EXPECT_EQ(init(rsa.get(), "SHA2-384").first, 1);
  EXPECT_EQ(init(ec.get(), "sha-384").first, 1);

  EVP_PKEY_CTX* pctx = nullptr;
  auto [ok, ctx] = init(rsa.get(), "SHA256", &pctx);
  ASSERT_EQ(ok, 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
  EXPECT_LE(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 20), 0);
  EXPECT_NE(openssl_errors().find("PSS salt length 20"), std::string::npos);
  EXPECT_LE(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_MAX), 0);
  EXPECT_LE(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha384()), 0);
  EXPECT_LE(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING), 0);
  ERR_clear_error();
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()), 1);

  // The refused settings left the context as it was: PSS, SHA-256, salt 32.
  unsigned char id[128];
  OSSL_PARAM query[] = {OSSL_PARAM_construct_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, id, sizeof id),
                        OSSL_PARAM_construct_end()};
  ASSERT_EQ(EVP_PKEY_CTX_get_params(pctx, query), 1);
  EXPECT_EQ(Bytes(id, id + query[0].return_size),
            to_bytes(crypto::algorithm_identifier(SignatureAlgorithm::RsaPssSha256)));
}

TEST(ProviderContract, TokenFailuresReachTheOpensslErrorQueue) {
  auto failing = std::make_shared<FailingSigner>(TokenKeys::get().signer(KeyType::EcP256));
  EvpPkeyPtr key = crypto::make_token_pkey(failing);
  X509Ptr cert = unsigned_certificate(*failing, "doomed");
  auto ctx = crypto::make_sign_context(key.get(), SignatureAlgorithm::EcdsaSha256);
  ERR_clear_error();
  EXPECT_EQ(X509_sign_ctx(cert.get(), ctx.get()), 0);
  std::string errors = openssl_errors();
  EXPECT_NE(errors.find("keyhold"), std::string::npos) << errors;
  EXPECT_NE(errors.find("the token could not sign"), std::string::npos) << errors;
  EXPECT_NE(errors.find("the token was unplugged"), std::string::npos) << errors;
}

TEST(ProviderContract, OnlyATicketFromMakeTokenPkeyMakesATokenKey) {
  OSSL_LIB_CTX* libctx = crypto::openssl_context();
  EvpPkeyCtxPtr pctx(EVP_PKEY_CTX_new_from_name(libctx, "EC", "provider=keyhold"));
  ASSERT_TRUE(pctx) << openssl_errors();
  ASSERT_EQ(EVP_PKEY_fromdata_init(pctx.get()), 1);
  const OSSL_PARAM* settable = EVP_PKEY_fromdata_settable(pctx.get(), EVP_PKEY_KEYPAIR);
  ASSERT_NE(settable, nullptr);
  ASSERT_NE(settable[0].key, nullptr);
  std::string ticket_name = settable[0].key;

  // A guessed ticket.
  for (std::uint64_t guess : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{12345}}) {
    OSSL_PARAM params[] = {OSSL_PARAM_construct_uint64(ticket_name.c_str(), &guess), OSSL_PARAM_construct_end()};
    EVP_PKEY* key = nullptr;
    EXPECT_NE(EVP_PKEY_fromdata(pctx.get(), &key, EVP_PKEY_KEYPAIR, params), 1);
    EXPECT_EQ(key, nullptr);
  }
  // Public key material from elsewhere.
  auto signer = TokenKeys::get().signer(KeyType::EcP256);
  OSSL_PARAM* exported = nullptr;
  ASSERT_EQ(EVP_PKEY_todata(signer->public_key().evp(), EVP_PKEY_PUBLIC_KEY, &exported), 1);
  ParamsPtr owned(exported);
  EVP_PKEY* key = nullptr;
  EXPECT_NE(EVP_PKEY_fromdata(pctx.get(), &key, EVP_PKEY_PUBLIC_KEY, exported), 1);
  EXPECT_EQ(key, nullptr);
  ERR_clear_error();
}

TEST(ProviderContract, OtherKeysNeverReachTheKeyholdProvider) {
  // A token key has signed from each context first, so OpenSSL's caches hold
  // whatever that leaves behind.
  auto signer = TokenKeys::get().signer(KeyType::EcP256);
  EvpPkeyPtr token_key = crypto::make_token_pkey(signer);
  for (OSSL_LIB_CTX* libctx : {static_cast<OSSL_LIB_CTX*>(nullptr), crypto::openssl_context(), application_context()}) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    std::size_t size = 0;
    ASSERT_EQ(EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", libctx, nullptr, token_key.get(), nullptr), 1);
    ASSERT_EQ(EVP_DigestSign(ctx.get(), nullptr, &size, reinterpret_cast<const unsigned char*>("x"), 1), 1);
  }
  std::string pem = signer->public_key().pem();
  Bytes der = signer->public_key().der();

  // A PEM public key parsed in the default context is the default provider's.
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EvpPkeyPtr parsed(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(provider_name(EVP_PKEY_get0_provider(parsed.get())), "default");

  // Software keys generated and parsed in the default or an application
  // context sign and verify with the default provider, EC keymgmt included.
  for (OSSL_LIB_CTX* libctx : {static_cast<OSSL_LIB_CTX*>(nullptr), application_context()}) {
    const unsigned char* p = der.data();
    EvpPkeyPtr parsed_here(d2i_PUBKEY_ex(nullptr, &p, static_cast<long>(der.size()), libctx, nullptr));
    ASSERT_TRUE(parsed_here) << openssl_errors();
    EXPECT_EQ(provider_name(EVP_PKEY_get0_provider(parsed_here.get())), "default");

    EvpPkeyPtr software(EVP_PKEY_Q_keygen(libctx, nullptr, "EC", "P-256"));
    ASSERT_TRUE(software) << openssl_errors();
    EXPECT_EQ(provider_name(EVP_PKEY_get0_provider(software.get())), "default");
    const unsigned char message[] = "a normal signature";
    EvpMdCtxPtr sign(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    ASSERT_EQ(EVP_DigestSignInit_ex(sign.get(), &pctx, "SHA256", libctx, nullptr, software.get(), nullptr), 1);
    EXPECT_EQ(provider_name(EVP_PKEY_CTX_get0_provider(pctx)), "default");
    std::size_t size = 0;
    ASSERT_EQ(EVP_DigestSign(sign.get(), nullptr, &size, message, sizeof message), 1);
    Bytes signature(size);
    ASSERT_EQ(EVP_DigestSign(sign.get(), signature.data(), &size, message, sizeof message), 1);
    signature.resize(size);

    // Verified with a key parsed from DER in the default context.
    unsigned char* spki = nullptr;
    int spki_size = i2d_PUBKEY(software.get(), &spki);
    ASSERT_GT(spki_size, 0);
    const unsigned char* q = spki;
    EvpPkeyPtr verifier(d2i_PUBKEY(nullptr, &q, spki_size));
    OPENSSL_free(spki);
    ASSERT_TRUE(verifier);
    EXPECT_EQ(provider_name(EVP_PKEY_get0_provider(verifier.get())), "default");
    EvpMdCtxPtr verify(EVP_MD_CTX_new());
    EVP_PKEY_CTX* vctx = nullptr;
    ASSERT_EQ(EVP_DigestVerifyInit_ex(verify.get(), &vctx, "SHA256", libctx, nullptr, verifier.get(), nullptr), 1);
    EXPECT_EQ(provider_name(EVP_PKEY_CTX_get0_provider(vctx)), "default");
    EXPECT_EQ(EVP_DigestVerify(verify.get(), signature.data(), signature.size(), message, sizeof message), 1);
  }

  // keyhold's context makes and parses token keys only: anything else fails
  // there instead of becoming a keyhold key.
  const unsigned char* p = der.data();
  EvpPkeyPtr parsed_in_keyhold(d2i_PUBKEY_ex(nullptr, &p, static_cast<long>(der.size()), crypto::openssl_context(),
                                             nullptr));
  EXPECT_FALSE(parsed_in_keyhold);
  EvpPkeyPtr generated_in_keyhold(EVP_PKEY_Q_keygen(crypto::openssl_context(), nullptr, "EC", "P-256"));
  EXPECT_FALSE(generated_in_keyhold);
  ERR_clear_error();

  // The keyhold provider is not in the default context at all.
  EXPECT_EQ(OSSL_PROVIDER_available(nullptr, "keyhold"), 0);
  EXPECT_EQ(OSSL_PROVIDER_available(application_context(), "keyhold"), 0);
  EXPECT_EQ(OSSL_PROVIDER_available(crypto::openssl_context(), "keyhold"), 1);
  EXPECT_EQ(OSSL_PROVIDER_available(crypto::openssl_context(), "default"), 0);
}

TEST(ProviderConcurrency, FourThreadsSignTwoHundredCertificatesEachWithOneKey) {
  auto signer = TokenKeys::get().signer(KeyType::EcP256);
  EvpPkeyPtr key = crypto::make_token_pkey(signer);
  EVP_PKEY* public_key = signer->public_key().evp();
  constexpr int kThreads = 4;
  constexpr int kEach = 200;
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      X509Ptr cert = unsigned_certificate(*signer, "thread " + std::to_string(t));
      for (int i = 0; i < kEach; ++i) {
        ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1000 * t + i + 1);
        try {
          auto ctx = crypto::make_sign_context(key.get(), SignatureAlgorithm::EcdsaSha256);
          if (X509_sign_ctx(cert.get(), ctx.get()) > 0 && X509_verify(cert.get(), public_key) == 1) ++verified;
        } catch (const Error&) {
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(verified.load(), kThreads * kEach) << openssl_errors();
}

}  // namespace
}  // namespace keyhold
