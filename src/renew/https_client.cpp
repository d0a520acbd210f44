#include "keyhold/renew/https_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/text.hpp"

namespace keyhold::renew {
namespace {

using SslCtxPtr = CPtr<SSL_CTX, &SSL_CTX_free>;
using SslPtr = CPtr<SSL, &SSL_free>;
using BioPtr = CPtr<BIO, &BIO_free>;
using X509Ptr = CPtr<X509, &X509_free>;

constexpr std::size_t kMaxResponseBytes = 1024 * 1024;

bool is_dns_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return host.front() != '.' && host.front() != '-';
}

// OpenSSL's queued errors as one line (and the queue emptied).
std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += reason != nullptr ? reason : buffer;
  }
  return out.empty() ? "no detail from OpenSSL" : out;
}

class Socket {
 public:
  Socket() = default;
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

  void connect(const HttpsUrl& url, std::chrono::seconds timeout) {
    const std::string where = (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) + ":" +
                              std::to_string(url.port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (url.host_is_address) hints.ai_flags = AI_NUMERICHOST;
    addrinfo* found = nullptr;
    int rc = ::getaddrinfo(url.host.c_str(), std::to_string(url.port).c_str(), &hints, &found);
    if (rc != 0) throw Error(ErrorCode::Unavailable, "cannot resolve " + url.host + ": " + ::gai_strerror(rc));
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
    std::string last = "no address";
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
      if (fd < 0) {
        last = std::strerror(errno);
        continue;
      }
      int error = 0;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        error = errno;
        if (error == EINPROGRESS) {
          pollfd p{fd, POLLOUT, 0};
          int n = ::poll(&p, 1, static_cast<int>(timeout.count() * 1000));
          if (n == 0) {
            error = ETIMEDOUT;
          } else if (n < 0) {
            error = errno;
          } else {
            socklen_t length = sizeof error;
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
          }
        }
      }
      if (error != 0) {
        last = std::strerror(error);
        ::close(fd);
        continue;
      }
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      timeval tv{static_cast<time_t>(timeout.count()), 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      fd_ = fd;
      return;
    }
    throw Error(ErrorCode::Unavailable, "cannot connect to " + where + ": " + last);
  }

 private:
  int fd_ = -1;
};

// Writing to a connection the server has closed raises SIGPIPE, whose default
// action kills the process: blocked for this thread while it talks, and one
// raised meanwhile is taken off again before the mask is restored.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    pending_before_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~SigpipeBlocked() {
    sigset_t pending;
    sigpending(&pending);
    if (!pending_before_ && sigismember(&pending, SIGPIPE) == 1) {
      timespec zero{};
      sigtimedwait(&set_, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t set_{}, old_{};
  bool pending_before_ = false;
};

SslCtxPtr client_context(const ClientTls& tls) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw Error(ErrorCode::Internal, "OpenSSL could not make a TLS context: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(ctx.get(), tls.trust.c_str(), nullptr) != 1) {
    throw Error(ErrorCode::InvalidArgument, "cannot use the trust file " + tls.trust.string() + ": " + openssl_errors());
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.certificate.c_str()) != 1) {
    throw Error(ErrorCode::InvalidArgument,
                "cannot use the client certificate " + tls.certificate.string() + ": " + openssl_errors());
  }
  if (tls.chain) {
    BioPtr bio(BIO_new_file(tls.chain->c_str(), "r"));
    if (!bio) throw Error(ErrorCode::InvalidArgument, "cannot read the chain file " + tls.chain->string() + ": " + openssl_errors());
    while (X509Ptr certificate{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
      if (SSL_CTX_add1_chain_cert(ctx.get(), certificate.get()) != 1) {
        throw Error(ErrorCode::InvalidArgument, "cannot use the chain file " + tls.chain->string() + ": " + openssl_errors());
      }
    }
    ERR_clear_error();  // the end of the file reads as an error
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw Error(ErrorCode::InvalidArgument, "cannot use the client key " + tls.key.string() + ": " + openssl_errors());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    throw Error(ErrorCode::InvalidArgument, "the client key " + tls.key.string() + " is not the key of " +
                                                tls.certificate.string());
  }
  return ctx;
}

