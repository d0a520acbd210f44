// envelope::Service over a real token and store: KEK versions, data keys,
// encrypt/decrypt/rewrap, rotation by age and count, state changes, the
// token attributes of a KEK, and the test vectors of docs/ciphertext-format.md.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "../../src/crypto/token_keys.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/envelope/seal.hpp"
#include "keyhold/envelope/service.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/service/key_service.hpp"
#include "support/call_counter.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

using envelope::Ciphertext;
using envelope::Context;
using testing::ThrowawayToken;

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string text_of(const SecretBytes& s) { return std::string(s.as_string()); }

template <class F>
std::string error_of(F&& f, ErrorCode code) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

class EnvelopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_directory("keyhold-envelope");
    store_ = store::open_sqlite_store(dir_ / "keyhold.db");
    token_ = ThrowawayToken::get().open();
    ring_ = crypto::make_token_key_ring(token_);
    keys_ = std::make_unique<service::KeyService>(*ring_, *store_);
    make_service(1);
  }
  void TearDown() override {
    service_.reset();
    std::filesystem::remove_all(dir_);
  }
  void make_service(std::uint64_t batch) {
    envelope::ServiceSettings settings;
    settings.now = [this] { return now_; };
    settings.reservation_batch = batch;
    service_ = std::make_unique<envelope::Service>(*store_, *keys_, settings);
  }
  std::string unique(const std::string& base) { return base + std::to_string(counter_++); }
  std::uint64_t count_of(const std::string& kek, std::uint32_t version) {
    return service_->show(kek).versions.at(version - 1).record.encryptions;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::shared_ptr<hsm::Token> token_;
  std::unique_ptr<crypto::KeyRing> ring_;
  std::unique_ptr<service::KeyService> keys_;
  std::unique_ptr<envelope::Service> service_;
  std::chrono::system_clock::time_point now_ = std::chrono::system_clock::now();
  static inline int counter_ = 0;
};

TEST_F(EnvelopeTest, DataKeysAndSmallPlaintextsRoundTripUnderTheirContext) {
  std::string kek = unique("payments");
  envelope::KekInfo made = service_->create_kek(kek);
  EXPECT_EQ(made.primary_version, 1u);
  EXPECT_EQ(made.kek.kek_id.size(), envelope::kKekIdBytes);
  Context context = {{"tenant", "acme"}, {"purpose", "invoices"}};

  for (std::size_t size : {16u, 32u}) {
    envelope::DataKey key = service_->generate_data_key(kek, context, size);
    ASSERT_EQ(key.plaintext.size(), size);
    EXPECT_EQ(key.ciphertext.kek_version, 1u);
    EXPECT_EQ(key.ciphertext.sealed.size(), size + envelope::kTagBytes);
    envelope::Decrypted back = service_->decrypt(envelope::from_text(envelope::to_text(key.ciphertext)), context);
    EXPECT_EQ(text_of(back.plaintext), text_of(key.plaintext));
    EXPECT_EQ(back.kek_name, kek);
    EXPECT_EQ(back.kek_version, 1u);
  }
  // Two data keys differ, and so do their IVs.
  envelope::DataKey a = service_->generate_data_key(kek, context), b = service_->generate_data_key(kek, context);
  EXPECT_NE(text_of(a.plaintext), text_of(b.plaintext));
  EXPECT_NE(a.ciphertext.iv, b.ciphertext.iv);

  for (std::size_t size : {0u, 1u, 4096u}) {
    std::string plaintext(size, 'p');
    Ciphertext c = service_->encrypt(kek, bytes_of(plaintext), context);
    EXPECT_EQ(text_of(service_->decrypt(c, context).plaintext), plaintext);
  }
  // An empty plaintext as a null span (what an empty SecretBytes gives): tokens refuse a null pointer.
  Ciphertext empty = service_->encrypt(kek, std::span<const std::uint8_t>(), context);
  EXPECT_EQ(service_->decrypt(empty, context).plaintext.size(), 0u);
  std::string too_big(4097, 'x');
  EXPECT_NE(error_of([&] { service_->encrypt(kek, bytes_of(too_big), context); }, ErrorCode::InvalidArgument)
                .find("4097 bytes"),
            std::string::npos);
  EXPECT_NE(error_of([&] { service_->generate_data_key(kek, context, 24); }, ErrorCode::InvalidArgument).find("16 or 32"),
            std::string::npos);
}

