// Faults SoftHSM cannot produce, scripted in the fake PKCS#11 module
// (tests/support/fake_pkcs11): keyhold's recovery, retry and error rules of
// the design's "PKCS#11 rules", checked against what reached the module.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/fake_pkcs11/fake_pkcs11_control.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/secret.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/pin.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/hsm/uri.hpp"

namespace {

using keyhold::Error;
using keyhold::ErrorCode;
using keyhold::SecretBytes;
using keyhold::hsm::Module;
using keyhold::hsm::ObjectRef;
using keyhold::hsm::Token;
using keyhold::hsm::TokenOptions;

const ObjectRef kKey{{1, 2, 3, 4}, CKO_PRIVATE_KEY};
const std::vector<std::uint8_t> kData = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03};

CK_MECHANISM ecdsa() { return CK_MECHANISM{CKM_ECDSA, nullptr, 0}; }

SecretBytes secret(std::string_view text) {
  return SecretBytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

class FaultInjection : public ::testing::Test {
 protected:
  // One Module for the whole binary, as in production (one C_Initialize per process).
  static void SetUpTestSuite() {
    module_ = Module::load(KEYHOLD_FAKE_PKCS11);
    fake_ = std::make_unique<fake_p11::Control>(KEYHOLD_FAKE_PKCS11);
  }
  static void TearDownTestSuite() {
    fake_.reset();
    module_.reset();
  }

  void SetUp() override { fake().reset(); }
  // Every Token of a test is gone by now: it must have closed every session
  // it opened, the failed ones included.
  void TearDown() override { EXPECT_EQ(fake().open_sessions(), 0u) << "sessions left open on the token"; }

  static fake_p11::Control& fake() { return *fake_; }
  static unsigned long calls(const char* function) { return fake().calls(function); }

  static std::unique_ptr<Token> open_token(std::string_view pin = "1234", TokenOptions options = {}) {
    SecretBytes pin_bytes = secret(pin);
    return Token::open(Module::load(KEYHOLD_FAKE_PKCS11), keyhold::hsm::Uri::parse("pkcs11:token=fake"),
                       keyhold::hsm::pin_from_memory(pin_bytes), options);
  }

  static std::vector<std::uint8_t> sign(Token& token, std::size_t size_hint = fake_p11::kSignatureSize) {
    return token.sign(kKey, ecdsa(), kData, size_hint);
  }

  static inline std::shared_ptr<Module> module_;
  static inline std::unique_ptr<fake_p11::Control> fake_;
};

// Runs f, which must throw keyhold::Error, and returns the error.
template <class F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a keyhold::Error";
  return Error(ErrorCode::Internal, "no error was thrown");
}

TEST_F(FaultInjection, ModuleLoadedTwiceIsTheSameModule) {
  EXPECT_EQ(Module::load(KEYHOLD_FAKE_PKCS11).get(), module_.get());
  EXPECT_EQ(calls("C_Initialize"), 0u);
}

TEST_F(FaultInjection, OpensTheFakeTokenAndSigns) {
  auto token = open_token();
  EXPECT_EQ(token->label(), "fake");
  EXPECT_EQ(calls("C_Login"), 1u);
  EXPECT_TRUE(fake().logged_in());
  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
}

// --- 1. session lost: rebuild, log in again, retry once ---

TEST_F(FaultInjection, DeviceRemovedDuringSignIsRecoveredOnce) {
  auto token = open_token();
  fake().fail_next("C_Sign", CKR_DEVICE_REMOVED, 1);

  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_Sign"), 2u);
  EXPECT_EQ(calls("C_Login"), 2u) << "the pool is rebuilt with a new login";
  EXPECT_TRUE(fake().logged_in());
  // The old login session and the failed session are closed: what is left is
  // the new login session and the one pooled session of the retry.
  EXPECT_EQ(fake().open_sessions(), 2u);
}

TEST_F(FaultInjection, DeviceRemovedTwiceInARowSurfacesAfterOneRetry) {
  auto token = open_token();
  fake().fail_next("C_Sign", CKR_DEVICE_REMOVED, 2);

  Error e = error_of([&] { sign(*token); });
  EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  EXPECT_EQ(e.ck_rv_name(), "CKR_DEVICE_REMOVED");
  EXPECT_EQ(calls("C_Sign"), 2u) << "retried exactly once";
  EXPECT_EQ(calls("C_Login"), 2u);

  // The token is usable again once the device answers.
  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_Login"), 2u);
}

