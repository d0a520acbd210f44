// keyhold serve under load (concurrency, audit accounting, signals, slow clients):
// the real binary with the DevSetup token, spoken to by a small in-process
// HTTPS client (OpenSSL, keep-alive HTTP/1.1) since thousands of curl runs
// would be too slow.
//
// Each test runs its own server on a configuration variant of the DevSetup
// with its own policy file and its own fresh audit log (so that records can
// be counted exactly) and no rate limit (the load comes from one identity).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "keyhold/core/encoding.hpp"
#include "support/dev_setup.hpp"
#include "support/serve_fixture.hpp"

namespace keyhold::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- set-up -----------------------------------------------------------------

// The KEKs the tests use, made once while no server runs (the CLI and the
// server must not create token objects at the same time).
void prepare_keks() {
  static const bool done = [] {
    for (const char* name : {"load", "hup"}) {
      ProcessResult r = keyhold({"kek", "create", name});
      if (!r.ok()) throw std::runtime_error(std::string("keyhold kek create ") + name + " failed: " + r.err);
    }
    return true;
  }();
  (void)done;
}

// Every operation of the closed list; a policy for the admin identity with
// all of them except those in `except`, on the KEKs load and hup only (so
// that any other KEK is denied).
std::string admin_policy(const std::set<std::string>& except) {
  static const std::vector<std::string> all = {"pki.issue",   "pki.revoke",  "pki.read",    "ssh.sign",
                                               "ssh.revoke",  "ssh.read",    "kek.datakey", "kek.encrypt",
                                               "kek.decrypt", "kek.rewrap",  "kek.rotate",  "kek.read",
                                               "keys.create", "keys.read",   "audit.read"};
  std::string operations;
  for (const std::string& op : all) {
    if (except.count(op) != 0) continue;
    operations += (operations.empty() ? "\"" : ", \"") + op + "\"";
  }
  return "[[rule]]\n"
         "name = \"load-admin\"\n"
         "identities = [\"admin\"]\n"
         "operations = [" + operations + "]\n"
         "resources = [\"ca:*\", \"ssh-ca:*\", \"kek:load\", \"kek:hup\", \"key:*\", \"audit:*\"]\n";
}

struct ServerConfig {
  fs::path config;
  fs::path policy;
  fs::path audit_log;
};

// A configuration variant NAME.toml in the set-up's directory: its own policy
// file (with policy_text) and its own fresh audit log, no rate limit, and
// extra [server] lines ([server] is the last table of the dev configuration).
// Relative paths resolve against the variant's directory, the set-up's.
ServerConfig server_config(const std::string& name, const std::string& policy_text, const std::string& extra = "") {
  prepare_keks();
  ServerConfig c;
  c.policy = DevSetup::get().dir / (name + "-policy.toml");
  c.audit_log = DevSetup::get().dir / (name + "-audit.log");
  write_file(c.policy.string(), policy_text);
  std::error_code ec;
  fs::remove(c.audit_log, ec);
  c.config = config_variant(name, "policy_file = \"policy.toml\"\naudit_log = \"audit.log\"\n",
                            "policy_file = \"" + c.policy.filename().string() + "\"\naudit_log = \"" +
                                c.audit_log.filename().string() + "\"\nrate_limit_per_second = 0\n" + extra);
  return c;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

ProcessResult audit_verify(const fs::path& log) { return keyhold({"audit", "verify", "--log", log.string()}); }

// Waits until pred() holds, polling, for at most limit.
template <class Pred>
bool eventually(std::chrono::milliseconds limit, Pred pred, std::chrono::milliseconds step = 50ms) {
  auto deadline = Clock::now() + limit;
  while (true) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

// Failures seen on client threads, reported after they are joined (bounded).
class Failures {
 public:
  void add(std::string what) {
    std::lock_guard lock(mutex_);
    ++count_;
    if (list_.size() < 20) list_.push_back(std::move(what));
  }
  std::size_t count() const {
    std::lock_guard lock(mutex_);
    return count_;
  }
  std::string text() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const std::string& s : list_) out += "  " + s + "\n";
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::size_t count_ = 0;
  std::vector<std::string> list_;
};

// ---- a small HTTPS client ---------------------------------------------------------

// A write to a connection the server closed must fail with EPIPE, not kill the
// test. A handler (not SIG_IGN) so that the processes the tests start get the
// default disposition back at exec.
void no_sigpipe() {
  static const bool done = [] {
    struct sigaction action {};
    action.sa_handler = [](int) {};
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGPIPE, &action, nullptr);
    return true;
  }();
  (void)done;
}

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    out += (out.empty() ? "" : "; ") + std::string(buffer);
  }
  return out;
}

