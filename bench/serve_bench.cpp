// The load benchmark of `keyhold serve` (docs/performance.md, "Service
// (keyhold serve)"), in one run on one throwaway development set-up made by
// the real binary (`keyhold init --dev`, a KEK and an SSH CA made with the
// CLI, the rate limit switched off in keyhold.toml's [server]):
//
// 1. A load client (this process: OpenSSL libssl, TLS 1.3, the set-up's
//    admin client certificate, HTTP/1.1 keep-alive, one thread per
//    connection) against the real `keyhold serve`, at 1, 16 and 64
//    connections, for POST /v1/keks/NAME/datakey, /v1/keks/NAME/decrypt,
//    /v1/ssh/CA/sign and /v1/pki/CA/issue: requests per second and the p50
//    and p99 latency (request written to response read) over a fixed window
//    after a warm-up.
// 2. Beside each, the in-process rate of the same operation through the
//    library (app::Application on the same keyhold.toml, so the same token
//    and store; no TLS, no HTTP, no policy, no audit log) from the same
//    number of threads, measured in the same run while the server is idle.
// 3. New TLS handshakes per second: a new connection (full mTLS handshake,
//    the server signing with its token key) for each decrypt request.
// 4. The server's peak RSS (VmHWM of /proc/PID/status) at the end.
//
// Also per point: the CPU the server and the client used (in cores), and the
// audit log's fdatasync calls (keyhold_audit_syncs_total from GET /metrics),
// as requests per sync. The load client shares the machine with the server:
// its CPU is printed so that it can be taken into account.
//
// Goals (2-core machine): decrypt >= 10,000 requests/s at 64 connections
// and >= 0.5 of the in-process rate; p99 <= 10 ms at 64 connections; the
// server's RSS under 100 MiB. Not Google Benchmark: a load test has fixed
// windows and latency percentiles. Run it by hand:
//   serve_bench [--seconds S] [--warmup S] [--connections 1,16,64]
//               [--only datakey,decrypt,ssh,pki,handshake] [--keep]
//               [--keyhold PATH (another build of keyhold, to compare)]

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "keyhold/app/application.hpp"
#include "keyhold/app/config.hpp"
#include "keyhold/core/c_ptr.hpp"
#include "keyhold/crypto/public_key.hpp"
#include "keyhold/envelope/ciphertext.hpp"
#include "keyhold/ssh/public_key.hpp"
#include "support/process.hpp"
#include "support/token_fixture.hpp"

