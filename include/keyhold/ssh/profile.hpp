#pragma once
// SSH certificate profiles: what a profile lets an OpenSSH certificate
// (PROTOCOL.certkeys) hold, and the check of a signing request against it. A
// request that asks for anything the profile does not allow is refused,
// naming the offending value and the rule, and nothing is signed. Pure
// functions over values: thread-safe, no I/O. Every error is keyhold::Error
// with ErrorCode::InvalidArgument, its message on one line (values are shown
// with control and non-ASCII bytes escaped as \xNN).
//
// The configuration loader (app/config) parses [ssh_profiles.NAME] tables
// into Profile and checks them with the validate_* functions below; ssh does
// not know TOML. docs/configuration.md#ssh_profilesname has the same rules
// for operators.
//
// Rules of a request (check_sign_request), in the order they are checked:
// - Kind: a profile signs either user or host certificates, never both.
// - Subject key: ssh-ed25519 ("ed25519" in key_types), ecdsa-sha2-nistp256,
//   -nistp384, -nistp521 ("ecdsa"), ssh-rsa ("rsa") of min_rsa_bits (never
//   below kMinRsaBits) to kMaxRsaBits (OpenSSH's own limit). Refused always:
//   DSA (ssh-dss), a certificate given as the subject key
//   (*-cert-v01@openssh.com), FIDO security keys (sk-*; not supported), any
//   other name.
// - Key id: 1 to kMaxKeyIdLength bytes of UTF-8 without control characters
//   (C0, DEL, C1); spaces are allowed. sshd logs it; KRLs revoke by it.
// - Principals: 1 to 256 (OpenSSH's limit, kMaxPrincipals of
//   certificate.hpp), none twice. An empty list would make OpenSSH accept
//   the certificate for every user or every host, so it is refused for both
//   kinds. Each one is 1 to kMaxPrincipalLength bytes of printable ASCII
//   without a space or a comma (OpenSSH lists principals separated by
//   commas, e.g. in AuthorizedPrincipalsFile and ssh-keygen -n).
//   - user: '*' and '?' are refused too: sshd compares user principals
//     literally, so a wildcard would only match a user of that very name.
//   - host: a lower-case LDH host name (letters, digits, '-'; labels of 1 to
//     63, 253 in all; a single label such as "web01" is fine), a wildcard
//     name "*.example.org" (ssh matches host principals as patterns), or an
//     IPv4 or IPv6 address. Upper case is refused: ssh lower-cases the host
//     name before matching, so "Web.example.org" would never match. Refused:
//     a trailing dot, empty labels, '_', other '*' or '?', an all-digit last
//     label that is not an IPv4 address.
//   Each principal must match one of the profile's patterns (see below).
// - Validity (now is the current time in seconds since the epoch):
//   - validity (or, with nothing asked, default_validity): at most
//     max_validity; valid_after = now - kClockSkew (0 at the earliest),
//     valid_before = now + validity;
//   - valid_from and valid_to: exactly those; valid_to > valid_from and
//     valid_to - valid_from <= max_validity;
//   - valid_from alone: valid_to = valid_from + default_validity;
//   - valid_to alone: valid_after = now - kClockSkew, and
//     valid_to - now <= max_validity;
//   - validity together with valid_from or valid_to is refused, and so is a
//     window that does not end after now (it would never be valid).
//   Validities are checked without the clock skew allowance.
// - Critical options (user certificates only; ssh refuses a host certificate
//   that has any): a name once; known names (force-command, source-address,
//   verify-required) or a vendor name listed in the profile; each one in the
//   profile's critical_options. Values:
//   - force-command: 1 to kMaxOptionValueLength bytes of UTF-8 without
//     control characters (no newline);
//   - source-address: addresses or CIDRs (IPv4 or IPv6) separated by commas,
//     no spaces, no empty entries, none twice, no host bits set after the
//     prefix (sshd treats such an entry as an error and refuses the login);
//   - verify-required: no value; signed as asked (like ssh-keygen -O) with a
//     warning, because sshd enforces it only for FIDO keys (sk-*) and
//     ignores it for the key types keyhold signs;
//   - a vendor option: UTF-8 without control characters, up to
//     kMaxOptionValueLength bytes (may be empty). sshd refuses certificates
//     with critical options it does not know.
// - Extensions (user certificates only; host certificates get none): a name
//   once; known names (kKnownExtensions) or a vendor name listed in the
//   profile; each one in the profile's extensions. The certificate gets the
//   profile's default_extensions (unless no_default_extensions) plus those
//   asked for.
//
// Principal patterns (Profile::principals) are globs over the whole
// principal in which '*' matches any run of characters, dots included ("*"
// any principal; "deploy-*"; "*.example.org" any name under example.org at
// any depth and the wildcard "*.example.org" itself). '?' is not a wildcard
// and is refused. Matching is case-sensitive; host patterns must be lower
// case.
//
// Vendor extension and option names have the form name@domain (RFC 4251
// section 6): 1 to 64 characters in all, the name of letters, digits, '.',
// '_' or '-', the domain an LDH host name.
//
// Duplicates are refused everywhere: in a request (principals, options,
// extensions, source-address entries) and in a profile's lists.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keyhold::ssh {

