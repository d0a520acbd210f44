// audit::Log and audit::verify on real files: the documented record format,
// the SHA-256 chain, checkpoints signed by in-memory Ed25519, P-256 and RSA
// keys behind crypto::Signer, group commit under 8 threads, a write failure
// (a real EFBIG from RLIMIT_FSIZE), and every kind of tampering named at its line.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "keyhold/audit/log.hpp"
#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/crypto/signer.hpp"
#include "support/temp_dir.hpp"

namespace keyhold::audit {
namespace {

using Bytes = std::vector<std::uint8_t>;
using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using EvpMdCtxPtr = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using TimePoint = std::chrono::system_clock::time_point;
using Json = nlohmann::json;
using namespace std::chrono_literals;

const std::string kZeros(64, '0');

EvpPkeyPtr generate(const std::string& kind) {
  EVP_PKEY* key = nullptr;
  if (kind == "ed25519") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (kind == "p256") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (kind == "rsa2048") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  if (key == nullptr) throw std::runtime_error("cannot generate " + kind);
  return EvpPkeyPtr(key);
}

crypto::PublicKey public_half(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int length = i2d_PUBKEY(key, &der);
  if (length <= 0) throw std::runtime_error("i2d_PUBKEY");
  Bytes out(der, der + length);
  OPENSSL_free(der);
  return crypto::PublicKey::from_der(out);
}

// A crypto::Signer over an in-memory OpenSSL key, returning what TokenSigner
// returns (DER Ecdsa-Sig-Value for ECDSA, raw bytes otherwise); it can be
// told to fail, as a token that went away does.
class SoftwareSigner : public crypto::Signer {
 public:
  explicit SoftwareSigner(const std::string& kind) : key_(generate(kind)), public_key_(public_half(key_.get())) {}
  crypto::KeyType key_type() const noexcept override { return *public_key_.type(); }
  const crypto::PublicKey& public_key() const noexcept override { return public_key_; }
  std::vector<std::uint8_t> sign(crypto::SignatureAlgorithm algorithm,
                                 std::span<const std::uint8_t> message) const override {
    if (fail) throw Error(ErrorCode::Unavailable, "token not present");
    if (!crypto::can_sign_with(key_type(), algorithm)) throw Error(ErrorCode::InvalidArgument, "wrong algorithm");
    ++signatures;
    std::string digest(crypto::digest_name(algorithm));
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    std::size_t length = 0;
    if (EVP_DigestSignInit_ex(ctx.get(), nullptr, digest.empty() ? nullptr : digest.c_str(), nullptr, nullptr,
                              key_.get(), nullptr) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &length, message.data(), message.size()) != 1) {
      throw std::runtime_error("EVP_DigestSign");
    }
    Bytes signature(length);
    if (EVP_DigestSign(ctx.get(), signature.data(), &length, message.data(), message.size()) != 1) {
      throw std::runtime_error("EVP_DigestSign");
    }
    signature.resize(length);
    return signature;
  }
  std::vector<std::uint8_t> sign_digest(crypto::SignatureAlgorithm, std::span<const std::uint8_t>) const override {
    throw Error(ErrorCode::Unimplemented, "not used by the audit log");
  }

  mutable std::atomic<bool> fail{false};
  mutable std::atomic<int> signatures{0};

