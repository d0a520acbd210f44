// The HTTPS transport: listeners, per-connection sessions (TLS or plain),
// the SSL_CTX built from TlsMaterial, and the handler pool. See server.hpp
// for the contract.
#include "keyhold/http/server.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "keyhold/core/error.hpp"
#include "keyhold/core/log.hpp"

namespace keyhold::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

// After an error response (400, 413, 431) the client may still be sending
// the rest of its request. Closing with unread data would make the kernel
// send a reset, which can destroy the response before the client reads it;
// so the server half-closes and discards what still arrives, for this long
// and this much at most (the "lingering close" of other servers).
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr std::size_t kLingerBytes = 1024 * 1024;
// How long a close_notify may take to go out.
constexpr std::chrono::milliseconds kCloseNotifyTime{1000};
// Back-off when accept fails for lack of file descriptors or memory.
constexpr std::chrono::milliseconds kAcceptRetry{100};
constexpr std::size_t kFirstRead = 4096;

// Set on every I/O and handler thread: stop() refuses to run there (it would
// join its own thread).
thread_local bool tl_server_thread = false;

std::string openssl_errors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text;
}

[[noreturn]] void throw_invalid(const std::string& message) {
  std::string details = openssl_errors();
  throw Error(ErrorCode::InvalidArgument, details.empty() ? message : message + " (" + details + ")");
}

std::string name_text(const X509_NAME* name) {
  CPtr<BIO, &BIO_free> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "?";
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string error_json(std::string_view code, std::string_view message, std::string_view request_id) {
  return "{\"error\":{\"code\":\"" + json_escape(code) + "\",\"message\":\"" + json_escape(message) +
         "\",\"request_id\":\"" + json_escape(request_id) + "\"}}";
}

Response error_response(int status, std::string_view code, std::string_view message, std::string_view request_id) {
  Response response;
  response.status = status;
  response.body = error_json(code, message, request_id);
  return response;
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> random(bytes);
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    throw Error(ErrorCode::Internal, "no random bytes for a request id: " + openssl_errors());
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char b : random) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

// RFC 9110 section 5.6.7 IMF-fixdate, without the locale that strftime would use.
std::string http_date() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7], tm.tm_mday,
                kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buffer;
}

std::string_view view(beast::string_view v) { return std::string_view(v.data(), v.size()); }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// RFC 9110 section 5.6.2 token characters.
bool is_token(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool is_field_value(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

}  // namespace

int status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return 400;
    case ErrorCode::Unauthenticated: return 401;
    case ErrorCode::PermissionDenied: return 403;
    case ErrorCode::NotFound: return 404;
    case ErrorCode::AlreadyExists: return 409;
    case ErrorCode::FailedPrecondition: return 409;
    case ErrorCode::Unimplemented: return 501;
    case ErrorCode::ResourceExhausted: return 429;
    case ErrorCode::Unavailable: return 503;
    case ErrorCode::Internal: return 500;
  }
  return 500;
}

namespace {

// ---------------------------------------------------------------------------
// Addresses.

struct Address {
  std::string text;  // as configured, for messages
  std::string host;
  std::uint16_t port = 0;
};

Address parse_address(const std::string& text, const char* setting) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::InvalidArgument,
                 std::string(setting) + " '" + text + "' is not HOST:PORT or [IPv6]:PORT: " + why);
  };
  Address address{text, {}, 0};
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') throw bad("no ']:'");
    address.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) throw bad("no port");
    address.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (address.host.find(':') != std::string::npos) throw bad("an IPv6 address needs brackets");
  }
  if (address.host.empty()) throw bad("no host (use 0.0.0.0 or [::] for every interface)");
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    throw bad("the port is not a number");
  }
  unsigned long value = std::stoul(port);
  if (value > 65535) throw bad("the port is over 65535");
  address.port = static_cast<std::uint16_t>(value);
  return address;
}

std::string endpoint_text(const tcp::endpoint& endpoint) {
  net::ip::address a = endpoint.address();
  std::string host = a.is_v6() && !a.to_v6().is_v4_mapped() ? "[" + a.to_string() + "]"
                     : a.is_v6()                              ? a.to_v6().to_v4().to_string()
                                                              : a.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

// ---------------------------------------------------------------------------
// TLS contexts.

struct TlsContext {
  explicit TlsContext(SSL_CTX* native) : ssl(native) {}
  net::ssl::context ssl;  // owns the SSL_CTX
  TlsMaterial material;   // kept for the verify callback (CRL issuers)
};

int tls_context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OpenSSL reports X509_V_ERR_UNABLE_TO_GET_CRL for a certificate whose
// issuer has no CRL in the store. That is fatal for an issuer with a
// configured CRL (it did not fit: wrong key, expired, ...) and accepted for
// one without (server.hpp: revocation is checked per CA).
int verify_callback(int ok, X509_STORE_CTX* store) {
  if (ok == 1) return 1;
  if (X509_STORE_CTX_get_error(store) != X509_V_ERR_UNABLE_TO_GET_CRL) return 0;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl == nullptr) return 0;
  auto* tls = static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_context_index()));
  X509* certificate = X509_STORE_CTX_get_current_cert(store);
  if (tls == nullptr || certificate == nullptr) return 0;
  const X509_NAME* issuer = X509_get_issuer_name(certificate);
  for (const X509CrlPtr& crl : tls->material.crls) {
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), issuer) == 0) return 0;
  }
  X509_STORE_CTX_set_error(store, X509_V_OK);
  return 1;
}