// The admin identity of the DevSetup, trusting its ca.pem, TLS 1.3.
class TlsClient {
 public:
  TlsClient() {
    no_sigpipe();
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (ctx_ == nullptr) throw std::runtime_error("SSL_CTX_new failed");
    const fs::path dir = DevSetup::get().dir;
    if (SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx_, (dir / "admin.pem").c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, (dir / "admin-key.pem").c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx_) != 1 || SSL_CTX_load_verify_locations(ctx_, (dir / "ca.pem").c_str(), nullptr) != 1) {
      std::string why = openssl_errors();
      SSL_CTX_free(ctx_);
      throw std::runtime_error("cannot set up the TLS client: " + why);
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  ~TlsClient() { SSL_CTX_free(ctx_); }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;
  SSL_CTX* get() const { return ctx_; }

 private:
  SSL_CTX* ctx_ = nullptr;
};

// A TCP connection to 127.0.0.1:port (fd -1 on failure), with send and
// receive timeouts so that nothing hangs for ever.
int tcp_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  timeval timeout{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Waits up to limit for the peer to close a plain socket (read returns 0 or
// an error); true when it did.
bool socket_closed_within(int fd, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, 100);
    if (ready > 0) {
      char buffer[512];
      ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    }
  }
  return false;
}

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  std::string request_id() const { return header("x-request-id"); }
  bool closes() const { return header("connection") == "close"; }
  Json json() const { return Json::parse(body, nullptr, false); }
};