 private:
  EvpPkeyPtr key_;
  crypto::PublicKey public_key_;
};

std::shared_ptr<SoftwareSigner> signer(const std::string& kind) {
  // Made once per kind: RSA key generation is slow. Tests must not leave fail set.
  static std::map<std::string, std::shared_ptr<SoftwareSigner>> signers;
  auto& s = signers[kind];
  if (!s) s = std::make_shared<SoftwareSigner>(kind);
  return s;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  return to_hex({digest, length});
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void write_lines(const std::filesystem::path& path, const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  write_file(path, text);
}

// What someone without the audit key can do: recompute "prev" and "hash" of
// lines[from...] so that the chain holds again. The hash covers the line up
// to ,"hash": and "prev" is the last field before it (log.hpp).
void reseal(std::vector<std::string>& lines, std::size_t from, std::size_t to = SIZE_MAX) {
  const std::size_t tail = std::string(",\"hash\":\"").size() + 64 + 2;
  for (std::size_t i = from; i < lines.size() && i <= to; ++i) {
    std::string prefix = lines[i].substr(0, lines[i].size() - tail);
    std::string prev = i == 0 ? kZeros : Json::parse(lines[i - 1])["hash"].get<std::string>();
    prefix.replace(prefix.size() - 65, 64, prev);  // ..."prev":"<64>"
    lines[i] = prefix + ",\"hash\":\"" + sha256_hex(prefix) + "\"}";
  }
}

Event event(int i) {
  Event e;
  e.request_id = "req-" + std::to_string(i);
  e.identity = "CN=billing,O=example";
  e.client_address = "10.0.0.7:51234";
  e.operation = "encrypt";
  e.resource = "kek/payments";
  e.outcome = i % 5 == 4 ? "denied" : "allowed";
  e.error_code = i % 5 == 4 ? "PermissionDenied" : "";
  e.latency = std::chrono::microseconds(100 + i);
  e.context = {{"app", "billing"}, {"tenant", "t" + std::to_string(i % 3)}};
  return e;
}

// A clock the test moves by hand.
struct FakeClock {
  std::shared_ptr<TimePoint> now = std::make_shared<TimePoint>(std::chrono::sys_days{std::chrono::year{2030} / 1 / 2} +
                                                               3h + 4min + 5s + 6us);
  Log::Clock fn() const {
    return [t = now] { return *t; };
  }
  void advance(std::chrono::microseconds d) { *now += d; }
};

template <class F>
ErrorCode error_code_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no keyhold::Error thrown";
  return ErrorCode::Internal;
}

template <class F>
std::string error_message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class AuditLogTest : public ::testing::Test {
 protected:
  std::filesystem::path file() const { return dir_.path() / "audit.log"; }
  LogSettings settings(std::uint64_t every = 3, std::chrono::seconds period = 0s) const {
    LogSettings s;
    s.path = file();
    s.checkpoint_every_records = every;
    s.checkpoint_every = period;
    return s;
  }
  // 10 events with a checkpoint after every 3: lines 4, 8 and 12 are checkpoints, 13 lines in all.
  void write_sample_log() {
    Log log(settings(3), signer("ed25519"), clock_.fn());
    for (int i = 1; i <= 10; ++i) {
      log.append(event(i));
      clock_.advance(1s);
    }
  }
  VerifyResult verify_file() const { return verify(file(), signer("ed25519")->public_key()); }

  testing::TempDir dir_{"keyhold-audit"};
  FakeClock clock_;
};

#define EXPECT_BAD_LINE(result, line, fragment)                                                         \
  do {                                                                                                  \
    VerifyResult r_ = (result);                                                                         \
    EXPECT_FALSE(r_.ok);                                                                                \
    EXPECT_EQ(r_.first_bad_line, std::optional<std::uint64_t>(line)) << r_.problem;                     \
    EXPECT_NE(r_.problem.find(fragment), std::string::npos) << "problem was: " << r_.problem;           \
  } while (false)

// ---- format -------------------------------------------------------------------

TEST_F(AuditLogTest, WritesTheDocumentedRecordFormat) {
  {
    Log log(settings(0), nullptr, clock_.fn());
    Event e = event(1);
    e.request_id = "r1";
    e.identity = "CN=svc";
    e.client_address = "10.0.0.1:5555";
    e.latency = 1200us;
    e.context = {{"tenant", "t1"}, {"app", "billing"}};
    EXPECT_EQ(log.append(e), 1u);
  }
  std::string prefix =
      R"({"seq":1,"time":"2030-01-02T03:04:05.000006Z","type":"event","request_id":"r1","identity":"CN=svc",)"
      R"("client_address":"10.0.0.1:5555","operation":"encrypt","resource":"kek/payments","outcome":"allowed",)"
      R"("error_code":"","latency_us":1200,"context":{"app":"billing","tenant":"t1"},"prev":")" +
      kZeros + "\"";
  EXPECT_EQ(read_file(file()), prefix + ",\"hash\":\"" + sha256_hex(prefix) + "\"}\n");
}

TEST_F(AuditLogTest, ChainsEachRecordToTheOneBefore) {
  {
    Log log(settings(0), nullptr, clock_.fn());
    for (int i = 1; i <= 3; ++i) log.append(event(i));
  }
  auto lines = read_lines(file());
  ASSERT_EQ(lines.size(), 3u);
  std::string prev = kZeros;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    Json j = Json::parse(lines[i]);
    EXPECT_EQ(j["seq"], i + 1);
    EXPECT_EQ(j["prev"], prev);
    prev = j["hash"].get<std::string>();
  }
}

