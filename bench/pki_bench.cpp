// The X.509 CA's throughput, in one run on one throwaway SoftHSM token with a
// real SQLite store file (docs/performance.md, "PKI: issuance and CRLs"):
//
// 1. Certificates issued per second from CSRs by an ec-p256 and an rsa-2048
//    intermediate (pki::Authority::issue: CSR checks, profile, lint, C_Sign
//    in the token, verify, a durable store record through the group commit),
//    beside the raw C_SignInit + C_Sign rate of the same CA key, at 1, 2 and
//    4 threads sharing one Authority. Ratio issuance/raw-sign; goal >= 0.5.
//    As in hsm_bench, each pair is measured paired (one case alternates an
//    issuance and a raw signature and times each: the ratio to trust on a
//    busy machine) and separately (best of interleaved rounds: throughput).
// 2. The same issuance the way operators script it today: one
//    `openssl x509 -req ... -engine pkcs11` process per certificate
//    (libengine-pkcs11-openssl), alternated with batches of keyhold
//    issuances at 1 thread. Ratio keyhold/openssl+engine; goal >= 50.
// 3. A CRL with 100,000 revoked entries: Authority::crl timed three times,
//    and a step-by-step replica of it timed to show where the time goes.
//
// The raw side calls the module's function list directly, on purpose, as
// hsm_bench does: it is the baseline. It signs the SHA-256 digest (ECDSA) or
// DigestInfo (RSA PKCS#1 v1.5) that keyhold hands the token.

#include <benchmark/benchmark.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/crypto/ecdsa_signature.hpp"
#include "keyhold/crypto/key_ring.hpp"
#include "keyhold/crypto/openssl_provider.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/pki/authority.hpp"
#include "keyhold/pki/lint.hpp"
#include "keyhold/service/key_service.hpp"
#include "keyhold/store/store.hpp"
#include "support/process.hpp"
#include "bench_support.hpp"
#include "support/token_fixture.hpp"

namespace {

using keyhold::bench::check_rv;
using keyhold::bench::CollectingReporter;
using keyhold::bench::kDigestInfoSha256;
using keyhold::bench::thread_text;
using keyhold::bench::with_commas;

using Clock = std::chrono::steady_clock;
using keyhold::CPtr;
using keyhold::crypto::KeyType;
using keyhold::crypto::SignatureAlgorithm;

constexpr int kThreadCounts[] = {1, 2, 4};
constexpr int kMaxThreads = 4;
constexpr int kCsrPool = 200;
constexpr int kRounds = 3;              // separate runs: rounds per case
constexpr double kRoundTime = 0.5;      // separate runs: seconds per case and round
constexpr double kPairedTime = 2.0;     // paired runs: seconds per case
constexpr int kEngineRuns = 30;         // openssl x509 -req processes per CA
constexpr int kKeyholdPerEngineRun = 10;  // keyhold issuances timed between two of them
constexpr int kCrlEntries = 100'000;
constexpr int kCrlRuns = 3;


void check_ssl(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("OpenSSL: ") + what + " failed");
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string pem_of(int (*write)(BIO*, const X509_REQ*), const X509_REQ* value) {
  CPtr<BIO, &BIO_free> bio(BIO_new(BIO_s_mem()));
  check_ssl(bio && write(bio.get(), value) == 1, "PEM encoding");
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

void write_private_file(const std::filesystem::path& path, const std::string& content) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) throw std::runtime_error("cannot write " + path.string());
  }
  ::chmod(path.c_str(), 0600);
}

// Frees the stack only: its extensions have their own owners.
void free_extension_stack(STACK_OF(X509_EXTENSION)* stack) { sk_X509_EXTENSION_free(stack); }

// A P-256 key and a CSR for host, with the name in CN and in a DNS SAN,
// signed with SHA-256: what a service sends its CA.
std::string make_csr(const std::string& host) {
  CPtr<EVP_PKEY, &EVP_PKEY_free> key(EVP_EC_gen("P-256"));
  check_ssl(key != nullptr, "P-256 key generation");
  CPtr<X509_REQ, &X509_REQ_free> req(X509_REQ_new());
  check_ssl(req && X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) == 1, "X509_REQ_set_version");
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  auto add = [name](const char* field, const std::string& value) {
    check_ssl(X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()),
                                         -1, -1, 0) == 1,
              "X509_NAME_add_entry_by_txt");
  };
  add("CN", host);
  add("O", "keyhold bench");
  check_ssl(X509_REQ_set_pubkey(req.get(), key.get()) == 1, "X509_REQ_set_pubkey");
  std::string san = "DNS:" + host;
  CPtr<STACK_OF(X509_EXTENSION), &free_extension_stack> extensions(sk_X509_EXTENSION_new_null());
  CPtr<X509_EXTENSION, &X509_EXTENSION_free> ext(X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str()));
  check_ssl(extensions && ext && sk_X509_EXTENSION_push(extensions.get(), ext.get()) > 0, "subjectAltName");
  check_ssl(X509_REQ_add_extensions(req.get(), extensions.get()) == 1, "X509_REQ_add_extensions");
  check_ssl(X509_REQ_sign(req.get(), key.get(), EVP_sha256()) > 0, "X509_REQ_sign");
  return pem_of(PEM_write_bio_X509_REQ, req.get());
}

