// The HTTPS server (keyhold::http::Server) against independent peers: curl
// and openssl s_client. The certificates (a test CA, a foreign CA, server and
// client certificates, a CRL) are made here with OpenSSL and software keys;
// one test serves TLS with a token key through keyhold's OpenSSL provider.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "keyhold/core/error.hpp"
#include "keyhold/crypto/openssl_provider.hpp"
#include "keyhold/crypto/signer.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/http/server.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

using http::EvpPkeyPtr;
using http::X509CrlPtr;
using http::X509Ptr;
using testing::ProcessResult;
using testing::run_process;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Certificates.

X509Ptr ref(X509* x) {
  X509_up_ref(x);
  return X509Ptr(x);
}
EvpPkeyPtr ref(EVP_PKEY* k) {
  EVP_PKEY_up_ref(k);
  return EvpPkeyPtr(k);
}
X509CrlPtr ref(X509_CRL* c) {
  X509_CRL_up_ref(c);
  return X509CrlPtr(c);
}

EvpPkeyPtr ec_key() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) throw std::runtime_error("EC key generation failed");
  return key;
}

enum class Kind { Ca, Server, Client };

struct CertSpec {
  std::vector<std::string> cns;     // subject CNs (usually one)
  std::vector<std::string> sans;    // "URI:...", "DNS:...", "IP:..."
  Kind kind = Kind::Client;
  long serial = 1;
  long not_before = -3600;          // seconds from now
  long not_after = 30L * 24 * 3600;
};

void add_extension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) throw std::runtime_error("bad extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for subject_key (a public key), signed by issuer_key; self-signed when issuer is null.
X509Ptr issue(const CertSpec& spec, EVP_PKEY* subject_key, X509* issuer, EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), spec.serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.not_after);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("keyhold tests"), -1, -1, 0);
  for (const std::string& cn : spec.cns) {
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  }
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), subject_key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  bool ca = spec.kind == Kind::Ca;
  add_extension(cert.get(), &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_extension(cert.get(), &ctx, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  if (!ca) add_extension(cert.get(), &ctx, NID_ext_key_usage, spec.kind == Kind::Server ? "serverAuth" : "clientAuth");
  add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_extension(cert.get(), &ctx, NID_authority_key_identifier, "keyid");
  if (!spec.sans.empty()) {
    std::string sans;
    for (const std::string& san : spec.sans) sans += (sans.empty() ? "" : ",") + san;
    add_extension(cert.get(), &ctx, NID_subject_alt_name, sans);
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) throw std::runtime_error("X509_sign failed");
  return cert;
}

X509CrlPtr make_crl(X509* ca, EVP_PKEY* ca_key, const std::vector<long>& revoked, long next_update = 24 * 3600) {
  X509CrlPtr crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), 1);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca));
  CPtr<ASN1_TIME, &ASN1_TIME_free> last(X509_gmtime_adj(nullptr, -3600));
  CPtr<ASN1_TIME, &ASN1_TIME_free> next(X509_gmtime_adj(nullptr, next_update));
  X509_CRL_set1_lastUpdate(crl.get(), last.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  for (long serial : revoked) {
    X509_REVOKED* entry = X509_REVOKED_new();
    CPtr<ASN1_INTEGER, &ASN1_INTEGER_free> number(ASN1_INTEGER_new());
    ASN1_INTEGER_set(number.get(), serial);
    X509_REVOKED_set_serialNumber(entry, number.get());
    X509_REVOKED_set_revocationDate(entry, last.get());
    X509_CRL_add0_revoked(crl.get(), entry);
  }
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), ca_key, EVP_sha256()) <= 0) throw std::runtime_error("X509_CRL_sign failed");
  return crl;
}

template <class Write>
std::string to_pem(Write write) {
  CPtr<BIO, &BIO_free> bio(BIO_new(BIO_s_mem()));
  write(bio.get());
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}
std::string pem(X509* x) {
  return to_pem([&](BIO* b) { PEM_write_bio_X509(b, x); });
}
std::string pem(EVP_PKEY* k) {
  return to_pem([&](BIO* b) { PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr); });
}

std::string pem(X509_CRL* c) {
  return to_pem([&](BIO* b) { PEM_write_bio_X509_CRL(b, c); });
}

long serial_of(X509* cert) { return ASN1_INTEGER_get(X509_get0_serialNumber(cert)); }

constexpr long kServerSerial = 1001, kRenewedServerSerial = 1002;
constexpr long kRevokedSerial = 2004;