int select_http11(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                  unsigned int in_length, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_length, kHttp11, sizeof kHttp11, in, in_length) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no ALPN in the answer: the client may still speak HTTP/1.1
}

std::shared_ptr<TlsContext> build_tls_context(TlsMaterial material) {
  ERR_clear_error();
  if (!material.key) throw_invalid("TLS material: no private key");
  if (material.chain.empty() || !material.chain.front()) throw_invalid("TLS material: no server certificate");
  if (material.client_cas.empty()) throw_invalid("TLS material: no client CA (client certificates are mandatory)");
  for (const X509Ptr& c : material.chain) {
    if (!c) throw_invalid("TLS material: a null certificate in the chain");
  }
  for (const X509Ptr& c : material.client_cas) {
    if (!c) throw_invalid("TLS material: a null client CA");
  }

  // The default library context, never crypto::openssl_context() (see openssl_provider.hpp).
  SSL_CTX* native = SSL_CTX_new_ex(nullptr, nullptr, TLS_server_method());
  if (native == nullptr) throw Error(ErrorCode::Internal, "SSL_CTX_new failed: " + openssl_errors());
  auto context = std::make_shared<TlsContext>(native);

  SSL_CTX_set_min_proto_version(native, material.allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
  // No resumption of any kind: every connection presents and verifies its
  // client certificate against the CRLs of the moment.
  SSL_CTX_set_options(native, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                  SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_num_tickets(native, 0);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  static const unsigned char kSessionContext[] = "keyhold";
  SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
  // Send exactly the configured chain, never one built from the client CAs.
  SSL_CTX_set_mode(native, SSL_MODE_NO_AUTO_CHAIN);
  if (material.allow_tls12 && SSL_CTX_set_cipher_list(native, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
    throw Error(ErrorCode::Internal, "SSL_CTX_set_cipher_list failed: " + openssl_errors());
  }
  SSL_CTX_set_alpn_select_cb(native, select_http11, nullptr);

  if (SSL_CTX_use_certificate(native, material.chain.front().get()) != 1) {
    throw_invalid("TLS material: OpenSSL refuses the server certificate");
  }
  for (std::size_t i = 1; i < material.chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(native, material.chain[i].get()) != 1) {
      throw_invalid("TLS material: OpenSSL refuses chain certificate " + std::to_string(i));
    }
  }
  if (SSL_CTX_use_PrivateKey(native, material.key.get()) != 1 || SSL_CTX_check_private_key(native) != 1) {
    throw_invalid("TLS material: the private key does not match the server certificate");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(material.chain.front().get())) < 0) {
    log::warn("http: the server certificate " + name_text(X509_get_subject_name(material.chain.front().get())) +
              " has expired");
  }

  X509_STORE* store = SSL_CTX_get_cert_store(native);
  for (const X509Ptr& ca : material.client_cas) {
    if (X509_STORE_add_cert(store, ca.get()) != 1 || SSL_CTX_add_client_CA(native, ca.get()) != 1) {
      throw_invalid("TLS material: OpenSSL refuses client CA " + name_text(X509_get_subject_name(ca.get())));
    }
  }
  std::vector<bool> ca_has_crl(material.client_cas.size(), false);
  for (const X509CrlPtr& crl : material.crls) {
    if (!crl) throw_invalid("TLS material: a null CRL");
    std::string issuer = name_text(X509_CRL_get_issuer(crl.get()));
    bool signed_by_ca = false;
    for (std::size_t i = 0; i < material.client_cas.size(); ++i) {
      X509* ca = material.client_cas[i].get();
      if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca)) == 0 &&
          X509_CRL_verify(crl.get(), X509_get0_pubkey(ca)) == 1) {
        signed_by_ca = true;
        ca_has_crl[i] = true;
      }
    }
    ERR_clear_error();
    if (!signed_by_ca) throw_invalid("TLS material: the CRL of " + issuer + " is not signed by any client CA");
    if (X509_cmp_current_time(X509_CRL_get0_lastUpdate(crl.get())) > 0) {
      throw_invalid("TLS material: the CRL of " + issuer + " is not valid yet");
    }
    const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
    if (next != nullptr && X509_cmp_current_time(next) < 0) {
      throw_invalid("TLS material: the CRL of " + issuer + " has expired");
    }
    if (X509_STORE_add_crl(store, crl.get()) != 1) throw_invalid("TLS material: OpenSSL refuses the CRL of " + issuer);
  }
  for (std::size_t i = 0; i < material.client_cas.size(); ++i) {
    if (!ca_has_crl[i]) {
      log::warn("http: client CA " + name_text(X509_get_subject_name(material.client_cas[i].get())) +
                " has no CRL configured: the certificates it issued are not checked for revocation");
    }
  }
  unsigned long flags = X509_V_FLAG_PARTIAL_CHAIN;
  if (!material.crls.empty()) flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
  X509_STORE_set_flags(store, flags);

  SSL_CTX_set_verify(native, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE,
                     verify_callback);
  SSL_CTX_set_verify_depth(native, 8);
  // Any extendedKeyUsage passes the handshake (libssl would ask for
  // clientAuth); Request::client_auth tells the Handler what the certificate
  // is for.
  SSL_CTX_set_purpose(native, X509_PURPOSE_ANY);
  SSL_CTX_set_ex_data(native, tls_context_index(), context.get());
  context->material = std::move(material);
  ERR_clear_error();
  return context;
}