// One intermediate CA and how raw signs with its key.
struct Ca {
  std::string name;                 // "pki-bench-ec"
  std::string label;                // "ec-p256", for output
  KeyType key_type;
  SignatureAlgorithm algorithm;
  CK_MECHANISM_TYPE mechanism;      // raw: CKM_ECDSA or CKM_RSA_PKCS
  std::vector<std::uint8_t> key_id;  // CKA_ID, from the store's ca_versions row
  std::int64_t version_id = 0;
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  std::vector<std::uint8_t> raw_input;  // SHA-256 digest, or DigestInfo || digest
  std::string certificate_pem;
};

// Everything the benchmarks share, set up once before any of them runs.
struct Fixture {
  std::filesystem::path dir;  // the store file, openssl's files
  std::unique_ptr<keyhold::store::Store> store;
  std::shared_ptr<keyhold::hsm::Token> token;
  std::unique_ptr<keyhold::crypto::KeyRing> ring;
  std::unique_ptr<keyhold::service::KeyService> keys;
  std::unique_ptr<keyhold::pki::Authority> authority;
  CK_FUNCTION_LIST* p11 = nullptr;
  std::array<CK_SESSION_HANDLE, kMaxThreads> sessions{};  // raw: one per benchmark thread

  std::vector<std::uint8_t> message = std::vector<std::uint8_t>(256, 0x5a);  // what the raw digest is of
  std::vector<std::string> csrs;                                            // PEM, made before any timing
  std::atomic<std::size_t> next_csr{0};
  std::atomic<std::uint64_t> issued{0};  // issuances that returned a certificate
  std::string root_pem;
  std::vector<Ca> cas;  // ec-p256, rsa-2048 intermediates

  ~Fixture() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
};

Fixture* g = nullptr;

CK_RV raw_sign(CK_SESSION_HANDLE session, const Ca& ca) {
  CK_MECHANISM m{ca.mechanism, nullptr, 0};
  CK_BYTE signature[512];
  CK_ULONG length = sizeof signature;
  CK_RV rv = g->p11->C_SignInit(session, &m, ca.handle);
  if (rv == CKR_OK) {
    rv = g->p11->C_Sign(session, const_cast<CK_BYTE*>(ca.raw_input.data()), ca.raw_input.size(), signature, &length);
  }
  benchmark::DoNotOptimize(signature);
  return rv;
}

keyhold::pki::IssueRequest issue_request(const Ca& ca) {
  keyhold::pki::IssueRequest request;
  request.ca = ca.name;
  request.profile = "server";
  request.csr = g->csrs[g->next_csr.fetch_add(1, std::memory_order_relaxed) % g->csrs.size()];
  request.requester = "pki_bench";
  return request;
}

keyhold::pki::IssuedCertificate issue(const Ca& ca) {
  keyhold::pki::IssuedCertificate certificate = g->authority->issue(issue_request(ca));
  g->issued.fetch_add(1, std::memory_order_relaxed);
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
  if (count != 1) throw std::runtime_error("expected exactly one private key with the CA's CKA_ID");
  return found[0];
}

keyhold::pki::Profile open_profile() {
  keyhold::pki::Profile p;  // as tests/hsm/authority_test.cpp: any DNS name
  p.name = "server";
  p.dns = {"*"};
  p.subject_fields = {"CN", "O"};
  return p;
}

