#include "keyhold/core/text.hpp"
#include "keyhold/pki/profile.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>

#include "keyhold/core/error.hpp"
#include "keyhold/core/names.hpp"

namespace keyhold::pki {
namespace {

constexpr std::array<std::string_view, 4> kKeyTypes = {"rsa", "ec-p256", "ec-p384", "ed25519"};
constexpr std::array<std::string_view, 5> kKeyUsages = {"digitalSignature", "contentCommitment", "keyEncipherment",
                                                        "dataEncipherment", "keyAgreement"};
constexpr std::array<std::string_view, 6> kExtendedKeyUsages = {"serverAuth",      "clientAuth",   "codeSigning",
                                                                "emailProtection", "timeStamping", "ocspSigning"};

struct SubjectField {
  std::string_view name;
  std::size_t max_length;  // characters; RFC 5280 appendix A.1 upper bounds
};
constexpr std::array<SubjectField, 7> kSubjectFields = {{
    {"CN", 64},
    {"O", 64},
    {"OU", 64},
    {"L", 128},
    {"ST", 128},
    {"C", 2},
    {"serialNumber", 64},
}};

[[noreturn]] void refuse(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }


template <class List>
std::string join(const List& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += shown(item);
  }
  return out;
}

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

template <class List>
bool contains(const List& items, std::string_view item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

// "unknown key usage 'x' (known: ...)", with the right spelling when only the case is wrong.
template <class List>
[[noreturn]] void refuse_unknown(std::string_view what, std::string_view value, const List& known) {
  std::string message = "unknown " + std::string(what) + " '" + shown(value) + "'";
  for (std::string_view name : known) {
    if (ascii_lower(name) == ascii_lower(value)) refuse(message + " (did you mean '" + std::string(name) + "'?)");
  }
  refuse(message + " (known: " + join(known) + ")");
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_printable_ascii(char c) { return c > 0x20 && c < 0x7f; }  // no space

// ---- DNS names -------------------------------------------------------------

// Why name is not an LDH host name (RFC 1123 section 2.1, RFC 5280 section
// 4.2.1.6 "preferred name syntax"), or empty when it is one. With
// allow_wildcard, a first label of exactly "*" is allowed.
std::string ldh_problem(std::string_view name, bool allow_wildcard) {
  if (name.empty()) return "it is empty";
  if (name.size() > 253) return "it is longer than 253 characters";
  if (name.back() == '.') return "it ends with a dot (write it without the trailing dot)";
  std::string_view rest = name;
  if (allow_wildcard && rest.size() > 2 && rest.substr(0, 2) == "*.") rest.remove_prefix(2);
  if (rest.find('*') != std::string_view::npos) {
    return "a wildcard may only be the whole first label, as in '*.example.com'";
  }
  std::string_view last;
  while (true) {
    std::size_t dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    if (label.empty()) return "it has an empty label";
    if (label.size() > 63) return "label '" + shown(label) + "' is longer than 63 characters";
    for (char c : label) {
      if (!is_alpha(c) && !is_digit(c) && c != '-') {
        return "it holds '" + shown(std::string_view(&c, 1)) + "', which is not a letter, digit or '-'";
      }
    }
    if (label.front() == '-' || label.back() == '-') return "label '" + shown(label) + "' starts or ends with '-'";
    last = label;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (std::all_of(last.begin(), last.end(), is_digit)) {
    return "its last label is all digits (an IP address belongs in an IP SAN)";
  }
  return {};
}

bool is_wildcard(std::string_view name) { return name.size() > 2 && name.substr(0, 2) == "*."; }

// name and pattern already lower case and valid.
bool dns_matches(std::string_view pattern, std::string_view name) {
  if (pattern.empty()) return false;
  if (pattern == "*") return true;
  if (is_wildcard(pattern)) {
    if (name == pattern) return true;
    std::string_view base = pattern.substr(1);  // ".example.com"
    if (is_wildcard(name) || name.size() <= base.size() || name.substr(name.size() - base.size()) != base) {
      return false;
    }
    return name.substr(0, name.size() - base.size()).find('.') == std::string_view::npos;
  }
  if (pattern.front() == '.') {
    return name.size() > pattern.size() && name.substr(name.size() - pattern.size()) == pattern;
  }
  return name == pattern;
}

// ---- IP addresses and ranges ------------------------------------------------

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

bool is_ipv4_mapped(const Address& address) {
  static constexpr std::array<std::uint8_t, 12> kPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return address.family == AF_INET6 && std::equal(kPrefix.begin(), kPrefix.end(), address.bytes.begin());
}

struct Range {
  Address base;
  int prefix = 0;
};

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

// The range, or why the text is not one.
std::optional<Range> parse_range(std::string_view text, std::string& why) {
  std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    why = "it has no '/prefix' (a single address is '/32' or '/128')";
    return std::nullopt;
  }
  std::optional<Address> base = parse_address(text.substr(0, slash));
  if (!base) {
    why = "'" + shown(text.substr(0, slash)) + "' is not an IPv4 or IPv6 address";
    return std::nullopt;
  }
  std::string_view digits = text.substr(slash + 1);
  bool numeric = !digits.empty() && digits.size() <= 3 && std::all_of(digits.begin(), digits.end(), is_digit) &&
                 (digits.size() == 1 || digits.front() != '0');
  int prefix = numeric ? std::stoi(std::string(digits)) : -1;
  if (prefix < 0 || prefix > base->bits()) {
    why = "the prefix length of an " + std::string(base->family == AF_INET ? "IPv4" : "IPv6") +
          " range is a number from 0 to " + std::to_string(base->bits());
    return std::nullopt;
  }
  Address masked = *base;
  if (mask(masked, prefix)) {
    why = "host bits are set after the prefix (did you mean '" + address_text(masked) + "/" + std::to_string(prefix) +
          "'?)";
    return std::nullopt;
  }
  return Range{masked, prefix};
}

bool in_range(const Range& range, const Address& address) {
  if (range.base.family != address.family) return false;  // so an IPv4-mapped IPv6 address is not IPv4
  Address masked = address;
  mask(masked, range.prefix);
  return masked.bytes == range.base.bytes;
}

// ---- URIs, email addresses, URLs --------------------------------------------

// '*' matches any run of characters (also none and also '/'); everything else itself.
bool glob_matches(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
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

// RFC 5280 section 4.2.1.6: an absolute URI (RFC 3986 section 3), in an IA5String.
std::string uri_problem(std::string_view uri) {
  if (uri.empty()) return "it is empty";
  if (!std::all_of(uri.begin(), uri.end(), is_printable_ascii)) {
    return "it holds a space, a control character or a non-ASCII character (percent-encode them)";
  }
  std::size_t colon = uri.find(':');
  std::string_view scheme = uri.substr(0, colon);
  bool scheme_ok = colon != std::string_view::npos && !scheme.empty() && is_alpha(scheme.front()) &&
                   std::all_of(scheme.begin(), scheme.end(),
                               [](char c) { return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.'; });
  if (!scheme_ok) return "it has no scheme, such as 'https:' or 'spiffe:'";
  if (colon + 1 == uri.size()) return "it has nothing after the scheme";
  return {};
}

// RFC 5280 section 4.2.1.6: an rfc822Name is a mailbox addr-spec, ASCII
// (internationalised addresses need SmtpUTF8Mailbox, RFC 8398, not supported).
std::string email_problem(std::string_view email) {
  if (std::count(email.begin(), email.end(), '@') != 1) return "it must hold exactly one '@'";
  std::size_t at = email.find('@');
  std::string_view local = email.substr(0, at);
  if (local.empty()) return "it has nothing before the '@'";
  if (!std::all_of(local.begin(), local.end(), is_printable_ascii)) {
    return "its local part holds a space, a control character or a non-ASCII character";
  }
  std::string domain_problem = ldh_problem(email.substr(at + 1), false);
  if (!domain_problem.empty()) return "its domain is not a valid host name: " + domain_problem;
  return {};
}

bool email_domain_matches(std::string_view pattern, std::string_view domain) {
  if (pattern == "*") return true;
  if (pattern.front() == '.') {
    return domain.size() > pattern.size() && domain.substr(domain.size() - pattern.size()) == pattern;
  }
  return domain == pattern;
}

// ---- Subject values ----------------------------------------------------------


// X.520 PrintableString characters.
bool is_printable_string(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || std::string_view(" '()+,-./:=?").find(c) != std::string_view::npos;
  });
}

const SubjectField* subject_field(std::string_view name) {
  for (const SubjectField& field : kSubjectFields) {
    if (field.name == name) return &field;
  }
  return nullptr;
}

void check_subject_value(std::string_view name, std::string_view value) {
  std::size_t length = 0;
  switch (scan_text(value, &length)) {
    case TextProblem::kControl: refuse("subject field '" + shown(name) + "' contains a control character");
    case TextProblem::kNotUtf8: refuse("subject field '" + shown(name) + "' is not valid UTF-8");
    case TextProblem::kNone: break;
  }
  if (length == 0) refuse("subject field '" + shown(name) + "' is empty");
  const SubjectField* field = subject_field(name);
  if (field == nullptr) return;  // not copied, nothing more to say
  if (field->name == "C") {
    if (value.size() != 2 || !is_alpha(value[0]) || !is_alpha(value[1])) {
      refuse("subject field 'C' must be a two-letter country code (ISO 3166), not '" + shown(value) + "'");
    }
  } else if (length > field->max_length) {
    refuse("subject field '" + std::string(field->name) + "' is " + std::to_string(length) +
           " characters long; at most " + std::to_string(field->max_length) + " are allowed (RFC 5280 appendix A)");
  }
  if (field->name == "serialNumber" && !is_printable_string(value)) {
    refuse("subject field 'serialNumber' holds characters a PrintableString cannot: '" + shown(value) + "'");
  }
}

// ---- Keys ----------------------------------------------------------------------

// RFC 8813 section 3 (EC), RFC 8410 section 5 (Ed25519), RFC 8017 (RSA cannot agree keys).
bool key_usage_applies(std::string_view usage, std::string_view key_type) {
  if (usage == "digitalSignature" || usage == "contentCommitment") return true;
  if (key_type == "rsa") return usage == "keyEncipherment" || usage == "dataEncipherment";
  if (key_type == "ec-p256" || key_type == "ec-p384") return usage == "keyAgreement";
  return false;
}

std::vector<std::string> usable_key_usage(const std::vector<std::string>& key_usage, std::string_view key_type) {
  std::vector<std::string> usable;
  for (const std::string& usage : key_usage) {
    if (key_usage_applies(usage, key_type) && !contains(usable, usage)) usable.push_back(usage);
  }
  return usable;
}

std::string applicable_key_usages(std::string_view key_type) {
  std::vector<std::string_view> names;
  for (std::string_view usage : kKeyUsages) {
    if (key_usage_applies(usage, key_type)) names.push_back(usage);
  }
  return join(names);
}

// The profile's name for the request's key kind ("ec-p256"), checked against the profile.
std::string check_key(const Profile& profile, const RequestKey& key) {
  std::string type;
  if (key.algorithm == "rsa") {
    type = "rsa";
  } else if (key.algorithm == "ec") {
    if (key.curve == "P-256") {
      type = "ec-p256";
    } else if (key.curve == "P-384") {
      type = "ec-p384";
    } else if (key.curve.empty()) {
      refuse("an EC key without a named curve is not allowed (P-256, P-384)");
    } else {
      refuse("curve " + shown(key.curve) + " is not allowed (P-256, P-384)");
    }
  } else if (key.algorithm == "ed25519") {
    type = "ed25519";
  } else {
    refuse("key algorithm '" + shown(key.algorithm) + "' is not allowed (rsa, ec, ed25519)");
  }
  if (!contains(profile.key_types, type)) {
    refuse("key type " + type + " is not allowed by profile '" + profile.name + "' (allowed: " +
           join(profile.key_types) + ")");
  }
  if (type == "rsa") {
    int minimum = std::max(profile.min_rsa_bits, kMinRsaBits);
    if (key.bits < minimum) {
      refuse("RSA-" + std::to_string(key.bits) + " is too small: profile '" + profile.name + "' needs at least " +
             std::to_string(minimum) + " bits");
    }
    if (key.bits > kMaxRsaBits) {
      refuse("RSA-" + std::to_string(key.bits) + " is too large: keyhold allows at most " +
             std::to_string(kMaxRsaBits) + " bits");
    }
  }
  return type;
}

// ---- SANs ------------------------------------------------------------------------

std::string allowed(const std::vector<std::string>& patterns, std::string_view kind) {
  if (patterns.empty()) return "(it allows no " + std::string(kind) + ")";
  return "(allowed: " + join(patterns) + ")";
}

void check_sans(const Profile& profile, const SubjectAltNames& sans) {
  const std::string who = "profile '" + profile.name + "'";
  for (const std::string& name : sans.dns) {
    std::string problem = ldh_problem(name, true);
    if (!problem.empty()) refuse("DNS name '" + shown(name) + "' is not a valid host name: " + problem);
    std::string lower = ascii_lower(name);
    bool ok = std::any_of(profile.dns.begin(), profile.dns.end(),
                          [&](const std::string& pattern) { return dns_matches(ascii_lower(pattern), lower); });
    if (!ok) refuse(who + " does not allow DNS name '" + shown(name) + "' " + allowed(profile.dns, "DNS names"));
  }
  for (const std::string& text : sans.ip) {
    std::optional<Address> address = parse_address(text);
    if (!address) refuse("IP address '" + shown(text) + "' is not an IPv4 or IPv6 address");
    bool ok = std::any_of(profile.ip.begin(), profile.ip.end(), [&](const std::string& cidr) {
      std::string why;
      std::optional<Range> range = parse_range(cidr, why);
      return range && in_range(*range, *address);
    });
    if (!ok) {
      std::string note = is_ipv4_mapped(*address) ? " (an IPv4-mapped IPv6 address is IPv6, not IPv4)" : "";
      refuse(who + " does not allow IP address '" + shown(text) + "' " + allowed(profile.ip, "IP addresses") + note);
    }
  }
  for (const std::string& uri : sans.uri) {
    std::string problem = uri_problem(uri);
    if (!problem.empty()) refuse("URI '" + shown(uri) + "' is not valid: " + problem);
    bool ok = std::any_of(profile.uri.begin(), profile.uri.end(),
                          [&](const std::string& pattern) { return glob_matches(pattern, uri); });
    if (!ok) refuse(who + " does not allow URI '" + shown(uri) + "' " + allowed(profile.uri, "URIs"));
  }
  for (const std::string& email : sans.email) {
    std::string problem = email_problem(email);
    if (!problem.empty()) refuse("email address '" + shown(email) + "' is not valid: " + problem);
    std::string domain = ascii_lower(email.substr(email.find('@') + 1));
    bool ok = std::any_of(profile.email.begin(), profile.email.end(), [&](const std::string& pattern) {
      return !pattern.empty() && email_domain_matches(ascii_lower(pattern), domain);
    });
    if (!ok) {
      refuse(who + " does not allow email address '" + shown(email) + "' " +
             allowed(profile.email, "email addresses"));
    }
  }
}

void check_profile_entries(const Profile& profile) {
  if (profile.key_types.empty()) refuse("key_types must not be empty");
  for (const std::string& type : profile.key_types) validate_key_type(type);
  if (profile.min_rsa_bits < kMinRsaBits || profile.min_rsa_bits > kMaxRsaBits) {
    refuse("min_rsa_bits must be between " + std::to_string(kMinRsaBits) + " and " + std::to_string(kMaxRsaBits) +
           ", not " + std::to_string(profile.min_rsa_bits));
  }
  for (auto [name, days] : {std::pair<const char*, int>{"default_days", profile.default_days},
                            std::pair<const char*, int>{"max_days", profile.max_days}}) {
    if (days < 1 || days > kMaxProfileDays) {
      refuse(std::string(name) + " must be between 1 and " + std::to_string(kMaxProfileDays) + ", not " +
             std::to_string(days));
    }
  }
  if (profile.default_days > profile.max_days) {
    refuse("default_days (" + std::to_string(profile.default_days) + ") must not be more than max_days (" +
           std::to_string(profile.max_days) + ")");
  }
  if (profile.key_usage.empty()) refuse("key_usage must not be empty");
  for (const std::string& usage : profile.key_usage) validate_key_usage(usage);
  for (const std::string& type : profile.key_types) {
    if (usable_key_usage(profile.key_usage, type).empty()) {
      refuse("key_usage (" + join(profile.key_usage) + ") leaves nothing for " + type + " keys, which can have " +
             applicable_key_usages(type));
    }
  }
  if (profile.extended_key_usage.empty()) refuse("extended_key_usage must not be empty");
  for (const std::string& usage : profile.extended_key_usage) validate_extended_key_usage(usage);
  for (const std::string& pattern : profile.dns) validate_dns_pattern(pattern);
  for (const std::string& cidr : profile.ip) validate_ip_range(cidr);
  for (const std::string& pattern : profile.uri) validate_uri_pattern(pattern);
  for (const std::string& pattern : profile.email) validate_email_pattern(pattern);
  for (const std::string& field : profile.subject_fields) validate_subject_field(field);
  for (const auto* urls : {&profile.crl_distribution_points, &profile.ocsp_urls, &profile.ca_issuers_urls}) {
    for (const std::string& url : *urls) validate_url(url);
  }
  if (!profile.require_san && profile.subject_fields.empty()) {
    refuse("require_san = false needs subject_fields: a certificate must name its subject in a subjectAltName or "
           "in the subject");
  }
}

}  // namespace

ProfileDecision check_request(const Profile& profile, const IssuanceRequest& request) {
  const std::string who = "profile '" + profile.name + "'";
  ProfileDecision decision;

  std::string key_type = check_key(profile, request.key);
  decision.key_usage = usable_key_usage(profile.key_usage, key_type);
  if (decision.key_usage.empty()) {
    refuse(who + " has no key usage for " + key_type + " keys (its key_usage: " + join(profile.key_usage) + ")");
  }

  check_sans(profile, request.sans);

  std::vector<std::string> dropped;
  for (const auto& [name, value] : request.subject) {
    check_subject_value(name, value);
    if (contains(profile.subject_fields, name)) {
      decision.subject.emplace_back(name, value);
    } else if (!contains(dropped, name)) {
      dropped.push_back(name);
    }
  }
  bool has_san = !request.sans.dns.empty() || !request.sans.ip.empty() || !request.sans.uri.empty() ||
                 !request.sans.email.empty();
  if (!has_san && profile.require_san) refuse("a subjectAltName is required by " + who);
  if (!has_san && decision.subject.empty()) {
    refuse("the certificate would name nobody: the request has no subjectAltName and none of the subject fields " +
           who + " copies (" + join(profile.subject_fields) + ")");
  }

  if (request.days) {
    if (*request.days < 1) refuse("requested validity must be at least 1 day, not " + std::to_string(*request.days));
    if (*request.days > profile.max_days) {
      refuse("requested validity " + std::to_string(*request.days) + " days exceeds " + who + " maximum of " +
             std::to_string(profile.max_days));
    }
  }
  decision.days = request.days.value_or(profile.default_days);

  if (profile.development_only) {
    decision.warnings.push_back(who +
                                " is for development only (development_only = true): it allows names that no "
                                "production profile should");
  }
  if (!dropped.empty()) {
    decision.warnings.push_back(who + " does not copy subject field" + (dropped.size() > 1 ? "s " : " ") +
                                join(dropped) + " from the request (it copies " +
                                (profile.subject_fields.empty() ? std::string("none") : join(profile.subject_fields)) +
                                ")");
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

void validate_profile_name(std::string_view name) { validate_name("profile", name); }

void validate_key_type(std::string_view key_type) {
  if (contains(kKeyTypes, key_type)) return;
  if (ascii_lower(key_type).rfind("rsa-", 0) == 0) {
    refuse("unknown key type '" + shown(key_type) + "' (known: " + join(kKeyTypes) +
           "; the smallest RSA size is min_rsa_bits)");
  }
  refuse_unknown("key type", key_type, kKeyTypes);
}

void validate_key_usage(std::string_view name) {
  if (contains(kKeyUsages, name)) return;
  if (name == "keyCertSign" || name == "cRLSign") {
    refuse("key usage '" + std::string(name) + "' is for CA certificates; a profile is for leaf certificates");
  }
  if (ascii_lower(name) == "nonrepudiation") {
    refuse("unknown key usage '" + shown(name) + "' (X.509 renamed nonRepudiation to contentCommitment)");
  }
  refuse_unknown("key usage", name, kKeyUsages);
}

void validate_extended_key_usage(std::string_view name) {
  if (contains(kExtendedKeyUsages, name)) return;
  if (ascii_lower(name) == "anyextendedkeyusage") {
    refuse("extended key usage '" + shown(name) +
           "' is refused: name the usages that certificates of the profile are for");
  }
  refuse_unknown("extended key usage", name, kExtendedKeyUsages);
}

void validate_dns_pattern(std::string_view pattern) {
  if (pattern == "*") return;
  bool subdomains = !pattern.empty() && pattern.front() == '.';
  std::string problem = ldh_problem(pattern.substr(subdomains ? 1 : 0), !subdomains);
  if (!problem.empty()) {
    refuse("DNS pattern '" + shown(pattern) + "' is not valid: " + problem +
           " (patterns: '*', '*.example.com', '.example.com', 'example.com')");
  }
}

void validate_ip_range(std::string_view cidr) {
  std::string why;
  if (!parse_range(cidr, why)) {
    refuse("IP range '" + shown(cidr) + "' is not a CIDR such as '10.0.0.0/8' or 'fd00::/8': " + why);
  }
}

void validate_uri_pattern(std::string_view pattern) {
  if (pattern.empty()) refuse("URI pattern '' is empty (use '*' for any URI)");
  if (!std::all_of(pattern.begin(), pattern.end(), is_printable_ascii)) {
    refuse("URI pattern '" + shown(pattern) + "' holds a space, a control character or a non-ASCII character");
  }
}

void validate_email_pattern(std::string_view pattern) {
  if (pattern == "*") return;
  std::string_view domain = pattern;
  if (!domain.empty() && domain.front() == '.') domain.remove_prefix(1);
  std::string problem = ldh_problem(domain, false);
  if (pattern.find('@') != std::string_view::npos) problem = "it names a domain, not an address";
  if (!problem.empty()) {
    refuse("email pattern '" + shown(pattern) + "' is not valid: " + problem +
           " (patterns: '*', 'example.org', '.example.org')");
  }
}

void validate_subject_field(std::string_view name) {
  if (subject_field(name) != nullptr) return;
  std::vector<std::string_view> known;
  for (const SubjectField& field : kSubjectFields) known.push_back(field.name);
  refuse_unknown("subject field", name, known);
}

void validate_url(std::string_view url) {
  std::string lower = ascii_lower(url);
  std::size_t scheme = lower.rfind("http://", 0) == 0 ? 7 : lower.rfind("https://", 0) == 0 ? 8 : 0;
  if (scheme == 0) refuse("URL '" + shown(url) + "' must start with http:// or https://");
  if (!std::all_of(url.begin(), url.end(), is_printable_ascii)) {
    refuse("URL '" + shown(url) + "' holds a space, a control character or a non-ASCII character (percent-encode them)");
  }
  std::string_view authority = url.substr(scheme, url.find_first_of("/?#", scheme) - scheme);
  if (authority.empty() || authority.front() == ':') refuse("URL '" + shown(url) + "' has no host");
  if (authority.find('@') != std::string_view::npos) {
    refuse("URL '" + shown(url) + "' must not hold a user name or password");
  }
  // OpenSSL's extension syntax separates values with commas (percent-encode one as %2C).
  if (url.find(',') != std::string_view::npos) refuse("URL '" + shown(url) + "' holds a comma (percent-encode it as %2C)");
}

}  // namespace keyhold::pki