namespace {

using keyhold::CPtr;
using keyhold::bench::with_commas;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kKek = "bench";
constexpr const char* kSshCa = "benchssh";
constexpr const char* kPkiCa = "dev";  // keyhold init --dev's root CA (ec-p256)
constexpr int kPool = 256;             // distinct CSRs and SSH user keys, used in turn
const keyhold::envelope::Context kContext = {{"service", "payments"}, {"tenant", "acme"}};

struct Options {
  double warmup = 1.0;
  double seconds = 3.0;
  std::vector<int> connections = {1, 16, 64};
  std::set<std::string> only;  // empty: everything
  bool keep = false;           // leave the set-up directory behind
  std::string keyhold;         // the keyhold binary; default: the one built with the bench
  bool wants(const std::string& what) const { return only.empty() || only.count(what) != 0; }
};

// The keyhold binary that makes the set-up and serves (--keyhold: to compare builds).
std::string& keyhold_path() {
  static std::string path = keyhold::testing::keyhold_binary();
  return path;
}

void check_ssl(bool ok, const std::string& what) {
  if (ok) return;
  char text[256] = "";
  unsigned long e = ERR_get_error();
  if (e != 0) ERR_error_string_n(e, text, sizeof text);
  ERR_clear_error();
  throw std::runtime_error("OpenSSL: " + what + " failed " + text);
}

// --- the set-up and the server -----------------------------------------------

keyhold::testing::ProcessResult keyhold_cli(const fs::path& config, std::vector<std::string> args) {
  args.insert(args.begin(), {keyhold_path(), "--config", config.string()});
  keyhold::testing::ProcessOptions options;
  options.env.emplace("KEYHOLD_PIN", std::nullopt);
  options.env.emplace("KEYHOLD_LOG", std::nullopt);
  options.env.emplace("KEYHOLD_CONFIG", std::nullopt);
  keyhold::testing::ProcessResult r = keyhold::testing::run_process(args, options);
  if (!r.ok()) throw std::runtime_error("keyhold " + args.at(3) + " failed: " + r.err);
  return r;
}

struct Setup {
  fs::path parent;  // removed at the end
  fs::path dir;
  fs::path config;
};

Setup make_setup() {
  Setup s;
  s.parent = keyhold::testing::make_temp_directory("keyhold-serve-bench");
  s.dir = s.parent / "dev";
  keyhold::testing::ProcessResult r =
      keyhold::testing::run_process({keyhold_path(), "init", "--dev", "--dir", s.dir.string()});
  if (!r.ok()) throw std::runtime_error("keyhold init --dev failed: " + r.err);
  s.config = s.dir / "keyhold.toml";
  keyhold_cli(s.config, {"kek", "create", kKek});
  keyhold_cli(s.config, {"ssh", "init-ca", kSshCa, "--key-type", "ec-p256"});
  // No rate limit: the bench is one identity asking as fast as it can.
  std::string text = keyhold::testing::read_file(s.config.string());
  std::size_t at = text.find("\n[server]\n");
  if (at == std::string::npos) throw std::runtime_error("keyhold init --dev made no [server] section");
  text.insert(at + std::strlen("\n[server]\n"), "rate_limit_per_second = 0\n");
  keyhold::testing::write_file(s.config.string(), text);
  return s;
}

// `keyhold --config CONFIG serve --listen 127.0.0.1:0`, its output in files.
class ServerProcess {
 public:
  explicit ServerProcess(const Setup& setup) {
    fs::path out = setup.parent / "serve.out";
    fs::path err = setup.parent / "serve.err";
    out_file_ = out;
    err_file_ = err;
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // no server left behind if the bench dies
      int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int n = ::open("/dev/null", O_RDONLY);
      if (o < 0 || e < 0 || n < 0) _exit(126);
      ::dup2(n, 0);
      ::dup2(o, 1);
      ::dup2(e, 2);
      ::unsetenv("KEYHOLD_PIN");
      ::unsetenv("KEYHOLD_LOG");
      ::unsetenv("KEYHOLD_CONFIG");
      const std::string& binary = keyhold_path();
      std::string config = setup.config.string();
      ::execl(binary.c_str(), binary.c_str(), "--config", config.c_str(), "serve", "--listen", "127.0.0.1:0",
              static_cast<char*>(nullptr));
      _exit(127);
    }
    const std::string marker = "listening on https://127.0.0.1:";
    for (auto deadline = Clock::now() + std::chrono::seconds(60); Clock::now() < deadline;) {
      std::string text = slurp(out_file_);
      std::size_t at = text.find(marker);
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        port_ = std::stoi(text.substr(at + marker.size()));
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("keyhold serve exited: " + slurp(err_file_));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("keyhold serve did not listen within 60 s: " + slurp(err_file_));
  }
  ~ServerProcess() { stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // SIGTERM and wait; returns the exit status (-1 when killed by a signal).
  int stop() {
    if (pid_ <= 0) return status_;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return status_;
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string err() const { return slurp(err_file_); }

  // A "VmHWM:    12345 kB" line of /proc/PID/status, in KiB.
  long status_kib(const std::string& field) const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
    }
    return -1;
  }
  // utime + stime, in seconds.
  double cpu_seconds() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(text.substr(text.rfind(')') + 2));  // after "PID (comm) "
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; fields >> field; ++i) {
      if (i == 14) utime = std::stoull(field);
      if (i == 15) {
        stime = std::stoull(field);
        break;
      }
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }

 private:
  static std::string slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  pid_t pid_ = -1;
  int status_ = 0;
  int port_ = 0;
  fs::path out_file_, err_file_;
};

// The whole machine's busy CPU time (all cores; /proc/stat), in seconds, and
// the load average: the machine may be shared, and the figures say by how much.
double machine_cpu_seconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return static_cast<double>(user + nice + system + irq + softirq + steal) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

double own_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return sec(usage.ru_utime) + sec(usage.ru_stime);
}

// --- the load client ---------------------------------------------------------

