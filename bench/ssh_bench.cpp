// The SSH CA's throughput, in one run on one throwaway SoftHSM token with a
// real SQLite store file (docs/performance.md, "SSH certificates"):
//
// 1. User certificates signed per second by an ed25519 and an ec-p256 CA
//    (ssh::Authority::sign: the subject key parsed, the profile checked, the
//    key id and key looked up among the CA's revocations, a nonce and a
//    serial from the token, C_Sign in the token, the signature verified, a
//    durable store record through the group commit), beside the raw
//    C_SignInit + C_Sign rate of the same CA key, at 1 and 2 threads
//    sharing one Authority. Ratio keyhold/raw-sign; goal >= 0.5. As in
//    pki_bench, each pair is measured paired (one case alternates a keyhold
//    signature and a raw signature and times each: the ratio to trust on a
//    busy machine) and separately (best of interleaved rounds: throughput).
// 2. The same certificates the way operators make them with a token today:
//    one `ssh-keygen -s CA.pub -D <module>` process per certificate,
//    alternated with batches of keyhold signatures at 1 thread. Ratio
//    keyhold/ssh-keygen; goal >= 50. OpenSSH 9.2 cannot use an Ed25519 key
//    in a PKCS#11 token: the bench asks ssh-keygen once with the ed25519 CA,
//    prints its answer, and compares only the ec-p256 CA (both, should that
//    ssh-keygen manage).
// 3. Where one signature's time goes: Authority::sign's steps redone one by
//    one with the same calls, each timed.
//
// The raw side calls the module's function list directly, on purpose, as
// hsm_bench and pki_bench do: it is the baseline. It signs what keyhold hands
// the token for a certificate: the signed part of a real certificate
// (CKM_EDDSA signs the message itself) or its SHA-256 digest (CKM_ECDSA).

#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "keyhold/core/encoding.hpp"
#include "keyhold/crypto/ecdsa_signature.hpp"
#include "keyhold/crypto/key_ring.hpp"
#include "keyhold/crypto/signer.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/service/key_service.hpp"
#include "keyhold/ssh/authority.hpp"
#include "keyhold/ssh/certificate.hpp"
#include "keyhold/ssh/profile.hpp"
#include "keyhold/ssh/public_key.hpp"
#include "keyhold/store/store.hpp"
#include "bench_support.hpp"
#include "support/process.hpp"
#include "support/token_fixture.hpp"

namespace {

using keyhold::bench::check_rv;
using keyhold::bench::CollectingReporter;
using keyhold::bench::thread_text;
using keyhold::bench::with_commas;

using Clock = std::chrono::steady_clock;
using keyhold::crypto::KeyType;
using keyhold::crypto::SignatureAlgorithm;

constexpr int kThreadCounts[] = {1, 2};
constexpr int kMaxThreads = 2;
constexpr int kUserKeys = 64;            // ed25519 subject keys, made before any timing
constexpr int kRounds = 3;               // separate runs: rounds per case
constexpr double kRoundTime = 0.5;       // separate runs: seconds per case and round
constexpr double kPairedTime = 2.0;      // paired runs: seconds per case
constexpr int kSshKeygenRuns = 20;       // ssh-keygen -s -D processes per CA
constexpr int kKeyholdPerSshKeygen = 10;  // keyhold signatures timed between two of them
constexpr int kStepRuns = 300;           // step-by-step replicas per CA
constexpr const char* kPrincipal = "alice";

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string fixed(double value, int decimals) {
  char text[48];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string verdict(bool met) { return met ? "met" : "MISSED"; }

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

// The first line of a tool's answer that mentions needle, or its last line.
std::string line_with(const std::string& text, const std::string& needle) {
  std::string last;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = trimmed(text.substr(start, end - start));
    line.erase(0, line.find_first_not_of(" \t"));
    if (line.find(needle) != std::string::npos) return line;
    if (!line.empty()) last = line;
    start = end + 1;
  }
  return last;
}

void write_private_file(const std::filesystem::path& path, const std::string& content, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) throw std::runtime_error("cannot write " + path.string());
  }
  ::chmod(path.c_str(), mode);
}

// An ed25519 user key made with OpenSSL, as its authorized_keys line: what
// `ssh-keygen -t ed25519` leaves in id_ed25519.pub.
std::string make_user_key_line(const std::string& comment) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) throw std::runtime_error("OpenSSL: Ed25519 key generation failed");
  keyhold::crypto::PublicKey public_key(key);  // owns it; the private half is dropped with it
  return keyhold::ssh::authorized_keys_line(public_key, comment) + "\n";
}