// ---------------------------------------------------------------------------
// Sessions.

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Both may be called from any thread; they post to the session's strand.
  virtual void on_stop() = 0;      // close unless a request is in flight
  virtual void force_close() = 0;  // close now
};

struct Counters {
  std::atomic<std::uint64_t> open{0}, accepted{0}, refused{0}, handshake_failures{0}, timeouts{0}, requests{0},
      client_errors{0}, server_errors{0}, reloads{0};
};

struct Listener {
  explicit Listener(net::io_context& ioc, bool tls_) : acceptor(net::make_strand(ioc)), retry(acceptor.get_executor()), tls(tls_) {}
  tcp::acceptor acceptor;
  net::steady_timer retry;
  bool tls;
  std::uint16_t port = 0;
};

}  // namespace

class Server::Impl {
 public:
  Impl(ServerSettings settings, TlsMaterial material, Handler tls_handler, Handler plain_handler);
  ~Impl();

  void start();
  void stop();
  void reload(TlsMaterial material);
  ServerStats stats() const;
  std::uint16_t port() const { return tls_listener_.port; }
  std::optional<std::uint16_t> plain_port() const {
    if (!plain_listener_) return std::nullopt;
    return plain_listener_->port;
  }

  // For sessions.
  const ServerSettings& settings() const { return settings_; }
  bool stopping() const { return stopping_.load(); }
  Counters& counters() { return counters_; }
  std::uint64_t register_session(std::weak_ptr<SessionBase> session);
  void unregister_session(std::uint64_t id) noexcept;
  // Runs handler on the handler pool, then done(response) on executor.
  template <class Executor, class Done>
  void run_handler(bool tls, Request request, Executor executor, Done done);

 private:
  void bind(Listener& listener, const Address& address);
  void accept(Listener& listener);
  void on_accept(Listener& listener, error_code ec, tcp::socket socket);
  std::vector<std::shared_ptr<SessionBase>> live_sessions();
  bool wait_for_sessions(Clock::time_point deadline);
  Response call_handler(const Handler& handler, const Request& request);

  ServerSettings settings_;
  Handler tls_handler_;
  Handler plain_handler_;
  Address tls_address_;
  std::optional<Address> plain_address_;
  std::atomic<std::shared_ptr<TlsContext>> tls_;
  Counters counters_;

  std::mutex sessions_mutex_;
  std::condition_variable sessions_changed_;
  std::unordered_map<std::uint64_t, std::weak_ptr<SessionBase>> sessions_;
  std::uint64_t next_session_ = 0;

  std::atomic<bool> stopping_{false};
  std::mutex lifecycle_mutex_;
  enum class Phase { Created, Running, Stopped } phase_ = Phase::Created;

  // Destroyed in reverse order: the handler pool first (its pending tasks
  // hold sessions, whose sockets belong to the io_context), then the
  // listeners, then the io_context (whose pending handlers hold sessions,
  // whose destructors use the members above).
  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  Listener tls_listener_;
  std::optional<Listener> plain_listener_;
  std::vector<std::thread> io_threads_;
  net::thread_pool handler_pool_;
};