// The client side of mTLS as a service would have it: the admin certificate,
// trusting the dev CA, TLS 1.3, no session resumption.
class ClientContext {
 public:
  ClientContext(const fs::path& dir, int port) : port_(port) {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    check_ssl(ctx_ != nullptr, "SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(ctx_.get(), SSL_SESS_CACHE_OFF);
    check_ssl(SSL_CTX_use_certificate_chain_file(ctx_.get(), (dir / "admin.pem").c_str()) == 1,
              "the client certificate");
    check_ssl(SSL_CTX_use_PrivateKey_file(ctx_.get(), (dir / "admin-key.pem").c_str(), SSL_FILETYPE_PEM) == 1,
              "the client key");
    check_ssl(SSL_CTX_load_verify_locations(ctx_.get(), (dir / "ca.pem").c_str(), nullptr) == 1, "ca.pem");
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
  }
  SSL_CTX* get() const { return ctx_.get(); }
  int port() const { return port_; }

 private:
  CPtr<SSL_CTX, &SSL_CTX_free> ctx_;
  int port_;
};

struct Reply {
  int status = 0;
  std::string body;
};

// One keep-alive connection: a TCP socket (TCP_NODELAY) and a TLS session.
class Connection {
 public:
  explicit Connection(const ClientContext& context) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(context.port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      int e = errno;
      ::close(fd_);
      throw std::runtime_error(std::string("connect failed: ") + std::strerror(e));
    }
    ssl_.reset(SSL_new(context.get()));
    if (!ssl_ || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), "127.0.0.1") != 1 ||
        SSL_set_fd(ssl_.get(), fd_) != 1 || SSL_connect(ssl_.get()) != 1) {
      ::close(fd_);
      check_ssl(false, "the TLS handshake");
    }
  }
  ~Connection() {
    if (ssl_) SSL_shutdown(ssl_.get());
    ssl_.reset();
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Writes one whole request and reads one response (Content-Length framed).
  Reply exchange(const std::string& request) {
    std::size_t written = 0;
    while (written < request.size()) {
      int n = SSL_write(ssl_.get(), request.data() + written, static_cast<int>(request.size() - written));
      if (n <= 0) throw std::runtime_error("SSL_write failed");
      written += static_cast<std::size_t>(n);
    }
    std::size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) fill();
    Reply reply;
    if (buffer_.compare(0, 9, "HTTP/1.1 ") != 0) throw std::runtime_error("not an HTTP/1.1 response");
    reply.status = std::atoi(buffer_.c_str() + 9);
    std::size_t length = 0;
    std::string head = buffer_.substr(0, head_end);
    std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
    std::size_t cl = head.find("\r\ncontent-length:");
    if (cl != std::string::npos) length = std::stoul(head.substr(cl + 17));
    if (head.find("\r\nconnection: close") != std::string::npos) closing_ = true;
    std::size_t body_start = head_end + 4;
    while (buffer_.size() < body_start + length) fill();
    reply.body = buffer_.substr(body_start, length);
    buffer_.erase(0, body_start + length);
    return reply;
  }
  bool closing() const { return closing_; }

 private:
  void fill() {
    char chunk[16384];
    int n = SSL_read(ssl_.get(), chunk, sizeof chunk);
    if (n <= 0) throw std::runtime_error("the server closed the connection");
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
  int fd_ = -1;
  CPtr<SSL, &SSL_free> ssl_;
  std::string buffer_;
  bool closing_ = false;
};

std::string post(const std::string& path, const Json& body) {
  std::string text = body.dump();
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(text.size()) + "\r\n\r\n" + text;
}

// --- measuring ---------------------------------------------------------------

// One operation, done by one worker thread; throws when it fails.
using Operation = std::function<void()>;
// Made on the worker's own thread (connections are opened there).
using WorkerFactory = std::function<Operation(int worker)>;

struct Figures {
  std::uint64_t count = 0;
  double seconds = 0;
  double rate = 0;
  double p50_ms = 0, p99_ms = 0;
  std::uint64_t errors = 0;
  std::string first_error;
  double server_cores = -1, client_cores = -1;  // CPU used during the window, in cores
  double other_cores = -1;                      // ... by everything else on the machine
  double per_sync = -1;                         // requests per audit fdatasync
};

