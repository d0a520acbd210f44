#pragma once
// The HTTPS client of remote renewal: one JSON POST per connection to
// `keyhold serve`, authenticated both ways (the server's certificate must
// chain to the renewal file's `trust` and name the URL's host; the client
// presents its certificate and proves its key in the handshake). OpenSSL
// libssl; no keep-alive, no redirects, no proxies.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace keyhold::renew {

struct HttpsUrl {
  std::string host;       // a DNS name, an IPv4 address or an IPv6 address (without brackets)
  std::uint16_t port = 443;
  std::string base_path;  // "" or "/prefix" (no trailing '/'): API paths are appended to it
  bool host_is_address = false;
};

// "https://HOST[:PORT][/PREFIX]" with HOST a DNS name, IPv4 address or
// [IPv6] address; no user info, query or fragment. nullopt otherwise.
std::optional<HttpsUrl> parse_https_url(std::string_view text);

struct ClientTls {
  std::filesystem::path trust;                 // PEM CA certificate(s) for the server
  std::filesystem::path certificate;           // PEM: the client certificate (and possibly its issuers)
  std::optional<std::filesystem::path> chain;  // PEM: more issuers to send
  std::filesystem::path key;                   // PEM private key of the certificate
  std::chrono::seconds timeout{30};            // connect, and each read or write
};

struct HttpsResponse {
  int status = 0;
  std::string body;
};

// POSTs body (application/json) to url's base path + path. Throws
// keyhold::Error: Unavailable when the server cannot be reached, the
// handshake fails (with OpenSSL's reason, e.g. the server's certificate not
// verifying against trust) or the answer is not HTTP; InvalidArgument when a
// trust, certificate or key file cannot be used. Any HTTP status is returned.
HttpsResponse post_json(const HttpsUrl& url, std::string_view path, std::string_view body, const ClientTls& tls);

}  // namespace keyhold::renew
