#pragma once
// keyhold.toml: where it is, and what it says. The file is checked whole
// before anything uses it: unknown keys, wrong types, out-of-range values and
// a PIN written into it are refused with "FILE:LINE: ..." (one line, never the
// PIN). Every error is keyhold::Error with ErrorCode::InvalidArgument.
// Paths in the result are absolute: relative ones are taken relative to the
// directory of keyhold.toml, so a configuration means the same from any cwd.

#include <chrono>
#include <cstddef>
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

struct Config {
  std::filesystem::path file;       // absolute path of keyhold.toml
  std::filesystem::path directory;  // its directory
  TokenSettings token;
  StoreSettings store;
  PkiSettings pki;
  SshSettings ssh;
};

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

}  // namespace keyhold::app