// The test PKI, made once per binary; PEM files for the peers in a temp dir.
struct Pki {
  testing::TempDir dir{"keyhold-http-test"};
  EvpPkeyPtr ca_key = ec_key(), foreign_key = ec_key(), server_key = ec_key(), client_key = ec_key();
  X509Ptr ca = issue({{"keyhold test CA"}, {}, Kind::Ca, 1}, ca_key.get(), nullptr, ca_key.get());
  X509Ptr foreign_ca = issue({{"foreign CA"}, {}, Kind::Ca, 1}, foreign_key.get(), nullptr, foreign_key.get());
  X509Ptr server = issue({{"localhost"}, {"DNS:localhost", "IP:127.0.0.1"}, Kind::Server, kServerSerial},
                         server_key.get(), ca.get(), ca_key.get());
  X509Ptr renewed_server = issue({{"localhost"}, {"DNS:localhost", "IP:127.0.0.1"}, Kind::Server, kRenewedServerSerial},
                                 server_key.get(), ca.get(), ca_key.get());
  X509CrlPtr crl = make_crl(ca.get(), ca_key.get(), {kRevokedSerial});

  std::string ca_file = write("ca.pem", pem(ca.get()));
  std::string client_key_file = write("client.key", pem(client_key.get()));
  // Client certificates, by name.
  std::string uri_client = client("uri", issue({{"payments-cn"}, {"URI:spiffe://example.org/payments", "DNS:payments.example.org"}, Kind::Client, 2001},
                                               client_key.get(), ca.get(), ca_key.get()));
  std::string cn_client = client("cn", issue({{"ops-laptop"}, {}, Kind::Client, 2002}, client_key.get(), ca.get(), ca_key.get()));
  std::string expired_client = client("expired", issue({{"expired"}, {}, Kind::Client, 2003, -2 * 86400, -86400},
                                                       client_key.get(), ca.get(), ca_key.get()));
  std::string revoked_client = client("revoked", issue({{"revoked"}, {}, Kind::Client, kRevokedSerial},
                                                       client_key.get(), ca.get(), ca_key.get()));
  std::string foreign_client = client("foreign", issue({{"foreign"}, {}, Kind::Client, 3001},
                                                       client_key.get(), foreign_ca.get(), foreign_key.get()));

  static Pki& get() {
    static Pki pki;
    return pki;
  }

  std::string write(const std::string& name, const std::string& content) {
    std::string path = (dir.path() / name).string();
    testing::write_file(path, content);
    return path;
  }
  std::string client(const std::string& name, X509Ptr cert) { return write(name + ".pem", pem(cert.get())); }

  // Server material: the server certificate (or another), the test CA as client CA, its CRL.
  http::TlsMaterial material(bool with_crl = true, X509* server_cert = nullptr) const {
    http::TlsMaterial m;
    m.key = ref(server_key.get());
    m.chain.push_back(ref(server_cert != nullptr ? server_cert : server.get()));
    m.client_cas.push_back(ref(ca.get()));
    if (with_crl) m.crls.push_back(ref(crl.get()));
    return m;
  }
};

// ---------------------------------------------------------------------------
// Peers.

struct HttpResult {
  ProcessResult process;
  int status = 0;                 // the last -w "%{http_code}", 0 when none
  std::string head_and_body;      // what curl printed before it
};

// curl with the test CA; client_cert: a PEM file of Pki or empty for none.
// write_out is printed after each transfer, before the status code.
HttpResult curl(const std::string& client_cert, const std::vector<std::string>& args, const std::string& write_out = "") {
  const Pki& pki = Pki::get();
  std::vector<std::string> argv = {"curl", "-sS", "--noproxy", "*", "--max-time", "10", "--cacert", pki.ca_file};
  if (!client_cert.empty()) {
    argv.insert(argv.end(), {"--cert", client_cert, "--key", pki.client_key_file});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"-w", write_out + "\n%{http_code}"});
  HttpResult result;
  result.process = run_process(argv);
  const std::string& out = result.process.out;
  auto newline = out.rfind('\n');
  if (newline != std::string::npos) {
    result.head_and_body = out.substr(0, newline);
    try {
      result.status = std::stoi(out.substr(newline + 1));
    } catch (...) {
      result.status = 0;
    }
  }
  return result;
}

std::string https(std::uint16_t port, const std::string& path) {
  return "https://127.0.0.1:" + std::to_string(port) + path;
}

// openssl s_client with the test CA and a client certificate (when given),
// input written to it; -ign_eof: it stays connected after its input until
// the server closes. Bounded by timeout(1).
ProcessResult s_client(std::uint16_t port, const std::string& client_cert, const std::string& input,
                       const std::vector<std::string>& extra = {}, bool ign_eof = true) {
  const Pki& pki = Pki::get();
  std::vector<std::string> argv = {"timeout", "15", "openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
                                   "-servername", "localhost", "-CAfile", pki.ca_file, "-verify_return_error"};
  if (!client_cert.empty()) argv.insert(argv.end(), {"-cert", client_cert, "-key", pki.client_key_file});
  if (ign_eof) argv.push_back("-ign_eof");
  argv.insert(argv.end(), extra.begin(), extra.end());
  testing::ProcessOptions options;
  options.input = input;
  return run_process(argv, options);
}

// The serial of the first certificate s_client -showcerts printed.
long served_serial(std::uint16_t port) {
  ProcessResult r = s_client(port, Pki::get().cn_client, "", {"-showcerts"}, /*ign_eof=*/false);
  auto begin = r.out.find("-----BEGIN CERTIFICATE-----");
  if (begin == std::string::npos) return -1;
  std::vector<X509Ptr> certs = http::parse_certificates(std::string_view(r.out).substr(begin));
  return serial_of(certs.front().get());
}