TEST_F(EnvelopeTest, AWrongMissingOrExtraContextAndAnotherKekFailToDecrypt) {
  std::string kek = unique("ctx"), other = unique("other");
  service_->create_kek(kek);
  service_->create_kek(other);
  Context context = {{"tenant", "acme"}};
  Ciphertext c = service_->encrypt(kek, bytes_of("secret"), context);
  for (const Context& wrong : {Context{}, Context{{"tenant", "acme2"}}, Context{{"tenant", "acme"}, {"x", "y"}},
                               Context{{"Tenant", "acme"}}}) {
    std::string message = error_of([&] { service_->decrypt(c, wrong); }, ErrorCode::InvalidArgument);
    EXPECT_NE(message.find("decryption failed"), std::string::npos) << message;
    EXPECT_EQ(message.find("secret"), std::string::npos);
  }
  std::string refused = error_of([&] { service_->decrypt(c, context, other); }, ErrorCode::InvalidArgument);
  EXPECT_NE(refused.find("not made under KEK '" + other + "' (it names another KEK)"), std::string::npos) << refused;
  EXPECT_EQ(refused.find(kek), std::string::npos) << refused;  // the other KEK is not named
  // The other KEK's id in the header: the header is authenticated, and the key differs.
  Ciphertext moved = c;
  moved.kek_id = envelope::decode(envelope::encode(service_->encrypt(other, bytes_of("x"), context))).kek_id;
  EXPECT_THROW(service_->decrypt(moved, context), Error);
  Ciphertext unknown = c;
  unknown.kek_id[0] ^= 0x80;
  EXPECT_NE(error_of([&] { service_->decrypt(unknown, context); }, ErrorCode::NotFound).find("no KEK"), std::string::npos);
  EXPECT_THROW(service_->encrypt(unique("nope"), bytes_of("x"), context), Error);
}