// One keep-alive HTTP/1.1 connection over TLS 1.3 with the admin certificate.
// Responses are Content-Length framed (keyhold never chunks).
class Connection {
 public:
  // nullptr when the TCP connection or the handshake fails (why says which).
  static std::unique_ptr<Connection> open(const TlsClient& client, int port, std::string* why = nullptr) {
    int fd = tcp_connect(port);
    if (fd < 0) {
      if (why != nullptr) *why = std::string("connect: ") + std::strerror(errno);
      return nullptr;
    }
    std::unique_ptr<Connection> c(new Connection(fd, SSL_new(client.get())));
    if (c->ssl_ == nullptr || SSL_set_fd(c->ssl_, fd) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl_), "127.0.0.1") != 1 || SSL_connect(c->ssl_) != 1) {
      if (why != nullptr) *why = "TLS handshake: " + openssl_errors();
      ERR_clear_error();
      return nullptr;
    }
    return c;
  }
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool write_all(std::string_view data) {
    while (!data.empty()) {
      int n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
      if (n <= 0) {
        ERR_clear_error();
        return false;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Sends one request (a POST body as application/json) and reads its
  // response; nullopt when the response does not arrive complete.
  std::optional<Reply> request(const std::string& method, const std::string& target, const std::string& body = {}) {
    std::string text = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (method == "POST") {
      text += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    text += "\r\n" + body;
    if (!write_all(text)) return std::nullopt;
    return read_reply();
  }
  std::optional<Reply> get(const std::string& target) { return request("GET", target); }
  std::optional<Reply> post(const std::string& target, const Json& body) { return request("POST", target, body.dump()); }

  // Waits up to limit for the server to close the connection (without a
  // response); true when it did. Bytes that arrive meanwhile are kept in
  // unexpected().
  bool closed_within(std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      if (SSL_pending(ssl_) == 0) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
      }
      char buffer[4096];
      int n = SSL_read(ssl_, buffer, sizeof buffer);
      if (n > 0) {
        unexpected_.append(buffer, static_cast<std::size_t>(n));
        continue;
      }
      int error = SSL_get_error(ssl_, n);
      ERR_clear_error();
      if (error == SSL_ERROR_WANT_READ) continue;
      if (error == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      return true;  // close_notify, EOF or a reset
    }
    return false;
  }
  const std::string& unexpected() const { return unexpected_; }

 private:
  Connection(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}

  bool fill() {
    char buffer[16384];
    int n = SSL_read(ssl_, buffer, sizeof buffer);
    if (n <= 0) {
      ERR_clear_error();
      return false;
    }
    buffer_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }

  std::optional<Reply> read_reply() {
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    std::vector<std::string> head;
    for (std::size_t at = 0; at < end;) {
      std::size_t eol = buffer_.find("\r\n", at);
      if (eol == std::string::npos || eol > end) eol = end;
      head.push_back(buffer_.substr(at, eol - at));
      at = eol + 2;
    }
    Reply reply;
    if (head.empty() || head[0].rfind("HTTP/1.1 ", 0) != 0 || head[0].size() < 12) return std::nullopt;
    reply.status = std::stoi(head[0].substr(9, 3));
    for (std::size_t i = 1; i < head.size(); ++i) {
      std::size_t colon = head[i].find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string name = head[i].substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
      std::string value = head[i].substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      while (!value.empty() && value.back() == ' ') value.pop_back();
      reply.headers[name] = value;
    }
    std::string length = reply.header("content-length");
    if (length.empty()) return std::nullopt;  // keyhold always frames by Content-Length
    std::size_t size = std::stoul(length);
    buffer_.erase(0, end + 4);
    while (buffer_.size() < size) {
      if (!fill()) return std::nullopt;
    }
    reply.body = buffer_.substr(0, size);
    buffer_.erase(0, size);
    return reply;
  }

  int fd_;
  SSL* ssl_;
  std::string buffer_;
  std::string unexpected_;
};

bool is_request_id(const std::string& id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::string random_base64(std::mt19937_64& random, std::size_t size) {
  std::vector<std::uint8_t> bytes(size);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(random());
  return to_base64(bytes);
}

// ---- 1 + 5: concurrency, exact audit accounting, tampering, metrics --------------

enum class Kind { DataKey, Encrypt, Decrypt, ReadKek, Health, Denied, NotFound };

struct Expected {
  const char* operation;
  const char* outcome;
  const char* error_code;
};

Expected expected_record(Kind kind) {
  switch (kind) {
    case Kind::DataKey: return {"kek.datakey", "allowed", ""};
    case Kind::Encrypt: return {"kek.encrypt", "allowed", ""};
    case Kind::Decrypt: return {"kek.decrypt", "allowed", ""};
    case Kind::ReadKek: return {"kek.read", "allowed", ""};
    case Kind::Health: return {"health", "allowed", ""};
    case Kind::Denied: return {"kek.read", "denied", "permission_denied"};
    case Kind::NotFound: return {"unknown", "failed", "not_found"};
  }
  return {"", "", ""};
}

// Request i of a thread: 2 in 10 datakey, 2 encrypt, 3 decrypt (of the
// thread's own ciphertexts), 1 GET kek, 1 health, and 1 in 20 each a denied
// GET of a KEK the policy does not name and an unknown path.
Kind kind_of(int i) {
  switch (i % 10) {
    case 0:
    case 1: return Kind::DataKey;
    case 2:
    case 3: return Kind::Encrypt;
    case 4:
    case 5:
    case 6: return Kind::Decrypt;
    case 7: return Kind::ReadKek;
    case 8: return Kind::Health;
    default: return i % 20 == 9 ? Kind::Denied : Kind::NotFound;
  }
}

struct Sent {
  Kind kind;
  std::string request_id;
  std::string context;  // the thread's encryption context value, for the record
};

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

// What someone who can write the log but has no audit key can do: recompute
// "prev" and "hash" of every line from index `from` on (log.hpp's format).
void rechain(std::vector<std::string>& lines, std::size_t from) {
  const std::string prev_key = ",\"prev\":\"";
  const std::string hash_key = ",\"hash\":\"";
  for (std::size_t k = from; k < lines.size(); ++k) {
    std::string& line = lines[k];
    if (k > 0) {
      const std::string& before = lines[k - 1];
      std::string prev = before.substr(before.rfind(hash_key) + hash_key.size(), 64);
      line.replace(line.rfind(prev_key) + prev_key.size(), 64, prev);
    }
    std::string payload = line.substr(0, line.rfind(hash_key));
    line = payload + hash_key + sha256_hex(payload) + "\"}";
  }
}

// The edit of a copy of the audit log that verify must report at the given line.
void expect_tamper_detected(const ServerConfig& c, const std::string& what, const std::vector<std::string>& lines,
                            std::size_t bad_line, const std::string& problem = "") {
  fs::path copy = c.audit_log.parent_path() / ("tampered-" + what + ".log");
  write_file(copy.string(), joined(lines));
  ProcessResult r = audit_verify(copy);
  EXPECT_NE(r.exit_code, 0) << what << ": " << r.out << r.err;
  EXPECT_NE(r.err.find("line " + std::to_string(bad_line) + ":"), std::string::npos)
      << what << ": expected line " << bad_line << " named in: " << r.err;
  EXPECT_NE(r.err.find(problem), std::string::npos) << what << ": expected '" << problem << "' in: " << r.err;
}

TEST(ServeLoad, ConcurrentClientsLeaveExactlyOneVerifiableAuditRecordPerRequest) {
  constexpr int kThreads = 16;
  constexpr int kRequestsPerThread = 500;
  ServerConfig c = server_config("concurrency", admin_policy({}));
  auto server = ServeProcess::start(c.config);
  TlsClient client;
  Failures failures;
  std::vector<std::vector<Sent>> sent(kThreads);

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 random(static_cast<std::uint64_t>(t) + 1);
      const std::string tag = "t" + std::to_string(t);
      const Json context = {{"thread", tag}};
      std::vector<std::pair<std::string, std::string>> mine;  // ciphertext, plaintext (base64)
      std::unique_ptr<Connection> connection;
      for (int i = 0; i < kRequestsPerThread; ++i) {
        if (!connection) {
          std::string why;
          connection = Connection::open(client, server->port(), &why);
          if (!connection) {
            failures.add(tag + ": cannot connect: " + why);
            return;
          }
        }
        Kind kind = kind_of(i);
        std::optional<Reply> reply;
        std::string expected_plaintext;
        switch (kind) {
          case Kind::DataKey:
            reply = connection->post("/v1/keks/load/datakey", {{"context", context}});
            break;
          case Kind::Encrypt:
            expected_plaintext = random_base64(random, 1 + random() % 200);
            reply = connection->post("/v1/keks/load/encrypt", {{"plaintext", expected_plaintext}, {"context", context}});
            break;
          case Kind::Decrypt: {
            if (mine.empty()) {
              failures.add(tag + " request " + std::to_string(i) + ": nothing to decrypt");
              continue;
            }
            const auto& [ciphertext, plaintext] = mine[random() % mine.size()];
            expected_plaintext = plaintext;
            reply = connection->post("/v1/keks/load/decrypt", {{"ciphertext", ciphertext}, {"context", context}});
            break;
          }
          case Kind::ReadKek: reply = connection->get("/v1/keks/load"); break;
          case Kind::Health: reply = connection->get("/v1/health"); break;
          case Kind::Denied: reply = connection->get("/v1/keks/not-in-the-policy"); break;
          case Kind::NotFound: reply = connection->get("/v1/no-such-path"); break;
        }
        const std::string where = tag + " request " + std::to_string(i);
        if (!reply) {
          failures.add(where + ": no complete response");
          connection.reset();
          continue;
        }
        if (!is_request_id(reply->request_id())) failures.add(where + ": bad X-Request-Id '" + reply->request_id() + "'");
        sent[static_cast<std::size_t>(t)].push_back({kind, reply->request_id(), tag});
        if (reply->closes()) {
          failures.add(where + ": the server closed the keep-alive connection");
          connection.reset();
        }
        Json body = reply->json();
        int want = kind == Kind::Denied ? 403 : kind == Kind::NotFound ? 404 : 200;
        if (reply->status != want || body.is_discarded()) {
          failures.add(where + ": status " + std::to_string(reply->status) + " (want " + std::to_string(want) +
                       "): " + reply->body);
          continue;
        }
        switch (kind) {
          case Kind::DataKey: {
            auto plaintext = from_base64(body.value("plaintext", ""));
            std::string ciphertext = body.value("ciphertext", "");
            if (!plaintext || plaintext->size() != 32 || ciphertext.rfind("kh1:", 0) != 0) {
              failures.add(where + ": bad data key: " + reply->body);
            } else {
              mine.emplace_back(ciphertext, body["plaintext"].get<std::string>());
            }
            break;
          }
          case Kind::Encrypt: {
            std::string ciphertext = body.value("ciphertext", "");
            if (ciphertext.rfind("kh1:", 0) != 0) {
              failures.add(where + ": bad ciphertext: " + reply->body);
            } else {
              mine.emplace_back(ciphertext, expected_plaintext);
            }
            break;
          }
          case Kind::Decrypt:
            if (body.value("plaintext", "") != expected_plaintext) failures.add(where + ": wrong plaintext");
            break;
          case Kind::ReadKek:
            if (body.value("name", "") != "load") failures.add(where + ": " + reply->body);
            break;
          case Kind::Health:
            if (body.value("status", "") != "ok") failures.add(where + ": " + reply->body);
            break;
          case Kind::Denied:
          case Kind::NotFound: {
            const char* code = kind == Kind::Denied ? "permission_denied" : "not_found";
            if (!body.contains("error") || body["error"].value("code", "") != code ||
                body["error"].value("request_id", "") != reply->request_id()) {
              failures.add(where + ": " + reply->body);
            }
            break;
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.count(), 0u) << failures.text();

  std::map<Kind, std::size_t> per_kind;
  std::size_t total = 0;
  for (const auto& list : sent) {
    for (const Sent& s : list) ++per_kind[s.kind];
    total += list.size();
  }
  ASSERT_EQ(total, static_cast<std::size_t>(kThreads * kRequestsPerThread));

  // 5: the metrics count what was sent (a fresh process: exactly).
  std::string metrics_id;
  {
    auto connection = Connection::open(client, server->port());
    ASSERT_TRUE(connection);
    std::optional<Reply> reply = connection->get("/metrics");
    ASSERT_TRUE(reply);
    ASSERT_EQ(reply->status, 200) << reply->body;
    metrics_id = reply->request_id();
    auto count = [&](const char* operation, const char* outcome) {
      return metric(reply->body, std::string("keyhold_requests_total{operation=\"") + operation + "\",outcome=\"" +
                                     outcome + "\"}")
          .value_or(-1);
    };
    EXPECT_GE(count("kek.decrypt", "allowed"), static_cast<double>(per_kind[Kind::Decrypt])) << reply->body;
    EXPECT_EQ(count("kek.decrypt", "allowed"), static_cast<double>(per_kind[Kind::Decrypt]));
    EXPECT_EQ(count("kek.datakey", "allowed"), static_cast<double>(per_kind[Kind::DataKey]));
    EXPECT_EQ(count("kek.encrypt", "allowed"), static_cast<double>(per_kind[Kind::Encrypt]));
    EXPECT_EQ(count("kek.read", "allowed"), static_cast<double>(per_kind[Kind::ReadKek]));
    EXPECT_EQ(count("kek.read", "denied"), static_cast<double>(per_kind[Kind::Denied]));
    EXPECT_EQ(count("unknown", "failed"), static_cast<double>(per_kind[Kind::NotFound]));
    EXPECT_EQ(count("health", "allowed"), static_cast<double>(per_kind[Kind::Health]));
    EXPECT_EQ(metric(reply->body, "keyhold_rate_limited_total").value_or(-1), 0);
    EXPECT_EQ(metric(reply->body, "keyhold_audit_broken").value_or(-1), 0);
    // Every request so far is durable in the log (the metrics' own record comes after).
    EXPECT_GE(metric(reply->body, "keyhold_audit_records").value_or(-1), static_cast<double>(total));
  }

  server->signal(SIGTERM);
  ASSERT_EQ(server->wait(60s), 0) << server->err();

  // Exactly one event record per request, and each request's record says what it was.
  std::vector<Json> records = audit_records(c.audit_log);
  std::map<std::string, Json> events;
  std::size_t event_count = 0;
  std::size_t checkpoints = 0;
  for (const Json& r : records) {
    if (r["type"] == "checkpoint") {
      ++checkpoints;
      continue;
    }
    ASSERT_EQ(r["type"], "event") << r.dump();
    if (r["identity"] == "keyhold-serve:maintenance") {
      // The service's own maintenance at start (serve_maintenance_test): not a request.
      EXPECT_EQ(r["operation"].get<std::string>().rfind("maintain.", 0), 0u) << r.dump();
      continue;
    }
    ++event_count;
    std::string id = r["request_id"].get<std::string>();
    EXPECT_TRUE(events.emplace(id, r).second) << "request id twice in the log: " << id;
  }
  EXPECT_EQ(event_count, total + 1) << "one record per request, and one for GET /metrics";
  EXPECT_EQ(records.back()["type"], "checkpoint") << "the log ends signed";
  EXPECT_GE(checkpoints, event_count / 1000) << "a checkpoint every 1000 records";
  ASSERT_TRUE(events.count(metrics_id)) << metrics_id;
  EXPECT_EQ(events[metrics_id]["operation"], "metrics");
  std::size_t mismatches = 0;
  for (const auto& list : sent) {
    for (const Sent& s : list) {
      auto it = events.find(s.request_id);
      if (it == events.end()) {
        ADD_FAILURE() << "request " << s.request_id << " has no audit record";
        if (++mismatches > 10) break;
        continue;
      }
      const Json& r = it->second;
      Expected want = expected_record(s.kind);
      bool context_ok = true;
      if (s.kind == Kind::DataKey || s.kind == Kind::Encrypt || s.kind == Kind::Decrypt) {
        context_ok = r["context"] == Json{{"thread", s.context}} && r["resource"] == "kek:load";
      }
      if (r["operation"] != want.operation || r["outcome"] != want.outcome || r["error_code"] != want.error_code ||
          r["identity"] != "admin" || !context_ok) {
        ADD_FAILURE() << "record of a " << want.operation << " request: " << r.dump();
        if (++mismatches > 10) break;
      }
    }
  }

  ProcessResult verified = audit_verify(c.audit_log);
  ASSERT_EQ(verified.exit_code, 0) << verified.out << verified.err;

  // Tampered copies fail verification, naming the line.
  std::vector<std::string> lines = lines_of(read_file(c.audit_log.string()));
  ASSERT_GT(lines.size(), 100u);
  std::size_t middle = lines.size() / 2;  // 0-based index; line middle + 1
  while (lines[middle].find("\"type\":\"event\"") == std::string::npos) ++middle;
  {
    std::vector<std::string> changed = lines;
    std::string& line = changed[middle];
    std::size_t at = line.find("\"request_id\":\"") + 14;
    line[at] = line[at] == 'a' ? 'b' : 'a';  // one byte of a middle record
    expect_tamper_detected(c, "changed", changed, middle + 1, "hash mismatch");
  }
  {
    std::vector<std::string> removed = lines;
    removed.erase(removed.begin() + static_cast<std::ptrdiff_t>(middle));
    expect_tamper_detected(c, "removed", removed, middle + 1, "removed");
  }
  {
    std::vector<std::string> swapped = lines;
    std::swap(swapped[middle], swapped[middle + 1]);
    expect_tamper_detected(c, "swapped", swapped, middle + 1, "reordered");
  }
  {
    // A changed record with the chain recomputed after it: caught at the next
    // checkpoint, whose signature covers the old chain.
    std::vector<std::string> rewritten = lines;
    std::string& line = rewritten[middle];
    line.replace(line.find("\"identity\":\"admin\""), 18, "\"identity\":\"admim\"");
    rechain(rewritten, middle);
    std::size_t checkpoint = middle + 1;
    while (rewritten[checkpoint].find("\"type\":\"checkpoint\"") == std::string::npos) ++checkpoint;
    expect_tamper_detected(c, "rechained", rewritten, checkpoint + 1, "signature");
    std::vector<std::string> unchanged = lines;
    rechain(unchanged, middle);
    ASSERT_EQ(unchanged, lines) << "rechain() recomputes the same hashes as keyhold";
  }
  {
    std::vector<std::string> swapped = lines;  // two lines far apart
    std::swap(swapped[10], swapped[middle]);
    expect_tamper_detected(c, "swapped-far", swapped, 11, "reordered");
  }
}

// ---- 2: signals under load --------------------------------------------------------------

// Client threads that hammer one server (datakey, encrypt, decrypt of their
// own ciphertexts, health: all expected to be 200) until told to finish, or,
// once `signaled` is set, until the server no longer takes connections.
class Load {
 public:
  Load(const TlsClient& client, int port, int threads) : client_(client), port_(port), received_(threads) {
    for (int t = 0; t < threads; ++t) threads_.emplace_back([this, t] { run(t); });
  }
  ~Load() { join(); }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  void join() {
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  std::atomic<bool> signaled{false};  // SIGTERM sent: a refused connection ends a client
  std::atomic<bool> finish{false};    // clients stop after their current request
  std::atomic<std::size_t> complete{0};      // responses that arrived complete
  std::atomic<std::size_t> incomplete{0};    // requests whose response was cut
  std::atomic<std::size_t> after_signal{0};  // complete responses to requests sent after `signaled`
  std::atomic<std::size_t> connections{0};   // connections opened
  Failures failures;

  // The request ids of the complete responses. After join().
  std::vector<std::string> received() const {
    std::vector<std::string> out;
    for (const auto& ids : received_) out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }

 private:
  void run(int t) {
    const auto hard_deadline = Clock::now() + 90s;
    std::mt19937_64 random(static_cast<std::uint64_t>(t) + 100);
    const std::string tag = "t" + std::to_string(t);
    const Json context = {{"thread", tag}};
    std::vector<std::pair<std::string, std::string>> mine;  // ciphertext, plaintext (base64)
    std::unique_ptr<Connection> connection;
    for (int i = 0; !finish.load(); ++i) {
      if (Clock::now() >= hard_deadline) {
        failures.add(tag + ": still running at the hard deadline");
        return;
      }
      if (!connection) {
        bool before = !signaled.load();
        std::string why;
        connection = Connection::open(client_, port_, &why);
        if (!connection) {
          if (before) failures.add(tag + ": cannot connect before SIGTERM: " + why);
          return;  // the server no longer accepts: done
        }
        ++connections;
      }
      bool was_signaled = signaled.load();
      std::optional<Reply> reply;
      std::string expected_plaintext;
      switch (mine.empty() ? 0 : i % 4) {
        case 0:
          reply = connection->post("/v1/keks/load/datakey", {{"context", context}});
          break;
        case 1:
          expected_plaintext = random_base64(random, 48);
          reply = connection->post("/v1/keks/load/encrypt", {{"plaintext", expected_plaintext}, {"context", context}});
          break;
        case 2: {
          const auto& [ciphertext, plaintext] = mine[random() % mine.size()];
          expected_plaintext = plaintext;
          reply = connection->post("/v1/keks/load/decrypt", {{"ciphertext", ciphertext}, {"context", context}});
          break;
        }
        default: reply = connection->get("/v1/health"); break;
      }
      if (!reply) {
        // Cut by the stop (before it: a failure).
        if (!signaled.load()) failures.add(tag + ": no complete response before SIGTERM");
        ++incomplete;
        connection.reset();
        continue;
      }
      ++complete;
      if (was_signaled) ++after_signal;
      received_[static_cast<std::size_t>(t)].push_back(reply->request_id());
      Json body = reply->json();
      if (reply->status != 200 || body.is_discarded()) {
        failures.add(tag + ": status " + std::to_string(reply->status) + ": " + reply->body);
      } else if (body.contains("ciphertext")) {
        mine.emplace_back(body["ciphertext"].get<std::string>(),
                          body.contains("plaintext") ? body["plaintext"].get<std::string>() : expected_plaintext);
      } else if (body.contains("plaintext") && body["plaintext"] != expected_plaintext) {
        failures.add(tag + ": wrong plaintext");
      }
      if (reply->closes()) {
        if (!signaled.load()) failures.add(tag + ": the server closed the connection before SIGTERM");
        connection.reset();
      }
    }
  }

  const TlsClient& client_;
  int port_;
  std::vector<std::vector<std::string>> received_;
  std::vector<std::thread> threads_;
};

// The log verifies, ends with a checkpoint, has each request id at most once,
// only allowed events, and a record for every response in `received`.
void expect_complete_signed_log(const fs::path& log, const std::vector<std::string>& received) {
  ProcessResult verified = audit_verify(log);
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  std::vector<Json> records = audit_records(log);
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back()["type"], "checkpoint") << records.back().dump();
  std::set<std::string> logged;
  for (const Json& r : records) {
    if (r["type"] != "event") continue;
    EXPECT_TRUE(logged.insert(r["request_id"].get<std::string>()).second) << r.dump();
    EXPECT_EQ(r["outcome"], "allowed") << r.dump();
  }
  std::size_t missing = 0;
  for (const std::string& id : received) {
    if (logged.count(id) == 0 && ++missing <= 10) ADD_FAILURE() << "response " << id << " has no audit record";
  }
  EXPECT_EQ(missing, 0u);
  EXPECT_GE(logged.size(), received.size());
}

TEST(ServeLoad, SigtermUnderLoadAnswersOnlyCompletelyAndLeavesASignedLog) {
  ServerConfig c = server_config("sigterm", admin_policy({}));
  auto server = ServeProcess::start(c.config);
  TlsClient client;
  Load load(client, server->port(), 12);

  // Mid-way: once the load is well under way.
  bool loaded = eventually(60s, [&] { return load.complete.load() >= 1500; }, 10ms);
  load.signaled = true;
  server->signal(SIGTERM);
  // The server's shutdown grace is 10 s (http::ServerSettings' default; serve does not change it), plus a
  // margin for the final checkpoint and the exit.
  int status = server->wait(15s);
  load.join();
  ASSERT_TRUE(loaded) << "the clients did not get going: " << load.failures.text();
  EXPECT_EQ(status, 0) << server->err();
  EXPECT_EQ(load.failures.count(), 0u) << load.failures.text();
  EXPECT_NE(server->out().find("stopped"), std::string::npos) << server->out();
  expect_complete_signed_log(c.audit_log, load.received());
  std::cout << "[          ] " << load.complete.load() << " complete responses (" << load.after_signal.load()
            << " to requests sent after SIGTERM), " << load.incomplete.load() << " cut\n";
}

TEST(ServeLoad, SighupUnderLoadDropsNoRequestAndNoConnection) {
  constexpr int kThreads = 8;
  ServerConfig c = server_config("hupload", admin_policy({}));
  auto server = ServeProcess::start(c.config);
  TlsClient client;
  Load load(client, server->port(), kThreads);

  std::size_t at = 0;
  for (int reload = 1; reload <= 3; ++reload) {
    at += 300;
    ASSERT_TRUE(eventually(60s, [&] { return load.complete.load() >= at; }, 10ms)) << load.failures.text();
    server->signal(SIGHUP);
    // Reloads are counted once done; wait for each so that signals do not merge.
    ASSERT_TRUE(eventually(20s, [&] {
      auto connection = Connection::open(client, server->port());
      std::optional<Reply> reply = connection ? connection->get("/metrics") : std::nullopt;
      return reply && metric(reply->body, "keyhold_reloads_total").value_or(-1) == reload;
    }, 100ms)) << "reload " << reload << ": " << server->err();
  }
  at += 300;
  EXPECT_TRUE(eventually(60s, [&] { return load.complete.load() >= at; }, 10ms));
  load.finish = true;
  load.join();
  EXPECT_EQ(load.failures.count(), 0u) << load.failures.text();
  EXPECT_EQ(load.incomplete.load(), 0u);
  EXPECT_EQ(load.connections.load(), static_cast<std::size_t>(kThreads)) << "every client kept its connection";
  EXPECT_EQ(server->err().find("reload failed"), std::string::npos) << server->err();

  server->signal(SIGTERM);
  ASSERT_EQ(server->wait(60s), 0) << server->err();
  expect_complete_signed_log(c.audit_log, load.received());
}

// ---- 3: SIGHUP and the policy ----------------------------------------------------------

TEST(ServeLoad, SighupAppliesANewPolicyKeepsConnectionsAndSurvivesABrokenOne) {
  ServerConfig c = server_config("sighup", admin_policy({"kek.rotate"}));
  auto server = ServeProcess::start(c.config);
  TlsClient client;

  auto before = Connection::open(client, server->port());  // used all along
  auto idle = Connection::open(client, server->port());    // idle across the reloads
  ASSERT_TRUE(before && idle);
  std::optional<Reply> reply = before->get("/v1/keks/hup");
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->status, 200) << reply->body;
  const int version = reply->json()["primary_version"].get<int>();
  reply = idle->get("/v1/health");
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->status, 200);

  reply = before->post("/v1/keks/hup/rotate", Json::object());
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->status, 403) << reply->body;

  // The new policy allows kek.rotate.
  write_file(c.policy.string(), admin_policy({}));
  server->signal(SIGHUP);
  int polls = 0;
  bool allowed = eventually(10s, [&] {
    ++polls;
    reply = before->post("/v1/keks/hup/rotate", Json::object());
    return !reply || reply->status != 403;
  }, 100ms);
  ASSERT_TRUE(allowed) << "still 403 after SIGHUP: " << server->err();
  ASSERT_TRUE(reply) << "the connection opened before SIGHUP was dropped";
  ASSERT_EQ(reply->status, 200) << reply->body;
  EXPECT_EQ(reply->json()["primary_version"], version + 1);

  reply = idle->get("/v1/keks/hup");
  ASSERT_TRUE(reply) << "the idle connection opened before SIGHUP was dropped";
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->json()["primary_version"], version + 1);
  reply = before->get("/metrics");
  ASSERT_TRUE(reply);
  EXPECT_EQ(metric(reply->body, "keyhold_reloads_total").value_or(-1), 1.0);

  // A broken policy: the reload fails, the policy in force stays, the server stays up.
  write_file(c.policy.string(), "[[rule]\nname = \"broken\n");
  server->signal(SIGHUP);
  ASSERT_TRUE(eventually(10s, [&] { return server->err().find("reload failed") != std::string::npos; }))
      << server->err();
  ASSERT_TRUE(server->running()) << server->err();
  reply = before->post("/v1/keks/hup/rotate", Json::object());
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200) << "the last good policy allows kek.rotate: " << reply->body;
  reply = before->get("/v1/keks/not-in-the-policy");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 403) << "the last good policy names only some KEKs: " << reply->body;
  reply = idle->get("/v1/health");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  auto fresh = Connection::open(client, server->port());
  ASSERT_TRUE(fresh) << "new connections after a failed reload";
  reply = fresh->get("/metrics");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(metric(reply->body, "keyhold_reloads_total").value_or(-1), 1.0);

  server->signal(SIGTERM);
  ASSERT_EQ(server->wait(60s), 0) << server->err();
  ProcessResult verified = audit_verify(c.audit_log);
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  // The rotations in the log: one denied, then (after polls - 1 more denied) the allowed ones.
  std::vector<std::string> rotations;
  for (const Json& r : audit_records(c.audit_log)) {
    if (r["type"] == "event" && r["operation"] == "kek.rotate") rotations.push_back(r["outcome"].get<std::string>());
  }
  ASSERT_EQ(rotations.size(), static_cast<std::size_t>(polls) + 2);
  EXPECT_EQ(std::count(rotations.begin(), rotations.end(), "allowed"), 2);
  EXPECT_EQ(rotations.back(), "allowed");
  EXPECT_EQ(rotations[rotations.size() - 2], "allowed");
}