// A TCP connection that says nothing (no TLS ClientHello).
class SilentConnection {
 public:
  explicit SilentConnection(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~SilentConnection() { ::close(fd_); }
  bool connected() const { return connected_; }
  // Waits up to timeout for the server to close: true when it did (EOF or reset).
  bool closed_by_server_within(std::chrono::milliseconds timeout) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buffer[256];
    ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  int fd_;
  bool connected_ = false;
};

template <class Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = 5s) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return predicate();
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// ---------------------------------------------------------------------------
// Server set-up.

// Records every request and answers {"identity":...,"target":...}.
class Recorder {
 public:
  http::Handler handler() {
    return [this](const http::Request& request) {
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(request);
      }
      http::Response response;
      response.body = R"({"identity":")" + request.identity + R"(","target":")" + request.target + "\"}";
      return response;
    };
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return requests_.size();
  }
  std::vector<http::Request> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  std::mutex mutex_;
  std::vector<http::Request> requests_;
};

http::ServerSettings test_settings() {
  http::ServerSettings settings;
  settings.listen = "127.0.0.1:0";
  settings.threads = 2;
  settings.handler_threads = 2;
  settings.header_timeout = 5s;
  settings.idle_timeout = 10s;
  settings.shutdown_grace = 5s;
  return settings;
}

std::string header_value(const std::string& head, const std::string& name) {
  std::string lower = head;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  auto at = lower.find("\n" + name + ":");
  if (at == std::string::npos) return {};
  auto start = head.find_first_not_of(' ', at + name.size() + 2);
  auto end = head.find_first_of("\r\n", start);
  return head.substr(start, end - start);
}

bool is_hex(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

// ---------------------------------------------------------------------------
// Identity.

TEST(HttpServer, CallerIdentityIsTheUriSanElseTheCommonName) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();

  HttpResult uri = curl(pki.uri_client, {"-i", https(server.port(), "/v1/whoami?x=1")});
  ASSERT_TRUE(uri.process.ok()) << uri.process.err;
  EXPECT_EQ(uri.status, 200);
  HttpResult cn = curl(pki.cn_client, {"-i", https(server.port(), "/v1/whoami")});
  ASSERT_TRUE(cn.process.ok()) << cn.process.err;
  EXPECT_EQ(cn.status, 200);

  std::vector<http::Request> requests = recorder.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].identity, "spiffe://example.org/payments");
  EXPECT_EQ(requests[1].identity, "ops-laptop");
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].target, "/v1/whoami?x=1");
  EXPECT_TRUE(requests[0].tls);
  EXPECT_EQ(requests[0].client_address.rfind("127.0.0.1:", 0), 0u) << requests[0].client_address;
  EXPECT_TRUE(requests[0].header("user-agent").has_value());
  EXPECT_NE(uri.head_and_body.find(R"("identity":"spiffe://example.org/payments")"), std::string::npos);
  // The request id: 32 hex digits, the same in the handler and the X-Request-Id header.
  EXPECT_EQ(requests[0].request_id.size(), 32u);
  EXPECT_TRUE(is_hex(requests[0].request_id));
  EXPECT_EQ(header_value(uri.head_and_body, "x-request-id"), requests[0].request_id);
  EXPECT_NE(requests[0].request_id, requests[1].request_id);
  EXPECT_EQ(header_value(uri.head_and_body, "cache-control"), "no-store");
  server.stop();
}

TEST(HttpServer, IdentityOfACertificate) {
  EvpPkeyPtr key = ec_key();
  auto self_signed = [&](CertSpec spec) { return issue(spec, key.get(), nullptr, key.get()); };
  X509Ptr uris = self_signed({{"cn"}, {"DNS:a.example", "URI:spiffe://example.org/first", "URI:spiffe://example.org/second"}});
  EXPECT_EQ(http::identity_of(uris.get()), "spiffe://example.org/first");
  X509Ptr dns_only = self_signed({{"service-cn"}, {"DNS:a.example"}});
  EXPECT_EQ(http::identity_of(dns_only.get()), "service-cn");
  X509Ptr none = self_signed({{}, {"DNS:a.example"}});
  EXPECT_EQ(http::identity_of(none.get()), "");
  X509Ptr two_cns = self_signed({{"one", "two"}, {}});
  EXPECT_EQ(http::identity_of(two_cns.get()), "");
  X509Ptr control = self_signed({{std::string("evil\ninjected")}, {}});
  EXPECT_EQ(http::identity_of(control.get()), "");
  EXPECT_EQ(http::identity_of(nullptr), "");
}

TEST(HttpServer, ParsesPemCertificatesAndCrls) {
  const Pki& pki = Pki::get();
  std::vector<X509Ptr> certs = http::parse_certificates(pem(pki.server.get()) + pem(pki.ca.get()));
  ASSERT_EQ(certs.size(), 2u);
  EXPECT_EQ(serial_of(certs[0].get()), kServerSerial);
  std::vector<X509CrlPtr> crls = http::parse_crls(pem(pki.crl.get()));
  ASSERT_EQ(crls.size(), 1u);
  EXPECT_EQ(X509_CRL_cmp(crls[0].get(), pki.crl.get()), 0);
  EXPECT_THROW(http::parse_certificates("no PEM here"), Error);
  EXPECT_THROW(http::parse_crls(pem(pki.ca.get())), Error);
  std::string broken = pem(pki.ca.get());
  broken.replace(broken.size() / 2, 8, "!!!!!!!!");
  EXPECT_THROW(http::parse_certificates(broken), Error);
}

TEST(HttpServer, KeepAliveServesTwoRequestsOnOneConnection) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();
  // -w per URL: the second transfer made no new connection.
  HttpResult r = curl(pki.cn_client, {https(server.port(), "/one"), https(server.port(), "/two")}, "[%{num_connects}]");
  ASSERT_TRUE(r.process.ok()) << r.process.err;
  EXPECT_NE(r.process.out.find("[1]"), std::string::npos) << r.process.out;
  EXPECT_NE(r.process.out.find("[0]"), std::string::npos) << r.process.out;
  std::vector<http::Request> requests = recorder.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].target, "/one");
  EXPECT_EQ(requests[1].target, "/two");
  EXPECT_EQ(server.stats().connections_accepted, 1u);
  EXPECT_EQ(server.stats().requests, 2u);
  server.stop();
}