TEST_F(EnvelopeTest, EverySingleBitFlipOfACiphertextFailsAndReturnsNothing) {
  std::string kek = unique("flip");
  service_->create_kek(kek);
  Context context = {{"k", "v"}};
  std::vector<std::uint8_t> good = envelope::encode(service_->encrypt(kek, bytes_of("tiny"), context));
  ASSERT_EQ(text_of(service_->decrypt(envelope::decode(good), context).plaintext), "tiny");
  testing::CallCounter calls(token_->module());
  for (std::size_t bit = 0; bit < good.size() * 8; ++bit) {
    std::vector<std::uint8_t> flipped = good;
    flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    bool refused = false;
    try {
      envelope::Decrypted d = service_->decrypt(envelope::decode(flipped), context);
      ADD_FAILURE() << "bit " << bit << " flipped still decrypted to " << d.plaintext.size() << " bytes";
    } catch (const Error& e) {
      refused = true;
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
    EXPECT_TRUE(refused) << bit;
  }
  // Flips of the IV, ciphertext and tag reach the token and fail there; flips
  // of the version byte, KEK id and version are refused before it.
  EXPECT_EQ(calls["C_Decrypt"], static_cast<int>((good.size() - 21) * 8));
}

TEST_F(EnvelopeTest, RotationKeepsOldVersionsDecryptingAndRewrapMovesToThePrimary) {
  std::string kek = unique("rot");
  service_->create_kek(kek);
  Context context = {{"app", "billing"}};
  std::vector<Ciphertext> made;
  for (int v = 1; v <= 4; ++v) {
    made.push_back(service_->encrypt(kek, bytes_of("v" + std::to_string(v)), context));
    EXPECT_EQ(made.back().kek_version, static_cast<std::uint32_t>(v));
    if (v < 4) {
      EXPECT_EQ(service_->rotate(kek).primary_version, static_cast<std::uint32_t>(v + 1));
    }
  }
  for (int v = 1; v <= 4; ++v) {
    envelope::Decrypted d = service_->decrypt(made[v - 1], context);
    EXPECT_EQ(text_of(d.plaintext), "v" + std::to_string(v));
    EXPECT_EQ(d.kek_version, static_cast<std::uint32_t>(v));
  }
  envelope::KekInfo info = service_->show(kek);
  ASSERT_EQ(info.versions.size(), 4u);
  EXPECT_TRUE(info.versions[3].primary);
  EXPECT_FALSE(info.versions[0].primary);

  Ciphertext rewrapped = service_->rewrap(made[0], context, std::nullopt);
  EXPECT_EQ(rewrapped.kek_version, 4u);
  EXPECT_EQ(text_of(service_->decrypt(rewrapped, context).plaintext), "v1");
  Context moved = {{"app", "billing"}, {"region", "eu"}};
  Ciphertext recontexted = service_->rewrap(made[1], context, moved);
  EXPECT_EQ(recontexted.kek_version, 4u);
  EXPECT_EQ(text_of(service_->decrypt(recontexted, moved).plaintext), "v2");
  EXPECT_THROW(service_->decrypt(recontexted, context), Error);
  EXPECT_THROW(service_->rewrap(made[0], {{"app", "wrong"}}, std::nullopt), Error);
}

TEST_F(EnvelopeTest, DisabledVersionsRefuseUntilEnabledAndDestroyedOnesAreGoneForGood) {
  std::string kek = unique("states");
  service_->create_kek(kek);
  Context context;
  Ciphertext old = service_->encrypt(kek, bytes_of("old"), context);
  EXPECT_NE(error_of([&] { service_->disable_version(kek, 1); }, ErrorCode::FailedPrecondition).find("primary"),
            std::string::npos);
  EXPECT_NE(error_of([&] { service_->destroy_version(kek, 1); }, ErrorCode::FailedPrecondition).find("primary"),
            std::string::npos);
  service_->rotate(kek);

  service_->disable_version(kek, 1);
  std::string message = error_of([&] { service_->decrypt(old, context); }, ErrorCode::FailedPrecondition);
  EXPECT_NE(message.find("version 1 is disabled"), std::string::npos) << message;
  EXPECT_EQ(service_->show(kek).versions[0].record.state, "disabled");
  service_->enable_version(kek, 1);
  EXPECT_EQ(text_of(service_->decrypt(old, context).plaintext), "old");

  std::vector<std::uint8_t> object_id = service_->show(kek).versions[0].record.key_object_id;
  ASSERT_TRUE(ring_->find(object_id));
  now_ += std::chrono::hours(1);
  envelope::KekInfo after = service_->destroy_version(kek, 1);
  EXPECT_FALSE(ring_->find(object_id)) << "the token object is destroyed";
  ASSERT_EQ(after.versions.size(), 2u) << "the store keeps the row";
  EXPECT_EQ(after.versions[0].record.state, "destroyed");
  ASSERT_TRUE(after.versions[0].record.state_changed_at);
  message = error_of([&] { service_->decrypt(old, context); }, ErrorCode::FailedPrecondition);
  EXPECT_NE(message.find("version 1 was destroyed at " + *after.versions[0].record.state_changed_at), std::string::npos)
      << message;
  EXPECT_THROW(service_->enable_version(kek, 1), Error);
  EXPECT_THROW(service_->destroy_version(kek, 1), Error);
  EXPECT_THROW(service_->disable_version(kek, 9), Error);
  // A fresh service (another process) says the same.
  make_service(1);
  EXPECT_THROW(service_->decrypt(old, context), Error);
}

TEST_F(EnvelopeTest, RotationIsDueByAgeWithTheInjectedClockAndByCount) {
  std::string aged = unique("aged"), counted = unique("counted"), never = unique("never");
  service_->create_kek(aged, std::chrono::hours(24 * 30));
  service_->create_kek(counted, std::chrono::seconds(0), 3);
  service_->create_kek(never, std::chrono::seconds(0));
  auto due_names = [&] {
    std::vector<std::string> names;
    for (const auto& r : service_->rotate_due()) {
      if (r.kek == aged || r.kek == counted || r.kek == never) names.push_back(r.kek + ":" + std::to_string(r.new_version));
    }
    return names;
  };
  EXPECT_TRUE(due_names().empty());
  EXPECT_EQ(service_->show(aged).next_rotation_due, format_utc(std::chrono::time_point_cast<std::chrono::seconds>(now_) +
                                                               std::chrono::hours(24 * 30)));

  now_ += std::chrono::hours(24 * 30) - std::chrono::seconds(5);
  EXPECT_TRUE(due_names().empty()) << "29 days 23:59:55 is not yet 30 days";
  now_ += std::chrono::seconds(10);
  EXPECT_NE(service_->show(aged).due_reason.find("older than the rotation period (30d)"), std::string::npos);
  EXPECT_EQ(due_names(), std::vector<std::string>{aged + ":2"});
  EXPECT_TRUE(due_names().empty()) << "the new version is young";

  for (int i = 0; i < 2; ++i) service_->encrypt(counted, bytes_of("x"), {});
  EXPECT_TRUE(due_names().empty());
  service_->encrypt(counted, bytes_of("x"), {});
  EXPECT_NE(service_->show(counted).due_reason.find("has done 3 encryptions"), std::string::npos);
  EXPECT_EQ(due_names(), std::vector<std::string>{counted + ":2"});
  EXPECT_EQ(service_->encrypt(counted, bytes_of("x"), {}).kek_version, 2u);

  now_ += std::chrono::hours(24 * 365 * 5);
  EXPECT_EQ(due_names(), std::vector<std::string>{aged + ":3"}) << "no period, no rotation by age";
}

TEST_F(EnvelopeTest, ChangesByAnotherProcessAreSeenOnceTheVersionsCacheExpires) {
  std::string kek = unique("shared");
  service_->create_kek(kek);
  Context context;
  Ciphertext old = service_->encrypt(kek, bytes_of("x"), context);
  // Another process: a second service on the same store and token.
  envelope::Service other(*store_, *keys_);
  other.rotate(kek);
  EXPECT_EQ(service_->encrypt(kek, bytes_of("x"), context).kek_version, 1u) << "within the cache time";
  envelope::ServiceSettings fresh;
  fresh.versions_cache = std::chrono::milliseconds(0);
  envelope::Service uncached(*store_, *keys_, fresh);
  EXPECT_EQ(uncached.encrypt(kek, bytes_of("x"), context).kek_version, 2u);
  other.disable_version(kek, 1);
  EXPECT_THROW(uncached.decrypt(old, context), Error);
  // This process's own changes are seen at once.
  service_->rotate(kek);
  EXPECT_EQ(service_->encrypt(kek, bytes_of("x"), context).kek_version, 3u);
}

TEST_F(EnvelopeTest, TheStoredCountIsNeverBelowTheEncryptionsDone) {
  std::string kek = unique("count");
  service_->create_kek(kek);
  for (int i = 0; i < 5; ++i) service_->encrypt(kek, bytes_of("x"), {});
  EXPECT_EQ(count_of(kek, 1), 5u) << "reserved one at a time by the command line";

  // A service reserving 100 at a time (a server) records the whole batch
  // before its first encryption; another process sharing the store continues
  // after the batch.
  make_service(100);
  service_->encrypt(kek, bytes_of("x"), {});
  EXPECT_EQ(count_of(kek, 1), 105u);
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 60; ++i) {
        service_->generate_data_key(kek, {});
        ++done;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(done, 240);
  std::uint64_t stored = count_of(kek, 1);
  EXPECT_GE(stored, 5u + 1 + 240);
  EXPECT_LE(stored, 5u + 1 + 240 + 100);
}

TEST_F(EnvelopeTest, AKekIsANonExtractableAesKeyThatOnlyEncryptsAndDecrypts) {
  std::string kek = unique("attrs");
  service_->create_kek(kek);
  std::vector<std::uint8_t> id = service_->show(kek).versions[0].record.key_object_id;
  std::optional<crypto::TokenKey> key = ring_->find(id);
  ASSERT_TRUE(key);
  EXPECT_EQ(key->type, crypto::KeyType::Aes256);
  EXPECT_TRUE(key->attributes.sensitive);
  EXPECT_FALSE(key->attributes.extractable);
  EXPECT_TRUE(key->attributes.never_extractable);
  EXPECT_TRUE(key->attributes.always_sensitive);
  EXPECT_TRUE(key->attributes.encrypt);
  EXPECT_TRUE(key->attributes.decrypt);
  EXPECT_FALSE(key->attributes.wrap);
  EXPECT_FALSE(key->attributes.unwrap);
  EXPECT_FALSE(key->attributes.sign);
  EXPECT_FALSE(key->attributes.derive);
  EXPECT_EQ(key->label, envelope::kek_key_name(kek, 1));

  // C_WrapKey of the KEK under a wrapping key that may wrap anything: refused.
  CK_FUNCTION_LIST* f = token_->module().functions_for_tests();
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  ASSERT_EQ(f->C_OpenSession(token_->slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s), CKR_OK);
  CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;
  CK_ATTRIBUTE match[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_ID, id.data(), id.size()}};
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  CK_ULONG found = 0;
  ASSERT_EQ(f->C_FindObjectsInit(s, match, 2), CKR_OK);
  ASSERT_EQ(f->C_FindObjects(s, &handle, 1, &found), CKR_OK);
  ASSERT_EQ(f->C_FindObjectsFinal(s), CKR_OK);
  ASSERT_EQ(found, 1u);
  CK_KEY_TYPE aes = CKK_AES;
  CK_ULONG length = 32;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE wrapping_template[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                                      {CKA_VALUE_LEN, &length, sizeof length}, {CKA_TOKEN, &no, sizeof no},
                                      {CKA_WRAP, &yes, sizeof yes}};
  CK_MECHANISM keygen{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE wrapping = CK_INVALID_HANDLE;
  ASSERT_EQ(f->C_GenerateKey(s, &keygen, wrapping_template, 5, &wrapping), CKR_OK);
  for (CK_MECHANISM_TYPE mechanism : {CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD}) {
    CK_MECHANISM wrap{mechanism, nullptr, 0};
    std::uint8_t out[256];
    CK_ULONG out_length = sizeof out;
    CK_RV rv = f->C_WrapKey(s, &wrap, wrapping, handle, out, &out_length);
    EXPECT_EQ(rv, CKR_KEY_UNEXTRACTABLE) << hsm::rv_name(rv);
  }
  // Nor can it sign.
  CK_MECHANISM mac{CKM_SHA256_HMAC, nullptr, 0};
  EXPECT_NE(f->C_SignInit(s, &mac, handle), CKR_OK);
  f->C_DestroyObject(s, wrapping);
  f->C_CloseSession(s);
}

TEST_F(EnvelopeTest, BadInputIsRefusedBeforeTheTokenIsUsed) {
  std::string kek = unique("bad");
  service_->create_kek(kek);
  testing::CallCounter calls(token_->module());
  EXPECT_THROW(service_->create_kek("bad name"), Error);
  EXPECT_THROW(service_->create_kek(kek), Error);
  EXPECT_THROW(service_->create_kek(unique("zero"), std::chrono::hours(1), 0), Error);
  EXPECT_THROW(service_->create_kek(std::string(49, 'k')), Error);
  EXPECT_THROW(service_->encrypt(kek, bytes_of("x"), {{"", "v"}}), Error);
  EXPECT_THROW(service_->generate_data_key(kek, {{"bad\nkey", "v"}}), Error);
  EXPECT_EQ(calls["C_Encrypt"], 0);
  EXPECT_EQ(calls["C_GenerateKey"], 0);
  EXPECT_EQ(calls["C_GenerateRandom"], 0);
  EXPECT_EQ(count_of(kek, 1), 0u);
}

TEST_F(EnvelopeTest, SealedFilesUseAFreshDataKeyUnwrappedByTheKek) {
  std::string kek = unique("seal");
  service_->create_kek(kek);
  Context context = {{"file", "report.pdf"}};
  std::string content(200000, 'r');
  std::istringstream in(content);
  std::ostringstream sealed;
  envelope::DataKey key = service_->generate_data_key(kek, context);
  envelope::seal(in, sealed, key.plaintext, envelope::encode(key.ciphertext));
  std::istringstream sealed_in(sealed.str());
  envelope::SealHeader header = envelope::read_seal_header(sealed_in);
  envelope::Decrypted unwrapped = service_->decrypt(envelope::decode(header.wrapped_key), context);
  std::ostringstream out;
  envelope::unseal(header, sealed_in, out, unwrapped.plaintext);
  EXPECT_EQ(out.str(), content);
  EXPECT_THROW(service_->decrypt(envelope::decode(header.wrapped_key), {{"file", "other.pdf"}}), Error);
}

// The test vectors of docs/ciphertext-format.md: KEK key 00 01 .. 1f, KEK id
// "keyhold-vector-1", version 1.
struct Vector {
  std::string iv_hex;
  Context context;
  std::string plaintext_hex;
  std::string associated_data_hex;
  std::string text;
};
const std::vector<Vector>& vectors() {
  static const std::vector<Vector> v = {
      {"cafebabefacedbaddecaf888",
       {{"tenant", "acme"}, {"purpose", "test-vector"}},
       "6b6579686f6c64207465737420766563746f722031",
       "016b6579686f6c642d766563746f722d3100000001cafebabefacedbaddecaf8880000000200000007707572706f73650000000b746573742d76"
       "6563746f720000000674656e616e740000000461636d65",
       "kh1:AWtleWhvbGQtdmVjdG9yLTEAAAAByv66vvrO263eyviI4cbZTsUWKzsybi6pW2vsXHlPsnHuwpQX-cZeXNSUXU6-Hand8Q"},
      {"000000000000000000000001",
       {},
       "00112233445566778899aabbccddeeff102132435465768798a9bacbdcedfe0f",
       "016b6579686f6c642d766563746f722d310000000100000000000000000000000100000000",
       "kh1:AWtleWhvbGQtdmVjdG9yLTEAAAABAAAAAAAAAAAAAAABFcedzwChVmmGt_uCIHvUCAW-Lhcw1yID66m5EvrdjVHJQI04xOt6EuEDaVI5rDFr"},
  };
  return v;
}

std::vector<std::uint8_t> vector_key() {
  std::vector<std::uint8_t> key(32);
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i);
  return key;
}