// One SSH CA and how raw signs with its key.
struct Ca {
  std::string name;                  // "ssh-bench-ed25519"
  std::string label;                 // "ed25519", for output
  KeyType key_type;
  CK_MECHANISM_TYPE mechanism;       // raw: CKM_EDDSA or CKM_ECDSA
  std::vector<std::uint8_t> key_id;  // CKA_ID, from the store's ssh_cas row
  std::int64_t ca_id = 0;
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  std::vector<std::uint8_t> raw_input;  // a certificate's signed part, or its SHA-256 digest
  std::size_t signed_bytes = 0;         // the size of that signed part
  std::string public_key_line;          // CA.pub, as `keyhold ssh ca-key` prints it
  std::string fingerprint;              // "SHA256:..."
};

// Everything the benchmarks share, set up once before any of them runs.
struct Fixture {
  std::filesystem::path dir;  // the store file, ssh-keygen's files
  std::unique_ptr<keyhold::store::Store> store;
  std::shared_ptr<keyhold::hsm::Token> token;
  std::unique_ptr<keyhold::crypto::KeyRing> ring;
  std::unique_ptr<keyhold::service::KeyService> keys;
  keyhold::ssh::AuthoritySettings settings;
  std::unique_ptr<keyhold::ssh::Authority> authority;
  CK_FUNCTION_LIST* p11 = nullptr;
  std::array<CK_SESSION_HANDLE, kMaxThreads> sessions{};  // raw: one per benchmark thread

  std::vector<std::string> user_keys;  // authorized_keys lines, also written as user-N.pub
  std::atomic<std::size_t> next_key{0};
  std::atomic<std::uint64_t> signed_count{0};  // signatures that returned a certificate
  std::uint64_t replica_count = 0;             // records the step replicas stored
  std::vector<Ca> cas;                         // ed25519, ec-p256

  ~Fixture() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
};

Fixture* g = nullptr;

CK_RV raw_sign(CK_SESSION_HANDLE session, const Ca& ca) {
  CK_MECHANISM m{ca.mechanism, nullptr, 0};
  CK_BYTE signature[128];
  CK_ULONG length = sizeof signature;
  CK_RV rv = g->p11->C_SignInit(session, &m, ca.handle);
  if (rv == CKR_OK) {
    rv = g->p11->C_Sign(session, const_cast<CK_BYTE*>(ca.raw_input.data()), ca.raw_input.size(), signature, &length);
  }
  benchmark::DoNotOptimize(signature);
  return rv;
}

keyhold::ssh::SignInput sign_input(const Ca& ca) {
  std::size_t n = g->next_key.fetch_add(1, std::memory_order_relaxed) % g->user_keys.size();
  keyhold::ssh::SignInput input;
  input.ca = ca.name;
  input.public_key = g->user_keys[n];
  input.kind = keyhold::ssh::CertificateKind::User;
  input.key_id = "user-" + std::to_string(n);
  input.principals = {kPrincipal};
  input.requester = "ssh_bench";
  return input;
}

keyhold::ssh::SignedCertificate sign(const Ca& ca) {
  keyhold::ssh::SignedCertificate certificate = g->authority->sign(sign_input(ca));
  g->signed_count.fetch_add(1, std::memory_order_relaxed);
  return certificate;
}

CK_OBJECT_HANDLE find_private_key(CK_SESSION_HANDLE session, const std::vector<std::uint8_t>& id) {
  CK_OBJECT_CLASS object_class = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE match[] = {{CKA_CLASS, &object_class, sizeof object_class},
                          {CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()}};
  check_rv(g->p11->C_FindObjectsInit(session, match, 2), "C_FindObjectsInit");
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count = 0;
  CK_RV rv = g->p11->C_FindObjects(session, found, 2, &count);
  check_rv(g->p11->C_FindObjectsFinal(session), "C_FindObjectsFinal");
  check_rv(rv, "C_FindObjects");
  if (count != 1) throw std::runtime_error("expected exactly one private key with the SSH CA's CKA_ID");
  return found[0];
}

std::vector<std::uint8_t> raw_signature(const Ca& ca) {
  CK_MECHANISM m{ca.mechanism, nullptr, 0};
  std::vector<std::uint8_t> signature(128);
  CK_ULONG length = signature.size();
  check_rv(g->p11->C_SignInit(g->sessions[0], &m, ca.handle), "C_SignInit");
  check_rv(g->p11->C_Sign(g->sessions[0], const_cast<CK_BYTE*>(ca.raw_input.data()), ca.raw_input.size(),
                          signature.data(), &length),
           "C_Sign");
  signature.resize(length);
  return signature;
}