// ---------------------------------------------------------------------------
// Client certificates that get no API.

TEST(HttpServer, RefusesConnectionsWithoutAValidClientCertificate) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();
  struct Case {
    const char* what;
    std::string cert;
  };
  for (const Case& c : {Case{"no client certificate", ""}, Case{"foreign CA", pki.foreign_client},
                        Case{"expired", pki.expired_client}, Case{"revoked", pki.revoked_client}}) {
    HttpResult r = curl(c.cert, {https(server.port(), "/v1/secret")});
    EXPECT_FALSE(r.process.ok()) << c.what;
    EXPECT_NE(r.status, 200) << c.what;
  }
  EXPECT_EQ(recorder.count(), 0u);
  // (TLS 1.3: the client may be gone before the server has counted its failure.)
  EXPECT_TRUE(eventually([&] { return server.stats().handshake_failures == 4; })) << server.stats().handshake_failures;
  // The same server still serves a valid client.
  EXPECT_EQ(curl(pki.cn_client, {https(server.port(), "/ok")}).status, 200);
  server.stop();
}

TEST(HttpServer, RevocationIsCheckedForEveryCaWithACrlOnly) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::TlsMaterial material = pki.material();
  material.client_cas.push_back(ref(pki.foreign_ca.get()));  // no CRL for it: not checked
  http::Server server(test_settings(), std::move(material), recorder.handler());
  server.start();
  EXPECT_EQ(curl(pki.foreign_client, {https(server.port(), "/")}).status, 200);
  EXPECT_FALSE(curl(pki.revoked_client, {https(server.port(), "/")}).process.ok());
  EXPECT_EQ(recorder.count(), 1u);
  server.stop();

  // Without the CRL the revoked certificate is just a certificate.
  http::Server no_crl(test_settings(), pki.material(/*with_crl=*/false), recorder.handler());
  no_crl.start();
  EXPECT_EQ(curl(pki.revoked_client, {https(no_crl.port(), "/")}).status, 200);
  no_crl.stop();
}

TEST(HttpServer, RefusesBadTlsMaterial) {
  const Pki& pki = Pki::get();
  auto code_of = [](auto make) -> std::optional<ErrorCode> {
    try {
      make();
    } catch (const Error& e) {
      return e.code();
    }
    return std::nullopt;
  };
  Recorder recorder;
  auto construct = [&](http::TlsMaterial m) { http::Server(test_settings(), std::move(m), recorder.handler()); };
  {
    http::TlsMaterial m = pki.material();
    m.crls.clear();
    m.crls.push_back(make_crl(pki.ca.get(), pki.ca_key.get(), {}, -60));  // expired a minute ago
    EXPECT_EQ(code_of([&] { construct(std::move(m)); }), ErrorCode::InvalidArgument);
  }
  {
    http::TlsMaterial m = pki.material();
    m.crls.push_back(make_crl(pki.foreign_ca.get(), pki.foreign_key.get(), {}));  // not a client CA
    EXPECT_EQ(code_of([&] { construct(std::move(m)); }), ErrorCode::InvalidArgument);
  }
  {
    http::TlsMaterial m = pki.material();
    m.key = ec_key();  // does not match the certificate
    EXPECT_EQ(code_of([&] { construct(std::move(m)); }), ErrorCode::InvalidArgument);
  }
  {
    http::TlsMaterial m = pki.material();
    m.client_cas.clear();
    EXPECT_EQ(code_of([&] { construct(std::move(m)); }), ErrorCode::InvalidArgument);
  }
  {
    http::ServerSettings settings = test_settings();
    settings.listen = "localhost";  // no port
    EXPECT_EQ(code_of([&] { http::Server(settings, pki.material(), recorder.handler()); }), ErrorCode::InvalidArgument);
  }
  // A failed reload keeps the old material.
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();
  http::TlsMaterial bad = pki.material();
  bad.key = ec_key();
  EXPECT_EQ(code_of([&] { server.reload(std::move(bad)); }), ErrorCode::InvalidArgument);
  EXPECT_EQ(curl(pki.cn_client, {https(server.port(), "/")}).status, 200);
  server.stop();
}