TEST_F(AuditLogTest, ACheckpointSignsItsSeqTimeAndChainHash) {
  auto key = signer("p256");
  {
    Log log(settings(0), key, clock_.fn());
    log.append(event(1));
    EXPECT_EQ(log.checkpoint(), 2u);
    EXPECT_EQ(log.checkpoint(), 2u) << "nothing new to sign";
  }
  auto lines = read_lines(file());
  ASSERT_EQ(lines.size(), 2u);
  Json first = Json::parse(lines[0]);
  Bytes der = key->public_key().der();
  std::string signature_b64 = Json::parse(lines[1])["signature"];
  std::string prefix = R"({"seq":2,"time":"2030-01-02T03:04:05.000006Z","type":"checkpoint","key":"spki-sha256:)" +
                       sha256_hex({reinterpret_cast<const char*>(der.data()), der.size()}) +
                       R"(","algorithm":"ecdsa-sha256","signature":")" + signature_b64 + R"(","prev":")" +
                       first["hash"].get<std::string>() + "\"";
  EXPECT_EQ(lines[1], prefix + ",\"hash\":\"" + sha256_hex(prefix) + "\"}");

  // The signature is over the documented message, checked here with OpenSSL alone.
  std::string message = "keyhold-audit-checkpoint\n2\n2030-01-02T03:04:05.000006Z\n" + first["hash"].get<std::string>() + "\n";
  EVP_ENCODE_CTX* ctx = EVP_ENCODE_CTX_new();
  Bytes signature(signature_b64.size());
  int length = 0, final_length = 0;
  EVP_DecodeInit(ctx);
  EVP_DecodeUpdate(ctx, signature.data(), &length, reinterpret_cast<const unsigned char*>(signature_b64.data()),
                   static_cast<int>(signature_b64.size()));
  EVP_DecodeFinal(ctx, signature.data() + length, &final_length);
  EVP_ENCODE_CTX_free(ctx);
  signature.resize(static_cast<std::size_t>(length + final_length));
  EXPECT_TRUE(key->public_key().verify(crypto::SignatureAlgorithm::EcdsaSha256,
                                       {reinterpret_cast<const std::uint8_t*>(message.data()), message.size()}, signature));
}

TEST_F(AuditLogTest, HostileStringsStayOneValidJsonLine) {
  Event e = event(1);
  e.request_id = "line1\nline2\r\n{\"seq\":99}";
  e.identity = std::string("nul\0byte", 8);
  e.context = {
      {"quote\"key", "va\"lue\nnext\r\t\\end"},
      {"bad", "\xff\xfe ok \xc3\x28 \xed\xa0\x80 \xc0\x80"},  // stray bytes, a surrogate, an overlong NUL
      {"seps", "a\u2028b\u2029c"},
      {"bidi", "user\u202egnp.exe"},
      {"ctl", "\x01\x1b[31mred\x7f\xc2\x9b"},
      {"utf8", "\u00e9\u65e5\u672c\U0001F642"},
      {"\xff", "x"},
      {"\xfe", "y"},  // the same key as "\xff" once both are made valid UTF-8
  };
  {
    Log log(settings(0), nullptr, clock_.fn());
    log.append(e);
  }
  std::string text = read_file(file());
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.find('\n'), text.size() - 1) << "one line";
  for (unsigned char c : text.substr(0, text.size() - 1)) EXPECT_GE(c, 0x20) << "a raw control byte";
  EXPECT_NE(text.find("\\u2028"), std::string::npos);
  EXPECT_NE(text.find("\\u202e"), std::string::npos);
  EXPECT_NE(text.find("\\u001b"), std::string::npos);
  EXPECT_NE(text.find("\\u009b"), std::string::npos);
  EXPECT_NE(text.find("\\u0000"), std::string::npos);

  Json j = Json::parse(text);  // throws on invalid UTF-8 or JSON
  EXPECT_EQ(j["seq"], 1);
  EXPECT_EQ(j["request_id"], e.request_id);
  EXPECT_EQ(j["identity"], e.identity);
  Json c = j["context"];
  EXPECT_EQ(c["quote\"key"], "va\"lue\nnext\r\t\\end");
  EXPECT_EQ(c["bad"], "\ufffd\ufffd ok \ufffd( \ufffd\ufffd\ufffd \ufffd\ufffd");
  EXPECT_EQ(c["seps"], "a\u2028b\u2029c");
  EXPECT_EQ(c["bidi"], "user\u202egnp.exe");
  EXPECT_EQ(c["ctl"], "\x01\x1b[31mred\x7f\xc2\x9b");
  EXPECT_EQ(c["utf8"], "\u00e9\u65e5\u672c\U0001F642");
  EXPECT_EQ(c["\ufffd"], "y");  // "\xfe" sorts first
  EXPECT_EQ(c["\ufffd~2"], "x");
  EXPECT_EQ(c.size(), 8u);
  EXPECT_TRUE(verify_file().ok) << verify_file().problem;
}