void set_up(Fixture& f) {
  f.dir = keyhold::testing::make_temp_directory("keyhold-ssh-bench");
  f.store = keyhold::store::open_sqlite_store(f.dir / "keyhold.db");
  f.token = keyhold::testing::ThrowawayToken::get().open();
  f.ring = keyhold::crypto::make_token_key_ring(f.token);
  f.keys = std::make_unique<keyhold::service::KeyService>(*f.ring, *f.store);
  // The documented defaults of a user profile: any principal, 8h, the five standard extensions.
  f.settings.profiles["user"] = keyhold::ssh::make_profile("user", keyhold::ssh::CertificateKind::User);
  f.authority = std::make_unique<keyhold::ssh::Authority>(*f.keys, *f.store, f.settings);
  f.p11 = f.token->module().functions_for_tests();
  // Login is per application: these sessions are already logged in through keyhold's Token.
  for (CK_SESSION_HANDLE& session : f.sessions) {
    check_rv(f.p11->C_OpenSession(f.token->slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session),
             "C_OpenSession");
  }

  for (int i = 0; i < kUserKeys; ++i) {
    std::string line = make_user_key_line("user-" + std::to_string(i));
    keyhold::testing::write_file((f.dir / ("user-" + std::to_string(i) + ".pub")).string(), line);
    f.user_keys.push_back(std::move(line));
  }

  struct Spec {
    const char* name;
    const char* label;
    KeyType type;
    CK_MECHANISM_TYPE mechanism;
  };
  for (const Spec& s : {Spec{"ssh-bench-ed25519", "ed25519", KeyType::Ed25519, CKM_EDDSA},
                        Spec{"ssh-bench-ec", "ec-p256", KeyType::EcP256, CKM_ECDSA}}) {
    keyhold::ssh::CaDetails details = f.authority->create_ca(s.name, s.type);
    Ca ca{s.name, s.label, s.type, s.mechanism, details.ca.key_object_id, details.ca.id, CK_INVALID_HANDLE, {}, 0,
          details.public_key_line, details.fingerprint};
    ca.handle = find_private_key(f.sessions[0], ca.key_id);

    // Raw signs what keyhold hands the token for a real certificate of this CA.
    keyhold::ssh::SignedCertificate sample = sign(ca);
    keyhold::ssh::ParsedCertificate parsed = keyhold::ssh::parse_certificate(sample.record.certificate_blob);
    ca.signed_bytes = parsed.signed_bytes.size();
    if (ca.mechanism == CKM_EDDSA) {
      ca.raw_input = parsed.signed_bytes;
    } else {
      ca.raw_input.resize(32);
      unsigned int size = 32;
      if (EVP_Digest(parsed.signed_bytes.data(), parsed.signed_bytes.size(), ca.raw_input.data(), &size, EVP_sha256(),
                     nullptr) != 1) {
        throw std::runtime_error("OpenSSL: SHA-256 failed");
      }
    }
    // And with the CA's own key: Ed25519 is deterministic, so raw's signature
    // is the certificate's, byte for byte; the ECDSA one verifies with the
    // CA's public key over the certificate's signed part.
    std::vector<std::uint8_t> raw = raw_signature(ca);
    bool same_key = false;
    if (ca.mechanism == CKM_EDDSA) {
      same_key = raw == parsed.signature;
    } else {
      keyhold::ssh::OpenSshPublicKey ca_key = keyhold::ssh::parse_public_key_blob(details.ca.public_key_blob);
      same_key = ca_key.key.verify(SignatureAlgorithm::EcdsaSha256, parsed.signed_bytes,
                                   keyhold::crypto::ecdsa_raw_to_der(raw));
    }
    if (!same_key) throw std::runtime_error(ca.name + ": the raw signature does not match the CA's key and input");
    f.cas.push_back(std::move(ca));
  }
}

void tear_down(Fixture& f) {
  for (CK_SESSION_HANDLE session : f.sessions) {
    if (session != CK_INVALID_HANDLE) (void)f.p11->C_CloseSession(session);
  }
  f.authority.reset();
  f.keys.reset();
  f.ring.reset();
  f.token.reset();
  f.store.reset();
}

// --- the Google Benchmark cases ---------------------------------------------

CK_SESSION_HANDLE raw_session(const benchmark::State& state) {
  return g->sessions[static_cast<std::size_t>(state.thread_index())];
}

keyhold::bench::RawOperation raw_of(benchmark::State& state, const Ca& ca) {
  CK_SESSION_HANDLE session = raw_session(state);
  return [session, &ca] { return raw_sign(session, ca) == CKR_OK; };
}

keyhold::bench::OurOperation sign_of(const Ca& ca) {
  return [&ca] {
    keyhold::ssh::SignedCertificate certificate = sign(ca);
    benchmark::DoNotOptimize(certificate.certificate_line.data());
  };
}

constexpr const char* kRawFailure = "raw C_SignInit + C_Sign failed";

void run_raw(benchmark::State& state, const Ca& ca) { keyhold::bench::run_raw(state, raw_of(state, ca), kRawFailure); }
void run_sign(benchmark::State& state, const Ca& ca) { keyhold::bench::run_ours(state, sign_of(ca)); }
// A keyhold signature and a raw one alternated, each timed (bench_support.hpp).
void run_paired(benchmark::State& state, const Ca& ca) {
  keyhold::bench::run_paired(state, raw_of(state, ca), kRawFailure, sign_of(ca));
}

