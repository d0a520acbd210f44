#include "keyhold/core/text.hpp"
#include "keyhold/ssh/profile.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <limits>

#include "keyhold/core/error.hpp"
#include "keyhold/core/names.hpp"

namespace keyhold::ssh {
namespace {

// OpenSSH's SSHKEY_CERT_MAX_PRINCIPALS, as kMaxPrincipals in certificate.hpp (not included here: the
// profile rules need nothing else of the certificate format).
constexpr std::size_t kPrincipalLimit = 256;
constexpr std::size_t kMaxVendorNameLength = 64;  // RFC 4251 section 6: names are at most 64 characters
constexpr std::string_view kVendorExtensionNote = "; a vendor extension is name@domain";
constexpr std::string_view kVendorOptionNote = "; a vendor critical option is name@domain";

[[noreturn]] void refuse(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }


std::string quoted(std::string_view value) { return "'" + shown(value) + "'"; }

template <class List>
std::string join(const List& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += shown(item);
  }
  return out;
}

template <class List>
bool contains(const List& items, std::string_view item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_control(unsigned char u) { return u < 0x20 || u == 0x7f; }

// "unknown extension 'x' (known: ...)", with the right spelling when only the case is wrong.
template <class List>
[[noreturn]] void refuse_unknown(std::string_view what, std::string_view value, const List& known,
                                 std::string_view note = {}) {
  std::string message = "unknown " + std::string(what) + " " + quoted(value);
  for (std::string_view name : known) {
    if (ascii_lower(name) == ascii_lower(value)) refuse(message + " (did you mean '" + std::string(name) + "'?)");
  }
  refuse(message + " (known: " + join(known) + std::string(note) + ")");
}

// "48h", "30d", "90m", "45s": the largest unit that divides it, hours up to 2 days (people say "48h").
std::string duration_text(std::chrono::seconds duration) {
  long long s = duration.count();
  if (s > 0 && s % 86400 == 0 && s >= 3 * 86400) return std::to_string(s / 86400) + "d";
  if (s > 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s > 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

// The length of [from, to) as duration_text writes it.
std::string span_text(std::uint64_t seconds) {
  constexpr std::uint64_t kLargest = static_cast<std::uint64_t>(std::numeric_limits<long long>::max());
  return duration_text(std::chrono::seconds(static_cast<long long>(std::min(seconds, kLargest))));
}

// RFC 3339 UTC, or the number of seconds when the year would not have four digits.
std::string time_text(std::uint64_t seconds) {
  constexpr std::uint64_t kLastFourDigitYear = 253402300799;  // 9999-12-31T23:59:59Z
  if (seconds > kLastFourDigitYear) return std::to_string(seconds) + " (seconds since the epoch)";
  auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// ---- Text --------------------------------------------------------------------


// Why `text` (called `what` in the message) is not 1 to max_length bytes of UTF-8
// without control characters, or empty.
std::string text_problem(std::string_view what, std::string_view text, std::size_t max_length) {
  if (text.empty()) return std::string(what) + " is empty";
  std::string subject = std::string(what) + " " + quoted(text);
  if (text.size() > max_length) {
    return std::string(what) + " is " + std::to_string(text.size()) + " bytes long; at most " +
           std::to_string(max_length) + " are allowed";
  }
  switch (scan_text(text)) {
    case TextProblem::kControl: return subject + " contains a control character";
    case TextProblem::kNotUtf8: return subject + " is not valid UTF-8";
    case TextProblem::kNone: break;
  }
  return {};
}

// ---- Host names and addresses ---------------------------------------------------

// Why name is not an LDH host name (RFC 1123 section 2.1), or empty when it
// is one. With allow_wildcard, a first label of exactly "*" is allowed.
std::string ldh_problem(std::string_view name, bool allow_wildcard) {
  if (name.empty()) return "it is empty";
  if (name.size() > 253) return "it is longer than 253 characters";
  if (name.back() == '.') return "it ends with a dot (write it without the trailing dot)";
  std::string_view rest = name;
  if (allow_wildcard && rest.size() > 2 && rest.substr(0, 2) == "*.") rest.remove_prefix(2);
  if (rest.find('*') != std::string_view::npos) {
    return allow_wildcard ? "a wildcard may only be the whole first label, as in '*.example.org'"
                          : "it holds '*', which is not a letter, digit or '-'";
  }
  std::string_view last;
  while (true) {
    std::size_t dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    if (label.empty()) return "it has an empty label";
    if (label.size() > 63) return "label " + quoted(label) + " is longer than 63 characters";
    for (char c : label) {
      if (!is_alpha(c) && !is_digit(c) && c != '-') {
        return "it holds " + quoted(std::string_view(&c, 1)) + ", which is not a letter, digit or '-'";
      }
    }
    if (label.front() == '-' || label.back() == '-') return "label " + quoted(label) + " starts or ends with '-'";
    last = label;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (std::all_of(last.begin(), last.end(), is_digit)) {
    return "its last label is all digits, and it is not an IPv4 address";
  }
  return {};
}

struct Address {
  int family = 0;  // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> bytes{};
  int bits() const { return family == AF_INET ? 32 : 128; }
};

std::optional<Address> parse_address(std::string_view text) {
  if (text.empty() || text.size() > 45 || text.find('\0') != std::string_view::npos) return std::nullopt;
  std::string copy(text);  // inet_pton wants a C string
  Address address;
  // inet_pton is strict: dotted quads only (no octal, no short forms), no zone ids.
  if (::inet_pton(AF_INET, copy.c_str(), address.bytes.data()) == 1) {
    address.family = AF_INET;
    return address;
  }
  if (::inet_pton(AF_INET6, copy.c_str(), address.bytes.data()) == 1) {
    address.family = AF_INET6;
    return address;
  }
  return std::nullopt;
}

std::string address_text(const Address& address) {
  char text[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(address.family, address.bytes.data(), text, sizeof text);
  return text;
}

// Clears the bits after `prefix`; says whether any was set.
bool mask(Address& address, int prefix) {
  bool was_set = false;
  for (int i = 0; i < address.bits() / 8; ++i) {
    int keep = std::clamp(prefix - i * 8, 0, 8);
    auto keep_mask = static_cast<std::uint8_t>(keep == 0 ? 0 : (0xff << (8 - keep)) & 0xff);
    auto& byte = address.bytes[static_cast<std::size_t>(i)];
    if ((byte & ~keep_mask & 0xff) != 0) was_set = true;
    byte = static_cast<std::uint8_t>(byte & keep_mask);
  }
  return was_set;
}

// Why one entry of source-address is not an address or a CIDR as sshd reads
// them (OpenSSH addr_pton_cidr: a host part that is not zero is an error), or
// empty.
std::string source_entry_problem(std::string_view entry) {
  std::size_t slash = entry.find('/');
  std::optional<Address> address = parse_address(entry.substr(0, slash));
  if (!address) {
    return quoted(entry) + " is not an address or CIDR (" + quoted(entry.substr(0, slash)) +
           " is not an IPv4 or IPv6 address)";
  }
  if (slash == std::string_view::npos) return {};
  std::string_view digits = entry.substr(slash + 1);
  bool numeric = !digits.empty() && digits.size() <= 3 && std::all_of(digits.begin(), digits.end(), is_digit) &&
                 (digits.size() == 1 || digits.front() != '0');
  int prefix = numeric ? std::stoi(std::string(digits)) : -1;
  if (prefix < 0 || prefix > address->bits()) {
    return quoted(entry) + " is not an address or CIDR (an " + (address->family == AF_INET ? "IPv4" : "IPv6") +
           " prefix is 0 to " + std::to_string(address->bits()) + ")";
  }
  if (mask(*address, prefix)) {
    return quoted(entry) + " has host bits set after the prefix, which sshd refuses (did you mean '" +
           address_text(*address) + "/" + std::to_string(prefix) + "'?)";
  }
  return {};
}

// ---- Names of extensions and critical options --------------------------------

// Why name is not a vendor name "name@domain" (RFC 4251 section 6), or empty.
std::string vendor_name_problem(std::string_view name) {
  std::size_t at = name.find('@');
  if (at == std::string_view::npos) return "it is not of the form name@domain";
  if (name.find('@', at + 1) != std::string_view::npos) return "it holds more than one '@'";
  if (name.size() > kMaxVendorNameLength) return "it is longer than 64 characters (RFC 4251 section 6)";
  std::string_view local = name.substr(0, at);
  if (local.empty()) return "it has nothing before the '@'";
  for (char c : local) {
    if (!is_alpha(c) && !is_digit(c) && c != '.' && c != '_' && c != '-') {
      return "its name part holds " + quoted(std::string_view(&c, 1)) +
             ", which is not a letter, digit, '.', '_' or '-'";
    }
  }
  std::string domain = ldh_problem(name.substr(at + 1), false);
  if (!domain.empty()) return "its domain is not a host name: " + domain;
  return {};
}

// validate_extension_name and validate_critical_option_name.
template <class List>
void validate_feature_name(std::string_view what, std::string_view name, const List& known, std::string_view note) {
  if (contains(known, name)) return;
  std::string problem = vendor_name_problem(name);
  if (problem.empty()) return;
  if (name.find('@') == std::string_view::npos) {
    refuse_unknown(what, name, known, note);
  }
  refuse(std::string(what) + " name " + quoted(name) + " is not valid: " + problem);
}

// ---- Principals ----------------------------------------------------------------

// The rules every principal and principal pattern follows: why `value`
// breaks them ("contains a space"), or empty.
std::string common_principal_problem(std::string_view value) {
  if (value.empty()) return "is empty";
  if (std::any_of(value.begin(), value.end(), [](char c) { return is_control(static_cast<unsigned char>(c)); })) {
    return "contains a control character";
  }
  if (value.find(' ') != std::string_view::npos) return "contains a space";
  if (value.find(',') != std::string_view::npos) {
    return "contains a comma (OpenSSH separates principals with commas)";
  }
  if (std::any_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    return "contains a non-ASCII character";
  }
  if (value.size() > kMaxPrincipalLength) {
    return "is " + std::to_string(value.size()) + " bytes long; at most " + std::to_string(kMaxPrincipalLength) +
           " are allowed";
  }
  return {};
}

std::string upper_case_problem(std::string_view value) {
  if (std::none_of(value.begin(), value.end(), is_upper)) return {};
  return "contains upper-case letters: ssh lower-cases the host name before it matches host principals (write '" +
         shown(ascii_lower(value)) + "')";
}

void check_principal(std::string_view principal, CertificateKind kind) {
  const std::string subject = (kind == CertificateKind::Host ? "host principal " : "principal ") + quoted(principal);
  std::string problem = common_principal_problem(principal);
  if (!problem.empty()) refuse(subject + " " + problem);
  if (kind == CertificateKind::User) {
    for (char wildcard : {'*', '?'}) {
      if (principal.find(wildcard) != std::string_view::npos) {
        refuse(subject + " contains '" + std::string(1, wildcard) +
               "': sshd compares user principals literally, so it would only match a user of that very name");
      }
    }
    return;
  }
  problem = upper_case_problem(principal);
  if (!problem.empty()) refuse(subject + " " + problem);
  if (parse_address(principal)) return;
  problem = ldh_problem(principal, true);
  if (!problem.empty()) refuse(subject + " is not a host name, a wildcard name or an IP address: " + problem);
}

// '*' matches any run of characters, the empty one too.
bool glob_matches(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0;
  std::size_t star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// ---- Keys ----------------------------------------------------------------------------

// The profile's key kind for the subject key, checked against the profile.
std::string check_key(const Profile& profile, const SignRequest& request) {
  const std::string& type = request.subject_key_type;
  std::string kind;
  if (type == "ssh-ed25519") {
    kind = "ed25519";
  } else if (type == "ecdsa-sha2-nistp256" || type == "ecdsa-sha2-nistp384" || type == "ecdsa-sha2-nistp521") {
    kind = "ecdsa";
  } else if (type == "ssh-rsa") {
    kind = "rsa";
  } else if (type == "ssh-dss") {
    refuse("DSA keys are refused (ssh-dss: OpenSSH has disabled them since 7.0)");
  } else if (type.size() > 21 && type.ends_with("-cert-v01@openssh.com")) {
    refuse("the subject key " + quoted(type) + " is a certificate: give the plain public key");
  } else if (type.starts_with("sk-")) {
    refuse("FIDO security keys (" + shown(type) + ") are not supported");
  } else if (type == "rsa-sha2-256" || type == "rsa-sha2-512") {
    refuse(quoted(type) + " is an RSA signature algorithm, not a key type (an RSA key is ssh-rsa)");
  } else {
    refuse("unknown key type " + quoted(type) +
           " (known: ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa)");
  }
  if (!contains(profile.key_types, kind)) {
    refuse("profile '" + profile.name + "' does not allow " + type + " keys (allowed: " + join(profile.key_types) +
           ")");
  }
  if (kind == "rsa") {
    int bits = request.subject_rsa_bits;
    if (bits < kMinRsaBits) {
      refuse("RSA keys of " + std::to_string(bits) + " bits are too small (at least " + std::to_string(kMinRsaBits) +
             ")");
    }
    if (bits < profile.min_rsa_bits) {
      refuse("RSA keys of " + std::to_string(bits) + " bits are too small for profile '" + profile.name +
             "' (at least " + std::to_string(profile.min_rsa_bits) + ")");
    }
    if (bits > kMaxRsaBits) {
      refuse("RSA keys of " + std::to_string(bits) + " bits are too large (OpenSSH accepts at most " +
             std::to_string(kMaxRsaBits) + ")");
    }
  }
  return kind;
}

// ---- Request parts ---------------------------------------------------------------

void check_key_id(std::string_view key_id) {
  std::string problem = text_problem("the key id", key_id, kMaxKeyIdLength);
  if (!problem.empty()) refuse(problem);
}

void check_principals(const Profile& profile, const SignRequest& request) {
  const std::string who = "profile '" + profile.name + "'";
  if (request.principals.empty()) {
    refuse(request.kind == CertificateKind::User
               ? "an empty principal list is refused for a user certificate: OpenSSH would accept it for every user"
               : "an empty principal list is refused for a host certificate: OpenSSH would accept it for every "
                 "host");
  }
  if (request.principals.size() > kPrincipalLimit) {
    refuse(std::to_string(request.principals.size()) + " principals are too many (OpenSSH accepts at most " +
           std::to_string(kPrincipalLimit) + ")");
  }
  std::vector<std::string_view> seen;
  for (const std::string& principal : request.principals) {
    check_principal(principal, request.kind);
    if (contains(seen, principal)) refuse("principal " + quoted(principal) + " is given twice");
    seen.push_back(principal);
    bool ok = std::any_of(profile.principals.begin(), profile.principals.end(),
                          [&](const std::string& pattern) { return glob_matches(pattern, principal); });
    if (!ok) {
      refuse(who + " does not allow principal " + quoted(principal) + " (allowed: " + join(profile.principals) + ")");
    }
  }
}

// The certificate's [valid_after, valid_before).
std::pair<std::uint64_t, std::uint64_t> decide_validity(const Profile& profile, const SignRequest& request,
                                                        std::uint64_t now) {
  const std::string who = "profile '" + profile.name + "'";
  const std::string maximum = who + " maximum of " + duration_text(profile.max_validity);
  constexpr std::uint64_t kLatest = std::numeric_limits<std::uint64_t>::max();
  const auto skew = static_cast<std::uint64_t>(kClockSkew.count());
  const std::uint64_t start = now > skew ? now - skew : 0;
  const auto max = static_cast<std::uint64_t>(profile.max_validity.count());
  auto never_valid = [&](const std::string& what, std::uint64_t end) {
    refuse(what + " ends at " + time_text(end) + ", which is not after now (" + time_text(now) +
           "): the certificate would never be valid");
  };

  if (request.validity && (request.valid_from || request.valid_to)) {
    refuse("a validity and valid_from/valid_to cannot both be given: ask for one or the other");
  }
  if (!request.valid_from && !request.valid_to) {
    std::chrono::seconds validity = request.validity.value_or(profile.default_validity);
    if (validity.count() <= 0) refuse("validity must be positive, not " + duration_text(validity));
    if (validity > profile.max_validity) refuse("validity " + duration_text(validity) + " exceeds " + maximum);
    auto length = static_cast<std::uint64_t>(validity.count());
    if (now > kLatest - length) refuse("now (" + time_text(now) + ") plus the validity does not fit a certificate");
    return {start, now + length};
  }
  if (request.valid_from && request.valid_to) {
    std::uint64_t from = *request.valid_from, to = *request.valid_to;
    if (to <= from) refuse("valid_to (" + time_text(to) + ") must be after valid_from (" + time_text(from) + ")");
    if (to - from > max) {
      refuse("validity from " + time_text(from) + " to " + time_text(to) + " (" + span_text(to - from) + ") exceeds " +
             maximum);
    }
    if (to <= now) never_valid("valid_to", to);
    return {from, to};
  }
  if (request.valid_from) {
    std::uint64_t from = *request.valid_from;
    auto length = static_cast<std::uint64_t>(profile.default_validity.count());
    if (from > kLatest - length) {
      refuse("valid_from (" + time_text(from) + ") plus the default validity does not fit a certificate");
    }
    if (from + length <= now) {
      never_valid("valid_from " + time_text(from) + " with " + who + " default validity of " +
                      duration_text(profile.default_validity),
                  from + length);
    }
    return {from, from + length};
  }
  std::uint64_t to = *request.valid_to;
  if (to <= now) never_valid("valid_to", to);
  if (to - now > max) {
    refuse("validity until " + time_text(to) + " (" + span_text(to - now) + " from now) exceeds " + maximum);
  }
  return {start, to};
}

void check_source_address(std::string_view value) {
  const std::string what = "critical option 'source-address': ";
  if (value.empty()) {
    refuse(what + "it needs addresses or CIDRs separated by commas, such as '10.0.0.0/8,192.0.2.1'");
  }
  if (value.size() > kMaxOptionValueLength) {
    refuse(what + "the value is " + std::to_string(value.size()) + " bytes long; at most " +
           std::to_string(kMaxOptionValueLength) + " are allowed");
  }
  std::vector<std::string_view> seen;
  std::string_view rest = value;
  while (true) {
    std::size_t comma = rest.find(',');
    std::string_view entry = rest.substr(0, comma);
    if (entry.empty()) refuse(what + quoted(value) + " has an empty entry");
    if (entry.find(' ') != std::string_view::npos) {
      refuse(what + quoted(entry) + " contains a space (separate entries with ',' alone)");
    }
    std::string problem = source_entry_problem(entry);
    if (!problem.empty()) refuse(what + problem);
    if (contains(seen, entry)) refuse(what + quoted(entry) + " is listed twice");
    seen.push_back(entry);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
}

void check_option_value(std::string_view name, std::string_view value) {
  const std::string what = "critical option " + quoted(name) + ": ";
  if (name == "source-address") {
    check_source_address(value);
  } else if (name == "verify-required") {
    if (!value.empty()) refuse("critical option 'verify-required' takes no value, not " + quoted(value));
  } else if (name == "force-command") {
    std::string problem = text_problem("the command", value, kMaxOptionValueLength);
    if (!problem.empty()) refuse(what + problem);
  } else if (!value.empty()) {  // a vendor option listed by the profile
    std::string problem = text_problem("the value", value, kMaxOptionValueLength);
    if (!problem.empty()) refuse(what + problem);
  }
}

std::string allowed(const std::vector<std::string>& names) {
  if (names.empty()) return "(it allows none)";
  return "(allowed: " + join(names) + ")";
}

std::vector<std::pair<std::string, std::string>> check_options(const Profile& profile, const SignRequest& request) {
  const std::string who = "profile '" + profile.name + "'";
  std::vector<std::pair<std::string, std::string>> options;
  for (const auto& [name, value] : request.options) {
    if (request.kind == CertificateKind::Host) {
      refuse("host certificates carry no critical options (ssh refuses a host certificate that has any); " +
             quoted(name) + " was asked for");
    }
    if (std::any_of(options.begin(), options.end(), [&](const auto& option) { return option.first == name; })) {
      refuse("critical option " + quoted(name) + " is given twice");
    }
    if (!contains(profile.critical_options, name)) {
      if (!contains(kKnownCriticalOptions, name) && !vendor_name_problem(name).empty()) {
        refuse_unknown("critical option", name, kKnownCriticalOptions, kVendorOptionNote);
      }
      refuse(who + " does not allow critical option " + quoted(name) + " " + allowed(profile.critical_options));
    }
    check_option_value(name, value);
    options.emplace_back(name, value);
  }
  std::sort(options.begin(), options.end());
  return options;
}

std::vector<std::string> check_extensions(const Profile& profile, const SignRequest& request) {
  const std::string who = "profile '" + profile.name + "'";
  if (request.kind == CertificateKind::Host) {
    if (!request.extensions.empty()) {
      refuse("host certificates carry no extensions; " + quoted(request.extensions.front()) + " was asked for");
    }
    return {};
  }
  std::vector<std::string> asked;
  for (const std::string& name : request.extensions) {
    if (contains(asked, name)) refuse("extension " + quoted(name) + " is given twice");
    if (!contains(profile.extensions, name)) {
      if (!contains(kKnownExtensions, name) && !vendor_name_problem(name).empty()) {
        refuse_unknown("extension", name, kKnownExtensions, kVendorExtensionNote);
      }
      refuse(who + " does not allow extension " + quoted(name) + " " + allowed(profile.extensions));
    }
    asked.push_back(name);
  }
  std::vector<std::string> extensions;
  if (!request.no_default_extensions) extensions = profile.default_extensions;
  for (std::string& name : asked) {
    if (!contains(extensions, name)) extensions.push_back(std::move(name));
  }
  std::sort(extensions.begin(), extensions.end());
  return extensions;
}

// ---- Profiles ------------------------------------------------------------------------

void refuse_duplicates(std::string_view list, std::string_view what, const std::vector<std::string>& items) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (std::find(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(i), items[i]) !=
        items.begin() + static_cast<std::ptrdiff_t>(i)) {
      refuse(std::string(what) + " " + quoted(items[i]) + " is listed twice in " + std::string(list));
    }
  }
}

void check_validity_bounds(std::string_view name, std::chrono::seconds validity) {
  if (validity < kMinValidity || validity > kMaxValidity) {
    refuse(std::string(name) + " must be between " + duration_text(kMinValidity) + " and " +
           duration_text(kMaxValidity) + ", not " + duration_text(validity));
  }
}

void check_profile_entries(const Profile& profile) {
  const bool host = profile.kind == CertificateKind::Host;
  if (profile.principals.empty()) refuse("principals must not be empty (use [\"*\"] to allow any principal)");
  for (const std::string& pattern : profile.principals) validate_principal_pattern(pattern, profile.kind);
  refuse_duplicates("principals", "principal pattern", profile.principals);

  if (profile.key_types.empty()) refuse("key_types must not be empty");
  for (const std::string& type : profile.key_types) validate_key_type(type);
  refuse_duplicates("key_types", "key type", profile.key_types);
  if (profile.min_rsa_bits < kMinRsaBits || profile.min_rsa_bits > kMaxRsaBits) {
    refuse("min_rsa_bits must be between " + std::to_string(kMinRsaBits) + " and " + std::to_string(kMaxRsaBits) +
           ", not " + std::to_string(profile.min_rsa_bits));
  }

  check_validity_bounds("default_validity", profile.default_validity);
  check_validity_bounds("max_validity", profile.max_validity);
  if (profile.default_validity > profile.max_validity) {
    refuse("default_validity (" + duration_text(profile.default_validity) + ") must not be more than max_validity (" +
           duration_text(profile.max_validity) + ")");
  }

  if (host) {
    if (!profile.extensions.empty()) {
      refuse("host certificates carry no extensions: extensions must be empty (it lists " + join(profile.extensions) +
             ")");
    }
    if (!profile.default_extensions.empty()) {
      refuse("host certificates carry no extensions: default_extensions must be empty (it lists " +
             join(profile.default_extensions) + ")");
    }
    if (!profile.critical_options.empty()) {
      refuse(
          "host certificates carry no critical options (ssh refuses a host certificate that has any): "
          "critical_options must be empty (it lists " +
          join(profile.critical_options) + ")");
    }
    return;
  }
  for (const std::string& name : profile.extensions) validate_extension_name(name);
  refuse_duplicates("extensions", "extension", profile.extensions);
  for (const std::string& name : profile.default_extensions) {
    validate_extension_name(name);
    if (!contains(profile.extensions, name)) {
      refuse("default extension " + quoted(name) + " is not in extensions " + allowed(profile.extensions));
    }
  }
  refuse_duplicates("default_extensions", "extension", profile.default_extensions);
  for (const std::string& name : profile.critical_options) validate_critical_option_name(name);
  refuse_duplicates("critical_options", "critical option", profile.critical_options);
}

}  // namespace

std::string_view to_string(CertificateKind kind) noexcept { return kind == CertificateKind::Host ? "host" : "user"; }

std::optional<CertificateKind> parse_certificate_kind(std::string_view text) noexcept {
  if (text == "user") return CertificateKind::User;
  if (text == "host") return CertificateKind::Host;
  return std::nullopt;
}

Profile make_profile(std::string name, CertificateKind kind) {
  Profile profile;
  profile.name = std::move(name);
  profile.kind = kind;
  if (kind == CertificateKind::Host) {
    profile.extensions.clear();
    profile.default_extensions.clear();
    profile.critical_options.clear();
  }
  return profile;
}

SignDecision check_sign_request(const Profile& profile, const SignRequest& request, std::uint64_t now) {
  const std::string who = "profile '" + profile.name + "'";
  if (request.kind != profile.kind) {
    refuse(who + " signs " + std::string(to_string(profile.kind)) + " certificates, not " +
           std::string(to_string(request.kind)) + " certificates");
  }
  check_key(profile, request);
  check_key_id(request.key_id);
  check_principals(profile, request);

  SignDecision decision;
  auto [valid_after, valid_before] = decide_validity(profile, request, now);
  decision.valid_after = valid_after;
  decision.valid_before = valid_before;
  decision.options = check_options(profile, request);
  decision.extensions = check_extensions(profile, request);

  if (profile.development_only) {
    decision.warnings.push_back(who +
                                " is for development only (development_only = true): it allows principals and "
                                "validities that no production profile should");
  }
  // auth2-pubkey.c checks verify-required only when the signature has FIDO
  // details (sk-* keys); keyhold signs it as asked, as ssh-keygen does, but
  // says that sshd will not enforce it for this key.
  for (const auto& [name, value] : decision.options) {
    if (name == "verify-required") {
      decision.warnings.push_back("critical option 'verify-required' has no effect on an " +
                                  shown(request.subject_key_type) +
                                  " key: sshd enforces it only for FIDO security keys (sk-*)");
    }
  }
  if (contains(decision.extensions, "no-touch-required")) {
    decision.warnings.push_back("extension 'no-touch-required' has no effect on an " + shown(request.subject_key_type) +
                                " key (it applies to FIDO security keys only)");
  }
  return decision;
}

void validate_profile(const Profile& profile) {
  validate_profile_name(profile.name);
  try {
    check_profile_entries(profile);
  } catch (const Error& error) {
    refuse("profile '" + profile.name + "': " + error.what());
  }
}

void validate_profile_name(std::string_view name) { validate_name("SSH profile", name); }

void validate_key_type(std::string_view key_type) {
  if (contains(kKeyTypes, key_type)) return;
  std::string lower = ascii_lower(key_type);
  if (lower == "dsa" || lower == "ssh-dss") refuse("DSA keys are refused (OpenSSH has disabled them since 7.0)");
  if (lower == "ssh-ed25519") refuse("unknown key type " + quoted(key_type) + " (did you mean 'ed25519'?)");
  if (lower == "ssh-rsa" || lower.starts_with("rsa-")) {
    refuse("unknown key type " + quoted(key_type) + " (did you mean 'rsa'? the smallest RSA size is min_rsa_bits)");
  }
  if (lower.starts_with("ecdsa") || lower.starts_with("ec-") || lower == "ec") {
    refuse("unknown key type " + quoted(key_type) + " (did you mean 'ecdsa'? it allows P-256, P-384 and P-521)");
  }
  refuse_unknown("key type", key_type, kKeyTypes);
}

void validate_principal_pattern(std::string_view pattern, CertificateKind kind) {
  const std::string subject = "principal pattern " + quoted(pattern);
  if (pattern.empty()) refuse("principal pattern '' is empty (use '*' for any principal)");
  std::string problem = common_principal_problem(pattern);
  if (!problem.empty()) refuse(subject + " " + problem);
  if (pattern.find('?') != std::string_view::npos) {
    refuse(subject + " contains '?', which is not a wildcard here: only '*' is");
  }
  if (kind == CertificateKind::User) return;
  problem = upper_case_problem(pattern);
  if (!problem.empty()) refuse(subject + " " + problem);
  for (char c : pattern) {
    if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '.' && c != ':' && c != '*') {
      refuse(subject + " holds " + quoted(std::string_view(&c, 1)) +
             ", which cannot be in a host name or an IP address");
    }
  }
}

void validate_extension_name(std::string_view name) {
  validate_feature_name("extension", name, kKnownExtensions, kVendorExtensionNote);
}

void validate_critical_option_name(std::string_view name) {
  validate_feature_name("critical option", name, kKnownCriticalOptions, kVendorOptionNote);
}

}  // namespace keyhold::ssh