namespace {

template <bool kTls>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<kTls>> {
  using Stream = std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

 public:
  Session(Server::Impl& server, tcp::socket socket, std::shared_ptr<TlsContext> tls)
      : server_(server), tls_(std::move(tls)), stream_(make_stream(std::move(socket), tls_.get())) {
    error_code ec;
    tcp::endpoint remote = lowest().socket().remote_endpoint(ec);
    client_address_ = ec ? std::string("?") : endpoint_text(remote);
  }

  ~Session() override { server_.unregister_session(id_); }

  void start() {
    id_ = server_.register_session(this->weak_from_this());
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->begin(); });
  }

  void on_stop() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      // In flight (head received): finish it; send() then closes.
      if (self->state_ == State::Handshake || self->state_ == State::Idle || self->state_ == State::ReadingHead) {
        self->close_now();
      }
    });
  }

  void force_close() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->close_now(); });
  }

 private:
  enum class State { Created, Handshake, Idle, ReadingHead, ReadingBody, Handling, Writing, Closing, Closed };

  static Stream make_stream(tcp::socket socket, TlsContext* tls) {
    if constexpr (kTls) {
      return Stream(std::move(socket), tls->ssl);
    } else {
      (void)tls;
      return Stream(std::move(socket));
    }
  }

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
  const ServerSettings& settings() const { return server_.settings(); }

  void begin() {
    if (server_.stopping()) return close_now();
    if constexpr (kTls) {
      state_ = State::Handshake;
      lowest().expires_after(settings().header_timeout);
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = this->shared_from_this()](error_code ec) { self->on_handshake(ec); });
    } else {
      wait_for_request();
    }
  }

  void on_handshake(error_code ec) {
    if (state_ == State::Closed) return;
    SSL* ssl = nullptr;
    if constexpr (kTls) ssl = stream_.native_handle();
    X509* peer = ssl != nullptr ? SSL_get0_peer_certificate(ssl) : nullptr;
    long verify = ssl != nullptr ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (ec || peer == nullptr || verify != X509_V_OK) {
      server_.counters().handshake_failures++;
      if (ec == beast::error::timeout) server_.counters().timeouts++;
      if (log::enabled(log::Level::Info)) {
        std::string reason = verify != X509_V_OK ? std::string("client certificate: ") + X509_verify_cert_error_string(verify)
                             : ec                ? ec.message()
                                                 : std::string("no client certificate");
        log::info("http: TLS handshake with " + client_address_ + " failed: " + reason);
      }
      ERR_clear_error();
      return close_now();
    }
    identity_ = identity_of(peer);
    // The chain was verified for any purpose; whether the certificate may
    // authenticate a client (extendedKeyUsage clientAuth, when it has the
    // extension) is the Handler's to enforce, so that a server certificate
    // can renew itself.
    client_auth_ = X509_check_purpose(peer, X509_PURPOSE_SSL_CLIENT, 0) == 1;
    ERR_clear_error();
    unsigned char* der = nullptr;
    int length = i2d_X509(peer, &der);
    if (length > 0) peer_der_.assign(reinterpret_cast<const char*>(der), static_cast<std::size_t>(length));
    OPENSSL_free(der);
    wait_for_request();
  }

  void wait_for_request() {
    if (server_.stopping()) return close_gracefully();
    if (buffer_.size() > 0) return read_head();  // pipelined
    state_ = State::Idle;
    lowest().expires_after(settings().idle_timeout);
    stream_.async_read_some(buffer_.prepare(kFirstRead),
                            [self = this->shared_from_this()](error_code ec, std::size_t n) { self->on_first_bytes(ec, n); });
  }

  void on_first_bytes(error_code ec, std::size_t n) {
    if (state_ == State::Closed) return;
    if (ec) return close_now();  // idle timeout, or the client went away: nothing in flight
    buffer_.commit(n);
    read_head();
  }

  void read_head() {
    state_ = State::ReadingHead;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(settings().header_limit, UINT32_MAX)));
    parser_->body_limit(static_cast<std::uint64_t>(settings().body_limit));
    lowest().expires_after(settings().header_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = this->shared_from_this()](error_code ec, std::size_t) { self->on_head(ec); });
  }

  void on_head(error_code ec) {
    if (state_ == State::Closed) return;
    if (ec) return on_read_error(ec);
    if (parser_->is_done()) return dispatch();
    state_ = State::ReadingBody;
    auto& request = parser_->get();
    if (request.version() >= 11 && iequals(view(request[bhttp::field::expect]), "100-continue")) {
      continue_.emplace(bhttp::status::continue_, request.version());
      lowest().expires_after(settings().header_timeout);
      bhttp::async_write(stream_, *continue_, [self = this->shared_from_this()](error_code ec2, std::size_t) {
        if (self->state_ == State::Closed) return;
        if (ec2) return self->close_now();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    lowest().expires_after(settings().header_timeout);
    bhttp::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](error_code ec, std::size_t) {
      if (self->state_ == State::Closed) return;
      if (ec) return self->on_read_error(ec);
      self->dispatch();
    });
  }

  void on_read_error(error_code ec) {
    if (ec == beast::error::timeout) {
      server_.counters().timeouts++;
      log::debug("http: " + client_address_ + " did not send its request in time");
      return close_now();
    }
    if (ec == bhttp::error::body_limit) {
      return reply_and_close(413, "too_large",
                             "the request body exceeds " + std::to_string(settings().body_limit) + " bytes");
    }
    if (ec == bhttp::error::header_limit) {
      return reply_and_close(431, "headers_too_large",
                             "the request head exceeds " + std::to_string(settings().header_limit) + " bytes");
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
      return reply_and_close(400, "bad_request", "malformed HTTP request");
    }
    close_now();  // the client went away (possibly mid-request): nobody to answer
  }

  void reply_and_close(int status, std::string_view code, const std::string& message) {
    close_after_ = true;
    linger_ = true;
    version_ = 11;
    head_request_ = false;
    try {
      request_id_ = random_hex(16);
    } catch (const std::exception&) {
      return close_now();
    }
    send(error_response(status, code, message, request_id_));
  }

  void dispatch() {
    state_ = State::Handling;
    lowest().expires_never();  // no I/O while the handler runs
    auto message = parser_->release();
    parser_.reset();
    Request request;
    request.method = std::string(view(message.method_string()));
    request.target = std::string(view(message.target()));
    request.content_type = std::string(view(message[bhttp::field::content_type]));
    request.headers.reserve(static_cast<std::size_t>(std::distance(message.begin(), message.end())));
    for (const auto& field : message) {
      request.headers.emplace_back(std::string(view(field.name_string())), std::string(view(field.value())));
    }
    request.body = std::move(message.body());
    request.identity = identity_;
    request.client_auth = client_auth_;
    request.client_certificate = peer_der_;
    request.client_address = client_address_;
    request.tls = kTls;
    version_ = message.version();
    head_request_ = message.method() == bhttp::verb::head;
    close_after_ = !message.keep_alive();
    started_ = Clock::now();
    method_ = request.method;
    path_ = request.target.substr(0, request.target.find('?'));  // logged; a query string is not
    try {
      request_id_ = random_hex(16);
    } catch (const std::exception&) {
      return close_now();
    }
    request.request_id = request_id_;

    if (kTls && identity_.empty()) {
      return send(error_response(403, "permission_denied", "the client certificate carries no identity (URI SAN or CN)",
                                 request_id_));
    }
    server_.run_handler(kTls, std::move(request), stream_.get_executor(),
                        [self = this->shared_from_this()](Response response) { self->send(std::move(response)); });
  }

  void send(Response response) {
    if (state_ == State::Closed) return;  // closed by stop() meanwhile
    state_ = State::Writing;
    int status = response.status;
    bool valid = status >= 200 && status <= 599;
    for (const auto& [name, value] : response.headers) {
      if (!is_token(name) || !is_field_value(value)) valid = false;
    }
    if (!is_field_value(response.content_type)) valid = false;
    if (!valid) {
      log::error("http: request " + request_id_ + ": the handler returned an invalid status or header");
      response = error_response(500, "internal", "internal error", request_id_);
      status = 500;
    }

    res_.emplace();
    auto& res = *res_;
    res.version(version_);
    res.result(static_cast<unsigned>(status));
    res.set(bhttp::field::date, http_date());
    if (!response.content_type.empty()) res.set(bhttp::field::content_type, response.content_type);
    res.set("X-Request-Id", request_id_);
    bool cache_control = false, nosniff = false;
    for (const auto& [name, value] : response.headers) {
      if (iequals(name, "content-length") || iequals(name, "transfer-encoding") || iequals(name, "connection") ||
          iequals(name, "date") || iequals(name, "x-request-id") || iequals(name, "keep-alive") ||
          iequals(name, "upgrade")) {
        continue;
      }
      if (iequals(name, "cache-control")) cache_control = true;
      if (iequals(name, "x-content-type-options")) nosniff = true;
      res.insert(name, value);
    }
    if (!cache_control) res.set(bhttp::field::cache_control, "no-store");
    if (!nosniff) res.set("X-Content-Type-Options", "nosniff");
    if (status == 204 || status == 304) response.body.clear();
    std::size_t length = response.body.size();
    if (head_request_) {
      res.content_length(length);
    } else {
      res.body() = std::move(response.body);
      res.prepare_payload();
    }
    keep_alive_ = !close_after_ && !server_.stopping();
    res.keep_alive(keep_alive_);

    Counters& counters = server_.counters();
    counters.requests++;
    if (status >= 400 && status < 500) counters.client_errors++;
    if (status >= 500) counters.server_errors++;
    status_ = status;

    lowest().expires_after(settings().idle_timeout);
    bhttp::async_write(stream_, res, [self = this->shared_from_this()](error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(error_code ec) {
    if (state_ == State::Closed) return;
    if (log::enabled(log::Level::Debug)) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
      log::debug("http: " + request_id_ + " " + client_address_ + " [" + identity_ + "] " + method_ + " " + path_ +
                 " -> " + std::to_string(status_) + " in " + std::to_string(ms) + " ms" + (ec ? " (write failed)" : ""));
    }
    res_.reset();
    continue_.reset();
    if (ec) return close_now();
    if (linger_) return linger_close();
    if (!keep_alive_) return close_gracefully();
    wait_for_request();
  }

  // close_notify without waiting for the client's (TLS 1.3 section 6.1
  // allows it), then close.
  void close_gracefully() {
    state_ = State::Closing;
    if constexpr (kTls) {
      // The peer's close_notify counts as received: SSL_shutdown sends ours
      // and completes instead of waiting for an answer that may never come.
      SSL_set_shutdown(stream_.native_handle(), SSL_RECEIVED_SHUTDOWN);
      lowest().expires_after(kCloseNotifyTime);
      stream_.async_shutdown([self = this->shared_from_this()](error_code) { self->close_now(); });
    } else {
      error_code ignored;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
      close_now();
    }
  }

  // After an error response: close_notify, half-close, discard what the
  // client still sends (kLingerTime, kLingerBytes), close.
  void linger_close() {
    state_ = State::Closing;
    if constexpr (kTls) {
      SSL_set_shutdown(stream_.native_handle(), SSL_RECEIVED_SHUTDOWN);
      lowest().expires_after(kCloseNotifyTime);
      stream_.async_shutdown([self = this->shared_from_this()](error_code ec) {
        if (self->state_ == State::Closed) return;
        if (ec == beast::error::timeout) return self->close_now();
        self->half_close_and_drain();
      });
    } else {
      half_close_and_drain();
    }
  }

  void half_close_and_drain() {
    error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().expires_after(kLingerTime);
    drain();
  }

  void drain() {
    // Raw TCP: after our close_notify the TLS session is over.
    lowest().async_read_some(net::buffer(drain_buffer_), [self = this->shared_from_this()](error_code ec, std::size_t n) {
      if (self->state_ == State::Closed) return;
      self->drained_ += n;
      if (ec || self->drained_ > kLingerBytes) return self->close_now();
      self->drain();
    });
  }

  void close_now() {
    if (state_ == State::Closed) return;
    state_ = State::Closed;
    lowest().close();  // cancels the timer and every pending operation
  }

  Server::Impl& server_;
  std::shared_ptr<TlsContext> tls_;  // keeps the SSL_CTX (and its verify data) for this connection
  Stream stream_;
  std::uint64_t id_ = 0;
  State state_ = State::Created;
  std::string client_address_;
  std::string identity_;
  bool client_auth_ = false;
  std::string peer_der_;  // the verified client certificate, DER
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::response<bhttp::empty_body>> continue_;
  std::optional<bhttp::response<bhttp::string_body>> res_;
  std::string request_id_;
  std::string method_;
  std::string path_;
  Clock::time_point started_;
  unsigned version_ = 11;
  int status_ = 0;
  bool head_request_ = false;
  bool close_after_ = false;
  bool keep_alive_ = false;
  bool linger_ = false;
  std::array<char, 16384> drain_buffer_{};
  std::size_t drained_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------
// Server::Impl

Server::Impl::Impl(ServerSettings settings, TlsMaterial material, Handler tls_handler, Handler plain_handler)
    : settings_(std::move(settings)),
      tls_handler_(std::move(tls_handler)),
      plain_handler_(std::move(plain_handler)),
      tls_address_(parse_address(settings_.listen, "listen")),
      tls_(build_tls_context(std::move(material))),
      tls_listener_(ioc_, true),
      handler_pool_(std::max<std::size_t>(settings_.handler_threads, 1)) {
  auto invalid = [](const std::string& message) { return Error(ErrorCode::InvalidArgument, message); };
  if (settings_.threads == 0) throw invalid("server threads must be at least 1");
  if (settings_.handler_threads == 0) throw invalid("server handler_threads must be at least 1");
  if (settings_.body_limit == 0) throw invalid("server body_limit must be at least 1 byte");
  if (settings_.header_limit < 256) throw invalid("server header_limit must be at least 256 bytes");
  if (settings_.max_connections == 0) throw invalid("server max_connections must be at least 1");
  if (settings_.header_timeout.count() <= 0 || settings_.idle_timeout.count() <= 0) {
    throw invalid("server header_timeout and idle_timeout must be positive");
  }
  if (settings_.shutdown_grace.count() < 0) throw invalid("server shutdown_grace must not be negative");
  if (!tls_handler_) throw invalid("the HTTPS server needs a handler");
  if (settings_.plain_listen) {
    if (!plain_handler_) throw invalid("plain_listen is set but there is no plain-HTTP handler");
    plain_address_ = parse_address(*settings_.plain_listen, "plain_listen");
    plain_listener_.emplace(ioc_, false);
  } else if (plain_handler_) {
    throw invalid("a plain-HTTP handler is given but plain_listen is not set");
  }
}

Server::Impl::~Impl() {
  try {
    stop();
  } catch (const std::exception& e) {
    log::error(std::string("http: stopping the server failed: ") + e.what());
  }
}

void Server::Impl::bind(Listener& listener, const Address& address) {
  error_code ec;
  tcp::endpoint endpoint;
  net::ip::address ip = net::ip::make_address(address.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(ip, address.port);
  } else {
    tcp::resolver resolver(ioc_);
    auto results = resolver.resolve(address.host, std::to_string(address.port), ec);
    if (ec || results.empty()) {
      throw Error(ErrorCode::InvalidArgument,
                  "cannot resolve the host of '" + address.text + "': " + (ec ? ec.message() : "no address"));
    }
    endpoint = results.begin()->endpoint();
  }
  auto fail = [&](const char* step) {
    error_code ignored;
    listener.acceptor.close(ignored);
    return Error(ErrorCode::Unavailable, "cannot listen on " + address.text + ": " + step + ": " + ec.message());
  };
  listener.acceptor.open(endpoint.protocol(), ec);
  if (ec) throw fail("socket");
  listener.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (ec) throw fail("SO_REUSEADDR");
  listener.acceptor.bind(endpoint, ec);
  if (ec) throw fail("bind");
  listener.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw fail("listen");
  listener.port = listener.acceptor.local_endpoint(ec).port();
}

void Server::Impl::start() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (phase_ != Phase::Created) throw Error(ErrorCode::FailedPrecondition, "the server was already started");
  bind(tls_listener_, tls_address_);
  if (plain_listener_) {
    try {
      bind(*plain_listener_, *plain_address_);
    } catch (...) {
      error_code ignored;
      tls_listener_.acceptor.close(ignored);
      throw;
    }
  }
  work_.emplace(net::make_work_guard(ioc_));
  accept(tls_listener_);
  if (plain_listener_) accept(*plain_listener_);
  for (std::size_t i = 0; i < settings_.threads; ++i) {
    io_threads_.emplace_back([this] {
      tl_server_thread = true;
      for (;;) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception& e) {
          log::error(std::string("http: unexpected exception on an I/O thread: ") + e.what());
        }
      }
    });
  }
  phase_ = Phase::Running;
  log::info("http: listening on " + endpoint_text(tls_listener_.acceptor.local_endpoint()) + " (mTLS)" +
            (plain_listener_ ? " and " + endpoint_text(plain_listener_->acceptor.local_endpoint()) + " (plain HTTP)" : ""));
}