using keyhold::bench::Body;
void add(const std::string& name, const Body& body, int threads, double min_time) {
  keyhold::bench::add_case(name, body, threads, min_time);
}

std::string family(const Ca& ca, const char* side) { return ca.label + " sign/" + side; }

void register_all() {
  for (int threads : kThreadCounts) {
    for (const Ca& ca : g->cas) {
      add(family(ca, "paired"), [&ca](benchmark::State& s) { run_paired(s, ca); }, threads, kPairedTime);
    }
  }
  // Separate runs: raw and keyhold next to each other; odd rounds run keyhold first.
  for (int round = 0; round < kRounds; ++round) {
    for (int threads : kThreadCounts) {
      for (const Ca& ca : g->cas) {
        Body raw = [&ca](benchmark::State& s) { run_raw(s, ca); };
        Body ours = [&ca](benchmark::State& s) { run_sign(s, ca); };
        if (round % 2 == 0) {
          add(family(ca, "raw"), raw, threads, kRoundTime);
          add(family(ca, "keyhold"), ours, threads, kRoundTime);
        } else {
          add(family(ca, "keyhold"), ours, threads, kRoundTime);
          add(family(ca, "raw"), raw, threads, kRoundTime);
        }
      }
    }
  }
}

// --- reporting --------------------------------------------------------------

void print_sign_summary(const CollectingReporter& r) {
  const char* ips = "items_per_second";
  std::printf("\nSSH certificates / raw C_Sign of the same CA key, paired (alternating, each timed; the figure to trust; "
              "goal >= 0.5):\n");
  for (int threads : kThreadCounts) {
    for (const Ca& ca : g->cas) {
      double raw = r.best(family(ca, "paired"), threads, "raw/s");
      double ours = r.best(family(ca, "paired"), threads, "keyhold/s");
      if (raw <= 0 || ours <= 0) continue;
      std::printf("%s, %s: raw sign %s/s, keyhold sign %s/s, ratio %s (%s)\n", ca.label.c_str(),
                  thread_text(threads).c_str(), with_commas(raw).c_str(), with_commas(ours).c_str(),
                  fixed(ours / raw, 3).c_str(), verdict(ours / raw >= 0.5).c_str());
    }
  }
  std::printf("\nSSH certificates / raw C_Sign, separate runs (throughput; best of %d interleaved rounds; range of the "
              "rounds' ratios):\n",
              kRounds);
  for (int threads : kThreadCounts) {
    for (const Ca& ca : g->cas) {
      std::vector<double> raw = r.values(family(ca, "raw"), threads, ips);
      std::vector<double> ours = r.values(family(ca, "keyhold"), threads, ips);
      if (raw.empty() || raw.size() != ours.size()) continue;
      std::vector<double> ratios;
      for (std::size_t i = 0; i < raw.size(); ++i) ratios.push_back(ours[i] / raw[i]);
      auto [low, high] = std::minmax_element(ratios.begin(), ratios.end());
      double best_raw = r.best(family(ca, "raw"), threads, ips);
      double best_ours = r.best(family(ca, "keyhold"), threads, ips);
      std::printf("%s, %s: raw sign %s/s, keyhold sign %s/s, ratio %s (rounds %s-%s)\n", ca.label.c_str(),
                  thread_text(threads).c_str(), with_commas(best_raw).c_str(), with_commas(best_ours).c_str(),
                  fixed(best_ours / best_raw, 3).c_str(), fixed(*low, 2).c_str(), fixed(*high, 2).c_str());
    }
  }
  if (!r.errors().empty()) {
    std::printf("\nFailed cases:\n");
    for (const std::string& e : r.errors()) std::printf("%s\n", e.c_str());
  }
}

// The calls keyhold makes into the module for one warm signature.
std::string calls_per_sign(const Ca& ca) {
  std::map<std::string, int> counts;
  std::vector<std::string> order;
  keyhold::hsm::CallObserver observer = [&](std::string_view function, CK_RV) {
    std::string name(function);
    if (counts[name]++ == 0) order.push_back(name);
  };
  (void)sign(ca);
  g->token->module().set_observer(&observer);
  (void)sign(ca);
  g->token->module().set_observer(nullptr);
  std::string out;
  for (const std::string& name : order) {
    out += (out.empty() ? "" : " ") + name + (counts[name] > 1 ? " x" + std::to_string(counts[name]) : "");
  }
  return out;
}

// --- 2. ssh-keygen -s CA.pub -D module ---------------------------------------

struct SshKeygenFigures {
  bool works = false;
  std::string failure;  // ssh-keygen's answer when it cannot sign with this CA
  int runs = 0;
  double ssh_keygen_seconds = 0;
  int keyhold_certificates = 0;
  double keyhold_seconds = 0;
  std::string check_ssh_keygen;  // keyhold's parser and verifier on one of ssh-keygen's certificates
  std::string check_keyhold;     // ssh-keygen -L on one of keyhold's
};