inline constexpr int kMinRsaBits = 2048;                                 // no profile may allow less
inline constexpr int kMaxRsaBits = 16384;                                // OpenSSH's SSH_RSA_MAXIMUM_MODULUS_SIZE
inline constexpr std::chrono::seconds kMinValidity{60};                  // for a profile's default and maximum
inline constexpr std::chrono::seconds kMaxValidity{3650LL * 24 * 3600};  // 3650d, about 10 years
inline constexpr std::chrono::seconds kClockSkew{60};                    // valid_after lies this far before now
inline constexpr std::size_t kMaxPrincipalLength = 256;                  // bytes
inline constexpr std::size_t kMaxKeyIdLength = 256;                      // bytes
inline constexpr std::size_t kMaxOptionValueLength = 4096;               // bytes, for every critical option

// The standard OpenSSH user certificate extensions, in the byte order the
// certificate format requires (PROTOCOL.certkeys: lexically ordered).
inline constexpr std::array<std::string_view, 5> kStandardExtensions = {
    "permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding", "permit-pty", "permit-user-rc"};
// Every extension name keyhold knows without a profile listing it: the
// standard five and no-touch-required (FIDO keys only; no effect on others).
inline constexpr std::array<std::string_view, 6> kKnownExtensions = {
    "no-touch-required", "permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding",
    "permit-pty",        "permit-user-rc"};
inline constexpr std::array<std::string_view, 3> kKnownCriticalOptions = {"force-command", "source-address",
                                                                          "verify-required"};
// Subject key kinds of Profile::key_types: "ecdsa" is P-256, P-384 and P-521.
inline constexpr std::array<std::string_view, 3> kKeyTypes = {"ed25519", "ecdsa", "rsa"};

enum class CertificateKind { User, Host };

// "user" | "host".
std::string_view to_string(CertificateKind kind) noexcept;
// "user" or "host" exactly; nullopt for anything else.
std::optional<CertificateKind> parse_certificate_kind(std::string_view text) noexcept;

struct Profile {
  std::string name;
  CertificateKind kind = CertificateKind::User;  // what it may sign: user or host certificates
  // Allowed principals: globs with '*' (see above). Never empty.
  std::vector<std::string> principals = {"*"};
  // Allowed subject key kinds, of kKeyTypes. Never empty.
  std::vector<std::string> key_types = {"ed25519", "ecdsa", "rsa"};
  int min_rsa_bits = kMinRsaBits;  // kMinRsaBits to kMaxRsaBits
  // kMinValidity <= default_validity <= max_validity <= kMaxValidity.
  std::chrono::seconds default_validity{8 * 3600};
  std::chrono::seconds max_validity{24 * 3600};
  // User profiles: the extensions a request may have, and those it gets
  // unless it says otherwise (a subset of extensions). Host profiles: both
  // empty. The initialisers are a user profile's; make_profile() gives a host
  // profile's.
  std::vector<std::string> extensions{kStandardExtensions.begin(), kStandardExtensions.end()};
  std::vector<std::string> default_extensions{kStandardExtensions.begin(), kStandardExtensions.end()};
  // The critical options a request may have (user profiles; empty for host profiles).
  std::vector<std::string> critical_options = {"force-command", "source-address", "verify-required"};
  // A development profile (keyhold init --dev writes permissive ones):
  // signing goes ahead with a warning.
  bool development_only = false;
};