// Why a TLS call failed, in words: the server's certificate, an alert from the server, or the socket.
std::string tls_failure(SSL* ssl, int rc, const char* during) {
  int error = SSL_get_error(ssl, rc);
  long verify = SSL_get_verify_result(ssl);
  std::string detail;
  if (verify != X509_V_OK) {
    detail = std::string("the server's certificate does not verify against the trust file: ") +
             X509_verify_cert_error_string(verify);
    ERR_clear_error();
  } else if (error == SSL_ERROR_SSL) {
    detail = openssl_errors();
  } else if (error == SSL_ERROR_SYSCALL) {
    detail = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : errno != 0 ? std::strerror(errno) : "the server closed the connection";
    ERR_clear_error();
  } else {
    detail = "TLS error " + std::to_string(error);
    ERR_clear_error();
  }
  return std::string(during) + ": " + detail;
}

// In TLS 1.3 the server judges the client certificate after the client's
// handshake is complete: its refusal arrives as an alert on the next read.
// Says so in words when that is what happened.
std::string refusal_or(std::string failure) {
  std::string lower_failure = failure;
  std::transform(lower_failure.begin(), lower_failure.end(), lower_failure.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower_failure.find("alert") != std::string::npos &&
      (lower_failure.find("certificate") != std::string::npos || lower_failure.find("unknown ca") != std::string::npos)) {
    return "the server refused the client certificate (" + failure.substr(failure.find(": ") + 2) + ")";
  }
  return failure;
}

void write_all(SSL* ssl, std::string_view data, const std::string& where) {
  while (!data.empty()) {
    int n = SSL_write(ssl, data.data(), static_cast<int>(std::min<std::size_t>(data.size(), 1 << 20)));
    if (n <= 0) {
      std::string failure = tls_failure(ssl, n, ("sending the request to " + where + " failed").c_str());
      // A reset while writing usually follows an alert the server sent first: read it.
      char byte;
      int r = SSL_read(ssl, &byte, 1);
      if (r <= 0 && SSL_get_error(ssl, r) == SSL_ERROR_SSL) {
        std::string alert = tls_failure(ssl, r, ("sending the request to " + where + " failed").c_str());
        if (alert.find("alert") != std::string::npos) failure = alert;
      }
      ERR_clear_error();
      throw Error(ErrorCode::Unavailable, refusal_or(failure));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// The body of a chunked message (RFC 9112 section 7.1); nullopt while incomplete.
std::optional<std::string> dechunk(std::string_view data) {
  std::string body;
  while (true) {
    std::size_t eol = data.find("\r\n");
    if (eol == std::string_view::npos) return std::nullopt;
    std::string size_text(data.substr(0, std::min(eol, data.find(';'))));
    std::size_t size = 0;
    try {
      size = std::stoul(size_text, nullptr, 16);
    } catch (...) {
      throw Error(ErrorCode::Unavailable, "the server's chunked answer is malformed");
    }
    data.remove_prefix(eol + 2);
    if (size == 0) return body;
    if (data.size() < size + 2) return std::nullopt;
    body.append(data.substr(0, size));
    data.remove_prefix(size + 2);
  }
}

}  // namespace

std::optional<HttpsUrl> parse_https_url(std::string_view text) {
  constexpr std::string_view kScheme = "https://";
  if (text.size() <= kScheme.size() || lower(text.substr(0, kScheme.size())) != kScheme) return std::nullopt;
  std::string_view rest = text.substr(kScheme.size());
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (path.find_first_of("?#") != std::string_view::npos || scan_text(path) != TextProblem::kNone ||
      path.find(' ') != std::string_view::npos) {
    return std::nullopt;
  }
  HttpsUrl url;
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    url.host = std::string(authority.substr(1, close - 1));
    unsigned char buffer[16];
    if (::inet_pton(AF_INET6, url.host.c_str(), buffer) != 1) return std::nullopt;
    url.host_is_address = true;
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return std::nullopt;
      port = after.substr(1);
      if (port.empty()) return std::nullopt;
    }
  } else {
    std::size_t colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return std::nullopt;
    }
    unsigned char buffer[4];
    url.host_is_address = ::inet_pton(AF_INET, url.host.c_str(), buffer) == 1;
    if (!url.host_is_address && !is_dns_name(url.host)) return std::nullopt;
  }
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    int value = std::stoi(std::string(port));
    if (value < 1 || value > 65535) return std::nullopt;
    url.port = static_cast<std::uint16_t>(value);
  }
  std::string base(path);
  while (!base.empty() && base.back() == '/') base.pop_back();
  url.base_path = base;
  return url;
}