TEST(HttpServer, BusyAddressIsUnavailable) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server first(test_settings(), pki.material(), recorder.handler());
  first.start();
  http::ServerSettings settings = test_settings();
  settings.listen = "127.0.0.1:" + std::to_string(first.port());
  http::Server second(settings, pki.material(), recorder.handler());
  try {
    second.start();
    ADD_FAILURE() << "a second server bound a busy port";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unavailable);
    EXPECT_NE(std::string(e.what()).find(std::to_string(first.port())), std::string::npos) << e.what();
  }
  first.stop();
}

// ---------------------------------------------------------------------------
// Protocol versions.

TEST(HttpServer, Tls12IsRefusedUnlessAllowed) {
  const Pki& pki = Pki::get();
  const std::string request = "GET /tls12 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  Recorder recorder;
  {
    http::Server server(test_settings(), pki.material(), recorder.handler());
    server.start();
    ProcessResult r = s_client(server.port(), pki.cn_client, request, {"-tls1_2"});
    EXPECT_FALSE(r.ok()) << r.out;
    EXPECT_EQ(r.out.find("HTTP/1.1"), std::string::npos);
    // TLS 1.3 is fine.
    ProcessResult tls13 = s_client(server.port(), pki.cn_client, request, {"-tls1_3"});
    EXPECT_NE(tls13.out.find("HTTP/1.1 200"), std::string::npos) << tls13.out << tls13.err;
    server.stop();
  }
  EXPECT_EQ(recorder.count(), 1u);
  http::TlsMaterial material = pki.material();
  material.allow_tls12 = true;
  http::Server server(test_settings(), std::move(material), recorder.handler());
  server.start();
  ProcessResult r = s_client(server.port(), pki.cn_client, request, {"-tls1_2"});
  EXPECT_NE(r.out.find("HTTP/1.1 200"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("TLSv1.2"), std::string::npos);
  // The CRL applies to TLS 1.2 as well.
  EXPECT_EQ(s_client(server.port(), pki.revoked_client, request, {"-tls1_2"}).out.find("HTTP/1.1"), std::string::npos);
  server.stop();
  EXPECT_EQ(recorder.count(), 2u);
}

// ---------------------------------------------------------------------------
// Requests the server answers itself.

TEST(HttpServer, BodyOverTheLimitGets413) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();
  std::string at_limit = pki.dir.path() / "at-limit.bin";
  std::string over_limit = pki.dir.path() / "over-limit.bin";
  testing::write_file(at_limit, std::string(64 * 1024, 'a'));
  testing::write_file(over_limit, std::string(64 * 1024 + 1, 'b'));

  HttpResult ok = curl(pki.cn_client, {"-H", "Content-Type: application/octet-stream", "--data-binary", "@" + at_limit,
                                       https(server.port(), "/upload")});
  EXPECT_EQ(ok.status, 200) << ok.process.err;
  HttpResult big = curl(pki.cn_client, {"--data-binary", "@" + over_limit, https(server.port(), "/upload")});
  EXPECT_TRUE(big.process.ok()) << big.process.err;
  EXPECT_EQ(big.status, 413);
  EXPECT_NE(big.head_and_body.find(R"({"error":{"code":"too_large")"), std::string::npos) << big.head_and_body;
  // With Expect: 100-continue the 413 comes before the body is sent.
  HttpResult expect = curl(pki.cn_client, {"-H", "Expect: 100-continue", "--data-binary", "@" + over_limit,
                                           https(server.port(), "/upload")});
  EXPECT_EQ(expect.status, 413) << expect.process.err;
  HttpResult expect_ok = curl(pki.cn_client, {"-H", "Expect: 100-continue", "--data-binary", "@" + at_limit,
                                              https(server.port(), "/upload")});
  EXPECT_EQ(expect_ok.status, 200) << expect_ok.process.err;

  std::vector<http::Request> requests = recorder.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].body.size(), 64u * 1024);
  EXPECT_EQ(requests[0].content_type, "application/octet-stream");
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[1].body.size(), 64u * 1024);
  server.stop();
}

TEST(HttpServer, MalformedRequestGets400AndTheConnectionIsClosed) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();
  for (const std::string& garbage : {std::string("THIS IS NOT HTTP\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHo st: x\r\n\r\n"),
                                     std::string("\x01\x02\x03\r\n\r\n", 7)}) {
    auto start = Clock::now();
    ProcessResult r = s_client(server.port(), pki.cn_client, garbage);
    EXPECT_NE(r.out.find("HTTP/1.1 400 Bad Request"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(R"({"error":{"code":"bad_request")"), std::string::npos) << r.out;
    EXPECT_NE(r.exit_code, 124) << "the server did not close the connection";
    EXPECT_LT(seconds_since(start), 4.0);
  }
  EXPECT_EQ(recorder.count(), 0u);
  server.stop();
}