void set_up(Fixture& f) {
  f.dir = keyhold::testing::make_temp_directory("keyhold-pki-bench");
  f.store = keyhold::store::open_sqlite_store(f.dir / "keyhold.db");
  f.token = keyhold::testing::ThrowawayToken::get().open();
  f.ring = keyhold::crypto::make_token_key_ring(f.token);
  f.keys = std::make_unique<keyhold::service::KeyService>(*f.ring, *f.store);
  keyhold::pki::AuthoritySettings settings;
  settings.profiles["server"] = open_profile();
  f.authority = std::make_unique<keyhold::pki::Authority>(*f.keys, *f.store, settings);
  f.p11 = f.token->module().functions_for_tests();
  // Login is per application: these sessions are already logged in through keyhold's Token.
  for (CK_SESSION_HANDLE& session : f.sessions) {
    check_rv(f.p11->C_OpenSession(f.token->slot(), CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session),
             "C_OpenSession");
  }

  f.authority->create_ca({"pki-bench-root", KeyType::EcP256, "CN=pki_bench Root,O=keyhold bench", 3650,
                          std::nullopt, std::nullopt, {}});
  f.root_pem = f.authority->chain("pki-bench-root").front();

  std::vector<std::uint8_t> digest(32);
  unsigned int digest_size = 32;
  check_ssl(EVP_Digest(f.message.data(), f.message.size(), digest.data(), &digest_size, EVP_sha256(), nullptr) == 1,
            "SHA-256");
  // Sized first, then filled: g++ 12 warns falsely (-Warray-bounds) about an insert after the prefix.
  std::vector<std::uint8_t> digest_info(sizeof kDigestInfoSha256 + digest.size());
  std::copy(std::begin(kDigestInfoSha256), std::end(kDigestInfoSha256), digest_info.begin());
  std::copy(digest.begin(), digest.end(), digest_info.begin() + sizeof kDigestInfoSha256);

  struct Spec {
    const char* name;
    const char* label;
    KeyType type;
    SignatureAlgorithm algorithm;
    CK_MECHANISM_TYPE mechanism;
    const std::vector<std::uint8_t>& raw_input;
  };
  for (const Spec& s : {Spec{"pki-bench-ec", "ec-p256", KeyType::EcP256, SignatureAlgorithm::EcdsaSha256, CKM_ECDSA, digest},
                        Spec{"pki-bench-rsa", "rsa-2048", KeyType::Rsa2048, SignatureAlgorithm::RsaPkcs1Sha256,
                             CKM_RSA_PKCS, digest_info}}) {
    f.authority->create_ca({s.name, s.type, std::string("CN=pki_bench ") + s.label + " Intermediate,O=keyhold bench",
                            1825, std::string("pki-bench-root"), std::nullopt, {}});
    keyhold::pki::CaDetails details = f.authority->show(s.name);
    Ca ca{s.name, s.label, s.type, s.algorithm, s.mechanism, details.versions.at(0).key_object_id,
          details.versions.at(0).id, CK_INVALID_HANDLE, s.raw_input, f.authority->chain(s.name).front()};
    ca.handle = find_private_key(f.sessions[0], ca.key_id);
    f.cas.push_back(std::move(ca));
  }

  // Raw signs with the CA's own key: its signature verifies with the public
  // key in the CA's certificate.
  for (const Ca& ca : f.cas) {
    CK_MECHANISM m{ca.mechanism, nullptr, 0};
    std::vector<std::uint8_t> signature(512);
    CK_ULONG length = signature.size();
    check_rv(f.p11->C_SignInit(f.sessions[0], &m, ca.handle), "C_SignInit");
    check_rv(f.p11->C_Sign(f.sessions[0], const_cast<CK_BYTE*>(ca.raw_input.data()), ca.raw_input.size(),
                           signature.data(), &length),
             "C_Sign");
    signature.resize(length);
    if (ca.mechanism == CKM_ECDSA) signature = keyhold::crypto::ecdsa_raw_to_der(signature);
    CPtr<BIO, &BIO_free> bio(BIO_new_mem_buf(ca.certificate_pem.data(), static_cast<int>(ca.certificate_pem.size())));
    CPtr<X509, &X509_free> certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    check_ssl(certificate != nullptr, "reading the CA certificate");
    keyhold::crypto::PublicKey public_key(X509_get_pubkey(certificate.get()));
    if (!public_key.verify(ca.algorithm, f.message, signature)) {
      throw std::runtime_error(ca.name + ": the raw signature does not verify with the CA certificate's key");
    }
  }

  for (int i = 0; i < kCsrPool; ++i) f.csrs.push_back(make_csr("host-" + std::to_string(i) + ".pki-bench.test"));
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

keyhold::bench::OurOperation issue_of(const Ca& ca) {
  return [&ca] {
    keyhold::pki::IssuedCertificate certificate = issue(ca);
    benchmark::DoNotOptimize(certificate.pem.data());
  };
}

constexpr const char* kRawFailure = "raw C_SignInit + C_Sign failed";

void run_raw(benchmark::State& state, const Ca& ca) { keyhold::bench::run_raw(state, raw_of(state, ca), kRawFailure); }
void run_issue(benchmark::State& state, const Ca& ca) { keyhold::bench::run_ours(state, issue_of(ca)); }
// An issuance and a raw signature alternated, each timed (bench_support.hpp).
void run_paired(benchmark::State& state, const Ca& ca) {
  keyhold::bench::run_paired(state, raw_of(state, ca), kRawFailure, issue_of(ca));
}

using keyhold::bench::Body;
void add(const std::string& name, const Body& body, int threads, double min_time) {
  keyhold::bench::add_case(name, body, threads, min_time);
}

std::string family(const Ca& ca, const char* side) { return ca.label + " issue/" + side; }

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
        Body ours = [&ca](benchmark::State& s) { run_issue(s, ca); };
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


std::string fixed(double value, int decimals) {
  char text[48];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string verdict(bool met) { return met ? "met" : "MISSED"; }


void print_issuance_summary(const CollectingReporter& r) {
  const char* ips = "items_per_second";
  std::printf("\nIssuance / raw C_Sign of the same CA key, paired (alternating, each timed; the figure to trust; goal >= 0.5):\n");
  for (int threads : kThreadCounts) {
    for (const Ca& ca : g->cas) {
      double raw = r.best(family(ca, "paired"), threads, "raw/s");
      double ours = r.best(family(ca, "paired"), threads, "keyhold/s");
      if (raw <= 0 || ours <= 0) continue;
      std::printf("%s, %s: raw sign %s/s, keyhold issue %s/s, ratio %s (%s)\n", ca.label.c_str(),
                  thread_text(threads).c_str(), with_commas(raw).c_str(), with_commas(ours).c_str(),
                  fixed(ours / raw, 3).c_str(), verdict(ours / raw >= 0.5).c_str());
    }
  }
  std::printf("\nIssuance / raw C_Sign, separate runs (throughput; best of %d interleaved rounds; range of the rounds' ratios):\n",
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
      std::printf("%s, %s: raw sign %s/s, keyhold issue %s/s, ratio %s (rounds %s-%s)\n", ca.label.c_str(),
                  thread_text(threads).c_str(), with_commas(best_raw).c_str(), with_commas(best_ours).c_str(),
                  fixed(best_ours / best_raw, 3).c_str(), fixed(*low, 2).c_str(), fixed(*high, 2).c_str());
    }
  }
  if (!r.errors().empty()) {
    std::printf("\nFailed cases:\n");
    for (const std::string& e : r.errors()) std::printf("%s\n", e.c_str());
  }
}

// The calls keyhold makes into the module for one warm issuance.
std::string calls_per_issue(const Ca& ca) {
  std::map<std::string, int> counts;
  std::vector<std::string> order;
  keyhold::hsm::CallObserver observer = [&](std::string_view function, CK_RV) {
    std::string name(function);
    if (counts[name]++ == 0) order.push_back(name);
  };
  (void)issue(ca);
  g->token->module().set_observer(&observer);
  (void)issue(ca);
  g->token->module().set_observer(nullptr);
  std::string out;
  for (const std::string& name : order) {
    out += (out.empty() ? "" : " ") + name + (counts[name] > 1 ? " x" + std::to_string(counts[name]) : "");
  }
  return out;
}

// --- 2. openssl x509 -req with the pkcs11 engine -----------------------------

std::string percent_encode(std::span<const std::uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : bytes) {
    out += '%';
    out += kHex[b >> 4];
    out += kHex[b & 0x0f];
  }
  return out;
}