// ssh-keygen's certificate: parsed and verified by keyhold, signed by the CA.
std::string check_ssh_keygen_certificate(const Ca& ca, const std::filesystem::path& cert) {
  try {
    keyhold::ssh::ParsedCertificate parsed =
        keyhold::ssh::parse_certificate_line(trimmed(keyhold::testing::read_file(cert.string())));
    bool verifies = keyhold::ssh::verify_certificate_signature(parsed);
    bool same_ca = keyhold::ssh::fingerprint_sha256(parsed.ca_key_blob) == ca.fingerprint;
    return std::string(verifies && same_ca ? "" : "FAILED: ") + "signature " + (verifies ? "verifies" : "does NOT verify") +
           ", signing CA " + (same_ca ? "is the CA's key" : "is NOT the CA's key");
  } catch (const std::exception& e) {
    return std::string("FAILED: ") + e.what();
  }
}

// keyhold's certificate: ssh-keygen -L reads it and names the CA's key.
std::string check_keyhold_certificate(const Ca& ca, const std::filesystem::path& cert) {
  keyhold::testing::ProcessResult r = keyhold::testing::run_process({"ssh-keygen", "-L", "-f", cert.string()});
  std::string answer = line_with(r.out + r.err, "Signing CA");
  bool same_ca = answer.find(ca.fingerprint) != std::string::npos;
  return std::string(r.ok() && same_ca ? "" : "FAILED: ") + answer;
}

// One `ssh-keygen -s CA.pub -D module` process per certificate, the CA key in
// the token, alternated with batches of keyhold signatures (1 thread) so that
// both see the same machine load. ssh-keygen finds the private key in the
// token by the public key in CA.pub, and asks for the PIN through SSH_ASKPASS
// (a script that prints the PIN file; SSH_ASKPASS_REQUIRE=force, DISPLAY
// set): no secret on the command line. The token comes from SOFTHSM2_CONF
// (the fixture set it for this process). The certificate is what keyhold
// signs: the same principal, 8h validity starting a minute ago, a serial,
// and ssh-keygen's default extensions (keyhold's user profile has the same
// five).
SshKeygenFigures run_ssh_keygen(const Ca& ca) {
  const std::filesystem::path dir = g->dir / ("ssh-keygen-" + ca.label);
  std::filesystem::create_directory(dir);
  write_private_file(dir / "ca.pub", ca.public_key_line + "\n", 0644);
  write_private_file(dir / "pin", keyhold::testing::ThrowawayToken::get().pin_text() + "\n", 0600);
  write_private_file(dir / "askpass.sh", "#!/bin/sh\ncat '" + (dir / "pin").string() + "'\n", 0700);
  keyhold::testing::ProcessOptions options;
  options.env["SSH_ASKPASS"] = (dir / "askpass.sh").string();
  options.env["SSH_ASKPASS_REQUIRE"] = "force";
  options.env["DISPLAY"] = ":0";

  auto argv_for = [&](int i, const std::filesystem::path& user_key) {
    return std::vector<std::string>{"ssh-keygen", "-s", (dir / "ca.pub").string(), "-D",
                                    keyhold::testing::ThrowawayToken::module_path(), "-I", "user-" + std::to_string(i),
                                    "-n", kPrincipal, "-V", "-1m:+8h", "-z", std::to_string(i + 1), user_key.string()};
  };
  auto user_key_copy = [&](int i) {
    // Each run gets its own copy: ssh-keygen writes user-N-cert.pub next to it.
    std::filesystem::path key = dir / ("user-" + std::to_string(i) + ".pub");
    keyhold::testing::write_file(key.string(), g->user_keys[static_cast<std::size_t>(i) % g->user_keys.size()]);
    return key;
  };

  SshKeygenFigures figures;
  // Once, untimed: can this ssh-keygen sign with this CA's key in the token at all?
  {
    std::filesystem::path key = user_key_copy(0);
    keyhold::testing::ProcessResult r = keyhold::testing::run_process(argv_for(0, key), options);
    std::filesystem::path cert = dir / "user-0-cert.pub";
    figures.works = r.ok() && std::filesystem::exists(cert);
    if (!figures.works) {
      figures.failure = "exit " + std::to_string(r.exit_code) + ": " + line_with(r.out + r.err, "PKCS#11");
      return figures;
    }
    std::filesystem::remove(cert);
  }

  Clock::duration ssh_keygen_time{};
  Clock::duration keyhold_time{};
  std::filesystem::path keyhold_cert = dir / "keyhold-cert.pub";
  for (int i = 0; i < kSshKeygenRuns; ++i) {
    std::filesystem::path key = user_key_copy(i);
    std::vector<std::string> argv = argv_for(i, key);
    Clock::time_point start = Clock::now();
    keyhold::testing::ProcessResult r = keyhold::testing::run_process(argv, options);
    ssh_keygen_time += Clock::now() - start;
    if (!r.ok()) throw std::runtime_error("ssh-keygen -s -D failed: " + trimmed(r.err));

    start = Clock::now();
    for (int k = 0; k < kKeyholdPerSshKeygen; ++k) {
      keyhold::ssh::SignedCertificate certificate = sign(ca);
      benchmark::DoNotOptimize(certificate.certificate_line.data());
      if (i == 0 && k == 0) keyhold::testing::write_file(keyhold_cert.string(), certificate.certificate_line + "\n");
    }
    keyhold_time += Clock::now() - start;
  }
  figures.runs = kSshKeygenRuns;
  figures.ssh_keygen_seconds = seconds(ssh_keygen_time);
  figures.keyhold_certificates = kSshKeygenRuns * kKeyholdPerSshKeygen;
  figures.keyhold_seconds = seconds(keyhold_time);
  figures.check_ssh_keygen = check_ssh_keygen_certificate(ca, dir / "user-0-cert.pub");
  figures.check_keyhold = check_keyhold_certificate(ca, keyhold_cert);
  return figures;
}