// ---- 4: slow clients ------------------------------------------------------------------------

TEST(ServeLoad, ClientsThatNeverFinishTheirHeadersAreDroppedWithoutBlockingOthers) {
  constexpr auto kHeaderTimeout = 1s;
  constexpr auto kBound = 5 * kHeaderTimeout;  // closed "eventually": no tight timing
  constexpr std::size_t kMaxConnections = 10;
  // One I/O thread: the slow clients and everyone else share it.
  ServerConfig c = server_config("slow", admin_policy({}),
                                 "header_timeout = \"1s\"\nthreads = 1\nmax_connections = " +
                                     std::to_string(kMaxConnections) + "\n");
  auto server = ServeProcess::start(c.config);
  TlsClient client;

  // A TCP connection that never starts the handshake.
  int silent = tcp_connect(server->port());
  ASSERT_GE(silent, 0);
  // Two that stop in the middle of the request line.
  std::vector<std::unique_ptr<Connection>> stalled;
  for (int i = 0; i < 2; ++i) {
    stalled.push_back(Connection::open(client, server->port()));
    ASSERT_TRUE(stalled.back());
    ASSERT_TRUE(stalled.back()->write_all("GET /v1/hea"));
  }
  // Two that trickle a header a byte at a time and never end it.
  std::atomic<int> trickles_closed{0};
  std::vector<std::thread> tricklers;
  for (int i = 0; i < 2; ++i) {
    auto connection = Connection::open(client, server->port());
    ASSERT_TRUE(connection);
    tricklers.emplace_back([&trickles_closed, bound = kBound, connection = std::move(connection)]() mutable {
      const std::string text = "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(1000, 'a');
      auto deadline = Clock::now() + bound;
      for (std::size_t at = 0; at < text.size() && Clock::now() < deadline; ++at) {
        if (!connection->write_all(std::string_view(text).substr(at, 1)) || connection->closed_within(200ms)) {
          ++trickles_closed;
          return;
        }
      }
    });
  }

  // Meanwhile others get their answers, on a keep-alive connection and on new ones.
  auto keep_alive = Connection::open(client, server->port());
  ASSERT_TRUE(keep_alive);
  for (int i = 0; i < 10; ++i) {
    std::optional<Reply> reply = keep_alive->get("/v1/keks/load");
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200);
    auto fresh = Connection::open(client, server->port());
    ASSERT_TRUE(fresh) << "a new connection while slow clients hold theirs";
    reply = fresh->post("/v1/keks/load/encrypt", {{"plaintext", "aGVsbG8="}});
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200) << reply->body;
  }

  // The slow ones are closed by the server, without a response.
  EXPECT_TRUE(socket_closed_within(silent, kBound)) << "a connection that never started its handshake";
  ::close(silent);
  for (auto& connection : stalled) {
    EXPECT_TRUE(connection->closed_within(kBound)) << "a connection with half a request line";
    EXPECT_EQ(connection->unexpected(), "") << "no response to an incomplete request";
  }
  for (auto& thread : tricklers) thread.join();
  EXPECT_EQ(trickles_closed.load(), 2) << "connections that trickle their headers";
  stalled.clear();

  // Their slots are free again: the limit's worth of connections all get answers.
  std::optional<Reply> reply;
  std::size_t metrics_polls = 0;
  ASSERT_TRUE(eventually(10s, [&] {
    ++metrics_polls;
    reply = keep_alive->get("/metrics");
    return reply && metric(reply->body, "keyhold_connections_open").value_or(-1) == 1.0;
  })) << (reply ? reply->body : "no reply");
  EXPECT_EQ(metric(reply->body, "keyhold_connection_timeouts_total").value_or(-1), 5.0) << reply->body;
  std::vector<std::unique_ptr<Connection>> full;
  for (std::size_t i = 1; i < kMaxConnections; ++i) {
    full.push_back(Connection::open(client, server->port()));
    ASSERT_TRUE(full.back()) << "connection " << i + 1 << " of " << kMaxConnections;
  }
  for (auto& connection : full) {
    reply = connection->get("/v1/health");
    ASSERT_TRUE(reply) << "a connection within the limit was closed";
    EXPECT_EQ(reply->status, 200);
  }
  full.clear();
  keep_alive.reset();

  server->signal(SIGTERM);
  ASSERT_EQ(server->wait(60s), 0) << server->err();
  ProcessResult verified = audit_verify(c.audit_log);
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  // The dropped connections made no request: no record of theirs.
  std::size_t events = 0;
  for (const Json& r : audit_records(c.audit_log)) {
    if (r["type"] == "event") ++events;
  }
  EXPECT_EQ(events, 10 + 10 + metrics_polls + (kMaxConnections - 1));  // kek reads, encrypts, metrics, health
}

}  // namespace
}  // namespace keyhold::testing