struct EngineFigures {
  int runs = 0;
  double openssl_seconds = 0;
  int keyhold_certificates = 0;
  double keyhold_seconds = 0;
  std::string verify_openssl;  // openssl verify's answer for one of openssl's certificates
  std::string verify_keyhold;  // and for one of keyhold's
};

std::string verify_chain(const std::filesystem::path& dir, const std::string& leaf_name) {
  keyhold::testing::ProcessResult r =
      keyhold::testing::run_process({"openssl", "verify", "-x509_strict", "-CAfile", (dir / "root.pem").string(),
                                     "-untrusted", (dir / "ca.pem").string(), (dir / leaf_name).string()});
  std::string text = r.out + r.err;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return (r.ok() ? "" : "FAILED: ") + text;
}

// One `openssl x509 -req` process per certificate, the CA key in the token
// through libengine-pkcs11-openssl, alternated with batches of keyhold
// issuances (1 thread) so that both see the same machine load. The engine
// gets the PIN from a file named in the key URI (pin-source, RFC 7512): no
// secret on the command line. The module comes from PKCS11_MODULE_PATH and
// the token from SOFTHSM2_CONF (the fixture set it for this process).
EngineFigures run_engine(const Ca& ca) {
  const std::filesystem::path dir = g->dir / ("openssl-" + ca.label);
  std::filesystem::create_directory(dir);
  keyhold::testing::write_file((dir / "ca.pem").string(), ca.certificate_pem);
  keyhold::testing::write_file((dir / "root.pem").string(), g->root_pem);
  // The extensions keyhold's profile gives a leaf; the SAN is the CSR's.
  keyhold::testing::write_file((dir / "leaf.cnf").string(),
                               "[leaf]\n"
                               "basicConstraints = critical,CA:FALSE\n"
                               "keyUsage = critical,digitalSignature\n"
                               "extendedKeyUsage = serverAuth\n"
                               "subjectKeyIdentifier = hash\n"
                               "authorityKeyIdentifier = keyid:always\n");
  write_private_file(dir / "pin", keyhold::testing::ThrowawayToken::get().pin_text());
  const std::string key_uri = "pkcs11:token=" + g->token->label() + ";id=" + percent_encode(ca.key_id) +
                              ";type=private?pin-source=file:" + (dir / "pin").string();
  keyhold::testing::ProcessOptions options;
  options.env["PKCS11_MODULE_PATH"] = keyhold::testing::ThrowawayToken::module_path();
  options.env["OPENSSL_CONF"] = "/dev/null";  // the engine from -engine alone, nothing from the system's openssl.cnf

  EngineFigures figures;
  Clock::duration openssl_time{};
  Clock::duration keyhold_time{};
  for (int i = 0; i < kEngineRuns; ++i) {
    std::string csr_name = "csr-" + std::to_string(i) + ".pem";
    keyhold::testing::write_file((dir / csr_name).string(), g->csrs[static_cast<std::size_t>(i) % g->csrs.size()]);
    std::vector<std::string> argv = {"openssl", "x509", "-req", "-in", (dir / csr_name).string(),
                                     "-CA", (dir / "ca.pem").string(), "-CAkeyform", "engine", "-engine", "pkcs11",
                                     "-CAkey", key_uri, "-days", "90", "-sha256", "-extfile",
                                     (dir / "leaf.cnf").string(), "-extensions", "leaf", "-copy_extensions", "copy",
                                     "-out", (dir / ("openssl-" + std::to_string(i) + ".pem")).string()};
    Clock::time_point start = Clock::now();
    keyhold::testing::ProcessResult r = keyhold::testing::run_process(argv, options);
    openssl_time += Clock::now() - start;
    if (!r.ok()) throw std::runtime_error("openssl x509 -req with the pkcs11 engine failed: " + r.err);

    start = Clock::now();
    for (int k = 0; k < kKeyholdPerEngineRun; ++k) {
      keyhold::pki::IssuedCertificate certificate = issue(ca);
      benchmark::DoNotOptimize(certificate.pem.data());
      if (i == 0 && k == 0) keyhold::testing::write_file((dir / "keyhold-0.pem").string(), certificate.pem);
    }
    keyhold_time += Clock::now() - start;
  }
  figures.runs = kEngineRuns;
  figures.openssl_seconds = seconds(openssl_time);
  figures.keyhold_certificates = kEngineRuns * kKeyholdPerEngineRun;
  figures.keyhold_seconds = seconds(keyhold_time);
  figures.verify_openssl = verify_chain(dir, "openssl-0.pem");
  figures.verify_keyhold = verify_chain(dir, "keyhold-0.pem");
  return figures;
}