TEST(HttpServer, HandlerFailuresBecomeJsonErrors) {
  const Pki& pki = Pki::get();
  http::Server server(test_settings(), pki.material(), [](const http::Request& request) -> http::Response {
    if (request.target == "/runtime") throw std::runtime_error("database password is hunter2");
    if (request.target == "/internal") throw Error(ErrorCode::Internal, "CKR_DEVICE_ERROR details");
    if (request.target == "/missing") throw Error(ErrorCode::NotFound, "no key named 'payments'");
    http::Response bad;
    bad.headers.emplace_back("X-Injected", "a\r\nSet-Cookie: x=y");
    return bad;
  });
  server.start();
  HttpResult runtime = curl(pki.cn_client, {https(server.port(), "/runtime")});
  EXPECT_EQ(runtime.status, 500);
  EXPECT_NE(runtime.head_and_body.find(R"("code":"internal","message":"internal error")"), std::string::npos)
      << runtime.head_and_body;
  EXPECT_EQ(runtime.head_and_body.find("hunter2"), std::string::npos);
  HttpResult internal = curl(pki.cn_client, {https(server.port(), "/internal")});
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(internal.head_and_body.find("CKR_DEVICE_ERROR"), std::string::npos);
  HttpResult missing = curl(pki.cn_client, {https(server.port(), "/missing")});
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.head_and_body.find(R"("code":"not_found","message":"no key named 'payments'")"), std::string::npos)
      << missing.head_and_body;
  HttpResult injected = curl(pki.cn_client, {"-i", https(server.port(), "/header")});
  EXPECT_EQ(injected.status, 500);
  EXPECT_EQ(injected.head_and_body.find("Set-Cookie"), std::string::npos);
  server.stop();
}

// ---------------------------------------------------------------------------
// Timeouts and limits.

TEST(HttpServer, SlowClientIsDroppedAfterTheHeaderTimeoutWithoutBlockingOthers) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::ServerSettings settings = test_settings();
  settings.header_timeout = 1s;
  http::Server server(settings, pki.material(), recorder.handler());
  server.start();

  // Half a request head, then nothing (s_client -ign_eof keeps the connection).
  auto slow_start = Clock::now();
  std::atomic<double> slow_seconds{0};
  std::future<ProcessResult> slow = std::async(std::launch::async, [&] {
    ProcessResult r = s_client(server.port(), pki.cn_client, "GET /slow HTTP/1.1\r\nHost: localhost\r\nX-Half: ");
    slow_seconds = seconds_since(slow_start);
    return r;
  });
  // And a client that says nothing at all, not even a ClientHello.
  SilentConnection silent(server.port());
  ASSERT_TRUE(silent.connected());

  std::this_thread::sleep_for(300ms);
  HttpResult fast = curl(pki.cn_client, {https(server.port(), "/fast")});
  double fast_done = seconds_since(slow_start);
  EXPECT_EQ(fast.status, 200) << fast.process.err;

  EXPECT_TRUE(silent.closed_by_server_within(3s));
  double silent_done = seconds_since(slow_start);
  ProcessResult r = slow.get();
  EXPECT_NE(r.exit_code, 124) << "the slow client was never dropped";
  EXPECT_EQ(r.out.find("HTTP/1.1"), std::string::npos) << r.out;
  EXPECT_GE(slow_seconds.load(), 0.9);
  EXPECT_LT(slow_seconds.load(), 4.0);
  EXPECT_LT(fast_done, slow_seconds.load());
  EXPECT_GE(silent_done, 0.9);
  EXPECT_LT(silent_done, 4.0);
  EXPECT_TRUE(eventually([&] { return server.stats().timeouts == 2; })) << server.stats().timeouts;
  std::vector<http::Request> requests = recorder.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/fast");
  server.stop();
}

TEST(HttpServer, ConnectionsOverTheLimitAreClosed) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::ServerSettings settings = test_settings();
  settings.max_connections = 1;
  http::Server server(settings, pki.material(), recorder.handler());
  server.start();
  {
    SilentConnection holder(server.port());
    ASSERT_TRUE(eventually([&] { return server.stats().connections_open == 1; }));
    HttpResult refused = curl(pki.cn_client, {https(server.port(), "/")});
    EXPECT_FALSE(refused.process.ok());
    EXPECT_EQ(server.stats().connections_refused, 1u);
  }
  ASSERT_TRUE(eventually([&] { return server.stats().connections_open == 0; }));
  EXPECT_EQ(curl(pki.cn_client, {https(server.port(), "/")}).status, 200);
  server.stop();
}