TEST_F(FaultInjection, SessionsClosedUnderneathAreReopenedWithOneNewLogin) {
  auto token = open_token();
  ASSERT_EQ(sign(*token), fake_p11::expected_signature(kData));  // a session now idles in the pool
  ASSERT_EQ(token->module().functions_for_tests()->C_CloseAllSessions(token->slot()), CKR_OK);
  ASSERT_FALSE(fake().logged_in());

  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_Login"), 2u);
  EXPECT_TRUE(fake().logged_in());
}

TEST_F(FaultInjection, LoginLostUnderneathIsRestoredBeforeTheRetry) {
  auto token = open_token();
  ASSERT_EQ(sign(*token), fake_p11::expected_signature(kData));  // the key handle is cached
  // Another application session logs the application out (login is per application).
  CK_FUNCTION_LIST* p11 = token->module().functions_for_tests();
  CK_SESSION_HANDLE other = CK_INVALID_HANDLE;
  ASSERT_EQ(p11->C_OpenSession(token->slot(), CKF_SERIAL_SESSION, nullptr, nullptr, &other), CKR_OK);
  ASSERT_EQ(p11->C_Logout(other), CKR_OK);
  ASSERT_EQ(p11->C_CloseSession(other), CKR_OK);

  // The cached handle is now invalid (the private key is invisible): keyhold
  // must notice the lost login, log in again and find the key again.
  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_Login"), 2u);
  EXPECT_EQ(calls("C_FindObjectsInit"), 2u);
}

TEST_F(FaultInjection, LoginFailureDuringRecoverySurfacesAndTheNextSignRecovers) {
  auto token = open_token();
  fake().fail_next("C_Sign", CKR_DEVICE_REMOVED, 1);
  fake().fail_next("C_Login", CKR_DEVICE_ERROR, 1);  // the token is not back yet

  Error e = error_of([&] { sign(*token); });
  EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  EXPECT_EQ(e.ck_rv_name(), "CKR_DEVICE_ERROR");
  EXPECT_EQ(calls("C_Sign"), 1u) << "no retry without a login";
  EXPECT_FALSE(fake().logged_in());

  // The next operation notices the missing login and logs in again.
  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_Login"), 3u);
  EXPECT_TRUE(fake().logged_in());
}

// Token::open fails in locate(), before the Token has a session pool: the
// half-built Token must be torn down cleanly (it once dereferenced a null pool_).
TEST_F(FaultInjection, TokenNotInTheModuleFailsOpenAsUnavailable) {
  Error e = error_of([] {
    SecretBytes pin = secret("1234");
    Token::open(Module::load(KEYHOLD_FAKE_PKCS11), keyhold::hsm::Uri::parse("pkcs11:token=absent"),
                keyhold::hsm::pin_from_memory(pin), {});
  });
  EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  EXPECT_NE(std::string(e.what()).find("'fake'"), std::string::npos) << "names the tokens present: " << e.what();
  EXPECT_EQ(calls("C_OpenSession"), 0u);
}

TEST_F(FaultInjection, DeviceErrorWhileListingSlotsFailsOpenAsUnavailable) {
  fake().fail_next("C_GetSlotList", CKR_DEVICE_ERROR, 1);

  Error e = error_of([] { open_token(); });
  EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  EXPECT_EQ(e.ck_rv_name(), "CKR_DEVICE_ERROR");
  EXPECT_EQ(calls("C_Login"), 0u);
}

// --- 2. CKR_SESSION_COUNT ---