// Runs `workers` threads doing operations back to back: a warm-up, then the
// measured window; the operations that complete inside the window count,
// with their latencies (from the start of the request to its last byte).
// around(true/false) is called as the window opens and closes.
Figures measure(int workers, const WorkerFactory& factory, const Options& options,
                const std::function<void(bool)>& around = {}) {
  std::atomic<int> phase{0};  // 0 warm-up, 1 measuring, 2 stop
  std::atomic<int> ready{0};
  std::mutex mutex;
  std::vector<float> latencies;  // microseconds
  Figures f;
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] {
      std::vector<float> mine;
      mine.reserve(1 << 16);
      std::uint64_t errors = 0;
      std::string first_error;
      Operation op;
      try {
        op = factory(i);
      } catch (const std::exception& e) {
        first_error = e.what();
        ++errors;
      }
      ready.fetch_add(1);
      while (op && phase.load(std::memory_order_relaxed) != 2) {
        Clock::time_point start = Clock::now();
        try {
          op();
        } catch (const std::exception& e) {
          if (first_error.empty()) first_error = e.what();
          ++errors;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
        if (phase.load(std::memory_order_relaxed) == 1) {
          mine.push_back(std::chrono::duration<float, std::micro>(Clock::now() - start).count());
        }
      }
      std::lock_guard lock(mutex);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      f.errors += errors;
      if (f.first_error.empty()) f.first_error = first_error;
    });
  }
  Clock::time_point open, close;
  try {
    while (ready.load() < workers) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::duration<double>(options.warmup));
    if (around) around(true);
    open = Clock::now();
    phase.store(1);
    std::this_thread::sleep_for(std::chrono::duration<double>(options.seconds));
    phase.store(2);
    close = Clock::now();
    if (around) around(false);
  } catch (...) {
    phase.store(2);
    for (std::thread& t : threads) t.join();
    throw;
  }
  for (std::thread& t : threads) t.join();
  f.seconds = std::chrono::duration<double>(close - open).count();
  f.count = latencies.size();
  f.rate = static_cast<double>(f.count) / f.seconds;
  if (!latencies.empty()) {
    auto at = [&](double q) {
      std::size_t k =
          std::min(latencies.size() - 1, static_cast<std::size_t>(q * static_cast<double>(latencies.size())));
      std::nth_element(latencies.begin(), latencies.begin() + static_cast<std::ptrdiff_t>(k), latencies.end());
      return latencies[k] / 1000.0;
    };
    f.p50_ms = at(0.50);
    f.p99_ms = at(0.99);
  }
  return f;
}

// --- the four operations -----------------------------------------------------

std::string pem_of_csr(const X509_REQ* req) {
  CPtr<BIO, &BIO_free> bio(BIO_new(BIO_s_mem()));
  check_ssl(bio && PEM_write_bio_X509_REQ(bio.get(), req) == 1, "PEM encoding");
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

void free_extension_stack(STACK_OF(X509_EXTENSION)* stack) { sk_X509_EXTENSION_free(stack); }

// A P-256 key and a CSR for host (CN and a DNS SAN), as a service sends it.
std::string make_csr(const std::string& host) {
  CPtr<EVP_PKEY, &EVP_PKEY_free> key(EVP_EC_gen("P-256"));
  check_ssl(key != nullptr, "P-256 key generation");
  CPtr<X509_REQ, &X509_REQ_free> req(X509_REQ_new());
  check_ssl(req && X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) == 1, "X509_REQ_set_version");
  check_ssl(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req.get()), "CN", MBSTRING_UTF8,
                                       reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0) == 1,
            "the subject");
  check_ssl(X509_REQ_set_pubkey(req.get(), key.get()) == 1, "X509_REQ_set_pubkey");
  std::string san = "DNS:" + host;
  CPtr<STACK_OF(X509_EXTENSION), &free_extension_stack> extensions(sk_X509_EXTENSION_new_null());
  CPtr<X509_EXTENSION, &X509_EXTENSION_free> ext(
      X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str()));
  check_ssl(extensions && ext && sk_X509_EXTENSION_push(extensions.get(), ext.get()) > 0, "subjectAltName");
  check_ssl(X509_REQ_add_extensions(req.get(), extensions.get()) == 1, "X509_REQ_add_extensions");
  check_ssl(X509_REQ_sign(req.get(), key.get(), EVP_sha256()) > 0, "X509_REQ_sign");
  return pem_of_csr(req.get());
}

