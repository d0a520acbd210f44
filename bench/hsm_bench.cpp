// keyhold's own overhead on the token: raw PKCS#11 (C_SignInit + C_Sign,
// C_EncryptInit + C_Encrypt) against keyhold's Signer::sign and Kek::encrypt
// on the same keys of one throwaway SoftHSM token, in one run, at 1 and 2
// threads. After Google Benchmark's table it prints each pair and the ratio
// keyhold/raw of items per second (docs/performance.md says how to read it).
//
// The raw side calls the module's function list directly, on purpose: it is
// the baseline that keyhold's wrapper, session pool and handle cache are
// measured against. Raw gets the same input keyhold hands the token: the
// SHA-256 digest (ECDSA) or DigestInfo (RSA PKCS#1 v1.5) of the message that
// keyhold hashes itself, the message itself for Ed25519, the same plaintext
// and associated data for AES-GCM. At 2 threads each raw thread has its own
// session (the raw multi-session figure); keyhold uses its session pool.
//
// Each pair is measured twice:
// - separately: a raw case and a keyhold case, kRounds rounds of each,
//   interleaved; the best round of each side counts (other load on the
//   machine only ever slows a round down);
// - paired: one case that alternates a raw and a keyhold operation and times
//   each, so that both sides see the same machine load; this ratio is the
//   one to trust on a busy machine.

#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "keyhold/crypto/key_ring.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/token.hpp"
#include "bench_support.hpp"
#include "support/token_fixture.hpp"

namespace {

using keyhold::bench::check_rv;
using keyhold::bench::CollectingReporter;
using keyhold::bench::kDigestInfoSha256;
using keyhold::bench::thread_text;
using keyhold::bench::with_commas;

using keyhold::crypto::KeyType;
using keyhold::crypto::SignatureAlgorithm;

constexpr int kMaxThreads = 2;
constexpr int kRounds = 3;               // separate runs: rounds per case
constexpr double kRoundTime = 0.3;       // separate runs: seconds per case and round
constexpr double kPairedTime = 2.0;      // paired runs: seconds per case
constexpr int kExtraObjects = 500;


// One operation, both ways.
struct Operation {
  std::string name;                             // "ec-p256 sign"
  std::function<CK_RV(CK_SESSION_HANDLE)> raw;  // straight into the function list, on the session given
  std::function<void()> keyhold;                // the same through keyhold's API
};

// Everything the benchmarks share, set up once before any of them runs.
struct Fixture {
  std::shared_ptr<keyhold::hsm::Token> token;
  std::unique_ptr<keyhold::crypto::KeyRing> ring;
  CK_FUNCTION_LIST* p11 = nullptr;
  std::array<CK_SESSION_HANDLE, kMaxThreads> sessions{};  // raw: one per benchmark thread

  std::vector<std::uint8_t> message = std::vector<std::uint8_t>(256, 0x5a);  // what keyhold signs
  std::vector<std::uint8_t> digest;                                         // SHA-256(message)
  std::vector<std::uint8_t> digest_info;                                    // DigestInfo || digest
  std::vector<std::uint8_t> plaintext = std::vector<std::uint8_t>(32, 0xa5);
  std::vector<std::uint8_t> associated_data = std::vector<std::uint8_t>(16, 0x3c);

  std::vector<std::shared_ptr<const keyhold::crypto::Signer>> signers;
  std::shared_ptr<const keyhold::crypto::Kek> kek;
  std::vector<Operation> operations;  // ec-p256, ed25519, rsa-2048 sign; aes-256-gcm encrypt
  Operation ec_find_and_sign;         // raw only: what a request costs without a handle cache

  std::once_flag filled;

  CK_OBJECT_HANDLE find(CK_SESSION_HANDLE session, CK_OBJECT_CLASS object_class,
                        const std::vector<std::uint8_t>& id) const {
    CK_ATTRIBUTE match[] = {{CKA_CLASS, &object_class, sizeof object_class},
                            {CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()}};
    check_rv(p11->C_FindObjectsInit(session, match, 2), "C_FindObjectsInit");
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count = 0;
    CK_RV rv = p11->C_FindObjects(session, found, 2, &count);
    check_rv(p11->C_FindObjectsFinal(session), "C_FindObjectsFinal");
    check_rv(rv, "C_FindObjects");
    if (count != 1) throw std::runtime_error("expected exactly one key object with the CKA_ID");
    return found[0];
  }