void Server::Impl::accept(Listener& listener) {
  listener.acceptor.async_accept(net::make_strand(ioc_), [this, &listener](error_code ec, tcp::socket socket) {
    on_accept(listener, ec, std::move(socket));
  });
}

void Server::Impl::on_accept(Listener& listener, error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || stopping_ || !listener.acceptor.is_open()) return;
  if (ec) {
    log::warn("http: accept failed: " + ec.message());
    if (ec == net::error::no_descriptors || ec == net::error::no_buffer_space || ec == net::error::no_memory ||
        ec.value() == ENFILE) {
      listener.retry.expires_after(kAcceptRetry);
      listener.retry.async_wait([this, &listener](error_code wait_ec) {
        if (!wait_ec && !stopping_) accept(listener);
      });
      return;
    }
    return accept(listener);
  }
  counters_.accepted++;
  if (counters_.open.load() >= settings_.max_connections) {
    counters_.refused++;
    log::debug("http: connection refused: " + std::to_string(settings_.max_connections) + " connections are open");
    error_code ignored;
    socket.close(ignored);
    return accept(listener);
  }
  if (listener.tls) {
    std::make_shared<Session<true>>(*this, std::move(socket), tls_.load())->start();
  } else {
    std::make_shared<Session<false>>(*this, std::move(socket), nullptr)->start();
  }
  accept(listener);
}