void print_engine(const Ca& ca, const EngineFigures& f) {
  double openssl_rate = f.runs / f.openssl_seconds;
  double keyhold_rate = f.keyhold_certificates / f.keyhold_seconds;
  std::printf("%s: openssl+engine %s/s (%d processes, %s ms each), keyhold %s/s (1 thread, %d issuances), "
              "ratio %s (%s)\n",
              ca.label.c_str(), fixed(openssl_rate, 1).c_str(), f.runs, fixed(1000 * f.openssl_seconds / f.runs, 1).c_str(),
              with_commas(keyhold_rate).c_str(), f.keyhold_certificates, fixed(keyhold_rate / openssl_rate, 1).c_str(),
              verdict(keyhold_rate / openssl_rate >= 50).c_str());
  std::printf("  openssl verify -x509_strict of openssl's certificate: %s\n", f.verify_openssl.c_str());
  std::printf("  openssl verify -x509_strict of keyhold's certificate: %s\n", f.verify_keyhold.c_str());
}

// --- 3. a CRL with 100,000 entries ---------------------------------------------

constexpr const char* kReasons[] = {"keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
                                    "unspecified"};

// Records kCrlEntries revoked certificates of ca's version straight through
// the store, in one transaction (issuing and revoking them one by one would
// take minutes and measure issuance again). The CRL reads only serial,
// revocation time and reason; each row carries a real certificate's DER so
// that the table has its real size.
double insert_revoked(const Ca& ca, const std::vector<std::uint8_t>& sample_der) {
  const auto now = std::chrono::system_clock::now();
  Clock::time_point start = Clock::now();
  keyhold::store::Transaction tx(*g->store);
  for (int i = 0; i < kCrlEntries; ++i) {
    std::array<std::uint8_t, 16> serial{};
    check_ssl(RAND_bytes(serial.data(), static_cast<int>(serial.size())) == 1, "RAND_bytes");
    serial[0] &= 0x7f;
    if (serial[0] == 0) serial[0] = 0x01;
    std::string hex = keyhold::to_hex(serial);
    keyhold::store::CertificateRecord record;
    record.serial = hex.substr(hex.find_first_not_of('0'));
    record.ca_version_id = ca.version_id;
    record.subject = "CN=revoked-" + std::to_string(i) + ".pki-bench.test";
    record.sans = {"dns:revoked-" + std::to_string(i) + ".pki-bench.test"};
    record.profile = "server";
    record.not_before = keyhold::format_utc(now - std::chrono::hours(24 * 30));
    record.not_after = keyhold::format_utc(now + std::chrono::hours(24 * 60));
    record.status = "revoked";
    record.revoked_at = keyhold::format_utc(now - std::chrono::seconds(i));
    record.revocation_reason = kReasons[i % std::size(kReasons)];
    record.requester = "pki_bench";
    record.certificate_der = sample_der;
    g->store->certificates().insert(record);
  }
  tx.commit();
  return seconds(Clock::now() - start);
}