// An ed25519 user key, as the authorized_keys line `ssh-keygen -t ed25519` writes.
std::string make_user_key_line(const std::string& comment) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) throw std::runtime_error("OpenSSL: Ed25519 key generation failed");
  keyhold::crypto::PublicKey public_key(key);
  return keyhold::ssh::authorized_keys_line(public_key, comment) + "\n";
}

struct Case {
  std::string name;                       // "decrypt"
  std::vector<std::string> requests;      // HTTP requests, used in turn
  std::function<void(int n)> in_process;  // one library call with input n
};

std::vector<Case> make_cases(keyhold::app::Application& app, const Options& options) {
  std::vector<Case> cases;
  std::string kek = kKek;
  // Application builds its parts lazily and not thread-safely: build them
  // here, before any worker thread, as keyhold serve does at start-up.
  app.envelope();
  app.ssh_authority();
  app.authority();
  if (options.wants("datakey")) {
    Case c{"datakey", {}, {}};
    c.requests.push_back(post("/v1/keks/" + kek + "/datakey", {{"context", kContext}}));
    c.in_process = [&app, kek](int) { app.envelope().generate_data_key(kek, kContext); };
    cases.push_back(std::move(c));
  }
  if (options.wants("decrypt") || options.wants("handshake")) {
    auto ciphertext =
        std::make_shared<keyhold::envelope::Ciphertext>(app.envelope().generate_data_key(kek, kContext).ciphertext);
    Case c{"decrypt", {}, {}};
    c.requests.push_back(post("/v1/keks/" + kek + "/decrypt",
                              {{"ciphertext", keyhold::envelope::to_text(*ciphertext)}, {"context", kContext}}));
    c.in_process = [&app, ciphertext](int) { app.envelope().decrypt(*ciphertext, kContext); };
    cases.push_back(std::move(c));
  }
  if (options.wants("ssh")) {
    auto keys = std::make_shared<std::vector<std::string>>();
    Case c{"ssh sign", {}, {}};
    for (int i = 0; i < kPool; ++i) {
      keys->push_back(make_user_key_line("user" + std::to_string(i) + "@bench"));
      c.requests.push_back(post(std::string("/v1/ssh/") + kSshCa + "/sign", {{"public_key", keys->back()},
                                                                             {"type", "user"},
                                                                             {"key_id", "user" + std::to_string(i)},
                                                                             {"principals", {"alice"}}}));
    }
    c.in_process = [&app, keys](int n) {
      keyhold::ssh::SignInput input;
      input.ca = kSshCa;
      input.public_key = (*keys)[static_cast<std::size_t>(n % kPool)];
      input.kind = keyhold::ssh::CertificateKind::User;
      input.key_id = "user" + std::to_string(n % kPool);
      input.principals = {"alice"};
      app.ssh_authority().sign(input);
    };
    cases.push_back(std::move(c));
  }
  if (options.wants("pki")) {
    auto csrs = std::make_shared<std::vector<std::string>>();
    Case c{"pki issue", {}, {}};
    for (int i = 0; i < kPool; ++i) {
      csrs->push_back(make_csr("host-" + std::to_string(i) + ".serve-bench.test"));
      c.requests.push_back(
          post(std::string("/v1/pki/") + kPkiCa + "/issue", {{"profile", "server"}, {"csr", csrs->back()}}));
    }
    c.in_process = [&app, csrs](int n) {
      keyhold::pki::IssueRequest request;
      request.ca = kPkiCa;
      request.profile = "server";
      request.csr = (*csrs)[static_cast<std::size_t>(n % kPool)];
      app.authority().issue(request);
    };
    cases.push_back(std::move(c));
  }
  return cases;
}

// A worker on a keep-alive connection, reconnecting if the server closes it.
WorkerFactory http_worker(const ClientContext& context, const std::vector<std::string>& requests) {
  return [&context, &requests](int worker) -> Operation {
    auto connection = std::make_shared<std::unique_ptr<Connection>>(std::make_unique<Connection>(context));
    auto n = std::make_shared<std::size_t>(static_cast<std::size_t>(worker) * 7919);
    return [&context, &requests, connection, n] {
      if (!*connection) *connection = std::make_unique<Connection>(context);
      Reply reply;
      try {
        reply = (*connection)->exchange(requests[(*n)++ % requests.size()]);
      } catch (...) {
        connection->reset();
        throw;
      }
      if ((*connection)->closing()) connection->reset();
      if (reply.status != 200) throw std::runtime_error("HTTP " + std::to_string(reply.status) + ": " + reply.body);
    };
  };
}