std::uint64_t Server::Impl::register_session(std::weak_ptr<SessionBase> session) {
  std::lock_guard lock(sessions_mutex_);
  std::uint64_t id = ++next_session_;
  sessions_.emplace(id, std::move(session));
  counters_.open++;
  return id;
}

void Server::Impl::unregister_session(std::uint64_t id) noexcept {
  if (id == 0) return;  // never started
  {
    std::lock_guard lock(sessions_mutex_);
    sessions_.erase(id);
    counters_.open--;
  }
  sessions_changed_.notify_all();
}

std::vector<std::shared_ptr<SessionBase>> Server::Impl::live_sessions() {
  std::vector<std::shared_ptr<SessionBase>> live;
  std::lock_guard lock(sessions_mutex_);
  for (auto& [id, weak] : sessions_) {
    if (auto session = weak.lock()) live.push_back(std::move(session));
  }
  return live;  // released by the caller outside the lock (a destructor takes it)
}

bool Server::Impl::wait_for_sessions(Clock::time_point deadline) {
  std::unique_lock lock(sessions_mutex_);
  return sessions_changed_.wait_until(lock, deadline, [this] { return sessions_.empty(); });
}

Response Server::Impl::call_handler(const Handler& handler, const Request& request) {
  try {
    return handler(request);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::Internal) {
      log::error("http: request " + request.request_id + " failed: " + e.what());
      return error_response(500, "internal", "internal error", request.request_id);
    }
    log::debug("http: request " + request.request_id + ": " + std::string(to_string(e.code())) + ": " + e.what());
    return error_response(status_for(e.code()), to_string(e.code()), e.what(), request.request_id);
  } catch (...) {
    // Not a keyhold::Error: its text was not written for users (and may hold anything).
    log::error("http: request " + request.request_id + " failed with an unexpected exception");
    return error_response(500, "internal", "internal error", request.request_id);
  }
}