struct CrlSteps {
  double fetch = 0, build = 0, encode_tbs = 0, lint = 0, hash = 0, token_sign = 0, sign_ctx = 0, verify = 0,
         encode = 0;
  std::size_t entries = 0, tbs_bytes = 0;
};

int reason_code(const std::string& name) {
  static const std::map<std::string, int> kCodes = {
      {"keyCompromise", CRL_REASON_KEY_COMPROMISE}, {"cACompromise", CRL_REASON_CA_COMPROMISE},
      {"affiliationChanged", CRL_REASON_AFFILIATION_CHANGED}, {"superseded", CRL_REASON_SUPERSEDED},
      {"cessationOfOperation", CRL_REASON_CESSATION_OF_OPERATION}};
  auto it = kCodes.find(name);
  return it == kCodes.end() ? CRL_REASON_UNSPECIFIED : it->second;
}

// The steps of Authority::crl (src/pki/authority.cpp), redone here with the
// same calls and each one timed: fetch from the store; build the X509_CRL;
// X509_CRL_sign_ctx through keyhold's provider (encodes the TBS, hashes it,
// signs the digest in the token; crl() also lints the TBS inside this call);
// then, apart, the pieces: encoding the TBS once (i2d_re_X509_CRL_tbs),
// lint_tbs_crl, SHA-256, Signer::sign_digest; X509_CRL_verify; i2d_X509_CRL.
// Not a substitute for the timed Authority::crl calls: it shows where their
// time goes.
CrlSteps crl_steps(const Ca& ca) {
  CrlSteps steps;
  Clock::time_point t = Clock::now();
  auto lap = [&t] {
    Clock::time_point now = Clock::now();
    double ms = millis(now - t);
    t = now;
    return ms;
  };
  std::vector<keyhold::store::RevokedEntry> revoked = g->store->certificates().revoked(ca.version_id);
  steps.fetch = lap();
  steps.entries = revoked.size();

  CPtr<BIO, &BIO_free> bio(BIO_new_mem_buf(ca.certificate_pem.data(), static_cast<int>(ca.certificate_pem.size())));
  CPtr<X509, &X509_free> ca_certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  std::shared_ptr<const keyhold::crypto::Signer> signer = g->keys->signer_for(ca.key_id);
  unsigned char* ca_der = nullptr;
  int ca_der_length = i2d_X509(ca_certificate.get(), &ca_der);
  keyhold::pki::IssuerFacts facts = keyhold::pki::issuer_facts_from_certificate(
      std::span<const std::uint8_t>(ca_der, static_cast<std::size_t>(ca_der_length)), ca.algorithm);
  OPENSSL_free(ca_der);
  lap();

  auto now = std::chrono::system_clock::now();
  CPtr<X509_CRL, &X509_CRL_free> crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca_certificate.get()));
  CPtr<ASN1_TIME, &ASN1_TIME_free> this_update(ASN1_TIME_new()), next_update(ASN1_TIME_new());
  ASN1_TIME_set(this_update.get(), std::chrono::system_clock::to_time_t(now));
  ASN1_TIME_set(next_update.get(), std::chrono::system_clock::to_time_t(now + std::chrono::hours(24 * 7)));
  X509_CRL_set1_lastUpdate(crl.get(), this_update.get());
  X509_CRL_set1_nextUpdate(crl.get(), next_update.get());
  CPtr<ASN1_TIME, &ASN1_TIME_free> revoked_at(ASN1_TIME_new());
  for (const keyhold::store::RevokedEntry& entry : revoked) {
    X509_REVOKED* item = X509_REVOKED_new();
    std::vector<std::uint8_t> serial = *keyhold::from_hex(entry.serial.size() % 2 ? "0" + entry.serial : entry.serial);
    CPtr<BIGNUM, &BN_free> bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
    CPtr<ASN1_INTEGER, &ASN1_INTEGER_free> number(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    std::tm tm{};
    strptime(entry.revoked_at.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    ASN1_TIME_set(revoked_at.get(), timegm(&tm));
    X509_REVOKED_set_serialNumber(item, number.get());
    X509_REVOKED_set_revocationDate(item, revoked_at.get());
    int code = reason_code(entry.reason);
    if (code != CRL_REASON_UNSPECIFIED) {
      CPtr<ASN1_ENUMERATED, &ASN1_ENUMERATED_free> reason(ASN1_ENUMERATED_new());
      ASN1_ENUMERATED_set(reason.get(), code);
      X509_REVOKED_add1_ext_i2d(item, NID_crl_reason, reason.get(), 0, 0);
    }
    X509_CRL_add0_revoked(crl.get(), item);
  }
  X509_CRL_sort(crl.get());
  CPtr<AUTHORITY_KEYID, &AUTHORITY_KEYID_free> aki(AUTHORITY_KEYID_new());
  aki->keyid = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(aki->keyid, facts.subject_key_id.data(), static_cast<int>(facts.subject_key_id.size()));
  X509_CRL_add1_ext_i2d(crl.get(), NID_authority_key_identifier, aki.get(), 0, 0);
  CPtr<ASN1_INTEGER, &ASN1_INTEGER_free> crl_number(ASN1_INTEGER_new());
  ASN1_INTEGER_set_int64(crl_number.get(), 1'000'000);
  X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0);
  steps.build = lap();

  {
    auto pkey = keyhold::crypto::make_token_pkey(signer);
    auto md = keyhold::crypto::make_sign_context(pkey.get(), ca.algorithm);
    lap();
    check_ssl(X509_CRL_sign_ctx(crl.get(), md.get()) > 0, "X509_CRL_sign_ctx");
    steps.sign_ctx = lap();
  }

  // The parts of signing, one by one, on the TBS the signature covers.
  unsigned char* tbs = nullptr;
  int tbs_length = i2d_re_X509_CRL_tbs(crl.get(), &tbs);
  check_ssl(tbs_length > 0, "i2d_re_X509_CRL_tbs");
  std::vector<std::uint8_t> tbs_der(tbs, tbs + tbs_length);
  OPENSSL_free(tbs);
  steps.encode_tbs = lap();
  steps.tbs_bytes = tbs_der.size();

  std::vector<keyhold::pki::LintFinding> findings = keyhold::pki::lint_tbs_crl(tbs_der, facts);
  steps.lint = lap();
  if (keyhold::pki::has_errors(findings)) {
    throw std::runtime_error("the replica's CRL fails the linter: " + keyhold::pki::describe(findings, "CRL"));
  }
  std::vector<std::uint8_t> digest(32);
  unsigned int digest_size = 32;
  check_ssl(EVP_Digest(tbs_der.data(), tbs_der.size(), digest.data(), &digest_size, EVP_sha256(), nullptr) == 1,
            "SHA-256");
  steps.hash = lap();
  std::vector<std::uint8_t> signature = signer->sign_digest(ca.algorithm, digest);
  benchmark::DoNotOptimize(signature.data());
  steps.token_sign = lap();

  check_ssl(X509_CRL_verify(crl.get(), signer->public_key().evp()) == 1, "X509_CRL_verify");
  steps.verify = lap();
  unsigned char* out = nullptr;
  int length = i2d_X509_CRL(crl.get(), &out);
  check_ssl(length > 0, "i2d_X509_CRL");
  OPENSSL_free(out);
  steps.encode = lap();
  return steps;
}