HttpsResponse post_json(const HttpsUrl& url, std::string_view path, std::string_view body, const ClientTls& tls) {
  ERR_clear_error();
  SslCtxPtr ctx = client_context(tls);
  const std::string where = (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) + ":" +
                            std::to_string(url.port);
  SigpipeBlocked no_sigpipe;
  Socket socket;
  socket.connect(url, tls.timeout);

  SslPtr ssl(SSL_new(ctx.get()));
  if (!ssl || SSL_set_fd(ssl.get(), socket.fd()) != 1) {
    throw Error(ErrorCode::Internal, "OpenSSL could not start a TLS connection: " + openssl_errors());
  }
  // The server's certificate must name the host of the URL (RFC 6125).
  if (url.host_is_address) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), url.host.c_str()) != 1) {
      throw Error(ErrorCode::Internal, "OpenSSL refused the address " + url.host);
    }
  } else {
    SSL_set_tlsext_host_name(ssl.get(), url.host.c_str());
    if (SSL_set1_host(ssl.get(), url.host.c_str()) != 1) throw Error(ErrorCode::Internal, "OpenSSL refused the host " + url.host);
  }
  int rc = SSL_connect(ssl.get());
  if (rc != 1) {
    throw Error(ErrorCode::Unavailable,
                refusal_or(tls_failure(ssl.get(), rc, ("the TLS handshake with " + where + " failed").c_str())));
  }

  std::string host_header = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (url.port != 443) host_header += ":" + std::to_string(url.port);
  std::string request = "POST " + url.base_path + std::string(path) + " HTTP/1.1\r\nHost: " + host_header +
                        "\r\nUser-Agent: keyhold-renew\r\nAccept: application/json\r\nContent-Type: application/json\r\n"
                        "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  write_all(ssl.get(), request, where);
  write_all(ssl.get(), body, where);

  // Read until the message is complete (Content-Length or chunked) or the server closes.
  std::string data;
  std::optional<std::size_t> header_end, content_length;
  bool chunked = false;
  HttpsResponse response;
  auto complete = [&]() -> bool {
    if (!header_end) {
      std::size_t end = data.find("\r\n\r\n");
      if (end == std::string::npos) return false;
      header_end = end + 4;
      std::string_view head(data.data(), end);
      std::size_t line_end = head.find("\r\n");
      std::string_view status_line = head.substr(0, line_end);
      if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
        throw Error(ErrorCode::Unavailable, where + " did not answer in HTTP: '" + shown(status_line) + "'");
      }
      response.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
      std::string_view fields = line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
      while (!fields.empty()) {
        std::size_t eol = fields.find("\r\n");
        std::string_view field = fields.substr(0, eol);
        fields = eol == std::string_view::npos ? std::string_view() : fields.substr(eol + 2);
        std::size_t colon = field.find(':');
        if (colon == std::string_view::npos) continue;
        std::string name = lower(field.substr(0, colon));
        std::string_view value = field.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        if (name == "content-length") content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
        if (name == "transfer-encoding" && lower(value).find("chunked") != std::string::npos) chunked = true;
      }
    }
    std::string_view rest = std::string_view(data).substr(*header_end);
    if (chunked) {
      if (auto body_text = dechunk(rest)) {
        response.body = std::move(*body_text);
        return true;
      }
      return false;
    }
    if (content_length && rest.size() >= *content_length) {
      response.body = std::string(rest.substr(0, *content_length));
      return true;
    }
    return false;
  };
  char buffer[16384];
  while (!complete()) {
    int n = SSL_read(ssl.get(), buffer, sizeof buffer);
    if (n <= 0) {
      int error = SSL_get_error(ssl.get(), n);
      bool closed = error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && errno == 0) ||
                    (error == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
      if (closed && header_end && !chunked && !content_length) {
        ERR_clear_error();
        response.body = data.substr(*header_end);
        break;
      }
      if (closed && data.empty()) {
        ERR_clear_error();
        throw Error(ErrorCode::Unavailable, where + " closed the connection without an answer (did it refuse the client "
                                                    "certificate?)");
      }
      throw Error(ErrorCode::Unavailable,
                  refusal_or(tls_failure(ssl.get(), n, ("reading the answer of " + where + " failed").c_str())));
    }
    data.append(buffer, static_cast<std::size_t>(n));
    if (data.size() > kMaxResponseBytes) throw Error(ErrorCode::Unavailable, where + " answered more than 1 MiB");
  }
  SSL_shutdown(ssl.get());
  return response;
}

}  // namespace keyhold::renew
