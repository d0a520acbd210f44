// Envelope encryption's throughput, in one run on one fresh throwaway SoftHSM
// token with a real SQLite store file (docs/performance.md, "Envelope"):
//
// 1. Data keys generated and data keys decrypted per second through the
//    library (envelope::Service: context checks, the primary version from the
//    store, the encryption count reserved in the store in batches, the data
//    key and IV from the token's RNG, AES-256-GCM in the token), beside the
//    raw C_EncryptInit + C_Encrypt / C_DecryptInit + C_Decrypt rate of the
//    same KEK on the same 32 bytes and associated data, at 1 and 2 threads.
//    Ratio library/raw; goal >= 0.7.
// 2. Sealing and unsealing 1 GiB (envelope::seal/unseal, streamed from a
//    generator into a sink: no disk), beside `openssl speed -evp
//    aes-256-gcm -bytes 16384` on the same machine. Ratio; goal >= 0.8.
//
// The raw side calls the module's function list directly, on purpose: it is
// the baseline.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <istream>
#include <memory>
#include <ostream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/envelope/seal.hpp"
#include "keyhold/envelope/service.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/service/key_service.hpp"
#include "keyhold/store/store.hpp"
#include "support/process.hpp"
#include "support/token_fixture.hpp"

namespace {

using keyhold::bench::check_rv;
using keyhold::bench::CollectingReporter;
using keyhold::bench::thread_text;
using keyhold::bench::with_commas;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kSealBytes = std::uint64_t{1} << 30;
const keyhold::envelope::Context kContext = {{"service", "payments"}, {"tenant", "acme"}};

struct World {
  std::filesystem::path dir;
  std::unique_ptr<keyhold::store::Store> store;
  std::shared_ptr<keyhold::hsm::Token> token;
  std::unique_ptr<keyhold::crypto::KeyRing> ring;
  std::unique_ptr<keyhold::service::KeyService> keys;
  std::unique_ptr<keyhold::envelope::Service> service;
  std::vector<std::uint8_t> kek_object_id;
  keyhold::envelope::Ciphertext data_key;  // one made by the service, for the decryption case
  std::vector<std::uint8_t> aad;           // same size as the service's associated data
};

World& world() {
  static World* w = [] {
    auto* w = new World;
    w->dir = keyhold::testing::make_temp_directory("keyhold-envelope-bench");
    w->store = keyhold::store::open_sqlite_store(w->dir / "keyhold.db");
    w->token = keyhold::testing::ThrowawayToken::get().open();
    w->ring = keyhold::crypto::make_token_key_ring(w->token);
    w->keys = std::make_unique<keyhold::service::KeyService>(*w->ring, *w->store);
    keyhold::envelope::ServiceSettings settings;
    settings.reservation_batch = 4096;  // as a long-running service would
    w->service = std::make_unique<keyhold::envelope::Service>(*w->store, *w->keys, settings);
    keyhold::envelope::KekInfo kek = w->service->create_kek("bench");
    w->kek_object_id = kek.versions.at(0).record.key_object_id;
    w->data_key = w->service->generate_data_key("bench", kContext).ciphertext;
    w->aad = keyhold::envelope::associated_data(w->data_key, kContext);
    return w;
  }();
  return *w;
}

// A raw session of the benchmark thread's own, and the KEK's handle in it.
struct RawSession {
  CK_FUNCTION_LIST* f = nullptr;
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  RawSession() {
    World& w = world();
    f = w.token->module().functions_for_tests();
    check_rv(f->C_OpenSession(w.token->slot(), CKF_SERIAL_SESSION, nullptr, nullptr, &session), "C_OpenSession");
    CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    CK_ATTRIBUTE match[] = {{CKA_CLASS, &secret, sizeof secret},
                            {CKA_ID, w.kek_object_id.data(), w.kek_object_id.size()}};
    CK_ULONG found = 0;
    check_rv(f->C_FindObjectsInit(session, match, 2), "C_FindObjectsInit");
    check_rv(f->C_FindObjects(session, &key, 1, &found), "C_FindObjects");
    check_rv(f->C_FindObjectsFinal(session), "C_FindObjectsFinal");
    if (found != 1) throw std::runtime_error("the KEK is not in the token");
  }
  ~RawSession() { f->C_CloseSession(session); }
  CK_MECHANISM gcm(CK_GCM_PARAMS& params, std::uint8_t* iv) {
    World& w = world();
    params = CK_GCM_PARAMS{iv, 12, 96, w.aad.data(), w.aad.size(), 128};
    return CK_MECHANISM{CKM_AES_GCM, &params, sizeof params};
  }
};

void BM_RawEncrypt(benchmark::State& state) {
  RawSession raw;
  std::uint8_t plaintext[32] = {1}, out[64], iv[12] = {0};
  std::uint64_t counter = 0;
  for (auto _ : state) {
    // A different IV each time (a counter: the baseline, not a rule for use).
    ++counter;
    std::memcpy(iv, &counter, sizeof counter);
    CK_GCM_PARAMS params;
    CK_MECHANISM m = raw.gcm(params, iv);
    CK_ULONG length = sizeof out;
    check_rv(raw.f->C_EncryptInit(raw.session, &m, raw.key), "C_EncryptInit");
    check_rv(raw.f->C_Encrypt(raw.session, plaintext, sizeof plaintext, out, &length), "C_Encrypt");
  }
  state.counters["raw/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_DataKey(benchmark::State& state) {
  World& w = world();
  for (auto _ : state) benchmark::DoNotOptimize(w.service->generate_data_key("bench", kContext));
  state.counters["keyhold/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_RawDecrypt(benchmark::State& state) {
  RawSession raw;
  World& w = world();
  // A ciphertext of the raw side's own, under the same key, IV and associated data.
  std::uint8_t plaintext[32] = {2}, sealed[64], iv[12];
  std::memcpy(iv, w.data_key.iv.data(), 12);
  CK_GCM_PARAMS params;
  CK_MECHANISM m = raw.gcm(params, iv);
  CK_ULONG sealed_length = sizeof sealed;
  check_rv(raw.f->C_EncryptInit(raw.session, &m, raw.key), "C_EncryptInit");
  check_rv(raw.f->C_Encrypt(raw.session, plaintext, sizeof plaintext, sealed, &sealed_length), "C_Encrypt");
  for (auto _ : state) {
    std::uint8_t out[64];
    CK_ULONG length = sizeof out;
    check_rv(raw.f->C_DecryptInit(raw.session, &m, raw.key), "C_DecryptInit");
    check_rv(raw.f->C_Decrypt(raw.session, sealed, sealed_length, out, &length), "C_Decrypt");
  }
  state.counters["raw/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Decrypt(benchmark::State& state) {
  World& w = world();
  for (auto _ : state) benchmark::DoNotOptimize(w.service->decrypt(w.data_key, kContext));
  state.counters["keyhold/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Interleaved, so that both sides of a ratio see the same machine.
BENCHMARK(BM_RawEncrypt)->Threads(1)->Threads(2)->UseRealTime()->MinTime(1.0)->Repetitions(3);
BENCHMARK(BM_DataKey)->Threads(1)->Threads(2)->UseRealTime()->MinTime(1.0)->Repetitions(3);
BENCHMARK(BM_RawDecrypt)->Threads(1)->Threads(2)->UseRealTime()->MinTime(1.0)->Repetitions(3);
BENCHMARK(BM_Decrypt)->Threads(1)->Threads(2)->UseRealTime()->MinTime(1.0)->Repetitions(3);

// A stream of `size` pattern bytes, and a sink that counts what it is given.
class Generator : public std::streambuf {
 public:
  explicit Generator(std::uint64_t size) : left_(size) {
    for (std::size_t i = 0; i < sizeof chunk_; ++i) chunk_[i] = static_cast<char>(i * 31 + 7);
  }

 protected:
  int_type underflow() override {
    if (left_ == 0) return traits_type::eof();
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left_, sizeof chunk_));
    left_ -= n;
    setg(chunk_, chunk_, chunk_ + n);
    return traits_type::to_int_type(chunk_[0]);
  }

 private:
  std::uint64_t left_;
  char chunk_[256 * 1024];
};

class Sink : public std::streambuf {
 public:
  std::uint64_t bytes = 0;

 protected:
  std::streamsize xsputn(const char*, std::streamsize n) override {
    bytes += static_cast<std::uint64_t>(n);
    return n;
  }
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) ++bytes;
    return traits_type::not_eof(c);
  }
};

// A sealed copy of kSealBytes kept in memory would be 1 GiB: unseal reads
// from a pipe-like buffer filled by seal, segment by segment.
class SealedSource : public std::streambuf {
 public:
  explicit SealedSource(std::string header_and_segments) : data_(std::move(header_and_segments)) {
    setg(data_.data(), data_.data(), data_.data() + data_.size());
  }

 private:
  std::string data_;
};

double mib_per_second(std::uint64_t bytes, Clock::duration d) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0) / std::chrono::duration<double>(d).count();
}

