#pragma once
// The HTTPS transport of `keyhold serve`: HTTP/1.1 with keep-alive over TLS
// 1.3 (TLS 1.2 only when configured) with mandatory client certificates
// (mTLS), on Boost.Beast/Asio over OpenSSL 3. It knows nothing of keyhold's
// business: it authenticates the caller, reads a bounded request and hands it
// to a Handler, then writes what the Handler returns. An optional plain-HTTP
// listener hands its requests to a second Handler; it is meant for public
// material only (CA certificates, CRLs) and never carries an identity.
//
// The server's private key is any EVP_PKEY, in production a token key from
// crypto::make_token_pkey: every handshake signs in the token. The SSL_CTX is
// created in OpenSSL's default library context, as that header asks.
//
// Client certificates (RFC 5280 path validation by OpenSSL):
// - required on every TLS connection (SSL_VERIFY_PEER |
//   SSL_VERIFY_FAIL_IF_NO_PEER_CERT); a connection without a valid one fails
//   in the handshake and never reaches a Handler;
// - the trust anchors are exactly TlsMaterial::client_cas (an intermediate
//   may be an anchor: X509_V_FLAG_PARTIAL_CHAIN); the certificate must be
//   valid now; its extendedKeyUsage is not checked in the handshake but
//   reported as Request::client_auth, for the Handler to enforce (a server
//   certificate may renew itself);
// - revocation, per CA: a CA for which at least one CRL is configured has
//   every certificate it issued (at any depth of the chain) checked against
//   its CRL, and a missing or unusable CRL for it (expired, bad signature) is
//   fatal. A CA with no CRL configured is not checked for revocation (logged
//   as a warning when the material is loaded).
// - No session tickets, no session cache: every connection does a full
//   handshake, so a reload() with a new CRL applies to every new connection.
// The caller's identity is the certificate's first URI SAN (e.g.
// spiffe://example.org/payments), else its subject CN (identity_of). A
// verified certificate that yields no identity gets 403 without reaching the
// Handler.
//
// Threads: an io_context run by ServerSettings::threads threads does all
// network I/O and the TLS handshakes (with a token key, one token signature
// per handshake). Handlers run on a separate pool of
// ServerSettings::handler_threads threads, so a Handler that blocks on the
// token never stalls accepting, handshakes or timeouts.
//
// Per connection: the TLS handshake must complete within header_timeout;
// between requests a connection may stay idle for idle_timeout; once the
// first byte of a request has arrived its head must be complete within
// header_timeout, and then its body within header_timeout again; a response
// must be written within idle_timeout. A connection that misses a timeout is
// closed without a response, so a client that never finishes its headers
// holds a connection slot for at most header_timeout and never a thread.
//
// Errors the server answers itself, as JSON
// {"error":{"code":"...","message":"...","request_id":"..."}}, closing the
// connection afterwards (after a short lingering read so that the client
// sees the response): 400 bad_request (malformed HTTP), 413 too_large (body
// over body_limit; decided from Content-Length before the body is read),
// 431 headers_too_large (head over header_limit). And, keeping the
// connection: 403 permission_denied (no identity in the certificate), 500
// internal (a Handler failed).

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"

namespace keyhold::http {

using X509Ptr = CPtr<X509, &X509_free>;
using X509CrlPtr = CPtr<X509_CRL, &X509_CRL_free>;
using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;

struct Request {
  std::string method;        // "GET", "POST", ... as sent
  std::string target;        // origin-form as sent: "/v1/keys?x=y"
  std::string content_type;  // the Content-Type header, empty when absent
  std::string body;          // at most ServerSettings::body_limit bytes
  // Every header as received (names as sent; Content-Type included).
  std::vector<std::pair<std::string, std::string>> headers;
  // The verified client certificate's identity (identity_of); never empty on
  // the TLS listener, always empty on the plain one.
  std::string identity;
  // Whether that certificate is meant for client authentication: it has no
  // extendedKeyUsage, or one that names clientAuth (X509_PURPOSE_SSL_CLIENT).
  // The handshake accepts any usage; a Handler must refuse a request whose
  // certificate is not for client authentication unless the request is the
  // certificate renewing itself. False on the plain listener.
  bool client_auth = false;
  // The verified client certificate, DER (empty on the plain listener).
  std::string client_certificate;
  std::string client_address;  // "127.0.0.1:50412", "[::1]:50412"
  // 32 random hex digits made by the server (never taken from the client),
  // also sent back as the X-Request-Id response header.
  std::string request_id;
  bool tls = false;  // true on the mTLS listener, false on the plain one