TEST_F(AuditLogTest, RefusesAnUnknownOutcomeAndWritesNothing) {
  Log log(settings(0), nullptr, clock_.fn());
  Event e = event(1);
  e.outcome = "ok";
  EXPECT_EQ(error_code_of([&] { log.append(e); }), ErrorCode::InvalidArgument);
  EXPECT_EQ(std::filesystem::file_size(file()), 0u);
  EXPECT_EQ(log.append(event(1)), 1u);
}

// ---- checkpoints and round trips ------------------------------------------------

class AuditLogKeyTest : public AuditLogTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(AuditLogKeyTest, RoundTripsWithACheckpointEveryThreeRecords) {
  auto key = signer(GetParam());
  std::vector<std::uint64_t> seqs;
  {
    Log log(settings(3), key, clock_.fn());
    for (int i = 1; i <= 10; ++i) seqs.push_back(log.append(event(i)));
    EXPECT_EQ(log.records(), 13u);
    LogStats stats = log.stats();
    EXPECT_EQ(stats.checkpoints, 3u);
    EXPECT_EQ(stats.unsigned_records, 1u);
  }
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{1, 2, 3, 5, 6, 7, 9, 10, 11, 13}));
  auto lines = read_lines(file());
  ASSERT_EQ(lines.size(), 13u);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(Json::parse(lines[i])["type"], (i + 1) % 4 == 0 ? "checkpoint" : "event") << "line " << i + 1;
  }
  std::string algorithm = GetParam() == "ed25519" ? "ed25519" : GetParam() == "p256" ? "ecdsa-sha256" : "rsa-pkcs1-sha256";
  EXPECT_EQ(Json::parse(lines[3])["algorithm"], algorithm);

  VerifyResult r = verify(file(), key->public_key());
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 13u);
  EXPECT_EQ(r.checkpoints, 3u);
  EXPECT_EQ(r.last_checkpoint_seq, 12u);
  EXPECT_EQ(r.unsigned_tail, 1u);
  EXPECT_FALSE(r.first_bad_line);
}

INSTANTIATE_TEST_SUITE_P(Keys, AuditLogKeyTest, ::testing::Values("ed25519", "p256", "rsa2048"));

TEST_F(AuditLogTest, ReopeningContinuesTheChainAndTheCheckpointCount) {
  {
    Log log(settings(3), signer("ed25519"), clock_.fn());
    for (int i = 1; i <= 4; ++i) log.append(event(i));  // e e e c e
  }
  {
    Log log(settings(3), signer("ed25519"), clock_.fn());
    EXPECT_EQ(log.records(), 5u);
    EXPECT_EQ(log.stats().unsigned_records, 1u);
    EXPECT_EQ(log.append(event(5)), 6u);
    EXPECT_EQ(log.append(event(6)), 7u);  // the third unsigned record: a checkpoint follows
    EXPECT_EQ(log.append(event(7)), 9u);
  }
  auto lines = read_lines(file());
  ASSERT_EQ(lines.size(), 9u);
  EXPECT_EQ(Json::parse(lines[7])["type"], "checkpoint");
  VerifyResult r = verify_file();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 9u);
  EXPECT_EQ(r.checkpoints, 2u);
}

TEST_F(AuditLogTest, ReopeningALogWithoutCheckpointsContinuesIt) {
  for (int round = 0; round < 3; ++round) {
    Log log(settings(0), nullptr, clock_.fn());
    EXPECT_EQ(log.records(), static_cast<std::uint64_t>(round * 2));
    log.append(event(1));
    log.append(event(2));
  }
  VerifyResult r = verify_file();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 6u);
  EXPECT_EQ(r.checkpoints, 0u);
  EXPECT_EQ(r.unsigned_tail, 6u);
}