// openssl speed's AES-256-GCM figure at 16 KiB blocks, in MiB/s.
double openssl_speed() {
  keyhold::testing::ProcessResult r =
      keyhold::testing::run_process({"openssl", "speed", "-evp", "aes-256-gcm", "-bytes", "16384", "-seconds", "3"});
  std::smatch m;
  // "AES-256-GCM      1234567.89k" (thousands of bytes per second)
  if (!std::regex_search(r.out, m, std::regex(R"((?:aes-256-gcm|AES-256-GCM)\s+([0-9.]+)k)"))) {
    throw std::runtime_error("cannot read openssl speed's output: " + r.out + r.err);
  }
  return std::stod(m[1]) * 1000.0 / (1024.0 * 1024.0);
}

struct SealFigures {
  double seal = 0, unseal = 0;
};

SealFigures seal_and_unseal() {
  World& w = world();
  keyhold::envelope::DataKey key = w.service->generate_data_key("bench", kContext);
  std::vector<std::uint8_t> wrapped = keyhold::envelope::encode(key.ciphertext);

  // Sealing 1 GiB into a counting sink.
  Generator generator(kSealBytes);
  std::istream in(&generator);
  Sink sink;
  std::ostream out(&sink);
  Clock::time_point start = Clock::now();
  keyhold::envelope::seal(in, out, key.plaintext, wrapped);
  SealFigures figures;
  figures.seal = mib_per_second(kSealBytes, Clock::now() - start);

  // Unsealing: 1 GiB sealed in 64 MiB pieces (each sealed to memory, then
  // unsealed and timed), so that memory stays small and only unseal is timed.
  constexpr std::uint64_t kPiece = std::uint64_t{64} << 20;
  Clock::duration unseal_time{};
  for (std::uint64_t done = 0; done < kSealBytes; done += kPiece) {
    Generator piece(kPiece);
    std::istream piece_in(&piece);
    std::ostringstream sealed;
    keyhold::envelope::seal(piece_in, sealed, key.plaintext, wrapped);
    SealedSource source(std::move(sealed).str());
    std::istream sealed_in(&source);
    Sink plain;
    std::ostream plain_out(&plain);
    Clock::time_point t = Clock::now();
    keyhold::envelope::SealHeader header = keyhold::envelope::read_seal_header(sealed_in);
    keyhold::envelope::unseal(header, sealed_in, plain_out, key.plaintext);
    unseal_time += Clock::now() - t;
    if (plain.bytes != kPiece) throw std::runtime_error("unseal gave back a different length");
  }
  figures.unseal = mib_per_second(kSealBytes, unseal_time);
  return figures;
}