void print_ssh_keygen(const Ca& ca, const SshKeygenFigures& f) {
  if (!f.works) {
    std::printf("%s: not compared: ssh-keygen cannot sign with this CA's key in the token (%s)\n", ca.label.c_str(),
                f.failure.c_str());
    if (ca.key_type == KeyType::Ed25519) {
      std::printf("  (OpenSSH 9.2 loads only RSA and ECDSA keys from a PKCS#11 token; ed25519 is compared with raw "
                  "C_Sign only)\n");
    }
    return;
  }
  double ssh_keygen_rate = f.runs / f.ssh_keygen_seconds;
  double keyhold_rate = f.keyhold_certificates / f.keyhold_seconds;
  std::printf("%s: ssh-keygen -D %s/s (%d processes, %s ms each), keyhold %s/s (1 thread, %d signatures), "
              "ratio %s (%s)\n",
              ca.label.c_str(), fixed(ssh_keygen_rate, 1).c_str(), f.runs,
              fixed(1000 * f.ssh_keygen_seconds / f.runs, 1).c_str(), with_commas(keyhold_rate).c_str(),
              f.keyhold_certificates, fixed(keyhold_rate / ssh_keygen_rate, 1).c_str(),
              verdict(keyhold_rate / ssh_keygen_rate >= 50).c_str());
  std::printf("  ssh-keygen's certificate, checked by keyhold: %s\n", f.check_ssh_keygen.c_str());
  std::printf("  keyhold's certificate, ssh-keygen -L: %s\n", f.check_keyhold.c_str());
}

// --- 3. where one signature's time goes ----------------------------------------

// Times the calls into the token of the signer it wraps (for sign_certificate,
// which hashes and signs through it).
class TimingSigner : public keyhold::crypto::Signer {
 public:
  explicit TimingSigner(std::shared_ptr<const keyhold::crypto::Signer> inner) : inner_(std::move(inner)) {}
  KeyType key_type() const noexcept override { return inner_->key_type(); }
  const keyhold::crypto::PublicKey& public_key() const noexcept override { return inner_->public_key(); }
  std::vector<std::uint8_t> sign(SignatureAlgorithm algorithm, std::span<const std::uint8_t> message) const override {
    Clock::time_point start = Clock::now();
    std::vector<std::uint8_t> signature = inner_->sign(algorithm, message);
    spent += Clock::now() - start;
    return signature;
  }
  std::vector<std::uint8_t> sign_digest(SignatureAlgorithm algorithm,
                                        std::span<const std::uint8_t> digest) const override {
    Clock::time_point start = Clock::now();
    std::vector<std::uint8_t> signature = inner_->sign_digest(algorithm, digest);
    spent += Clock::now() - start;
    return signature;
  }
  mutable Clock::duration spent{};

 private:
  std::shared_ptr<const keyhold::crypto::Signer> inner_;
};

struct Steps {
  // Microseconds per signature, summed over kStepRuns and divided at the end.
  double load = 0, parse_key = 0, profile = 0, revoked = 0, random = 0, build = 0, token_sign = 0, parse_cert = 0,
         verify = 0, record = 0, commit = 0, line = 0;
  double authority = 0;  // Authority::sign itself, timed alternately with the replica
  double sum() const {
    return load + parse_key + profile + revoked + random + build + token_sign + parse_cert + verify + record + commit +
           line;
  }
};