  // The value of the first header named name (ASCII case-insensitive), or
  // nullopt.
  std::optional<std::string_view> header(std::string_view name) const;
};

struct Response {
  int status = 200;  // 200..599; anything else is answered as 500
  std::string content_type = "application/json";  // omitted when empty
  std::string body;
  // Extra headers. The server sets Content-Length, Connection, Date and
  // X-Request-Id itself and ignores those names here (and Transfer-Encoding,
  // Keep-Alive, Upgrade); it adds "Cache-Control: no-store" and
  // "X-Content-Type-Options: nosniff" unless a header of that name is given.
  // A name that is not an RFC 9110 token, or a value with CR, LF or NUL,
  // makes the response a 500. To a HEAD request the body is not sent, its
  // length is (Content-Length); 204 and 304 never carry a body.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Called on a handler-pool thread, possibly on several threads at once; may
// block (token operations). Exceptions are answered, never propagated:
// keyhold::Error becomes its status (InvalidArgument 400, Unauthenticated
// 401, PermissionDenied 403, NotFound 404, AlreadyExists and
// FailedPrecondition 409, Unimplemented 501, Unavailable 503, ResourceExhausted 429) with its code
// and message, which keyhold keeps free of secrets; Error(Internal) and every
// other exception become 500 {"code":"internal","message":"internal error"}
// (the exception text is not sent, and logged only for keyhold::Error).
// A Handler must not call Server::stop().
using Handler = std::function<Response(const Request&)>;

struct TlsMaterial {
  // The server's private key: a token key from crypto::make_token_pkey in
  // production, any EVP_PKEY (of the default library context) in tests.
  EvpPkeyPtr key;
  std::vector<X509Ptr> chain;       // the server certificate first, then its intermediates (sent as given)
  std::vector<X509Ptr> client_cas;  // trust anchors for client certificates; at least one
  std::vector<X509CrlPtr> crls;     // each issued (and signed) by one of client_cas, not expired
  bool allow_tls12 = false;         // else TLS 1.3 only
};

struct ServerSettings {
  std::string listen = "127.0.0.1:8443";  // HOST:PORT, [IPv6]:PORT; port 0 picks a free port (see Server::port)
  std::optional<std::string> plain_listen;  // plain-HTTP listener for public material; needs a plain Handler
  std::size_t threads = default_threads();          // I/O threads (network, TLS handshakes)
  std::size_t handler_threads = default_threads();  // threads that run Handlers
  std::size_t body_limit = 64 * 1024;   // bytes; a larger body gets 413
  std::size_t header_limit = 8 * 1024;  // bytes of request line and headers; more gets 431
  std::chrono::milliseconds header_timeout{10000};  // handshake; request head; request body (see above)
  std::chrono::milliseconds idle_timeout{60000};    // between requests; writing a response
  std::chrono::milliseconds shutdown_grace{10000};  // how long stop() lets in-flight requests finish
  std::size_t max_connections = 1024;   // open connections, both listeners; more are closed on accept