void run_crl(const Ca& ca) {
  std::printf("\nCRL with %s revoked entries, %s intermediate (goal: under 2 s):\n", with_commas(kCrlEntries).c_str(),
              ca.label.c_str());
  std::fflush(stdout);
  keyhold::pki::IssuedCertificate sample = issue(ca);
  double insert_s = insert_revoked(ca, sample.record.certificate_der);
  std::printf("set-up: %s revoked records inserted through the store in one transaction in %s s (untimed below)\n",
              with_commas(kCrlEntries).c_str(), fixed(insert_s, 2).c_str());
  std::fflush(stdout);

  keyhold::pki::CrlResult last;
  for (int run = 1; run <= kCrlRuns; ++run) {
    Clock::time_point start = Clock::now();
    last = g->authority->crl(ca.name);
    double s = seconds(Clock::now() - start);
    std::printf("Authority::crl run %d: %s s (%s entries, CRL number %lld, %s bytes DER) (%s)\n", run,
                fixed(s, 3).c_str(), with_commas(static_cast<double>(last.revoked)).c_str(),
                static_cast<long long>(last.number), with_commas(static_cast<double>(last.der.size())).c_str(),
                verdict(s < 2.0).c_str());
    std::fflush(stdout);
  }

  // An independent check of the last CRL: openssl parses it and verifies its signature.
  std::filesystem::path crl_path = g->dir / "bench.crl";
  keyhold::testing::write_file(crl_path.string(), std::string(last.der.begin(), last.der.end()));
  keyhold::testing::write_file((g->dir / "crl-ca.pem").string(), ca.certificate_pem);
  keyhold::testing::ProcessResult check = keyhold::testing::run_process(
      {"openssl", "crl", "-inform", "DER", "-in", crl_path.string(), "-CAfile", (g->dir / "crl-ca.pem").string(),
       "-noout"});
  std::string answer = check.out + check.err;
  while (!answer.empty() && answer.back() == '\n') answer.pop_back();
  std::printf("openssl crl -CAfile on the last CRL: %s%s\n", check.ok() ? "" : "FAILED: ", answer.c_str());

  CrlSteps s = crl_steps(ca);
  double total = s.fetch + s.build + s.sign_ctx + s.lint + s.verify + s.encode;
  std::printf("where the time goes (the same steps redone one by one, ms; %s entries, TBS %s bytes):\n",
              with_commas(static_cast<double>(s.entries)).c_str(), with_commas(static_cast<double>(s.tbs_bytes)).c_str());
  std::printf("  fetch (CertificateRepository::revoked)        %9.1f\n", s.fetch);
  std::printf("  build (X509_REVOKED per entry, sort, exts)    %9.1f\n", s.build);
  std::printf("  sign via provider (X509_CRL_sign_ctx)         %9.1f\n", s.sign_ctx);
  std::printf("    of which: encode TBS %.1f, SHA-256 %.1f, token sign of the digest %.1f\n", s.encode_tbs, s.hash,
              s.token_sign);
  std::printf("  lint (lint_tbs_crl; inside the signing in crl) %8.1f\n", s.lint);
  std::printf("  verify (X509_CRL_verify)                      %9.1f\n", s.verify);
  std::printf("  encode (i2d_X509_CRL)                         %9.1f\n", s.encode);
  std::printf("  sum                                           %9.1f\n", total);
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
    std::printf("store: %s (SQLite, WAL)\n", (fixture.dir / "keyhold.db").c_str());
    std::printf("set-up: root + ec-p256 and rsa-2048 intermediates, %d P-256 CSRs, in %s s\n", kCsrPool,
                fixed(seconds(Clock::now() - setup_start), 2).c_str());
    for (const Ca& ca : fixture.cas) {
      std::printf("keyhold's calls per %s issuance: %s\n", ca.label.c_str(), calls_per_issue(ca).c_str());
    }
    std::fflush(stdout);

    register_all();
    CollectingReporter reporter(::isatty(STDOUT_FILENO) != 0 ? benchmark::ConsoleReporter::OO_Defaults
                                                              : benchmark::ConsoleReporter::OO_Tabular);
    benchmark::RunSpecifiedBenchmarks(&reporter);
    print_issuance_summary(reporter);
    std::fflush(stdout);

    std::printf("\nkeyhold / `openssl x509 -req -engine pkcs11`, one process per certificate, alternating (goal >= 50):\n");
    std::fflush(stdout);
    for (const Ca& ca : fixture.cas) {
      print_engine(ca, run_engine(ca));
      std::fflush(stdout);
    }

    run_crl(fixture.cas.front());

    // Every certificate keyhold returned is in the store.
    std::int64_t recorded = 0;
    for (const Ca& ca : fixture.cas) recorded += fixture.store->certificates().count(ca.version_id);
    std::int64_t expected = static_cast<std::int64_t>(fixture.issued.load()) + kCrlEntries;
    std::printf("\nstore: %lld certificates recorded for the two intermediates; issued and returned %llu + %d inserted "
                "revoked = %lld (%s)\n",
                static_cast<long long>(recorded), static_cast<unsigned long long>(fixture.issued.load()), kCrlEntries,
                static_cast<long long>(expected), recorded == expected ? "match" : "MISMATCH");
    tear_down(fixture);
    g = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pki_bench: %s\n", e.what());
    status = 1;
  }
  benchmark::Shutdown();
  // Before static destruction: SoftHSM must be finalised while OpenSSL is alive (SoftHSMv2 #780).
  keyhold::testing::ThrowawayToken::tear_down();
  return status;
}