TEST(HttpServer, IdleKeepAliveConnectionIsClosedAfterTheIdleTimeout) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::ServerSettings settings = test_settings();
  settings.idle_timeout = 500ms;
  http::Server server(settings, pki.material(), recorder.handler());
  server.start();
  auto start = Clock::now();
  // One keep-alive request, then the client waits for the server to close.
  ProcessResult r = s_client(server.port(), pki.cn_client, "GET /idle HTTP/1.1\r\nHost: localhost\r\n\r\n");
  double seconds = seconds_since(start);
  EXPECT_NE(r.out.find("HTTP/1.1 200 OK"), std::string::npos) << r.out;
  EXPECT_NE(r.exit_code, 124);
  EXPECT_GE(seconds, 0.45);
  EXPECT_LT(seconds, 3.0);
  EXPECT_EQ(recorder.count(), 1u);
  server.stop();
}

TEST(HttpServer, ServesManyClientsAtOnce) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();
  std::vector<std::future<HttpResult>> clients;
  for (int i = 0; i < 16; ++i) {
    clients.push_back(std::async(std::launch::async, [&, i] {
      return curl(i % 2 == 0 ? pki.cn_client : pki.uri_client,
                  {https(server.port(), "/a" + std::to_string(i)), https(server.port(), "/b" + std::to_string(i))});
    }));
  }
  for (auto& client : clients) {
    HttpResult r = client.get();
    EXPECT_TRUE(r.process.ok()) << r.process.err;
    EXPECT_EQ(r.status, 200);
  }
  EXPECT_EQ(recorder.count(), 32u);
  EXPECT_EQ(server.stats().connections_accepted, 16u);
  EXPECT_TRUE(eventually([&] { return server.stats().connections_open == 0; }));
  server.stop();
}

// ---------------------------------------------------------------------------
// Stop and reload.

TEST(HttpServer, StopFinishesTheRequestInFlightAndRefusesNewConnections) {
  const Pki& pki = Pki::get();
  std::atomic<bool> entered{false};
  http::Server server(test_settings(), pki.material(), [&](const http::Request&) {
    entered = true;
    std::this_thread::sleep_for(500ms);
    http::Response response;
    response.body = R"({"slow":true})";
    return response;
  });
  server.start();
  std::uint16_t port = server.port();
  std::future<HttpResult> in_flight =
      std::async(std::launch::async, [&] { return curl(pki.cn_client, {"-i", https(port, "/slow")}); });
  ASSERT_TRUE(eventually([&] { return entered.load(); }));
  auto start = Clock::now();
  server.stop();
  double stop_seconds = seconds_since(start);
  HttpResult r = in_flight.get();
  EXPECT_EQ(r.status, 200) << r.process.err;
  EXPECT_NE(r.head_and_body.find(R"({"slow":true})"), std::string::npos);
  EXPECT_NE(header_value(r.head_and_body, "connection"), "keep-alive");
  EXPECT_LT(stop_seconds, 3.0);
  HttpResult after = curl(pki.cn_client, {https(port, "/slow")});
  EXPECT_EQ(after.process.exit_code, 7) << after.process.err;  // couldn't connect
  server.stop();  // idempotent
}

TEST(HttpServer, StopClosesIdleKeepAliveConnectionsAtOnce) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();
  // A TLS connection that finished its handshake and waits (keep-alive idle).
  std::future<ProcessResult> idle = std::async(std::launch::async, [&] { return s_client(server.port(), pki.cn_client, ""); });
  ASSERT_TRUE(eventually([&] { return server.stats().connections_open == 1; }));
  std::this_thread::sleep_for(200ms);  // past the handshake
  auto start = Clock::now();
  server.stop();
  EXPECT_LT(seconds_since(start), 1.5);
  EXPECT_NE(idle.get().exit_code, 124);
}

TEST(HttpServer, ReloadServesTheNewCertificateToNewConnectionsAndKeepsOpenOnes) {
  const Pki& pki = Pki::get();
  std::promise<void> reloaded;
  std::shared_future<void> reloaded_future = reloaded.get_future().share();
  std::atomic<bool> first_entered{false};
  Recorder recorder;
  http::Handler record = recorder.handler();
  http::Server server(test_settings(), pki.material(), [&](const http::Request& request) {
    if (request.target == "/first") {
      first_entered = true;
      reloaded_future.wait();  // the test reloads while this connection is open
    }
    return record(request);
  });
  server.start();
  EXPECT_EQ(served_serial(server.port()), kServerSerial);

  std::future<HttpResult> keep_alive = std::async(std::launch::async, [&] {
    return curl(pki.uri_client, {https(server.port(), "/first"), https(server.port(), "/second")}, "[%{num_connects}]");
  });
  ASSERT_TRUE(eventually([&] { return first_entered.load(); }));
  server.reload(pki.material(true, pki.renewed_server.get()));
  EXPECT_EQ(served_serial(server.port()), kRenewedServerSerial);
  reloaded.set_value();

  HttpResult r = keep_alive.get();
  ASSERT_TRUE(r.process.ok()) << r.process.err;
  EXPECT_NE(r.process.out.find("[1]"), std::string::npos) << r.process.out;
  EXPECT_NE(r.process.out.find("[0]"), std::string::npos) << r.process.out;
  std::vector<http::Request> requests = recorder.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].target, "/second");
  EXPECT_EQ(server.stats().reloads, 1u);
  server.stop();
}