template <class Executor, class Done>
void Server::Impl::run_handler(bool tls, Request request, Executor executor, Done done) {
  net::post(handler_pool_, [this, tls, request = std::move(request), executor, done = std::move(done)]() mutable {
    tl_server_thread = true;
    Response response = call_handler(tls ? tls_handler_ : plain_handler_, request);
    net::post(executor, [done = std::move(done), response = std::move(response)]() mutable { done(std::move(response)); });
  });
}

void Server::Impl::reload(TlsMaterial material) {
  std::shared_ptr<TlsContext> context = build_tls_context(std::move(material));
  tls_.store(std::move(context));
  counters_.reloads++;
  log::info("http: TLS material reloaded");
}

void Server::Impl::stop() {
  if (tl_server_thread) {
    throw Error(ErrorCode::FailedPrecondition, "Server::stop() cannot be called from one of the server's own threads");
  }
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (phase_ != Phase::Running) {
    phase_ = Phase::Stopped;
    return;
  }
  Clock::time_point deadline = Clock::now() + settings_.shutdown_grace;
  stopping_ = true;

  // 1. No new connections: close the listening sockets on their strands.
  for (Listener* listener : {&tls_listener_, plain_listener_ ? &*plain_listener_ : nullptr}) {
    if (listener == nullptr) continue;
    std::promise<void> closed;
    net::post(listener->acceptor.get_executor(), [listener, &closed] {
      error_code ignored;
      listener->acceptor.close(ignored);
      listener->retry.cancel();
      closed.set_value();
    });
    closed.get_future().wait();
  }
  // 2. Idle and half-received connections go now; in-flight requests finish.
  {
    auto live = live_sessions();
    for (auto& session : live) session->on_stop();
  }
  bool drained = wait_for_sessions(deadline);
  // 3. The grace is over: close what is left.
  if (!drained) {
    log::warn("http: shutdown grace over, closing the remaining connections");
    auto live = live_sessions();
    for (auto& session : live) session->force_close();
  }
  // 4. Handlers cannot be interrupted: wait for them (their connections are closed).
  handler_pool_.join();
  wait_for_sessions(Clock::now() + std::chrono::seconds(1));
  work_.reset();
  ioc_.stop();
  for (std::thread& thread : io_threads_) thread.join();
  io_threads_.clear();
  phase_ = Phase::Stopped;
  log::info("http: stopped");
}