// A new connection (a full mTLS handshake) for each request.
WorkerFactory new_connection_worker(const ClientContext& context, const std::string& request) {
  return [&context, &request](int) -> Operation {
    return [&context, &request] {
      Connection connection(context);
      Reply reply = connection.exchange(request);
      if (reply.status != 200) throw std::runtime_error("HTTP " + std::to_string(reply.status) + ": " + reply.body);
    };
  };
}

WorkerFactory library_worker(const std::function<void(int)>& call) {
  return [&call](int worker) -> Operation {
    auto n = std::make_shared<int>(worker * 7919);
    return [&call, n] { call((*n)++); };
  };
}

// keyhold_audit_syncs_total from GET /metrics; -1 when it is not there.
double audit_syncs(const ClientContext& context) {
  Connection connection(context);
  Reply reply = connection.exchange("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const std::string name = "\nkeyhold_audit_syncs_total ";
  std::size_t at = reply.body.find(name);
  if (reply.status != 200 || at == std::string::npos) return -1;
  return std::stod(reply.body.substr(at + name.size()));
}

// Measures through the server, with its CPU, the client's and the audit syncs.
Figures measure_server(int workers, const WorkerFactory& factory, const Options& options, const ServerProcess& server,
                       const ClientContext& context) {
  double server_cpu = 0, client_cpu = 0, machine_cpu = 0, syncs = 0;
  Clock::time_point open;
  double cores_server = 0, cores_client = 0, cores_machine = 0, sync_count = 0;
  Figures f = measure(workers, factory, options, [&](bool opening) {
    if (opening) {
      syncs = audit_syncs(context);
      server_cpu = server.cpu_seconds();
      client_cpu = own_cpu_seconds();
      machine_cpu = machine_cpu_seconds();
      open = Clock::now();
    } else {
      double window = std::chrono::duration<double>(Clock::now() - open).count();
      cores_server = (server.cpu_seconds() - server_cpu) / window;
      cores_client = (own_cpu_seconds() - client_cpu) / window;
      cores_machine = (machine_cpu_seconds() - machine_cpu) / window;
      double after = audit_syncs(context);
      if (syncs >= 0 && after >= 0) sync_count = after - syncs - 1;  // less the /metrics request's own record
    }
  });
  f.server_cores = cores_server;
  f.client_cores = cores_client;
  f.other_cores = std::max(0.0, cores_machine - cores_server - cores_client);
  if (sync_count > 0) f.per_sync = static_cast<double>(f.count) / sync_count;
  return f;
}

Figures measure_library(int workers, const WorkerFactory& factory, const Options& options) {
  double client_cpu = 0, machine_cpu = 0;
  Clock::time_point open;
  double cores = 0, cores_machine = 0;
  Figures f = measure(workers, factory, options, [&](bool opening) {
    if (opening) {
      client_cpu = own_cpu_seconds();
      machine_cpu = machine_cpu_seconds();
      open = Clock::now();
    } else {
      double window = std::chrono::duration<double>(Clock::now() - open).count();
      cores = (own_cpu_seconds() - client_cpu) / window;
      cores_machine = (machine_cpu_seconds() - machine_cpu) / window;
    }
  });
  f.client_cores = cores;
  f.other_cores = std::max(0.0, cores_machine - cores);
  return f;
}

void print_point(const std::string& what, int workers, const Figures& f) {
  std::printf("  %-34s %3d  %10s/s  p50 %7.2f ms  p99 %7.2f ms", what.c_str(), workers, with_commas(f.rate).c_str(),
              f.p50_ms, f.p99_ms);
  // CPU per request: steadier than the rate when others share the machine.
  auto per_request = [&](double cores) { return f.rate > 0 ? cores * 1e6 / f.rate : 0; };
  if (f.server_cores >= 0)
    std::printf("  server %.2f cores (%.0f us/req)", f.server_cores, per_request(f.server_cores));
  if (f.client_cores >= 0) {
    std::printf("  %s %.2f cores (%.0f us/req)", f.server_cores >= 0 ? "client" : "bench", f.client_cores,
                per_request(f.client_cores));
  }
  if (f.other_cores >= 0) std::printf("  others %.2f cores", f.other_cores);
  if (f.per_sync > 0) std::printf("  %.1f req/sync", f.per_sync);
  if (f.errors > 0)
    std::printf("  %llu errors (first: %s)", static_cast<unsigned long long>(f.errors), f.first_error.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ',')) out.push_back(std::stoi(item));
  return out;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--seconds") {
      o.seconds = std::stod(value());
    } else if (a == "--warmup") {
      o.warmup = std::stod(value());
    } else if (a == "--connections") {
      o.connections = parse_list(value());
    } else if (a == "--only") {
      std::stringstream s(value());
      std::string item;
      while (std::getline(s, item, ',')) o.only.insert(item);
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--keyhold") {
      o.keyhold = value();
    } else {
      throw std::runtime_error("unknown argument " + a +
                               " (--seconds S --warmup S --connections 1,16,64 --only "
                               "datakey,decrypt,ssh,pki,handshake --keep --keyhold PATH)");
    }
  }
  return o;
}