TEST_F(AuditLogTest, ReopeningRefusesAnIncompleteLastLineAndChangesNothing) {
  write_sample_log();
  std::string text = read_file(file());
  std::size_t last_start = text.rfind('\n', text.size() - 2) + 1;
  std::string cut = text.substr(0, last_start + 40);
  write_file(file(), cut);
  std::string message = error_message_of([&] { Log log(settings(3), signer("ed25519"), clock_.fn()); });
  EXPECT_NE(message.find("incomplete line"), std::string::npos) << message;
  EXPECT_NE(message.find("cut it to " + std::to_string(last_start) + " bytes"), std::string::npos) << message;
  EXPECT_EQ(error_code_of([&] { Log log(settings(3), signer("ed25519"), clock_.fn()); }), ErrorCode::FailedPrecondition);
  EXPECT_EQ(read_file(file()), cut);
}

TEST_F(AuditLogTest, ReopeningRefusesAChangedTail) {
  write_sample_log();
  auto lines = read_lines(file());
  lines[10][lines[10].find("req-")] = 'R';  // line 11: after the last-but-one checkpoint, before the last
  write_lines(file(), lines);
  // The tail read back is lines 12 and 13 (from the last checkpoint): still fine.
  EXPECT_NO_THROW({ Log log(settings(3), signer("ed25519"), clock_.fn()); });

  lines = read_lines(file());
  lines[12][lines[12].find("req-")] = 'R';  // line 13, after the last checkpoint
  write_lines(file(), lines);
  std::string message = error_message_of([&] { Log log(settings(3), signer("ed25519"), clock_.fn()); });
  EXPECT_NE(message.find("hash mismatch"), std::string::npos) << message;
}

TEST_F(AuditLogTest, ReopeningRefusesAnotherAuditKey) {
  write_sample_log();
  std::string message = error_message_of([&] { Log log(settings(3), signer("p256"), clock_.fn()); });
  EXPECT_NE(message.find("one log file has one audit key"), std::string::npos) << message;
}

TEST_F(AuditLogTest, CheckpointsByTimeWithAnInjectedClock) {
  {
    Log log(settings(1000, 60s), signer("ed25519"), clock_.fn());
    log.append(event(1));
    clock_.advance(30s);
    log.append(event(2));
    EXPECT_FALSE(log.checkpoint_if_due());
    clock_.advance(31s);
    EXPECT_EQ(log.append(event(3)), 3u);  // 61 s after opening: a checkpoint follows it
    EXPECT_EQ(log.stats().checkpoints, 1u);
    clock_.advance(10s);
    log.append(event(4));
    EXPECT_FALSE(log.checkpoint_if_due());
    clock_.advance(55s);
    EXPECT_TRUE(log.checkpoint_if_due());  // an idle log's tail signed by a timer
    EXPECT_FALSE(log.checkpoint_if_due());
  }
  auto lines = read_lines(file());
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(Json::parse(lines[3])["type"], "checkpoint");
  EXPECT_EQ(Json::parse(lines[3])["time"], "2030-01-02T03:05:06.000006Z");
  EXPECT_EQ(Json::parse(lines[5])["type"], "checkpoint");
  EXPECT_EQ(Json::parse(lines[5])["time"], "2030-01-02T03:06:11.000006Z");
  EXPECT_TRUE(verify_file().ok);
}

TEST_F(AuditLogTest, ASignerFailureLeavesTheRecordWrittenAndRetriesTheCheckpoint) {
  auto key = std::make_shared<SoftwareSigner>("ed25519");
  {
    Log log(settings(2), key, clock_.fn());
    key->fail = true;
    EXPECT_EQ(log.append(event(1)), 1u);
    EXPECT_EQ(log.append(event(2)), 2u);  // due, but the token is away
    EXPECT_EQ(log.append(event(3)), 3u);  // not retried within a second
    EXPECT_EQ(log.stats().checkpoint_failures, 1u);
    EXPECT_EQ(error_code_of([&] { log.checkpoint(); }), ErrorCode::Unavailable);
    key->fail = false;
    clock_.advance(2s);
    EXPECT_EQ(log.append(event(4)), 4u);
    EXPECT_EQ(log.stats().checkpoints, 1u);
    EXPECT_EQ(log.stats().unsigned_records, 0u);
  }
  VerifyResult r = verify(file(), key->public_key());
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.last_checkpoint_seq, 5u);
}

TEST_F(AuditLogTest, CheckpointWithoutAnAuditKeyIsRefused) {
  Log log(settings(3), nullptr, clock_.fn());
  for (int i = 1; i <= 4; ++i) log.append(event(i));
  EXPECT_EQ(log.records(), 4u) << "no key, no checkpoints";
  EXPECT_EQ(error_code_of([&] { log.checkpoint(); }), ErrorCode::FailedPrecondition);
}