// A profile with the documented defaults for its kind: for Host, no
// extensions, no default extensions and no critical options.
Profile make_profile(std::string name, CertificateKind kind);

struct SignRequest {
  CertificateKind kind = CertificateKind::User;
  // The subject key's OpenSSH name ("ssh-ed25519", "ecdsa-sha2-nistp256",
  // "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa") and, for RSA,
  // its modulus size.
  std::string subject_key_type;
  int subject_rsa_bits = 0;
  std::string key_id;
  std::vector<std::string> principals;
  std::optional<std::chrono::seconds> validity;       // --validity 8h
  std::optional<std::uint64_t> valid_from, valid_to;  // --valid-from/--valid-to (seconds since the epoch)
  // Critical options asked for, name -> value ("source-address" ->
  // "10.0.0.0/8,192.168.0.1"; "verify-required" -> "").
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<std::string> extensions;  // asked for explicitly
  bool no_default_extensions = false;   // leave out the profile's default_extensions
};

struct SignDecision {
  std::uint64_t valid_after = 0;
  std::uint64_t valid_before = 0;
  // Both sorted by name in byte order, each name once, as the certificate
  // must hold them. Extensions have empty values. Always empty for host
  // certificates.
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<std::string> extensions;
  // For the operator: a development-only profile; an extension that has no
  // effect on the subject key.
  std::vector<std::string> warnings;
};

// Checks the request against the profile (which must have passed
// validate_profile) and says what to sign; now is the current time in
// seconds since the epoch. Throws InvalidArgument naming the offending value
// and the rule, e.g.
//   "profile 'hosts' signs host certificates, not user certificates"
//   "RSA keys of 1024 bits are too small (at least 2048)"
//   "DSA keys are refused"
//   "principal 'a b' contains a space"
//   "principal 'a,b' contains a comma (OpenSSH separates principals with commas)"
//   "an empty principal list is refused for a user certificate: OpenSSH would accept it for every user"
//   "profile 'user' does not allow principal 'root' (allowed: deploy-*, alice)"
//   "validity 48h exceeds profile 'user' maximum of 24h"
//   "critical option 'source-address': '10.0.0.0/33' is not an address or CIDR (an IPv4 prefix is 0 to 32)"
//   "unknown extension 'permit-everything' (known: no-touch-required, permit-X11-forwarding, ...)"
SignDecision check_sign_request(const Profile& profile, const SignRequest& request, std::uint64_t now);

// The whole profile: its name, every list entry (the functions below) with
// none twice, non-empty principals and key_types, min_rsa_bits (kMinRsaBits
// to kMaxRsaBits), validities (kMinValidity to kMaxValidity, default <=
// max), default_extensions a subset of extensions, and for a host profile no
// extensions, default extensions or critical options. Messages start
// "profile 'NAME': ".
void validate_profile(const Profile& profile);

// Each entry on its own (for the configuration loader, which names the line).
// Messages name the value and the rule, without a profile name.
void validate_profile_name(std::string_view name);  // as key names: [A-Za-z0-9][A-Za-z0-9._-]{0,63}
void validate_key_type(std::string_view key_type);  // of kKeyTypes
// The rules of every pattern, and for Host those of host names as well.
void validate_principal_pattern(std::string_view pattern, CertificateKind kind);
void validate_extension_name(std::string_view name);        // kKnownExtensions or name@domain
void validate_critical_option_name(std::string_view name);  // kKnownCriticalOptions or name@domain

}  // namespace keyhold::ssh