// The steps of Authority::sign (src/ssh/authority.cpp), redone here with the
// same calls and each one timed, at 1 thread: find the CA in the store; parse
// the subject key file; check the request against the profile; look the key
// id and the key up among the CA's revocations (two store reads); draw the
// nonce and the serial from the token; encode and sign the certificate
// (sign_certificate; the token's part timed apart); parse it and verify its
// signature; the store record, committed durably in its own transaction (at
// 1 thread the group commit is one transaction per certificate too); the
// certificate line. Authority::sign is timed alternately with the replica.
// Not a substitute for the benchmark figures: it shows where their time goes.
Steps sign_steps(const Ca& ca) {
  Steps steps;
  const keyhold::ssh::Profile& profile = g->settings.profiles.at("user");
  auto signer = std::make_shared<TimingSigner>(g->keys->signer_for(ca.key_id));
  auto us = [](Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
  for (int run = 0; run < kStepRuns; ++run) {
    {
      Clock::time_point start = Clock::now();
      keyhold::ssh::SignedCertificate certificate = sign(ca);
      steps.authority += us(Clock::now() - start);
      benchmark::DoNotOptimize(certificate.certificate_line.data());
    }
    keyhold::ssh::SignInput input = sign_input(ca);
    Clock::time_point t = Clock::now();
    auto lap = [&t, &us] {
      Clock::time_point now = Clock::now();
      double spent = us(now - t);
      t = now;
      return spent;
    };
    std::optional<keyhold::store::SshCaRecord> record_of_ca = g->store->ssh_cas().find(input.ca);
    if (!record_of_ca) throw std::runtime_error("the replica cannot find the CA");
    steps.load += lap();
    keyhold::ssh::OpenSshPublicKey subject = keyhold::ssh::parse_public_key_file(input.public_key);
    steps.parse_key += lap();
    keyhold::ssh::SignRequest request;
    request.kind = input.kind;
    request.subject_key_type = subject.type;
    request.key_id = input.key_id;
    request.principals = input.principals;
    auto now = std::chrono::system_clock::now();
    auto now_seconds =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
    keyhold::ssh::SignDecision decision = keyhold::ssh::check_sign_request(profile, request, now_seconds);
    steps.profile += lap();
    if (g->store->ssh_certificates().key_id_revoked_at(record_of_ca->id, input.key_id) ||
        g->store->ssh_certificates().key_revoked_at(record_of_ca->id, subject.blob)) {
      throw std::runtime_error("the replica's key id or key is revoked");
    }
    steps.revoked += lap();
    keyhold::ssh::CertificateFields fields;
    fields.nonce = g->keys->ring().random(32);
    std::vector<std::uint8_t> serial = g->keys->ring().random(8);
    fields.serial = 0;
    for (std::uint8_t b : serial) fields.serial = fields.serial << 8 | b;
    steps.random += lap();
    fields.subject = subject;
    fields.type = keyhold::ssh::CertificateType::User;
    fields.key_id = input.key_id + " replica";
    fields.principals = input.principals;
    fields.valid_after = decision.valid_after;
    fields.valid_before = decision.valid_before;
    fields.critical_options = decision.options;
    fields.extensions = decision.extensions;
    signer->spent = {};
    std::vector<std::uint8_t> blob = keyhold::ssh::sign_certificate(*signer, fields);
    double sign_certificate_us = lap();
    steps.token_sign += us(signer->spent);
    steps.build += sign_certificate_us - us(signer->spent);
    keyhold::ssh::ParsedCertificate parsed = keyhold::ssh::parse_certificate(blob);
    steps.parse_cert += lap();
    if (!keyhold::ssh::verify_certificate_signature(parsed)) {
      throw std::runtime_error("the replica's certificate does not verify");
    }
    steps.verify += lap();
    keyhold::store::SshCertificateRecord record;
    record.ca_id = record_of_ca->id;
    record.serial = fields.serial;
    record.type = "user";
    record.key_id = fields.key_id;
    record.principals = fields.principals;
    record.valid_after = fields.valid_after;
    record.valid_before = fields.valid_before;
    record.public_key_fingerprint = keyhold::ssh::fingerprint_sha256(subject.blob);
    record.public_key_blob = subject.blob;
    record.profile = "user";
    record.requester = "ssh_bench replica";
    record.certificate_blob = blob;
    record.created_at = keyhold::format_utc(std::chrono::system_clock::now());
    steps.record += lap();
    {
      keyhold::store::Transaction tx(*g->store);
      g->store->ssh_certificates().insert(record);
      tx.commit();
    }
    ++g->replica_count;
    steps.commit += lap();
    std::string line = keyhold::ssh::certificate_line(blob, fields.key_id);
    benchmark::DoNotOptimize(line.data());
    steps.line += lap();
  }
  for (double* v : {&steps.load, &steps.parse_key, &steps.profile, &steps.revoked, &steps.random, &steps.build,
                    &steps.token_sign, &steps.parse_cert, &steps.verify, &steps.record, &steps.commit, &steps.line,
                    &steps.authority}) {
    *v /= kStepRuns;
  }
  return steps;
}

void print_steps(const Ca& ca, const Steps& s) {
  std::printf("%s CA (µs per certificate, mean of %d; Authority::sign itself, timed alternately: %s µs):\n",
              ca.label.c_str(), kStepRuns, fixed(s.authority, 0).c_str());
  const std::string token_sign = ca.key_type == KeyType::Ed25519 ? "token signature (Signer::sign: C_Sign)"
                                                                 : "token signature (Signer::sign: SHA-256, C_Sign)";
  const std::pair<std::string, double> rows[] = {
      {"find the CA in the store (ssh_cas().find)", s.load},
      {"parse the subject key file", s.parse_key},
      {"check the request against the profile", s.profile},
      {"key id and key not revoked (two store reads)", s.revoked},
      {"nonce and serial from the token (C_GenerateRandom x2)", s.random},
      {"encode the certificate (sign_certificate less the token)", s.build},
      {token_sign, s.token_sign},
      {"parse the new certificate (parse_certificate)", s.parse_cert},
      {"verify its signature (verify_certificate_signature)", s.verify},
      {"build the store record (fingerprint, time)", s.record},
      {"insert + durable commit (one transaction)", s.commit},
      {"certificate line (base64)", s.line},
      {"sum", s.sum()},
  };
  for (const auto& [label, value] : rows) std::printf("  %-58s %8.1f\n", label.c_str(), value);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int status = 0;
  try {
    Fixture fixture;
    g = &fixture;
    Clock::time_point setup_start = Clock::now();
    set_up(fixture);
    const keyhold::hsm::ModuleInfo& module = fixture.token->module().info();
    std::printf("token: fresh SoftHSM token '%s' (%s %s, library %s), %s\n", fixture.token->label().c_str(),
                module.manufacturer.c_str(), module.library_description.c_str(), module.library_version.c_str(),
                OpenSSL_version(OPENSSL_VERSION));
    keyhold::testing::ProcessResult version = keyhold::testing::run_process({"ssh", "-V"});
    std::printf("OpenSSH: %s\n", trimmed(version.err + version.out).c_str());
    std::printf("store: %s (SQLite, WAL)\n", (fixture.dir / "keyhold.db").c_str());
    std::printf("set-up: ed25519 and ec-p256 SSH CAs, %d ed25519 user keys, in %s s\n", kUserKeys,
                fixed(seconds(Clock::now() - setup_start), 2).c_str());
    for (const Ca& ca : fixture.cas) {
      std::printf("%s CA: %s; raw signs %zu bytes (a certificate's signed part is %zu bytes)\n", ca.label.c_str(),
                  ca.fingerprint.c_str(), ca.raw_input.size(), ca.signed_bytes);
      std::printf("keyhold's calls per %s certificate: %s\n", ca.label.c_str(), calls_per_sign(ca).c_str());
    }
    std::fflush(stdout);

    register_all();
    CollectingReporter reporter(::isatty(STDOUT_FILENO) != 0 ? benchmark::ConsoleReporter::OO_Defaults
                                                              : benchmark::ConsoleReporter::OO_Tabular);
    benchmark::RunSpecifiedBenchmarks(&reporter);
    print_sign_summary(reporter);
    std::fflush(stdout);

    std::printf("\nkeyhold / `ssh-keygen -s CA.pub -D %s`, one process per certificate, alternating (goal >= 50):\n",
                keyhold::testing::ThrowawayToken::module_path().c_str());
    std::fflush(stdout);
    for (const Ca& ca : fixture.cas) {
      print_ssh_keygen(ca, run_ssh_keygen(ca));
      std::fflush(stdout);
    }

    std::printf("\nwhere one certificate's time goes (Authority::sign's steps redone one by one, 1 thread):\n");
    for (const Ca& ca : fixture.cas) {
      print_steps(ca, sign_steps(ca));
      std::fflush(stdout);
    }

    // Every certificate keyhold returned is in the store, and the replicas' records.
    std::uint64_t recorded = 0;
    for (const Ca& ca : fixture.cas) {
      keyhold::store::SshCertificateFilter filter;
      filter.ca_id = ca.ca_id;
      recorded += fixture.store->ssh_certificates().list(filter).size();
    }
    std::uint64_t expected = fixture.signed_count.load() + fixture.replica_count;
    std::printf("\nstore: %llu SSH certificates recorded for the two CAs; signed and returned %llu + %llu replica "
                "records = %llu (%s)\n",
                static_cast<unsigned long long>(recorded), static_cast<unsigned long long>(fixture.signed_count.load()),
                static_cast<unsigned long long>(fixture.replica_count), static_cast<unsigned long long>(expected),
                recorded == expected ? "match" : "MISMATCH");
    if (recorded != expected) status = 1;
    tear_down(fixture);
    g = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ssh_bench: %s\n", e.what());
    status = 1;
  }
  benchmark::Shutdown();
  // Before static destruction: SoftHSM must be finalised while OpenSSL is alive (SoftHSMv2 #780).
  keyhold::testing::ThrowawayToken::tear_down();
  return status;
}