// AES-256-GCM decryption by OpenSSL alone: the format as documented, without keyhold's token code.
std::optional<std::vector<std::uint8_t>> openssl_decrypt(const Ciphertext& c, std::span<const std::uint8_t> aad) {
  std::vector<std::uint8_t> key = vector_key();
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  std::vector<std::uint8_t> out(c.sealed.size());
  int length = 0, final_length = 0;
  std::size_t body = c.sealed.size() - envelope::kTagBytes;
  bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), c.iv.data()) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &length, aad.data(), static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx, out.data(), &length, c.sealed.data(), static_cast<int>(body)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, const_cast<std::uint8_t*>(c.sealed.data() + body)) == 1 &&
            EVP_DecryptFinal_ex(ctx, out.data() + length, &final_length) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return std::nullopt;
  out.resize(static_cast<std::size_t>(length + final_length));
  return out;
}

TEST_F(EnvelopeTest, TheDocumentedTestVectorsHoldInTheTokenAndForOpenSsl) {
  // The known KEK imported into the token (C_CreateObject): usable to encrypt and decrypt only.
  CK_FUNCTION_LIST* f = token_->module().functions_for_tests();
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  ASSERT_EQ(f->C_OpenSession(token_->slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s), CKR_OK);
  std::vector<std::uint8_t> key = vector_key();
  std::vector<std::uint8_t> object_id = token_->random(16);
  std::string label = unique("vector-kek");
  CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;
  CK_KEY_TYPE aes = CKK_AES;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE import[] = {{CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &aes, sizeof aes},
                           {CKA_TOKEN, &no, sizeof no},          {CKA_PRIVATE, &yes, sizeof yes},
                           {CKA_SENSITIVE, &yes, sizeof yes},    {CKA_EXTRACTABLE, &no, sizeof no},
                           {CKA_ENCRYPT, &yes, sizeof yes},      {CKA_DECRYPT, &yes, sizeof yes},
                           {CKA_WRAP, &no, sizeof no},           {CKA_UNWRAP, &no, sizeof no},
                           {CKA_SIGN, &no, sizeof no},           {CKA_VERIFY, &no, sizeof no},
                           {CKA_ID, object_id.data(), object_id.size()},
                           {CKA_LABEL, label.data(), label.size()},
                           {CKA_VALUE, key.data(), key.size()}};
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  ASSERT_EQ(f->C_CreateObject(s, import, sizeof import / sizeof import[0], &handle), CKR_OK);

  // keyhold's own path refuses a KEK that was ever outside a token
  // (CKA_NEVER_EXTRACTABLE is FALSE for an imported key): the vectors are
  // checked through the token KEK itself, below the service.
  EXPECT_THROW(ring_->kek(object_id), Error);
  crypto::TokenKek kek(token_, object_id);

  for (const Vector& v : vectors()) {
    Ciphertext c = envelope::from_text(v.text);
    EXPECT_EQ(std::string(c.kek_id.begin(), c.kek_id.end()), "keyhold-vector-1");
    EXPECT_EQ(c.kek_version, 1u);
    EXPECT_EQ(to_hex(c.iv), v.iv_hex);
    std::vector<std::uint8_t> aad = envelope::associated_data(c, v.context);
    EXPECT_EQ(to_hex(aad), v.associated_data_hex);
    // The token decrypts the vector to its plaintext.
    crypto::SealedBytes sealed{c.iv, c.sealed};
    EXPECT_EQ(to_hex(kek.decrypt(sealed, aad).view()), v.plaintext_hex);
    // And so does OpenSSL.
    std::optional<std::vector<std::uint8_t>> plain = openssl_decrypt(c, aad);
    ASSERT_TRUE(plain);
    EXPECT_EQ(to_hex(*plain), v.plaintext_hex);

    // The other way: what the token encrypts (with its own random IV) in
    // this format, OpenSSL decrypts with the documented associated data.
    std::vector<std::uint8_t> plaintext = *from_hex(v.plaintext_hex);
    Ciphertext fresh;
    fresh.kek_id = c.kek_id;
    fresh.kek_version = 1;
    crypto::SealedBytes made = kek.encrypt_with_iv_in_aad(plaintext, [&](const std::array<std::uint8_t, 12>& iv) {
      fresh.iv = iv;
      return envelope::associated_data(fresh, v.context);
    });
    fresh.sealed = made.ciphertext;
    EXPECT_NE(fresh.iv, c.iv);
    std::optional<std::vector<std::uint8_t>> back = openssl_decrypt(envelope::decode(envelope::encode(fresh)),
                                                                    envelope::associated_data(fresh, v.context));
    ASSERT_TRUE(back);
    EXPECT_EQ(to_hex(*back), v.plaintext_hex);
    // A changed context does not authenticate, for the token or for OpenSSL.
    Context other = v.context;
    other["extra"] = "1";
    EXPECT_THROW(kek.decrypt(sealed, envelope::associated_data(c, other)), Error);
    EXPECT_FALSE(openssl_decrypt(c, envelope::associated_data(c, other)));
  }
  f->C_DestroyObject(s, handle);
  f->C_CloseSession(s);
}

}  // namespace
}  // namespace keyhold
