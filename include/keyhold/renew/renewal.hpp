#pragma once
// keyhold renew: the renewal file (which certificates a machine keeps fresh,
// docs/renewal.md) and when a certificate is due. Pure: no files are written
// and no clock is read here, so the rules are unit-tested as they are.
//
// The file is checked whole before anything uses it: unknown keys, wrong
// types, bad values, duplicate names and files claimed twice are refused with
// keyhold::Error(InvalidArgument) "FILE:LINE: ..." (one line).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keyhold::renew {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

inline constexpr const char* kDefaultRenewalFile = "/etc/keyhold/renew.toml";

enum class Kind { X509, SshUser, SshHost };
std::string_view to_string(Kind kind) noexcept;  // "x509", "ssh-user", "ssh-host"

// When to renew. At most one of renew_before and renew_at_percent; neither:
// once less than a third of the lifetime is left.
struct DuePolicy {
  std::optional<std::chrono::seconds> renew_before;
  std::optional<double> renew_at_percent;  // (0, 100): renew once this much of the lifetime has passed
  std::optional<std::chrono::seconds> jitter;
};

// One [[certificate]] of the renewal file. Paths are absolute (relative ones
// are taken relative to the renewal file's directory).
struct Entry {
  std::string name;
  Kind kind = Kind::X509;
  std::size_t line = 0;  // of its [[certificate]] header
  std::optional<std::string> server;            // remote mode: "https://host[:port]"; absent: local mode
  std::optional<std::filesystem::path> trust;   // remote mode: CA certificate(s) the server's certificate chains to
  std::string ca;
  std::optional<std::string> profile;           // local: X.509 profile (required) or SSH profile (default user/host)
  std::vector<std::string> names;               // X.509: DNS names and IP addresses; SSH: principals
  std::filesystem::path cert;                   // SSH default: KEY-cert.pub
  std::optional<std::filesystem::path> chain;   // X.509 only
  std::optional<std::filesystem::path> key;     // absent only when key_in_token
  bool key_in_token = false;                    // key = "token": local X.509, the subject key made in the token
  std::optional<std::string> key_type;          // of a new key (see key_types_for)
  bool rekey = true;                            // a new key on each renewal
  DuePolicy policy;
  std::optional<std::string> deploy_hook;       // run by /bin/sh -c after a change
  std::optional<int> days;                      // local X.509: lifetime of the new certificate (else the profile's)
  std::optional<std::chrono::seconds> validity; // local SSH: validity of the new certificate (else the profile's)
  std::optional<std::string> key_id;            // SSH: local default is the entry name; remote: checked
  std::optional<std::filesystem::path> tls_cert, tls_key;  // remote SSH: the X.509 identity for mTLS

  bool remote() const noexcept { return server.has_value(); }
  bool ssh() const noexcept { return kind != Kind::X509; }
};

struct RenewalFile {
  std::filesystem::path path;  // absolute
  std::vector<Entry> entries;  // in file order
};

// Reads and checks the renewal file (see above for errors).
RenewalFile load_renewal_file(const std::filesystem::path& path);
// The same over text already read; `path` names it in messages and anchors relative paths.
RenewalFile parse_renewal_file(std::string_view text, const std::filesystem::path& path);

// The key types a new key of an entry of this kind may have, the default first.
std::vector<std::string> key_types_for(Kind kind);

// ---- When a certificate is due ---------------------------------------------

// What the current certificate says about its own lifetime.
struct CurrentValidity {
  TimePoint not_before, not_after;
  std::string serial;  // hex (X.509) or decimal (SSH): feeds the jitter
};

struct DueDecision {
  bool due = false;
  // Why, for the entry's line: "less than a third of its lifetime is left
  // (expires in 29d 23h)", "not due (expires in 50d, renewal from ...)".
  std::string reason;
  std::optional<TimePoint> renew_from;  // when it becomes due (with the jitter), if there is a certificate
};

// The decision for a certificate (nullopt: none yet, which is due), at `now`.
// The renewal point is not_after - renew_before, or not_before + percent of
// the lifetime, or not_after - lifetime/3. With a jitter, it moves later by
// jitter_fraction (in [0, 1)) of the window, the window being the jitter but
// at most half the time from the renewal point to expiry, so that a
// jittered certificate still renews well before it expires. Due from that
// point on (expired certificates included); always due with force.
DueDecision decide(const DuePolicy& policy, const std::optional<CurrentValidity>& current, TimePoint now,
                   bool force, double jitter_fraction);

// A stable fraction in [0, 1) for an entry's jitter: SHA-256 of the machine
// (its machine id or host name), the entry name and the certificate serial.
// Stable across runs (so --dry-run says what the real run will do) and
// different across machines and certificates (so a fleet spreads out).
double jitter_fraction(std::string_view machine, std::string_view entry, std::string_view serial);
// /etc/machine-id if readable, else the host name.
std::string machine_identity();

// "50d 3h", "3h 12m", "45m", "30s": the two largest units of a duration.
std::string format_duration(std::chrono::seconds duration);

// An RFC 3339 timestamp ("2026-01-02T03:04:05Z", "...T03:04:05.5+01:00",
// lower-case t and z accepted); nullopt when malformed.
std::optional<TimePoint> parse_rfc3339(std::string_view text);

}  // namespace keyhold::renew