// ---- files --------------------------------------------------------------------------

TEST_F(AuditLogTest, CreatesTheFileWithMode0600WhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{0277}}) {
    std::filesystem::remove(file());
    mode_t old = ::umask(mask);
    {
      Log log(settings(), nullptr, clock_.fn());
      log.append(event(1));
    }
    ::umask(old);
    struct stat st {};
    ASSERT_EQ(::stat(file().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << "umask " << std::oct << mask;
  }
}

TEST_F(AuditLogTest, ASecondLogOnTheSameFileIsRefused) {
  Log log(settings(), nullptr, clock_.fn());
  EXPECT_EQ(error_code_of([&] { Log other(settings(), nullptr, clock_.fn()); }), ErrorCode::FailedPrecondition);
}

TEST_F(AuditLogTest, RefusesWhatIsNotARegularFile) {
  LogSettings s;
  s.path = "/dev/null";
  EXPECT_EQ(error_code_of([&] { Log log(s, nullptr, clock_.fn()); }), ErrorCode::FailedPrecondition);
  s.path = dir_.path() / "missing" / "audit.log";
  EXPECT_EQ(error_code_of([&] { Log log(s, nullptr, clock_.fn()); }), ErrorCode::Unavailable);
}

// The file size limit makes write() fail with EFBIG part-way through a line,
// as a full disk does with ENOSPC.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
};

TEST_F(AuditLogTest, AFailedWriteFailsThisAndEveryLaterAppend) {
  {
    Log log(settings(3), signer("ed25519"), clock_.fn());
    for (int i = 1; i <= 2; ++i) log.append(event(i));
    auto size = std::filesystem::file_size(file());
    {
      FileSizeLimit limit(size + 100);  // room for part of the next line only
      EXPECT_EQ(error_code_of([&] { log.append(event(3)); }), ErrorCode::Unavailable);
    }
    EXPECT_FALSE(log.healthy());
    EXPECT_TRUE(log.stats().broken);
    std::string message = error_message_of([&] { log.append(event(4)); });
    EXPECT_NE(message.find("File too large"), std::string::npos) << message;
    EXPECT_EQ(error_code_of([&] { log.append(event(4)); }), ErrorCode::Unavailable);
    EXPECT_EQ(error_code_of([&] { log.checkpoint(); }), ErrorCode::Unavailable);
    EXPECT_EQ(log.records(), 2u);
    EXPECT_EQ(std::filesystem::file_size(file()), size) << "the partial line was cut off";
  }
  // Reopened once the cause is gone, the log goes on from its last durable record.
  {
    Log log(settings(3), signer("ed25519"), clock_.fn());
    EXPECT_EQ(log.append(event(3)), 3u);
  }
  VerifyResult r = verify_file();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 4u);
}

TEST_F(AuditLogTest, AFailedSyncFailsTheBatchAndCutsItOff) {
  LogSettings s = settings(3);
  auto fail = std::make_shared<std::atomic<bool>>(false);
  s.sync = [fail](int fd) { return *fail ? EIO : (::fdatasync(fd) == 0 ? 0 : errno); };
  Log log(s, signer("ed25519"), clock_.fn());
  log.append(event(1));
  auto size = std::filesystem::file_size(file());
  *fail = true;
  std::string message = error_message_of([&] { log.append(event(2)); });
  EXPECT_NE(message.find("fdatasync failed: Input/output error"), std::string::npos) << message;
  *fail = false;
  EXPECT_EQ(error_code_of([&] { log.append(event(3)); }), ErrorCode::Unavailable) << "broken until reopened";
  EXPECT_EQ(std::filesystem::file_size(file()), size);
  EXPECT_EQ(log.records(), 1u);
}

// ---- group commit ------------------------------------------------------------------

