#pragma once
// keyhold.toml: where it is, and what it says. The file is checked whole
// before anything uses it: unknown keys, wrong types, out-of-range values and
// a PIN written into it are refused with "FILE:LINE: ..." (one line, never the
// PIN). Every error is keyhold::Error with ErrorCode::InvalidArgument.
// Paths in the result are absolute: relative ones are taken relative to the
// directory of keyhold.toml, so a configuration means the same from any cwd.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keyhold/pki/profile.hpp"
#include "keyhold/ssh/profile.hpp"

namespace keyhold::app {

inline constexpr const char* kConfigEnvironmentVariable = "KEYHOLD_CONFIG";
inline constexpr const char* kConfigFileName = "keyhold.toml";
inline constexpr const char* kSystemConfigFile = "/etc/keyhold/keyhold.toml";

// [token]
struct TokenSettings {
  // A p11-kit registered module name ("softhsm2"), or a path to the module
  // library (anything with a '/'; made absolute like the other paths).
  std::string module;
  // RFC 7512 URI selecting the token; never carries pin-value.
  std::string uri;
  std::optional<std::filesystem::path> pin_file;  // absolute
  std::size_t max_sessions = 0;                   // 0: the token's own limit
  // [token.env]: set before the module is loaded, in file order.
  std::vector<std::pair<std::string, std::string>> environment;
};

// [store]
struct StoreSettings {
  std::filesystem::path path;  // absolute; default keyhold.db beside keyhold.toml
};

// [pki] and [profiles.NAME]
struct PkiSettings {
  // How far a CRL's nextUpdate lies after its thisUpdate: 1 hour to 366 days.
  std::chrono::seconds crl_next_update{7 * 24 * 3600};
  // By name (the table name, a valid profile name); each one passed
  // pki::validate_profile. Empty when the file has no [profiles.*].
  std::map<std::string, pki::Profile> profiles;
};

// [ssh_profiles.NAME]
struct SshSettings {
  // By name (the table name, a valid profile name); each one passed
  // ssh::validate_profile. Empty when the file has no [ssh_profiles.*].
  std::map<std::string, ssh::Profile> profiles;
};

// [server]: `keyhold serve`, the HTTPS service with mutual TLS. Optional: a
// configuration without it serves every other command. Paths are absolute
// (relative ones resolved like the others); whether the files exist is not
// checked here but when the service starts. Named ServiceSettings so as not
// to clash with http::ServerSettings, the transport's own settings.
struct ServiceSettings {
  // "HOST:PORT" or "[IPv6]:PORT" (see parse_listen_address); port 0 picks a
  // free port. `keyhold serve --listen` overrides it.
  std::string listen = "127.0.0.1:8443";
  // A plain-HTTP listener for public material (CA certificates, CRLs); none when unset.
  std::optional<std::string> plain_listen;
  bool tls12 = false;  // also accept TLS 1.2 (else TLS 1.3 only)
  // The keyhold CA that issued the server's certificate and issues client
  // certificates (renewal of certificate_file); none when unset.
  std::optional<std::string> ca;
  std::filesystem::path certificate_file;              // required: PEM, the server certificate then its issuers
  std::string key;                                     // required: the token key (keyhold key name) of the server
  std::vector<std::filesystem::path> client_ca_files;  // required, not empty: PEM CA certificates for clients
  std::vector<std::filesystem::path> crl_files;        // PEM CRLs of those CAs
  std::filesystem::path policy_file;                   // required: authz::Policy file
  std::filesystem::path audit_log;                     // required: audit::Log file
  std::string audit_key;                               // required: the token key that signs checkpoints
  std::uint64_t audit_checkpoint_records = 1000;       // 0: no count trigger
  std::chrono::seconds audit_checkpoint_seconds{60};   // 0: no time trigger (not both 0)
  std::size_t body_limit = 64 * 1024;                  // bytes of a request body
  std::chrono::seconds header_timeout{10};             // TLS handshake; request head; request body
  std::chrono::seconds idle_timeout{60};               // between requests; writing a response
  std::size_t max_connections = 1024;                  // both listeners together
  std::size_t threads = 0;                             // 0: one per CPU core
  std::uint64_t rate_limit_per_second = 500;           // per identity; 0: no limit
  std::uint64_t rate_limit_burst = 1000;               // per identity
  // The service's own maintenance (app::run_maintenance, as keyhold
  // maintain): once at start, then this often; nullopt ("off"): never.
  std::optional<std::chrono::seconds> maintain_every = std::chrono::seconds(3600);
  std::optional<std::filesystem::path> maintain_publish_dir;  // keyhold maintain --publish-dir
  std::chrono::seconds maintain_expiring_within = std::chrono::days(30);
};

struct Config {
  std::filesystem::path file;       // absolute path of keyhold.toml
  std::filesystem::path directory;  // its directory
  TokenSettings token;
  StoreSettings store;
  PkiSettings pki;
  SshSettings ssh;
  std::optional<ServiceSettings> server;  // [server]; nullopt when the file has none
};

// A listening address as [server] listen and plain_listen and `keyhold serve
// --listen` take it: "HOST:PORT" where HOST is an IPv4 address or a host
// name (letters, digits, '-' and '.'), or "[IPv6]:PORT"; PORT 0 to 65535 (0:
// any free port). Throws InvalidArgument "listen address 'TEXT' is not
// HOST:PORT or [IPv6]:PORT: WHY" (one line).
struct ListenAddress {
  std::string host;  // without brackets
  std::uint16_t port = 0;
};
ListenAddress parse_listen_address(std::string_view text);

// Where the configuration is: the --config flag if given, else
// $KEYHOLD_CONFIG (when set and not empty), else ./keyhold.toml if it exists,
// else system_file. Returns an absolute path. Throws InvalidArgument when the
// chosen file does not exist, saying which rule chose it, and how to create
// one when nothing was found at all. system_file is a parameter for tests.
std::filesystem::path find_config(const std::optional<std::filesystem::path>& flag,
                                  const std::filesystem::path& system_file = kSystemConfigFile);

// Reads and checks the file. Throws InvalidArgument when it cannot be read or
// says anything wrong.
Config load_config(const std::filesystem::path& file);

// Checks text as if it were the content of file: file names the source in
// messages and anchors relative paths (made absolute against the cwd first).
Config parse_config(std::string_view text, const std::filesystem::path& file);

// For keyhold init --dev: TOML text, to append to a keyhold.toml that has no
// [pki], [profiles] or [ssh_profiles], holding a [pki] section and
// permissive DEVELOPMENT-ONLY profiles (development_only = true):
// - X.509: `server` (serverAuth; digitalSignature, keyEncipherment) and
//   `client` (clientAuth; digitalSignature), each allowing any DNS name, IP
//   address, URI and email address and copying every known subject field;
// - SSH: `user` (user certificates, any principal, 8h by default, at most
//   24h, the five standard extensions) and `host` (host certificates, any
//   principal, 30d by default, at most 365d), each for every key type.
std::string dev_profiles_toml();

// For keyhold init --dev: TOML text (starting with a blank line), to append
// to a keyhold.toml that has no [server], holding a DEVELOPMENT-ONLY
// [server] section with relative paths: listen 127.0.0.1:8443, the CA `dev`,
// certificate_file server.pem with the token key `server-tls`,
// client_ca_files ca.pem, policy_file policy.toml, audit_log audit.log with
// the token key `audit`. init_dev makes what it names.
std::string dev_server_toml();

}  // namespace keyhold::app
