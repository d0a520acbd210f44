#pragma once
// Certificate profiles: what a profile lets a leaf certificate hold, and the
// check of an issuance request against it. A request that asks for anything
// the profile does not allow is refused, naming the offending value and the
// rule. Pure functions over values: thread-safe, no I/O. Every error is
// keyhold::Error with ErrorCode::InvalidArgument, its message on one line
// (values are shown with control characters escaped).
//
// The configuration loader (app/config) parses [profiles.NAME] tables into
// Profile and checks them with the validate_* functions below; pki does not
// know TOML.
//
// Names (docs/configuration.md#profilesname has the full rules):
// - DNS names are LDH host names (RFC 1123 letters, digits, '-'; labels of 1
//   to 63, 253 in all), compared case-insensitively. A trailing dot, empty
//   labels, '_' and an all-digit last label (an IPv4 address written as a
//   DNS name) are refused. A wildcard is only '*.' followed by a name.
// - DNS patterns: "*" any name (wildcards too); "*.example.com" exactly one
//   label under example.com, and the wildcard "*.example.com" itself;
//   ".example.com" example.com's subdomains at any depth (wildcards among
//   them), not example.com; "example.com" exactly that name.
// - IP ranges are CIDRs with the host bits zero ("10.0.0.0/8", "::1/128").
//   An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is IPv6, not IPv4.
// - URI patterns are globs over the whole URI, '*' matching any run of
//   characters, case-sensitive.
// - Email patterns name the domain: "*" any, "example.org" exactly,
//   ".example.org" its subdomains at any depth.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keyhold::pki {

inline constexpr int kMinRsaBits = 2048;      // no profile may allow less
inline constexpr int kMaxRsaBits = 16384;     // larger keys are refused (cost of every verification)
inline constexpr int kMaxProfileDays = 36500;

struct Profile {
  std::string name;
  // Allowed subject key kinds: "rsa", "ec-p256", "ec-p384", "ed25519".
  std::vector<std::string> key_types = {"rsa", "ec-p256", "ec-p384", "ed25519"};
  int min_rsa_bits = kMinRsaBits;  // never below kMinRsaBits
  int default_days = 90;
  int max_days = 397;
  // RFC 5280 section 4.2.1.3 names: digitalSignature, contentCommitment,
  // keyEncipherment, dataEncipherment, keyAgreement. keyCertSign and cRLSign
  // are refused: profiles are for leaf certificates.
  std::vector<std::string> key_usage = {"digitalSignature"};
  // serverAuth, clientAuth, codeSigning, emailProtection, timeStamping,
  // ocspSigning. anyExtendedKeyUsage is refused.
  std::vector<std::string> extended_key_usage = {"serverAuth"};
  std::vector<std::string> dns;    // DNS patterns (see above)
  std::vector<std::string> ip;     // CIDRs, IPv4 and IPv6
  std::vector<std::string> uri;    // globs
  std::vector<std::string> email;  // domain patterns
  bool require_san = true;
  // Subject attributes copied from the request: CN, O, OU, L, ST, C, serialNumber.
  std::vector<std::string> subject_fields = {"CN"};
  std::vector<std::string> crl_distribution_points;  // http(s) URLs embedded in issued certificates
  std::vector<std::string> ocsp_urls;                // AIA id-ad-ocsp
  std::vector<std::string> ca_issuers_urls;          // AIA id-ad-caIssuers
  // A development profile (keyhold init --dev writes permissive ones):
  // issuance goes ahead with a warning.
  bool development_only = false;
};

// The subject's public key as the CSR (or the token) has it.
struct RequestKey {
  std::string algorithm;  // "rsa" | "ec" | "ed25519"; anything else is refused
  int bits = 0;           // RSA modulus size
  std::string curve;      // EC: "P-256", "P-384"; any other is refused
};

// As requested; ip as text ("10.0.0.1", "2001:db8::1").
struct SubjectAltNames {
  std::vector<std::string> dns, ip, uri, email;
};

struct IssuanceRequest {
  RequestKey key;
  SubjectAltNames sans;
  std::vector<std::pair<std::string, std::string>> subject;  // attribute name ("CN", ...) and UTF-8 value
  std::optional<int> days;                                   // nullopt: the profile's default_days
};

struct ProfileDecision {
  int days = 0;
  // Only the attributes the profile copies, in request order.
  std::vector<std::pair<std::string, std::string>> subject;
  // The profile's key usage minus what the request's key type cannot do:
  // EC keys never get keyEncipherment or dataEncipherment (RFC 8813 section
  // 3), Ed25519 keys only digitalSignature and contentCommitment (RFC 8410
  // section 5), RSA keys never keyAgreement. Never empty.
  std::vector<std::string> key_usage;
  // For the operator: a development-only profile, subject attributes that
  // were not copied.
  std::vector<std::string> warnings;
};

// Checks the request against the profile (which must have passed
// validate_profile) and says what to issue. Throws InvalidArgument naming the
// offending value and the rule, e.g.
//   "profile 'server' does not allow DNS name 'evil.example.net' (allowed: *.example.com, .example.org)"
//   "RSA-1024 is too small: profile 'server' needs at least 2048 bits"
//   "curve secp521r1 is not allowed (P-256, P-384)"
//   "requested validity 400 days exceeds profile 'server' maximum of 397"
//   "a subjectAltName is required by profile 'server'"
//   "subject field 'O' contains a control character"
ProfileDecision check_request(const Profile& profile, const IssuanceRequest& request);

// The whole profile: its name, every list entry (the functions below), days
// (1 <= default_days <= max_days <= kMaxProfileDays), min_rsa_bits
// (kMinRsaBits to kMaxRsaBits), non-empty key_types, key_usage and
// extended_key_usage, a key usage left for every allowed key type, and a
// subject or a SAN in every certificate (require_san or subject_fields).
// Messages start "profile 'NAME': ".
void validate_profile(const Profile& profile);

// Each entry on its own (for the configuration loader, which names the line).
// Messages name the value and the rule, without a profile name.
void validate_profile_name(std::string_view name);  // as key names: [A-Za-z0-9][A-Za-z0-9._-]{0,63}
void validate_key_type(std::string_view key_type);
void validate_key_usage(std::string_view name);
void validate_extended_key_usage(std::string_view name);
void validate_dns_pattern(std::string_view pattern);
void validate_ip_range(std::string_view cidr);
void validate_uri_pattern(std::string_view pattern);     // printable ASCII without spaces
void validate_email_pattern(std::string_view pattern);
void validate_subject_field(std::string_view name);
void validate_url(std::string_view url);                 // http:// or https:// with a host, printable ASCII

}  // namespace keyhold::pki