TEST_F(AuditLogTest, ConcurrentAppendsShareSyncsAndKeepOneChain) {
  constexpr int kThreads = 8, kEach = 500;
  auto key = signer("p256");
  LogStats stats;
  std::vector<std::vector<std::uint64_t>> seqs(kThreads);
  LogSettings s = settings(100);
  // A disk whose sync takes a millisecond, as a real one does (tmpfs, where
  // /tmp may be, syncs in no time and so leaves nothing to share).
  s.sync = [](int fd) {
    std::this_thread::sleep_for(1ms);
    return ::fdatasync(fd) == 0 ? 0 : errno;
  };
  {
    Log log(s, key);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          Event e = event(i);
          e.request_id = "t" + std::to_string(t) + "-" + std::to_string(i);
          seqs[t].push_back(log.append(e));
        }
      });
    }
    for (auto& t : threads) t.join();
    stats = log.stats();
  }
  for (const auto& each : seqs) {
    EXPECT_TRUE(std::adjacent_find(each.begin(), each.end(), std::greater_equal<>()) == each.end())
        << "each thread's seqs strictly increase";
  }

  auto lines = read_lines(file());
  std::set<std::string> ids;
  std::uint64_t events = 0, checkpoints = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    Json j = Json::parse(lines[i]);
    ASSERT_EQ(j["seq"], i + 1);
    if (j["type"] == "event") {
      ++events;
      EXPECT_TRUE(ids.insert(j["request_id"].get<std::string>()).second) << "twice: " << j["request_id"];
    } else {
      ++checkpoints;
    }
  }
  EXPECT_EQ(events, static_cast<std::uint64_t>(kThreads * kEach));
  EXPECT_EQ(checkpoints, 40u);
  EXPECT_EQ(stats.records, lines.size());
  VerifyResult r = verify(file(), key->public_key());
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, lines.size());
  std::cout << "[ stats    ] " << lines.size() << " records, " << stats.syncs << " fdatasync calls\n";
  EXPECT_LT(stats.syncs, lines.size() / 2) << "group commit shares syncs between waiting appends";
}

// ---- verify: tampering named at its line ------------------------------------------

TEST_F(AuditLogTest, VerifyAcceptsAnUntouchedLog) {
  write_sample_log();
  VerifyResult r = verify_file();
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 13u);
  EXPECT_EQ(r.checkpoints, 3u);
  EXPECT_EQ(r.unsigned_tail, 1u);
}

TEST_F(AuditLogTest, VerifyNamesAChangedByteInAnyLine) {
  write_sample_log();
  const auto original = read_lines(file());
  for (std::size_t line = 0; line < original.size(); ++line) {
    for (std::size_t at : {std::size_t{1}, original[line].size() / 3, original[line].size() / 2, original[line].size() - 3}) {
      auto lines = original;
      lines[line][at] = static_cast<char>(lines[line][at] ^ 0x01);
      write_lines(file(), lines);
      VerifyResult r = verify_file();
      EXPECT_FALSE(r.ok);
      EXPECT_EQ(r.first_bad_line, line + 1) << "byte " << at << ": " << r.problem;
    }
  }
  auto lines = original;
  lines[5].replace(lines[5].find("kek/payments"), 12, "kek/salaries");
  write_lines(file(), lines);
  EXPECT_BAD_LINE(verify_file(), 6u, "hash mismatch");
}

TEST_F(AuditLogTest, VerifyNamesARemovedRecord) {
  write_sample_log();
  const auto original = read_lines(file());
  for (std::size_t removed : {0u, 5u, 7u, 11u}) {  // the first, an event, a checkpoint, the last checkpoint
    auto lines = original;
    lines.erase(lines.begin() + static_cast<long>(removed));
    write_lines(file(), lines);
    EXPECT_BAD_LINE(verify_file(), removed + 1, "removed");
  }
}

TEST_F(AuditLogTest, VerifyNamesAnInsertedRecord) {
  write_sample_log();
  const auto original = read_lines(file());
  // A forged event that fits the chain where it goes (correct seq, prev and
  // hash): the record after it no longer does.
  {
    auto lines = original;
    std::string line = lines[4];
    line.replace(line.find("\"seq\":5"), 7, "\"seq\":6");
    line.replace(line.find("req-4"), 5, "req-X");
    lines.insert(lines.begin() + 5, line);
    reseal(lines, 5, 5);  // the records after it are left as they were
    write_lines(file(), lines);
    EXPECT_BAD_LINE(verify_file(), 6u, "inserted");
  }
  // A copy of an earlier line.
  {
    auto lines = original;
    lines.insert(lines.begin() + 6, original[2]);
    write_lines(file(), lines);
    EXPECT_BAD_LINE(verify_file(), 7u, "inserted");
  }
  // Garbage, and an empty line.
  for (std::string junk : {std::string("{\"seq\":7}"), std::string()}) {
    auto lines = original;
    lines.insert(lines.begin() + 6, junk);
    write_lines(file(), lines);
    VerifyResult r = verify_file();
    EXPECT_EQ(r.first_bad_line, std::optional<std::uint64_t>(7)) << r.problem;
  }
}