  static std::size_t default_threads() noexcept;  // hardware concurrency, at least 1
};

// Counters since start(); a consistent-enough snapshot (each value is read
// atomically, not all of them at one instant).
struct ServerStats {
  std::uint64_t connections_open = 0;
  std::uint64_t connections_accepted = 0;  // both listeners, including those that then failed the handshake
  std::uint64_t connections_refused = 0;   // closed on accept: max_connections reached
  std::uint64_t handshake_failures = 0;    // TLS handshakes that failed (no, or an invalid, client certificate; TLS 1.2 ...)
  std::uint64_t timeouts = 0;              // connections closed by header_timeout (handshake, request head or body); idle closes are not counted
  std::uint64_t requests = 0;              // requests answered (by a Handler or by the server)
  std::uint64_t client_errors = 0;         // 4xx responses
  std::uint64_t server_errors = 0;         // 5xx responses
  std::uint64_t reloads = 0;               // successful reload() calls
};

class Server {
 public:
  // Checks everything that can be checked without binding: the settings
  // (threads >= 1, limits > 0, addresses that parse, a plain Handler when
  // plain_listen is set and only then), and the TLS material (a key that
  // matches the first certificate of chain, at least one client CA, every
  // CRL issued and signed by one of client_cas and not expired), building the
  // first SSL_CTX. Throws Error(InvalidArgument) with the reason.
  Server(ServerSettings settings, TlsMaterial material, Handler tls_handler, Handler plain_handler = {});
  // Calls stop() when still running.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listener(s) and returns; the server then runs on its own
  // threads. Error(Unavailable) when an address is busy or cannot be bound
  // (the message names it), Error(FailedPrecondition) when called twice.
  void start();
  // The bound port of listen (the one picked when it was 0). Valid after start().
  std::uint16_t port() const;
  // The bound port of plain_listen; nullopt without a plain listener.
  std::optional<std::uint16_t> plain_port() const;

  // Replaces the TLS material (server certificate and key, client CAs, CRLs,
  // TLS 1.2 switch): connections accepted from now on use it, those already
  // open keep theirs. Validated as in the constructor; on Error(InvalidArgument)
  // the old material stays. Thread-safe; may be called from a Handler.
  void reload(TlsMaterial material);

  // Stops accepting (new connections are refused by the kernel), closes idle
  // and half-received connections, lets requests whose head has arrived
  // finish and answers them with "Connection: close", waits up to
  // shutdown_grace for that, then closes whatever is left and joins every
  // thread. A Handler that is still running is waited for (a thread cannot
  // be interrupted), but its connection is already gone. Idempotent.
  // Error(FailedPrecondition) when called from one of the server's threads.
  void stop();

  ServerStats stats() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The HTTP status of an error code (the table of Handler above; 429 for
// ResourceExhausted).
int status_for(ErrorCode code);

// The caller identity of a verified client certificate: its first URI SAN,
// else its subject CN; empty when it has neither, when that URI or CN holds
// a control character (or NUL), or when the subject has several CNs.
// certificate may be null (empty result).
std::string identity_of(X509* certificate);

// Every certificate / CRL in a PEM text, in order. Error(InvalidArgument)
// when there is none or one does not parse.
std::vector<X509Ptr> parse_certificates(std::string_view pem);
std::vector<X509CrlPtr> parse_crls(std::string_view pem);

// SIGTERM, SIGINT and SIGHUP for `keyhold serve`. From construction until
// destruction these signals are handled by this object (process-wide;
// default actions are restored afterwards); wait() acts on them:
// - SIGHUP: load_material() and server.reload() with the result (renewed
//   server certificate, new CRLs); a failure is logged and the old material
//   stays. Open connections are not touched.
// - SIGTERM, SIGINT: server.stop(), then wait() returns the signal number.
// One object per process at a time; not for use from a Handler.
class ServerSignals {
 public:
  ServerSignals(Server& server, std::function<TlsMaterial()> load_material);
  ~ServerSignals();
  ServerSignals(const ServerSignals&) = delete;
  ServerSignals& operator=(const ServerSignals&) = delete;

  // Blocks the calling thread, handling signals, until SIGTERM or SIGINT.
  int wait();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace keyhold::http