// The pool must wait for a session it owns (leased, idle, or being opened by
// another thread) rather than fail when the token answers CKR_SESSION_COUNT.
TEST_F(FaultInjection, SessionCountLimitMakesSignersWaitForAFreeSession) {
  fake().set_max_sessions(2);  // the login session and one more
  TokenOptions options;
  options.checkout_timeout = std::chrono::seconds(20);
  auto token = open_token("1234", options);
  fake().set_delay_ms("C_Sign", 1);  // each sign holds its session a little, so signers overlap

  constexpr int kThreads = 8;
  constexpr int kSignsPerThread = 50;
  const std::vector<std::uint8_t> expected = fake_p11::expected_signature(kData);
  std::atomic<int> good{0};
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kSignsPerThread; ++i) {
        try {
          if (sign(*token) == expected) ++good;
        } catch (const Error& e) {
          std::lock_guard lock(failures_mutex);
          failures.push_back(e.ck_rv_name() + ": " + e.what());
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(good.load(), kThreads * kSignsPerThread);
  EXPECT_TRUE(failures.empty()) << failures.size() << " signs failed, the first: " << failures.front();
  EXPECT_LE(fake().peak_sessions(), 2u);
  EXPECT_GT(calls("C_OpenSession"), 2u) << "the token's limit was never reached: the test proved nothing";
  EXPECT_EQ(calls("C_Login"), 1u) << "a full token is no reason to log in again";
}

// The same race, made deterministic with delays: signer A holds the only session the token allows besides the login; signer B
// asks the token for another and is refused; A gives its session back before
// the refusal reaches B. B must then take A's session, not fail.
TEST_F(FaultInjection, SessionCountAnsweredWhileTheOnlySessionIsReturnedWaitsForIt) {
  fake().set_max_sessions(2);
  TokenOptions options;
  options.checkout_timeout = std::chrono::seconds(20);
  auto token = open_token("1234", options);
  // C_OpenSession answers 500 ms after deciding, C_Sign 50 ms: A gives its
  // session back 550 ms after its open was decided; B, starting 250 ms after
  // that, is refused at 250 ms and hears it at 750 ms.
  fake().set_delay_ms("C_OpenSession", 500);
  fake().set_delay_ms("C_Sign", 50);

  std::vector<std::uint8_t> a_signature;
  std::thread a([&] { a_signature = sign(*token); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fake().open_sessions() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  std::vector<std::uint8_t> b_signature;
  std::string b_error;
  try {
    b_signature = sign(*token);
  } catch (const Error& e) {
    b_error = e.ck_rv_name() + ": " + e.what();
  }
  a.join();

  EXPECT_EQ(a_signature, fake_p11::expected_signature(kData));
  EXPECT_EQ(b_error, "");
  EXPECT_EQ(b_signature, fake_p11::expected_signature(kData));
  EXPECT_EQ(fake().peak_sessions(), 2u);
}

TEST_F(FaultInjection, TokenWithNoFreeSessionFailsOpenAsUnavailable) {
  fake().set_max_sessions(0);

  Error e = error_of([] { open_token(); });
  EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  EXPECT_EQ(e.ck_rv_name(), "CKR_SESSION_COUNT");
  EXPECT_NE(std::string(e.what()).find("no free session"), std::string::npos) << e.what();
  EXPECT_EQ(calls("C_Login"), 0u);
}

TEST_F(FaultInjection, TokenWithNoSessionBesidesTheLoginFailsTheFirstSignPromptly) {
  fake().set_max_sessions(1);  // only the login session fits
  TokenOptions options;
  options.checkout_timeout = std::chrono::seconds(30);
  auto token = open_token("1234", options);

  auto start = std::chrono::steady_clock::now();
  Error e = error_of([&] { sign(*token); });
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::Unavailable);
  EXPECT_EQ(e.ck_rv_name(), "CKR_SESSION_COUNT");
  EXPECT_NE(std::string(e.what()).find("no free session"), std::string::npos) << e.what();
  // Nothing can ever come back to the pool, so it must not wait out the timeout.
  EXPECT_LT(waited, std::chrono::seconds(10));
  EXPECT_EQ(calls("C_Sign"), 0u);
}

// --- 3. CKR_BUFFER_TOO_SMALL ---

TEST_F(FaultInjection, SignRetriesWhenTheTokenReportsTheBufferTooSmall) {
  fake().set_sign_reports_short_buffer(true);
  auto token = open_token();

  std::vector<std::uint8_t> signature = sign(*token, fake_p11::kSignatureSize);
  EXPECT_EQ(signature.size(), fake_p11::kSignatureSize);
  EXPECT_EQ(signature, fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_Sign"), 2u);
  EXPECT_EQ(calls("C_SignInit"), 1u) << "the operation stays active after CKR_BUFFER_TOO_SMALL";
}

TEST_F(FaultInjection, SignWithoutSizeHintQueriesTheSizeAndSurvivesBufferTooSmall) {
  fake().set_sign_reports_short_buffer(true);
  auto token = open_token();

  std::vector<std::uint8_t> signature = sign(*token, 0);
  EXPECT_EQ(signature.size(), fake_p11::kSignatureSize);
  EXPECT_EQ(signature, fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_Sign"), 3u) << "size query, short answer, signature";
  EXPECT_EQ(calls("C_SignInit"), 1u);
}

TEST_F(FaultInjection, SignWithTooSmallSizeHintGrowsToTheNeededSize) {
  auto token = open_token();

  std::vector<std::uint8_t> signature = sign(*token, 16);
  EXPECT_EQ(signature, fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_Sign"), 2u);
}

// --- 4. and 5. login failures are never retried ---

TEST_F(FaultInjection, LockedPinFailsOpenOnceWithoutRevealingThePin) {
  fake().set_pin_locked(true);

  Error e = error_of([] { open_token("1234"); });
  EXPECT_EQ(e.code(), ErrorCode::Unauthenticated);
  EXPECT_EQ(e.ck_rv_name(), "CKR_PIN_LOCKED");
  std::string message = e.what();
  EXPECT_NE(message.find("PIN is locked"), std::string::npos) << message;
  EXPECT_EQ(message.find("1234"), std::string::npos) << message;
  EXPECT_EQ(calls("C_Login"), 1u);
}

TEST_F(FaultInjection, WrongPinFailsOpenOnceAndIsNotRetried) {
  Error e = error_of([] { open_token("9999"); });
  EXPECT_EQ(e.code(), ErrorCode::Unauthenticated);
  EXPECT_EQ(e.ck_rv_name(), "CKR_PIN_INCORRECT");
  EXPECT_EQ(std::string(e.what()).find("9999"), std::string::npos) << e.what();
  EXPECT_EQ(calls("C_Login"), 1u);
  EXPECT_FALSE(fake().logged_in());
}

// --- 6. other session errors: no retry, the session is not reused ---

TEST_F(FaultInjection, FailedSignIsNotRetriedAndItsSessionIsClosed) {
  auto token = open_token();
  ASSERT_EQ(sign(*token), fake_p11::expected_signature(kData));  // one session idles in the pool
  ASSERT_EQ(fake().open_sessions(), 2u);
  unsigned long closed_before = calls("C_CloseSession");
  unsigned long opened_before = calls("C_OpenSession");
  unsigned long signs_before = calls("C_Sign");

  // The scripted failure leaves the signing operation active on that session,
  // as SoftHSMv2 #585 does: reusing the session would fail with CKR_OPERATION_ACTIVE.
  fake().fail_next("C_Sign", CKR_FUNCTION_FAILED, 1);
  Error e = error_of([&] { sign(*token); });
  EXPECT_EQ(e.ck_rv_name(), "CKR_FUNCTION_FAILED");
  EXPECT_EQ(calls("C_Sign"), signs_before + 1) << "not retried";
  EXPECT_EQ(calls("C_CloseSession"), closed_before + 1) << "the failed session is closed";
  EXPECT_EQ(fake().open_sessions(), 1u) << "only the login session is left";
  EXPECT_EQ(calls("C_Login"), 1u);

  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_OpenSession"), opened_before + 1) << "a fresh session replaces the failed one";
}

// --- 7. stale object handles are found again ---

TEST_F(FaultInjection, KeyHandleInvalidOnSignInitFindsTheKeyAgain) {
  auto token = open_token();
  ASSERT_EQ(sign(*token), fake_p11::expected_signature(kData));
  ASSERT_EQ(calls("C_FindObjectsInit"), 1u);

  fake().fail_next("C_SignInit", CKR_KEY_HANDLE_INVALID, 1);
  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_FindObjectsInit"), 2u);
  EXPECT_EQ(calls("C_SignInit"), 3u);
  EXPECT_EQ(calls("C_Login"), 1u) << "still logged in: no new login";
}

TEST_F(FaultInjection, KeyThatGotANewHandleIsFoundAgainAndCachedAgain) {
  auto token = open_token();
  ASSERT_EQ(sign(*token), fake_p11::expected_signature(kData));
  fake().renumber_objects();  // the cached handle is really stale now

  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_FindObjectsInit"), 2u) << "found again once, then served from the cache";
}

// --- 8. the handle cache ---

TEST_F(FaultInjection, HandleCacheSearchesTheTokenOnceForManySigns) {
  auto token = open_token();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(sign(*token), fake_p11::expected_signature(kData));
  EXPECT_EQ(calls("C_FindObjectsInit"), 1u);
  EXPECT_EQ(calls("C_Sign"), 100u);
}

}  // namespace