void print_ratio(const char* what, double ours, double theirs, double goal) {
  double ratio = theirs > 0 ? ours / theirs : 0;
  std::printf("  %-44s %12s/s  vs %12s/s  ratio %.2f  (goal >= %.1f: %s)\n", what, with_commas(ours).c_str(),
              with_commas(theirs).c_str(), ratio, goal, ratio >= goal ? "met" : "missed");
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  world();
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nEnvelope: the library beside raw PKCS#11 on the same KEK (best of 3 rounds)\n");
  for (int threads : {1, 2}) {
    print_ratio(("datakey generate, " + thread_text(threads)).c_str(), reporter.best("BM_DataKey", threads, "keyhold/s"),
                reporter.best("BM_RawEncrypt", threads, "raw/s"), 0.7);
    print_ratio(("decrypt, " + thread_text(threads)).c_str(), reporter.best("BM_Decrypt", threads, "keyhold/s"),
                reporter.best("BM_RawDecrypt", threads, "raw/s"), 0.7);
  }
  SealFigures figures = seal_and_unseal();
  double openssl = openssl_speed();
  std::printf("\nFile sealing, 1 GiB, MiB/s, beside openssl speed -evp aes-256-gcm -bytes 16384\n");
  print_ratio("seal (MiB)", figures.seal, openssl, 0.8);
  print_ratio("unseal (MiB)", figures.unseal, openssl, 0.8);
  for (const std::string& e : reporter.errors()) std::printf("error: %s\n", e.c_str());
  world().service.reset();
  std::filesystem::remove_all(world().dir);
  keyhold::testing::ThrowawayToken::tear_down();
  return reporter.errors().empty() ? 0 : 1;
}