ServerStats Server::Impl::stats() const {
  ServerStats s;
  s.connections_open = counters_.open.load();
  s.connections_accepted = counters_.accepted.load();
  s.connections_refused = counters_.refused.load();
  s.handshake_failures = counters_.handshake_failures.load();
  s.timeouts = counters_.timeouts.load();
  s.requests = counters_.requests.load();
  s.client_errors = counters_.client_errors.load();
  s.server_errors = counters_.server_errors.load();
  s.reloads = counters_.reloads.load();
  return s;
}

// ---------------------------------------------------------------------------
// Public API.

std::size_t ServerSettings::default_threads() noexcept {
  return std::max<std::size_t>(std::thread::hardware_concurrency(), 1);
}

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return std::string_view(v);
  }
  return std::nullopt;
}

Server::Server(ServerSettings settings, TlsMaterial material, Handler tls_handler, Handler plain_handler)
    : impl_(std::make_unique<Impl>(std::move(settings), std::move(material), std::move(tls_handler),
                                   std::move(plain_handler))) {}

Server::~Server() = default;

void Server::start() { impl_->start(); }
std::uint16_t Server::port() const { return impl_->port(); }
std::optional<std::uint16_t> Server::plain_port() const { return impl_->plain_port(); }
void Server::reload(TlsMaterial material) { impl_->reload(std::move(material)); }
void Server::stop() { impl_->stop(); }
ServerStats Server::stats() const { return impl_->stats(); }

std::string identity_of(X509* certificate) {
  if (certificate == nullptr) return {};
  int critical = 0;
  CPtr<GENERAL_NAMES, &GENERAL_NAMES_free> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, &critical, nullptr)));
  if (!names && critical == -2) return {};  // several SAN extensions: ambiguous
  if (names) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
      if (name->type != GEN_URI) continue;
      const ASN1_STRING* uri = name->d.uniformResourceIdentifier;
      std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                       static_cast<std::size_t>(ASN1_STRING_length(uri)));
      // IA5String: printable ASCII without spaces, or no identity (never the next name).
      bool clean = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
      });
      return clean ? text : std::string();
    }
  }
  const X509_NAME* subject = X509_get_subject_name(certificate);
  int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) return {};
  const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  int length = ASN1_STRING_to_UTF8(&utf8, cn);
  if (length <= 0) {
    OPENSSL_free(utf8);
    ERR_clear_error();
    return {};
  }
  std::string text(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  bool clean = std::none_of(text.begin(), text.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) == 0x7f;
  });
  return clean ? text : std::string();
}

namespace {

template <class Ptr, class ReadFn>
std::vector<Ptr> parse_pem(std::string_view pem, ReadFn read, const char* what) {
  ERR_clear_error();
  CPtr<BIO, &BIO_free> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw Error(ErrorCode::Internal, "BIO_new_mem_buf failed");
  std::vector<Ptr> items;
  while (auto* item = read(bio.get())) items.emplace_back(item);
  unsigned long error = ERR_peek_last_error();
  bool clean_end = error == 0 || (ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE);
  ERR_clear_error();
  if (!clean_end) throw Error(ErrorCode::InvalidArgument, std::string("a PEM ") + what + " does not parse");
  if (items.empty()) throw Error(ErrorCode::InvalidArgument, std::string("no PEM ") + what + " found");
  return items;
}

}  // namespace

std::vector<X509Ptr> parse_certificates(std::string_view pem) {
  return parse_pem<X509Ptr>(pem, [](BIO* bio) { return PEM_read_bio_X509(bio, nullptr, nullptr, nullptr); },
                            "certificate");
}

std::vector<X509CrlPtr> parse_crls(std::string_view pem) {
  return parse_pem<X509CrlPtr>(pem, [](BIO* bio) { return PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr); },
                               "CRL");
}

// ---------------------------------------------------------------------------
// ServerSignals

struct ServerSignals::State {
  State(Server& s, std::function<TlsMaterial()> l) : server(s), load(std::move(l)), signals(ioc, SIGTERM, SIGINT, SIGHUP) {}
  Server& server;
  std::function<TlsMaterial()> load;
  net::io_context ioc;
  net::signal_set signals;
  int received = 0;

  void arm() {
    signals.async_wait([this](error_code ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) {
        log::info("http: SIGHUP: reloading (load_material: in keyhold serve, the profiles, the policy and the TLS material)");
        try {
          server.reload(load());
        } catch (const std::exception& e) {
          log::error(std::string("http: reload failed, keeping the current TLS material: ") + e.what());
        }
        return arm();
      }
      log::info(std::string("http: ") + (signal == SIGTERM ? "SIGTERM" : "SIGINT") + ": stopping");
      received = signal;
      server.stop();
    });
  }
};

ServerSignals::ServerSignals(Server& server, std::function<TlsMaterial()> load_material)
    : state_(std::make_unique<State>(server, std::move(load_material))) {}

ServerSignals::~ServerSignals() = default;

int ServerSignals::wait() {
  state_->received = 0;
  state_->arm();
  state_->ioc.restart();
  state_->ioc.run();
  return state_->received;
}

}  // namespace keyhold::http