const char* verdict(bool met) { return met ? "met" : "MISSED"; }

}  // namespace

static int run(int argc, char** argv) {
  Options options = parse_options(argc, argv);
  if (!options.keyhold.empty()) keyhold_path() = options.keyhold;
  Setup setup = make_setup();
  std::printf("load average at start: %s\n", load_average().c_str());
  std::printf("keyhold: %s\n", keyhold_path().c_str());
  std::printf("set-up: %s (keyhold init --dev, KEK '%s', SSH CA '%s' ec-p256, CA '%s' ec-p256, no rate limit)\n",
              setup.dir.c_str(), kKek, kSshCa, kPkiCa);
  // The library warns on stderr for every certificate signed under a
  // development_only profile, as the server does (into its own stderr file):
  // this process's stderr goes to a file too while the library runs.
  int saved_stderr = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
  int library_log = ::open((setup.parent / "library.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (library_log >= 0) ::dup2(library_log, 2);
  int status = 0;
  {
    // The library in this process, on the same keyhold.toml (token and store),
    // with encryption counts reserved 256 at a time as keyhold serve does.
    keyhold::app::Application app(keyhold::app::load_config(setup.config));
    app.set_envelope_reservation_batch(256);
    std::vector<Case> cases = make_cases(app, options);

    ServerProcess server(setup);
    ClientContext context(setup.dir, server.port());
    std::printf("keyhold serve: pid %d, https://127.0.0.1:%d; %.1f s warm-up, %.1f s measured per point\n",
                static_cast<int>(server.pid()), server.port(), options.warmup, options.seconds);
    std::printf("  %-34s %3s  %12s  %14s  %14s\n", "operation", "N", "rate", "latency", "");

    struct Row {
      std::string name;
      std::map<int, Figures> server, library;
    };
    std::vector<Row> rows;
    Figures handshake_1, handshake_16;
    bool handshakes = options.wants("handshake");
    for (const Case& c : cases) {
      bool load = options.wants(c.name == "ssh sign" ? "ssh" : c.name == "pki issue" ? "pki" : c.name);
      if (!load) continue;
      Row row{c.name, {}, {}};
      WorkerFactory library = library_worker(c.in_process);
      WorkerFactory http = http_worker(context, c.requests);
      for (int n : options.connections) {
        row.library[n] = measure_library(n, library, options);
        print_point(c.name + ", in-process threads", n, row.library[n]);
        row.server[n] = measure_server(n, http, options, server, context);
        print_point(c.name + ", keyhold serve connections", n, row.server[n]);
      }
      rows.push_back(std::move(row));
    }
    if (handshakes) {
      const Case* decrypt = nullptr;
      for (const Case& c : cases) {
        if (c.name == "decrypt") decrypt = &c;
      }
      WorkerFactory fresh = new_connection_worker(context, decrypt->requests.at(0));
      handshake_1 = measure_server(1, fresh, options, server, context);
      print_point("new connection + decrypt, clients", 1, handshake_1);
      handshake_16 = measure_server(16, fresh, options, server, context);
      print_point("new connection + decrypt, clients", 16, handshake_16);
    }
    long hwm = server.status_kib("VmHWM");
    long rss = server.status_kib("VmRSS");
    int threads = -1;
    {
      std::ifstream in("/proc/" + std::to_string(server.pid()) + "/status");
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("Threads:", 0) == 0) threads = std::stoi(line.substr(8));
      }
    }
    int exit_status = server.stop();

    // The summary.
    std::printf("\nkeyhold serve beside the library in-process (same run, same token and store)\n");
    std::printf("  %-10s %3s  %12s %9s %9s  %12s  %6s\n", "operation", "N", "serve/s", "p50 ms", "p99 ms",
                "in-process/s", "ratio");
    std::uint64_t errors = 0;
    for (const Row& row : rows) {
      double best = 0;
      for (const auto& [n, f] : row.library) best = std::max(best, f.rate);
      for (const auto& [n, f] : row.server) {
        const Figures& lib = row.library.at(n);
        std::printf("  %-10s %3d  %12s %9.2f %9.2f  %12s  %6.2f\n", row.name.c_str(), n, with_commas(f.rate).c_str(),
                    f.p50_ms, f.p99_ms, with_commas(lib.rate).c_str(), lib.rate > 0 ? f.rate / lib.rate : 0);
        errors += f.errors + lib.errors;
      }
      std::printf("  %-10s      best in-process rate %s/s\n", row.name.c_str(), with_commas(best).c_str());
    }
    if (handshakes) {
      std::printf(
          "  new TLS handshakes (a connection per decrypt request): %s/s with 1 client, %s/s with 16 (p99 %.2f ms)\n",
          with_commas(handshake_1.rate).c_str(), with_commas(handshake_16.rate).c_str(), handshake_16.p99_ms);
      errors += handshake_1.errors + handshake_16.errors;
    }
    std::printf("  server peak RSS (VmHWM) %.1f MiB; RSS at the end %.1f MiB; %d threads\n",
                static_cast<double>(hwm) / 1024.0, static_cast<double>(rss) / 1024.0, threads);
    std::printf("  server exit status after SIGTERM: %d; load average at the end: %s\n", exit_status,
                load_average().c_str());

    std::printf("\nGoals (2-core machine)\n");
    for (const Row& row : rows) {
      if (row.name != "decrypt" || row.server.count(64) == 0) continue;
      const Figures& f = row.server.at(64);
      double best = 0;
      for (const auto& [n, lib] : row.library) best = std::max(best, lib.rate);
      double at64 = row.library.at(64).rate;
      std::printf("  decrypt >= 10,000 requests/s at 64 connections: %s/s  %s\n", with_commas(f.rate).c_str(),
                  verdict(f.rate >= 10000));
      std::printf(
          "  decrypt >= 0.5 of the in-process rate: %.2f of the best in-process rate (%s/s)  %s;"
          " %.2f of the in-process rate at 64 threads (%s/s)  %s\n",
          f.rate / best, with_commas(best).c_str(), verdict(f.rate >= 0.5 * best), f.rate / at64,
          with_commas(at64).c_str(), verdict(f.rate >= 0.5 * at64));
      std::printf("  decrypt p99 <= 10 ms at 64 connections: %.2f ms  %s\n", f.p99_ms, verdict(f.p99_ms <= 10.0));
    }
    for (const Row& row : rows) {
      if (row.name == "decrypt" || row.server.count(64) == 0) continue;
      const Figures& f = row.server.at(64);
      std::printf("  (%s p99 at 64 connections: %.2f ms  %s)\n", row.name.c_str(), f.p99_ms, verdict(f.p99_ms <= 10.0));
    }
    std::printf("  server RSS under 100 MiB: peak %.1f MiB  %s\n", static_cast<double>(hwm) / 1024.0,
                verdict(hwm >= 0 && hwm < 100 * 1024));
    if (errors > 0) {
      std::printf("errors: %llu (see the lines above)\n", static_cast<unsigned long long>(errors));
      status = 1;
    }
    if (exit_status != 0) {
      std::printf("keyhold serve's stderr:\n%s\n", server.err().c_str());
      status = 1;
    }
  }
  if (saved_stderr >= 0) ::dup2(saved_stderr, 2);
  if (options.keep) {
    std::printf("kept %s\n", setup.parent.c_str());
  } else {
    std::error_code ec;
    fs::remove_all(setup.parent, ec);
  }
  return status;
}

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows when redirected to a file
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::printf("serve_bench: %s\n", e.what());
    return 1;
  }
}