TEST_F(AuditLogTest, VerifyNamesSwappedRecords) {
  write_sample_log();
  auto lines = read_lines(file());
  std::swap(lines[4], lines[5]);
  write_lines(file(), lines);
  EXPECT_BAD_LINE(verify_file(), 5u, "reordered");

  lines = read_lines(file());
  std::swap(lines[4], lines[5]);
  std::swap(lines[6], lines[7]);  // an event and the checkpoint after it
  write_lines(file(), lines);
  EXPECT_BAD_LINE(verify_file(), 7u, "reordered");
}

TEST_F(AuditLogTest, VerifyNamesAForgedCheckpoint) {
  write_sample_log();
  const auto original = read_lines(file());
  // Signed by another Ed25519 key that claims to be the audit key; chain resealed after it.
  {
    auto lines = original;
    Json cp = Json::parse(lines[7]);
    std::string message = "keyhold-audit-checkpoint\n8\n" + cp["time"].get<std::string>() + "\n" +
                          cp["prev"].get<std::string>() + "\n";
    SoftwareSigner other("ed25519");
    Bytes signature = other.sign(crypto::SignatureAlgorithm::Ed25519,
                                 {reinterpret_cast<const std::uint8_t*>(message.data()), message.size()});
    std::string old_signature = cp["signature"];
    lines[7].replace(lines[7].find(old_signature), old_signature.size(), to_base64(signature));
    reseal(lines, 7);
    write_lines(file(), lines);
    EXPECT_BAD_LINE(verify_file(), 8u, "does not verify");
  }
  // A checkpoint appended by someone without the key.
  {
    auto lines = original;
    std::string forged = lines[7];
    forged.replace(forged.find("\"seq\":8"), 7, "\"seq\":14");
    lines.push_back(forged);
    reseal(lines, 13);
    write_lines(file(), lines);
    EXPECT_BAD_LINE(verify_file(), 14u, "does not verify");
  }
  // Verified against another key: the first checkpoint names a different key.
  write_lines(file(), original);
  EXPECT_BAD_LINE(verify(file(), signer("p256")->public_key()), 4u, "not the audit key");
}

TEST_F(AuditLogTest, VerifyNamesAnIncompleteLastLine) {
  write_sample_log();
  std::string text = read_file(file());
  write_file(file(), text.substr(0, text.size() - 1));  // just the newline gone
  EXPECT_BAD_LINE(verify_file(), 13u, "incomplete last line");
  write_file(file(), text.substr(0, text.size() - 60));
  EXPECT_BAD_LINE(verify_file(), 13u, "incomplete last line");
}

// The limits log.hpp documents, shown.
TEST_F(AuditLogTest, VerifyCannotSeeACutAfterACheckpoint) {
  write_sample_log();
  auto lines = read_lines(file());
  lines.resize(8);  // ends with the checkpoint at line 8
  write_lines(file(), lines);
  VerifyResult r = verify_file();
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.records, 8u);
  EXPECT_EQ(r.unsigned_tail, 0u);
}

TEST_F(AuditLogTest, VerifyNamesTheNextCheckpointWhenEarlierRecordsAreRewrittenAndResealed) {
  write_sample_log();
  auto lines = read_lines(file());
  lines[5].replace(lines[5].find("kek/payments"), 12, "kek/salaries");
  reseal(lines, 5);
  write_lines(file(), lines);
  EXPECT_BAD_LINE(verify_file(), 8u, "does not verify");
}

TEST_F(AuditLogTest, AChangeWhileTheLogIsOpenBreaksTheChainAtTheNextRecord) {
  Log log(settings(3), signer("ed25519"), clock_.fn());
  for (int i = 1; i <= 5; ++i) log.append(event(i));  // e e e c e e
  auto lines = read_lines(file());
  lines[5].replace(lines[5].find("kek/payments"), 12, "kek/salaries");
  reseal(lines, 5);
  write_lines(file(), lines);  // rewritten in place, the same length
  EXPECT_TRUE(verify_file().ok) << "an unsigned tail rewritten with care verifies";
  log.append(event(6));  // chained to the hash the Log remembers, not to the rewritten line
  EXPECT_BAD_LINE(verify_file(), 7u, "\"prev\" is not the hash of the record before");
}

TEST_F(AuditLogTest, VerifyOfAMissingFileIsNotFound) {
  EXPECT_EQ(error_code_of([&] { verify(file(), signer("ed25519")->public_key()); }), ErrorCode::NotFound);
}

}  // namespace
}  // namespace keyhold::audit