TEST(HttpServer, SignalsReloadAndStopTheServer) {
  const Pki& pki = Pki::get();
  Recorder recorder;
  http::Server server(test_settings(), pki.material(), recorder.handler());
  server.start();
  std::atomic<int> loads{0};
  http::ServerSignals signals(server, [&] {
    ++loads;
    return pki.material(true, pki.renewed_server.get());
  });
  std::future<int> waited = std::async(std::launch::async, [&] { return signals.wait(); });
  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([&] { return server.stats().reloads == 1; }));
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(served_serial(server.port()), kRenewedServerSerial);
  ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
  ASSERT_EQ(waited.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(waited.get(), SIGTERM);
  EXPECT_EQ(curl(pki.cn_client, {https(server.port(), "/")}).process.exit_code, 7);
}

// ---------------------------------------------------------------------------
// Plain HTTP and the token key.

TEST(HttpServer, PlainListenerServesItsOwnHandlerWithoutTls) {
  const Pki& pki = Pki::get();
  Recorder tls, plain;
  http::ServerSettings settings = test_settings();
  settings.plain_listen = "127.0.0.1:0";
  http::Server server(settings, pki.material(), tls.handler(), plain.handler());
  server.start();
  ASSERT_TRUE(server.plain_port().has_value());
  HttpResult r = curl("", {"http://127.0.0.1:" + std::to_string(*server.plain_port()) + "/ca.pem"});
  EXPECT_EQ(r.status, 200) << r.process.err;
  std::vector<http::Request> requests = plain.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/ca.pem");
  EXPECT_FALSE(requests[0].tls);
  EXPECT_EQ(requests[0].identity, "");
  EXPECT_EQ(tls.count(), 0u);
  // The TLS port does not speak plain HTTP.
  EXPECT_NE(curl("", {"http://127.0.0.1:" + std::to_string(server.port()) + "/"}).status, 200);
  EXPECT_EQ(tls.count(), 0u);
  server.stop();

  // A plain listener needs its handler, and a plain handler its listener.
  EXPECT_THROW(http::Server(settings, pki.material(), tls.handler()), Error);
  EXPECT_THROW(http::Server(test_settings(), pki.material(), tls.handler(), plain.handler()), Error);
}

// Counts the signatures the TLS handshakes ask of the token.
class CountingSigner : public crypto::Signer {
 public:
  explicit CountingSigner(std::shared_ptr<const crypto::Signer> inner) : inner_(std::move(inner)) {}
  crypto::KeyType key_type() const noexcept override { return inner_->key_type(); }
  const crypto::PublicKey& public_key() const noexcept override { return inner_->public_key(); }
  std::vector<std::uint8_t> sign(crypto::SignatureAlgorithm algorithm, std::span<const std::uint8_t> message) const override {
    ++count_;
    return inner_->sign(algorithm, message);
  }
  std::vector<std::uint8_t> sign_digest(crypto::SignatureAlgorithm algorithm,
                                        std::span<const std::uint8_t> digest) const override {
    ++count_;
    return inner_->sign_digest(algorithm, digest);
  }
  int count() const { return count_.load(); }

 private:
  std::shared_ptr<const crypto::Signer> inner_;
  mutable std::atomic<int> count_{0};
};

TEST(HttpServer, ServesTlsWithATokenKey) {
  const Pki& pki = Pki::get();
  std::unique_ptr<crypto::KeyRing> ring = crypto::make_token_key_ring(testing::ThrowawayToken::get().open());
  crypto::TokenKey key = ring->create("http-server-tls", crypto::KeyType::EcP256);
  auto signer = std::make_shared<CountingSigner>(ring->signer(key.id));
  // The certificate's public key comes from the signer, never from the token EVP_PKEY.
  X509Ptr cert = issue({{"localhost"}, {"DNS:localhost", "IP:127.0.0.1"}, Kind::Server, 4001},
                       signer->public_key().evp(), pki.ca.get(), pki.ca_key.get());
  http::TlsMaterial material = pki.material();
  material.key = crypto::make_token_pkey(signer);
  material.chain.clear();
  material.chain.push_back(std::move(cert));

  Recorder recorder;
  {
    http::Server server(test_settings(), std::move(material), recorder.handler());
    server.start();
    HttpResult r = curl(pki.uri_client, {https(server.port(), "/token"), https(server.port(), "/token")});
    ASSERT_TRUE(r.process.ok()) << r.process.err;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(recorder.count(), 2u);
    EXPECT_EQ(signer->count(), 1);  // one handshake (keep-alive), one token signature
    EXPECT_EQ(served_serial(server.port()), 4001);
    EXPECT_EQ(signer->count(), 2);
    server.stop();
  }
  ring->destroy(key.id);
}

}  // namespace
}  // namespace keyhold