  // SoftHSM 2.6.1 re-reads every object file on each C_FindObjects once a
  // token holds many objects (SoftHSMv2 #680); this gives it some to read.
  void fill_with_data_objects() {
    CK_OBJECT_CLASS data_class = CKO_DATA;
    CK_BBOOL yes = CK_TRUE;
    std::vector<std::uint8_t> value(64, 0x42);
    for (int i = 0; i < kExtraObjects; ++i) {
      std::string label = "bench-filler-" + std::to_string(i);
      CK_ATTRIBUTE object[] = {{CKA_CLASS, &data_class, sizeof data_class},
                               {CKA_TOKEN, &yes, sizeof yes},
                               {CKA_PRIVATE, &yes, sizeof yes},
                               {CKA_LABEL, label.data(), label.size()},
                               {CKA_VALUE, value.data(), value.size()}};
      CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
      check_rv(p11->C_CreateObject(sessions[0], object, std::size(object), &handle), "C_CreateObject");
    }
  }
};

Fixture* g = nullptr;

// Raw C_SignInit + C_Sign of input with the key handle.
CK_RV raw_sign(CK_SESSION_HANDLE session, CK_MECHANISM_TYPE mechanism, CK_OBJECT_HANDLE key,
               std::span<const std::uint8_t> input) {
  CK_MECHANISM m{mechanism, nullptr, 0};
  CK_BYTE signature[512];
  CK_ULONG length = sizeof signature;
  CK_RV rv = g->p11->C_SignInit(session, &m, key);
  if (rv == CKR_OK) rv = g->p11->C_Sign(session, const_cast<CK_BYTE*>(input.data()), input.size(), signature, &length);
  benchmark::DoNotOptimize(signature);
  return rv;
}

void set_up(Fixture& f) {
  f.token = keyhold::testing::ThrowawayToken::get().open();
  f.ring = keyhold::crypto::make_token_key_ring(f.token);
  f.p11 = f.token->module().functions_for_tests();
  // Login is per application: these sessions are already logged in through keyhold's Token.
  for (CK_SESSION_HANDLE& session : f.sessions) {
    check_rv(f.p11->C_OpenSession(f.token->slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session),
             "C_OpenSession");
  }
  unsigned int digest_size = 32;
  f.digest.resize(digest_size);
  if (EVP_Digest(f.message.data(), f.message.size(), f.digest.data(), &digest_size, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  f.digest_info.assign(std::begin(kDigestInfoSha256), std::end(kDigestInfoSha256));
  f.digest_info.insert(f.digest_info.end(), f.digest.begin(), f.digest.end());

  struct Spec {
    const char* name;
    KeyType type;
    SignatureAlgorithm algorithm;
    CK_MECHANISM_TYPE mechanism;
    std::span<const std::uint8_t> raw_input;  // what keyhold hands the token for the message
  };
  for (const Spec& s : {Spec{"ec-p256", KeyType::EcP256, SignatureAlgorithm::EcdsaSha256, CKM_ECDSA, f.digest},
                        Spec{"ed25519", KeyType::Ed25519, SignatureAlgorithm::Ed25519, CKM_EDDSA, f.message},
                        Spec{"rsa-2048", KeyType::Rsa2048, SignatureAlgorithm::RsaPkcs1Sha256, CKM_RSA_PKCS,
                             f.digest_info}}) {
    std::vector<std::uint8_t> id = f.ring->create(std::string("bench-") + s.name, s.type).id;
    CK_OBJECT_HANDLE handle = f.find(f.sessions[0], CKO_PRIVATE_KEY, id);
    std::shared_ptr<const keyhold::crypto::Signer> signer = f.ring->signer(id);
    f.signers.push_back(signer);
    SignatureAlgorithm algorithm = s.algorithm;
    f.operations.push_back({std::string(s.name) + " sign",
                            [mechanism = s.mechanism, handle, input = s.raw_input](CK_SESSION_HANDLE session) {
                              return raw_sign(session, mechanism, handle, input);
                            },
                            [signer, algorithm] {
                              std::vector<std::uint8_t> signature = signer->sign(algorithm, g->message);
                              benchmark::DoNotOptimize(signature.data());
                            }});
    if (s.mechanism != CKM_ECDSA) {
      // PKCS#1 v1.5 and Ed25519 are deterministic: the same signature shows
      // that raw hands the token exactly what keyhold does.
      CK_MECHANISM m{s.mechanism, nullptr, 0};
      std::vector<std::uint8_t> raw(512);
      CK_ULONG length = raw.size();
      check_rv(f.p11->C_SignInit(f.sessions[0], &m, handle), "C_SignInit");
      check_rv(f.p11->C_Sign(f.sessions[0], const_cast<CK_BYTE*>(s.raw_input.data()), s.raw_input.size(), raw.data(),
                             &length),
               "C_Sign");
      raw.resize(length);
      if (raw != signer->sign(s.algorithm, f.message)) {
        throw std::runtime_error(std::string(s.name) + ": raw and keyhold signatures differ: not the same input");
      }
    } else {
      f.ec_find_and_sign = {"ec-p256 find+sign", [id, input = s.raw_input](CK_SESSION_HANDLE session) {
                              return raw_sign(session, CKM_ECDSA, g->find(session, CKO_PRIVATE_KEY, id), input);
                            }, nullptr};
    }
  }

  std::vector<std::uint8_t> kek_id = f.ring->create("bench-aes-256", KeyType::Aes256).id;
  CK_OBJECT_HANDLE kek_handle = f.find(f.sessions[0], CKO_SECRET_KEY, kek_id);
  f.kek = f.ring->kek(kek_id);
  f.operations.push_back(
      {"aes-256-gcm encrypt 32 B",
       [kek_handle](CK_SESSION_HANDLE session) {
         // One fixed IV: fine for measuring, never for real use. keyhold draws
         // a random IV per message, and that is part of what is measured.
         CK_BYTE iv[12] = {};
         CK_BYTE ciphertext[64];
         CK_ULONG length = sizeof ciphertext;
         CK_GCM_PARAMS params{iv, sizeof iv, sizeof iv * 8, g->associated_data.data(), g->associated_data.size(), 128};
         CK_MECHANISM m{CKM_AES_GCM, &params, sizeof params};
         CK_RV rv = g->p11->C_EncryptInit(session, &m, kek_handle);
         if (rv == CKR_OK) {
           rv = g->p11->C_Encrypt(session, g->plaintext.data(), g->plaintext.size(), ciphertext, &length);
         }
         benchmark::DoNotOptimize(ciphertext);
         return rv;
       },
       [] {
         keyhold::crypto::SealedBytes sealed = g->kek->encrypt(g->plaintext, g->associated_data);
         benchmark::DoNotOptimize(sealed.ciphertext.data());
       }});
}

void tear_down(Fixture& f) {
  for (CK_SESSION_HANDLE session : f.sessions) {
    if (session != CK_INVALID_HANDLE) (void)f.p11->C_CloseSession(session);
  }
  f.operations.clear();
  f.signers.clear();
  f.kek.reset();
  f.ring.reset();
  f.token.reset();
}

// --- the cases -------------------------------------------------------------

CK_SESSION_HANDLE raw_session(const benchmark::State& state) {
  return g->sessions[static_cast<std::size_t>(state.thread_index())];
}

void run_raw(benchmark::State& state, const Operation& op) {
  CK_SESSION_HANDLE session = raw_session(state);
  for (auto _ : state) {
    try {
      if (op.raw(session) != CKR_OK) throw std::runtime_error("raw PKCS#11 operation failed");
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void run_keyhold(benchmark::State& state, const Operation& op) {
  for (auto _ : state) {
    try {
      op.keyhold();
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// Alternates a raw and a keyhold operation (swapping which goes first) and
// times each; reports the rate of each side as if it had the thread alone.
// Counters are summed over threads, so at 2 threads they are throughputs.
void run_paired(benchmark::State& state, const Operation& op) {
  using Clock = std::chrono::steady_clock;
  CK_SESSION_HANDLE session = raw_session(state);
  Clock::duration raw_time{};
  Clock::duration keyhold_time{};
  bool raw_first = true;
  for (auto _ : state) {
    bool failed = false;
    for (int i = 0; i < 2 && !failed; ++i) {
      bool raw = (i == 0) == raw_first;
      Clock::time_point start = Clock::now();
      try {
        if (raw) {
          failed = op.raw(session) != CKR_OK;
        } else {
          op.keyhold();
        }
      } catch (const std::exception&) {
        failed = true;
      }
      (raw ? raw_time : keyhold_time) += Clock::now() - start;
    }
    if (failed) {
      state.SkipWithError("paired operation failed");
      break;
    }
    raw_first = !raw_first;
  }
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  auto n = static_cast<double>(state.iterations());
  if (n > 0) {
    state.counters["raw/s"] = n / seconds(raw_time);
    state.counters["keyhold/s"] = n / seconds(keyhold_time);
  }
}

// --- registration ------------------------------------------------------------

using Body = std::function<void(benchmark::State&)>;

void add(const std::string& name, const Body& body, int threads, double min_time) {
  benchmark::RegisterBenchmark(name.c_str(), body)->MinTime(min_time)->UseRealTime()->Threads(threads);
}

// The token gets its extra objects, once, in the untimed set-up of the first
// case that needs them; those cases are registered last.
Body after_fill(Body body) {
  return [body](benchmark::State& state) {
    std::call_once(g->filled, [] { g->fill_with_data_objects(); });
    body(state);
  };
}

std::string extra_objects() { return "+" + std::to_string(kExtraObjects) + " objects"; }

void register_all() {
  // Separate runs: raw and keyhold next to each other, so that drift in the
  // machine's load hits both alike; odd rounds run keyhold first.
  for (int round = 0; round < kRounds; ++round) {
    for (int threads = 1; threads <= kMaxThreads; ++threads) {
      for (const Operation& op : g->operations) {
        Body raw = [&op](benchmark::State& s) { run_raw(s, op); };
        Body ours = [&op](benchmark::State& s) { run_keyhold(s, op); };
        if (round % 2 == 0) {
          add(op.name + "/raw", raw, threads, kRoundTime);
          add(op.name + "/keyhold", ours, threads, kRoundTime);
        } else {
          add(op.name + "/keyhold", ours, threads, kRoundTime);
          add(op.name + "/raw", raw, threads, kRoundTime);
        }
      }
    }
  }
  for (int threads = 1; threads <= kMaxThreads; ++threads) {
    for (const Operation& op : g->operations) {
      add(op.name + "/paired", [&op](benchmark::State& s) { run_paired(s, op); }, threads, kPairedTime);
    }
  }
  const Operation& find_sign = g->ec_find_and_sign;
  add(find_sign.name + ", fresh token/raw", [&find_sign](benchmark::State& s) { run_raw(s, find_sign); }, 1,
      kPairedTime);

  const Operation& ec = g->operations.front();
  add(ec.name + ", " + extra_objects() + "/paired", after_fill([&ec](benchmark::State& s) { run_paired(s, ec); }),
      1, kPairedTime);
  add(find_sign.name + ", " + extra_objects() + "/raw",
      after_fill([&find_sign](benchmark::State& s) { run_raw(s, find_sign); }), 1, kPairedTime);
}

// --- reporting ---------------------------------------------------------------


// "what: raw 17,512/s, keyhold 17,101/s, ratio 0.977", or nothing when a
// side did not run (filtered out or failed).
std::string line(const std::string& what, const std::string& den_label, double den, const std::string& num_label,
                 double num, const std::string& extra = "") {
  if (den <= 0 || num <= 0) return "";
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.3f", num / den);
  return what + ": " + den_label + " " + with_commas(den) + "/s, " + num_label + " " + with_commas(num) +
         "/s, ratio " + ratio + extra;
}

void print_section(const std::string& title, const std::vector<std::string>& lines) {
  if (std::all_of(lines.begin(), lines.end(), [](const std::string& l) { return l.empty(); })) return;
  std::printf("\n%s\n", title.c_str());
  for (const std::string& l : lines) {
    if (!l.empty()) std::printf("%s\n", l.c_str());
  }
}


void print_summary(const CollectingReporter& r) {
  const char* ips = "items_per_second";
  const std::string ec = g->operations.front().name;
  const std::string ec_extra = ec + ", " + extra_objects() + "/paired";

  std::vector<std::string> paired;
  for (int threads = 1; threads <= kMaxThreads; ++threads) {
    for (const Operation& op : g->operations) {
      std::string family = op.name + "/paired";
      paired.push_back(line(op.name + ", " + thread_text(threads), "raw", r.best(family, threads, "raw/s"),
                            "keyhold", r.best(family, threads, "keyhold/s")));
    }
  }
  paired.push_back(line(ec + ", 1 thread, token " + extra_objects(), "raw", r.best(ec_extra, 1, "raw/s"), "keyhold",
                        r.best(ec_extra, 1, "keyhold/s")));
  print_section("keyhold / raw PKCS#11, paired (operations alternate, each timed; the figure to trust):", paired);

  std::vector<std::string> separate;
  for (int threads = 1; threads <= kMaxThreads; ++threads) {
    for (const Operation& op : g->operations) {
      std::vector<double> raw = r.values(op.name + "/raw", threads, ips);
      std::vector<double> ours = r.values(op.name + "/keyhold", threads, ips);
      if (raw.empty() || raw.size() != ours.size()) continue;
      std::vector<double> ratios;
      for (std::size_t i = 0; i < raw.size(); ++i) ratios.push_back(ours[i] / raw[i]);
      auto [low, high] = std::minmax_element(ratios.begin(), ratios.end());
      char range[48];
      std::snprintf(range, sizeof range, " (rounds %.2f-%.2f)", *low, *high);
      separate.push_back(line(op.name + ", " + thread_text(threads), "raw", r.best(op.name + "/raw", threads, ips),
                              "keyhold", r.best(op.name + "/keyhold", threads, ips), range));
    }
  }
  print_section("keyhold / raw PKCS#11, separate runs (best of " + std::to_string(kRounds) +
                    " interleaved rounds; range of the rounds' ratios):",
                separate);

  const std::string more = extra_objects();
  const std::string find_sign = g->ec_find_and_sign.name;
  print_section(
      "Token holding " + std::to_string(kExtraObjects) +
          " extra objects vs fresh, 1 thread (not paired: the fill happens in between):",
      {line("keyhold " + ec, "fresh", r.best(ec + "/paired", 1, "keyhold/s"), more, r.best(ec_extra, 1, "keyhold/s")),
       line("raw " + ec, "fresh", r.best(ec + "/paired", 1, "raw/s"), more, r.best(ec_extra, 1, "raw/s")),
       line("raw " + find_sign + " (no handle cache)", "fresh", r.best(find_sign + ", fresh token/raw", 1, ips), more,
            r.best(find_sign + ", " + more + "/raw", 1, ips))});
}

// The calls keyhold makes into the module for one signature, once warm:
// shows that no C_FindObjects runs per request.
std::string calls_per_sign() {
  std::string calls;
  keyhold::hsm::CallObserver observer = [&calls](std::string_view function, CK_RV) {
    calls += (calls.empty() ? "" : " ") + std::string(function);
  };
  const Operation& ec = g->operations.front();
  ec.keyhold();
  g->token->module().set_observer(&observer);
  ec.keyhold();
  g->token->module().set_observer(nullptr);
  return calls;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int status = 0;
  try {
    Fixture fixture;
    g = &fixture;
    set_up(fixture);
    const keyhold::hsm::ModuleInfo& module = fixture.token->module().info();
    std::printf("token: fresh SoftHSM token '%s' (%s %s, library %s), %s\n", fixture.token->label().c_str(),
                module.manufacturer.c_str(),
                module.library_description.c_str(), module.library_version.c_str(), OpenSSL_version(OPENSSL_VERSION));
    std::printf("keyhold's calls per ec-p256 sign: %s\n", calls_per_sign().c_str());
    std::fflush(stdout);

    register_all();
    CollectingReporter reporter(::isatty(STDOUT_FILENO) != 0 ? benchmark::ConsoleReporter::OO_Defaults
                                                              : benchmark::ConsoleReporter::OO_Tabular);
    benchmark::RunSpecifiedBenchmarks(&reporter);
    print_summary(reporter);
    tear_down(fixture);
    g = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hsm_bench: %s\n", e.what());
    status = 1;
  }
  benchmark::Shutdown();
  // Before static destruction: SoftHSM must be finalised while OpenSSL is alive (SoftHSMv2 #780).
  keyhold::testing::ThrowawayToken::tear_down();
  return status;
}
