#include "keyhold/pki/lint.hpp"

#include <algorithm>
#include <optional>
#include <set>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/pki/der.hpp"

namespace keyhold::pki {
namespace {

using Bytes = std::span<const std::uint8_t>;
using der::Element;
using der::Reader;
using der::TagClass;
using std::chrono::sys_seconds;

// Object identifiers (RFC 5280 appendix A, RFC 4519, RFC 2985).
constexpr std::string_view kOidCountryName = "2.5.4.6";
constexpr std::string_view kOidEmailAddress = "1.2.840.113549.1.9.1";
constexpr std::string_view kOidDomainComponent = "0.9.2342.19200300.100.1.25";
constexpr std::string_view kOidSubjectKeyId = "2.5.29.14";
constexpr std::string_view kOidKeyUsage = "2.5.29.15";
constexpr std::string_view kOidSubjectAltName = "2.5.29.17";
constexpr std::string_view kOidBasicConstraints = "2.5.29.19";
constexpr std::string_view kOidCrlNumber = "2.5.29.20";
constexpr std::string_view kOidReasonCode = "2.5.29.21";
constexpr std::string_view kOidAuthorityKeyId = "2.5.29.35";
constexpr std::string_view kOidExtendedKeyUsage = "2.5.29.37";
constexpr std::string_view kOidAnyExtendedKeyUsage = "2.5.29.37.0";

// RFC 5280 4.1.2.2 and 5.2.3: at most 20 octets.
constexpr std::size_t kMaxSerialOctets = 20;
// BR 7.1: 64 bits of CSPRNG output need at least 9 octets in a positive INTEGER.
constexpr std::size_t kMinSerialOctets = 9;
// BR 6.3.2: the public-web maximum validity period of a subscriber certificate.
constexpr std::chrono::seconds kLeafMaxValidity = std::chrono::days{398};
// RFC 5280 4.2.1.3: keyCertSign (5) and cRLSign (6).
constexpr std::size_t kKeyCertSignBit = 5;
constexpr std::size_t kCrlSignBit = 6;
// RFC 1034 3.1 / RFC 1123 2.1 limits.
constexpr std::size_t kMaxDnsNameLength = 253;
constexpr std::size_t kMaxDnsLabelLength = 63;

[[noreturn]] void malformed(std::string_view what, std::size_t offset) {
  throw Error(ErrorCode::InvalidArgument, "DER: " + std::string(what) + " at offset " + std::to_string(offset));
}

bool same_bytes(Bytes a, Bytes b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

std::string_view as_text(Bytes bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A value as it may safely appear in a message: quoted, bytes outside
// printable ASCII as \xNN, long values cut.
std::string shown(std::string_view text) {
  constexpr std::size_t kMaxShown = 80;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<std::uint8_t>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0x0f];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out + "\"";
}

class Findings {
 public:
  void error(std::string_view rule, std::string detail) { add(rule, Severity::Error, std::move(detail)); }
  void warning(std::string_view rule, std::string detail) { add(rule, Severity::Warning, std::move(detail)); }
  std::vector<LintFinding> take() { return std::move(findings_); }

 private:
  void add(std::string_view rule, Severity severity, std::string detail) {
    findings_.push_back(LintFinding{std::string(rule), severity, std::move(detail)});
  }
  std::vector<LintFinding> findings_;
};

// ---- Extensions (RFC 5280 4.1, 4.2) -------------------------------------

struct Extension {
  der::Oid oid;
  bool critical = false;
  Bytes value;
  std::size_t value_offset = 0;
};

std::vector<Extension> read_extensions(const Element& sequence) {
  Reader reader(sequence);
  // Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension
  if (reader.at_end()) malformed("Extensions is an empty SEQUENCE", sequence.offset);
  std::vector<Extension> out;
  while (!reader.at_end()) {
    const Element extension = reader.next(TagClass::Universal, der::kSequence, "Extension SEQUENCE");
    Reader fields(extension);
    Extension ext;
    ext.oid = der::read_oid(fields.next(TagClass::Universal, der::kOid, "extnID"));
    if (auto critical = fields.next_if(TagClass::Universal, der::kBoolean)) {
      ext.critical = der::read_boolean(*critical);
      // X.690 11.5: DER leaves out a value equal to its DEFAULT (FALSE).
      if (!ext.critical) malformed("critical FALSE written out (DER omits the DEFAULT)", critical->offset);
    }
    const Element value = fields.next(TagClass::Universal, der::kOctetString, "extnValue");
    fields.expect_end("extnValue");
    ext.value = value.content;
    ext.value_offset = value.content_offset;
    out.push_back(std::move(ext));
  }
  return out;
}

const Extension* find_extension(const std::vector<Extension>& extensions, std::string_view oid) {
  for (const Extension& ext : extensions) {
    if (ext.oid.dotted == oid) return &ext;
  }
  return nullptr;
}

std::string extension_name(std::string_view oid) {
  if (oid == kOidSubjectKeyId) return "subjectKeyIdentifier";
  if (oid == kOidKeyUsage) return "keyUsage";
  if (oid == kOidSubjectAltName) return "subjectAltName";
  if (oid == kOidBasicConstraints) return "basicConstraints";
  if (oid == kOidCrlNumber) return "cRLNumber";
  if (oid == kOidReasonCode) return "reasonCode";
  if (oid == kOidAuthorityKeyId) return "authorityKeyIdentifier";
  if (oid == kOidExtendedKeyUsage) return "extKeyUsage";
  return std::string(oid);
}

// Decodes a present extension; a decoding failure is the finding
// extension.malformed and an empty result (the rules on it then stay quiet).
template <class Decode>
auto decode_extension(Findings& findings, const Extension* ext, Decode decode)
    -> std::optional<decltype(decode(*ext))> {
  if (ext == nullptr) return std::nullopt;
  try {
    return decode(*ext);
  } catch (const Error& e) {
    findings.error("extension.malformed", extension_name(ext->oid.dotted) + " (" + ext->oid.dotted + "): " + e.what());
    return std::nullopt;
  }
}

Element extension_value(const Extension& ext) { return der::parse(ext.value, ext.value_offset); }

// SubjectKeyIdentifier ::= KeyIdentifier (OCTET STRING), RFC 5280 4.2.1.2.
Bytes decode_subject_key_id(const Extension& ext) { return der::read_octet_string(extension_value(ext)); }

// AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING OPTIONAL,
//   authorityCertIssuer [1] OPTIONAL, authorityCertSerialNumber [2] OPTIONAL } (4.2.1.1)
std::optional<Bytes> decode_authority_key_id(const Extension& ext) {
  const Element value = extension_value(ext);
  if (!value.is_universal(der::kSequence)) malformed("expected SEQUENCE, found " + der::tag_name(value), value.offset);
  Reader reader(value);
  std::optional<Bytes> key_id;
  if (auto id = reader.next_if(TagClass::ContextSpecific, 0)) {
    if (id->constructed) malformed("keyIdentifier [0] is constructed", id->offset);
    key_id = id->content;
  }
  reader.next_if(TagClass::ContextSpecific, 1);
  reader.next_if(TagClass::ContextSpecific, 2);
  reader.expect_end("authorityKeyIdentifier");
  return key_id;
}

// BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER (0..MAX) OPTIONAL } (4.2.1.9)
bool decode_basic_constraints_ca(const Extension& ext) {
  const Element value = extension_value(ext);
  if (!value.is_universal(der::kSequence)) malformed("expected SEQUENCE, found " + der::tag_name(value), value.offset);
  Reader reader(value);
  bool ca = false;
  if (auto flag = reader.next_if(TagClass::Universal, der::kBoolean)) {
    ca = der::read_boolean(*flag);
    if (!ca) malformed("cA FALSE written out (DER omits the DEFAULT)", flag->offset);
  }
  if (auto path_length = reader.next_if(TagClass::Universal, der::kInteger)) {
    if (der::read_int64(*path_length) < 0) malformed("pathLenConstraint is negative", path_length->offset);
  }
  reader.expect_end("basicConstraints");
  return ca;
}

// KeyUsage ::= BIT STRING (4.2.1.3)
der::BitString decode_key_usage(const Extension& ext) { return der::read_bit_string(extension_value(ext)); }

// ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId (4.2.1.12)
std::vector<std::string> decode_extended_key_usage(const Extension& ext) {
  const Element value = extension_value(ext);
  if (!value.is_universal(der::kSequence)) malformed("expected SEQUENCE, found " + der::tag_name(value), value.offset);
  std::vector<std::string> purposes;
  for (const Element& purpose : der::children(value)) purposes.push_back(der::read_oid(purpose).dotted);
  if (purposes.empty()) malformed("extKeyUsage is an empty SEQUENCE", value.offset);
  return purposes;
}

// GeneralNames ::= SEQUENCE SIZE (1..MAX) OF GeneralName (4.2.1.6). An empty
// SEQUENCE is returned as such: san.empty names it.
std::vector<Element> decode_general_names(const Extension& ext) {
  const Element value = extension_value(ext);
  if (!value.is_universal(der::kSequence)) malformed("expected SEQUENCE, found " + der::tag_name(value), value.offset);
  std::vector<Element> names = der::children(value);
  for (const Element& name : names) {
    if (name.tag_class != TagClass::ContextSpecific || name.tag_number > 8) {
      malformed("expected a GeneralName, found " + der::tag_name(name), name.offset);
    }
    // rfc822Name, dNSName, URI, iPAddress, registeredID are IMPLICIT primitives;
    // otherName, x400Address, directoryName, ediPartyName are constructed.
    const bool primitive = name.tag_number == 1 || name.tag_number == 2 || name.tag_number == 6 ||
                           name.tag_number == 7 || name.tag_number == 8;
    if (primitive == name.constructed) malformed("GeneralName " + der::tag_name(name) + " has the wrong form", name.offset);
  }
  return names;
}

// ---- Field checks ----------------------------------------------------------

void check_serial(Findings& findings, const der::Integer& serial) {
  const Bytes c = serial.content;
  if (serial.negative()) findings.error("serial.positive", "serial " + to_hex(c) + " is negative");
  const bool zero = serial.zero();
  if (zero) findings.error("serial.nonzero", "serial is zero");
  if (!serial.minimal()) findings.error("serial.minimal", "serial " + to_hex(c) + " has a needless leading octet");
  if (c.size() > kMaxSerialOctets) {
    findings.error("serial.length", "serial has " + std::to_string(c.size()) + " octets, more than 20");
  }
  if (!zero && c.size() < kMinSerialOctets) {
    findings.error("serial.entropy",
                   "serial has " + std::to_string(c.size()) + " octets; at least 9 are needed for 64 random bits");
  }
}

void check_signature_field(Findings& findings, Bytes field, const IssuerFacts& issuer) {
  const Bytes expected = crypto::algorithm_identifier(issuer.signature_algorithm);
  if (same_bytes(field, expected)) return;
  const std::string wanted = std::string(crypto::to_string(issuer.signature_algorithm));
  if (auto found = crypto::algorithm_from_identifier(field)) {
    findings.error("signature.algorithm_mismatch", "signature field is " + std::string(crypto::to_string(*found)) +
                                                       ", the issuer signs with " + wanted);
  } else {
    findings.error("signature.algorithm_unknown", "signature field " + to_hex(field) +
                                                      " is not an AlgorithmIdentifier keyhold signs with; expected " +
                                                      wanted + " " + to_hex(expected));
  }
}

void check_issuer_name(Findings& findings, const Element& issuer_name, const IssuerFacts& issuer) {
  if (same_bytes(issuer_name.encoded, issuer.subject_name_der)) return;
  findings.error("issuer.mismatch", "issuer Name " + to_hex(issuer_name.encoded) +
                                        " is not byte for byte the issuer's subject " + to_hex(issuer.subject_name_der));
}

std::string attribute_label(std::string_view which, std::string_view oid) {
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"2.5.4.3", "CN"},  {"2.5.4.6", "C"},  {"2.5.4.7", "L"},   {"2.5.4.8", "ST"},
      {"2.5.4.10", "O"},  {"2.5.4.11", "OU"}, {"2.5.4.5", "serialNumber"}, {kOidEmailAddress, "emailAddress"},
      {kOidDomainComponent, "DC"}};
  for (const auto& [dotted, name] : kNames) {
    if (dotted == oid) return std::string(which) + " " + std::string(name);
  }
  return std::string(which) + " " + std::string(oid);
}

bool has_control_character(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto b = static_cast<std::uint8_t>(c);
    return b < 0x20 || b == 0x7f;
  });
}

void check_attribute(Findings& findings, std::string_view which, const der::Oid& type, const Element& value) {
  const std::string label = attribute_label(which, type.dotted);
  if (type.dotted == kOidCountryName) {
    // RFC 5280 appendix A.1: countryName is PrintableString (SIZE (2)), an ISO 3166 code.
    const bool ok = value.is_universal(der::kPrintableString) && value.content.size() == 2 &&
                    std::all_of(value.content.begin(), value.content.end(), [](std::uint8_t c) {
                      return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
                    });
    if (!ok) {
      findings.error("name.country", label + " is the " + der::tag_name(value) + " " + shown(as_text(value.content)) +
                                         ", not a PrintableString of two letters");
    }
    return;
  }
  if (!der::is_string_type(value)) {
    findings.error("name.string_type", label + " is a " + der::tag_name(value) + ", not a string");
    return;
  }
  const der::String text = der::read_string(value);
  // RFC 5280 4.1.2.4 / 4.1.2.6: DirectoryString as PrintableString or
  // UTF8String; emailAddress (RFC 2985) and domainComponent (RFC 4519) are IA5String.
  const bool ia5_attribute = type.dotted == kOidEmailAddress || type.dotted == kOidDomainComponent;
  const bool allowed = ia5_attribute ? text.tag_number == der::kIa5String
                                     : text.tag_number == der::kPrintableString || text.tag_number == der::kUtf8String;
  if (!allowed) {
    findings.error("name.string_type", label + " is a " + der::tag_name(value) + "; allowed: " +
                                           (ia5_attribute ? "IA5String" : "PrintableString, UTF8String"));
    return;
  }
  if (has_control_character(text.text)) {
    findings.error("name.control_character", label + " " + shown(text.text) + " contains a control character");
  }
  if (text.tag_number == der::kPrintableString && !der::is_printable_string(text.text)) {
    findings.error("name.printable_charset", label + " " + shown(text.text) + " has a character PrintableString does not allow");
  }
  if (text.tag_number == der::kUtf8String && !der::is_valid_utf8(text.text)) {
    findings.error("name.utf8_invalid", label + " " + shown(text.text) + " is not valid UTF-8");
  }
  if (text.tag_number == der::kIa5String && !der::is_ia5_string(text.text)) {
    findings.error("name.ia5_charset", label + " " + shown(text.text) + " has a byte outside IA5 (ASCII)");
  }
}

// Name ::= SEQUENCE OF RelativeDistinguishedName; RDN ::= SET SIZE (1..MAX) OF
// AttributeTypeAndValue ::= SEQUENCE { type OID, value ANY } (RFC 5280 4.1.2.4)
void check_name(Findings& findings, const Element& name, std::string_view which) {
  Reader rdns(name);
  while (!rdns.at_end()) {
    const Element rdn = rdns.next(TagClass::Universal, der::kSet, "RelativeDistinguishedName SET");
    Reader attributes(rdn);
    if (attributes.at_end()) malformed("empty RelativeDistinguishedName", rdn.offset);
    while (!attributes.at_end()) {
      const Element attribute = attributes.next(TagClass::Universal, der::kSequence, "AttributeTypeAndValue SEQUENCE");
      Reader parts(attribute);
      const der::Oid type = der::read_oid(parts.next(TagClass::Universal, der::kOid, "attribute type"));
      const Element value = parts.next();
      parts.expect_end("AttributeTypeAndValue");
      check_attribute(findings, which, type, value);
    }
  }
}

der::Time read_time_field(Reader& reader, std::string_view what) {
  if (reader.at_end()) malformed("expected " + std::string(what) + ", found the end", reader.offset());
  return der::read_time(reader.next());
}

// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, both
// with seconds and 'Z' and without fractions.
void check_time(Findings& findings, const der::Time& time, std::string_view field) {
  const bool utc = time.tag_number == der::kUtcTime;
  if (!time.value) {
    findings.error("time.format", std::string(field) + " " + (utc ? "UTCTime " : "GeneralizedTime ") + shown(time.text) +
                                      " is not " + (utc ? "YYMMDDHHMMSSZ" : "YYYYMMDDHHMMSSZ") + " with a real date");
    return;
  }
  if (!utc && std::chrono::year_month_day{std::chrono::floor<std::chrono::days>(*time.value)}.year() <
                  std::chrono::year{2050}) {
    findings.error("time.generalized_before_2050",
                   std::string(field) + " GeneralizedTime " + shown(time.text) + " is before 2050: UTCTime is required");
  }
}

std::string format_seconds(sys_seconds t) { return format_utc(std::chrono::system_clock::time_point(t)); }

bool valid_dns_name(std::string_view name, bool wildcard_allowed) {
  if (name.empty() || name.size() > kMaxDnsNameLength) return false;
  std::size_t start = 0;
  bool first = true;
  while (true) {
    const std::size_t dot = name.find('.', start);
    const std::string_view label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    // "*" may be the whole first label, and only when more labels follow.
    const bool wildcard = first && wildcard_allowed && label == "*" && dot != std::string_view::npos;
    if (!wildcard) {
      if (label.empty() || label.size() > kMaxDnsLabelLength || label.front() == '-' || label.back() == '-') return false;
      for (char c : label) {
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
      }
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
    first = false;
  }
}

bool visible_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// RFC 5280 4.2.1.6: rfc822Name is a Mailbox (local-part "@" domain).
bool valid_email(std::string_view address) {
  const std::size_t at = address.find('@');
  if (at == std::string_view::npos || address.find('@', at + 1) != std::string_view::npos) return false;
  const std::string_view local = address.substr(0, at);
  return !local.empty() && visible_ascii(local) && valid_dns_name(address.substr(at + 1), false);
}

// RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":".
bool valid_uri(std::string_view uri) {
  if (uri.empty() || !visible_ascii(uri)) return false;
  const std::size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!alpha(uri[0])) return false;
  return std::all_of(uri.begin(), uri.begin() + static_cast<std::ptrdiff_t>(colon), [&](char c) {
    return alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
  });
}

void check_general_names(Findings& findings, const std::vector<Element>& names) {
  if (names.empty()) {
    findings.error("san.empty", "subjectAltName holds no name");
    return;
  }
  for (const Element& name : names) {
    const std::string_view text = as_text(name.content);
    switch (name.tag_number) {
      case 1:
        if (!valid_email(text)) findings.error("san.email", "rfc822Name " + shown(text) + " is not local-part@domain");
        break;
      case 2:
        if (!valid_dns_name(text, true)) findings.error("san.dns_name", "dNSName " + shown(text) + " is not in LDH form");
        break;
      case 6:
        if (!valid_uri(text)) findings.error("san.uri", "URI " + shown(text) + " is empty or has no scheme");
        break;
      case 7:
        if (name.content.size() != 4 && name.content.size() != 16) {
          findings.error("san.ip_address",
                         "iPAddress has " + std::to_string(name.content.size()) + " octets, not 4 or 16");
        }
        break;
      default:
        break;
    }
  }
}

void check_authority_key_id(Findings& findings, const Extension* ext, const std::optional<std::optional<Bytes>>& key_id,
                            Bytes own_subject_key_id, const IssuerFacts& issuer, bool may_omit) {
  if (ext == nullptr) {
    if (!may_omit) findings.error("aki.missing", "no authorityKeyIdentifier");
    return;
  }
  if (!key_id) return;  // extension.malformed said why
  if (!*key_id) {
    findings.error("aki.mismatch", "authorityKeyIdentifier has no keyIdentifier");
    return;
  }
  const Bytes id = **key_id;
  bool matches = !issuer.subject_key_id.empty() && same_bytes(id, issuer.subject_key_id);
  if (issuer.self_signed && !own_subject_key_id.empty() && same_bytes(id, own_subject_key_id)) matches = true;
  if (!matches) {
    const Bytes expected = !issuer.subject_key_id.empty() ? Bytes(issuer.subject_key_id) : own_subject_key_id;
    findings.error("aki.mismatch", "keyIdentifier " + to_hex(id) + " is not the issuer's subjectKeyIdentifier " +
                                       (expected.empty() ? std::string("(none known)") : to_hex(expected)));
  }
}

// ---- Certificates (RFC 5280 4.1) ---------------------------------------

// Lints a TBSCertificate element; returns its signature field.
Bytes lint_tbs_certificate_element(Findings& findings, const Element& tbs, CertificateKind kind, const IssuerFacts& issuer) {
  if (!tbs.is_universal(der::kSequence)) malformed("expected TBSCertificate SEQUENCE, found " + der::tag_name(tbs), tbs.offset);
  Reader fields(tbs);

  if (auto version = fields.next_if(TagClass::ContextSpecific, 0)) {
    const std::int64_t value = der::read_int64(der::explicit_inner(*version));
    if (value != 2) findings.error("version.v3", "version is v" + std::to_string(value + 1) + ", not v3");
  } else {
    findings.error("version.v3", "no version field (v1), not v3");
  }

  check_serial(findings, der::read_integer_unchecked(fields.next(TagClass::Universal, der::kInteger, "serialNumber INTEGER")));

  const Element signature = fields.next(TagClass::Universal, der::kSequence, "signature AlgorithmIdentifier");
  check_signature_field(findings, signature.encoded, issuer);

  const Element issuer_name = fields.next(TagClass::Universal, der::kSequence, "issuer Name");
  check_issuer_name(findings, issuer_name, issuer);

  const Element validity = fields.next(TagClass::Universal, der::kSequence, "Validity SEQUENCE");
  Reader times(validity);
  const der::Time not_before = read_time_field(times, "notBefore");
  const der::Time not_after = read_time_field(times, "notAfter");
  times.expect_end("notAfter");

  const Element subject = fields.next(TagClass::Universal, der::kSequence, "subject Name");
  fields.next(TagClass::Universal, der::kSequence, "subjectPublicKeyInfo");
  fields.next_if(TagClass::ContextSpecific, 1);  // issuerUniqueID
  fields.next_if(TagClass::ContextSpecific, 2);  // subjectUniqueID
  std::vector<Extension> extensions;
  if (auto tagged = fields.next_if(TagClass::ContextSpecific, 3)) {
    const Element sequence = der::explicit_inner(*tagged);
    if (!sequence.is_universal(der::kSequence)) malformed("expected Extensions SEQUENCE, found " + der::tag_name(sequence), sequence.offset);
    extensions = read_extensions(sequence);
  }
  fields.expect_end("TBSCertificate");

  check_name(findings, issuer_name, "issuer");
  check_name(findings, subject, "subject");

  check_time(findings, not_before, "notBefore");
  check_time(findings, not_after, "notAfter");
  if (not_before.value && not_after.value) {
    const sys_seconds from = *not_before.value;
    const sys_seconds to = *not_after.value;
    if (from >= to) findings.error("validity.order", "notBefore " + format_seconds(from) + " is not before notAfter " + format_seconds(to));
    if (!issuer.self_signed) {
      const sys_seconds issuer_from = std::chrono::floor<std::chrono::seconds>(issuer.not_before);
      const sys_seconds issuer_to = std::chrono::floor<std::chrono::seconds>(issuer.not_after);
      if (from < issuer_from || to > issuer_to) {
        findings.error("validity.outside_issuer", "validity " + format_seconds(from) + " .. " + format_seconds(to) +
                                                      " is not inside the issuer's " + format_seconds(issuer_from) +
                                                      " .. " + format_seconds(issuer_to));
      }
    }
    // BR 1.6.1: the validity period includes both notBefore and notAfter.
    if (kind == CertificateKind::Leaf && from < to && (to - from) + std::chrono::seconds{1} > kLeafMaxValidity) {
      findings.warning("validity.leaf_over_398_days", "leaf validity " + format_seconds(from) + " .. " +
                                                          format_seconds(to) +
                                                          " is longer than 398 days, the public-web maximum");
    }
  }

  std::set<std::string> seen;
  for (const Extension& ext : extensions) {
    if (!seen.insert(ext.oid.dotted).second) {
      findings.error("extensions.duplicate", extension_name(ext.oid.dotted) + " (" + ext.oid.dotted + ") appears more than once");
    }
  }
  // Duplicates were reported above; the checks below read the first instance.
  const Extension* ski_ext = find_extension(extensions, kOidSubjectKeyId);
  const Extension* aki_ext = find_extension(extensions, kOidAuthorityKeyId);
  const Extension* bc_ext = find_extension(extensions, kOidBasicConstraints);
  const Extension* ku_ext = find_extension(extensions, kOidKeyUsage);
  const Extension* eku_ext = find_extension(extensions, kOidExtendedKeyUsage);
  const Extension* san_ext = find_extension(extensions, kOidSubjectAltName);
  const auto ski = decode_extension(findings, ski_ext, decode_subject_key_id);
  const auto aki = decode_extension(findings, aki_ext, decode_authority_key_id);
  const auto ca = decode_extension(findings, bc_ext, decode_basic_constraints_ca);
  const auto key_usage = decode_extension(findings, ku_ext, decode_key_usage);
  const auto purposes = decode_extension(findings, eku_ext, decode_extended_key_usage);
  const auto san = decode_extension(findings, san_ext, decode_general_names);

  if (san) check_general_names(findings, *san);
  if (ski_ext == nullptr) findings.error("ski.missing", "no subjectKeyIdentifier");
  const Bytes own_ski = ski ? *ski : Bytes{};

  if (kind == CertificateKind::Leaf) {
    const bool subject_empty = subject.content.empty();
    if (san_ext == nullptr) {
      findings.error("san.missing", "no subjectAltName");
    } else if (san_ext->critical != subject_empty) {
      findings.error("san.critical", subject_empty ? "subject is empty but subjectAltName is not critical"
                                                   : "subject is not empty but subjectAltName is critical");
    }
    if (purposes && std::find(purposes->begin(), purposes->end(), kOidAnyExtendedKeyUsage) != purposes->end()) {
      findings.error("eku.any", "extKeyUsage holds anyExtendedKeyUsage");
    }
    if (ca && *ca) findings.error("basic_constraints.leaf_ca", "basicConstraints of a leaf says cA TRUE");
    check_authority_key_id(findings, aki_ext, aki, own_ski, issuer, false);
    if (ku_ext == nullptr) {
      findings.warning("key_usage.leaf_missing", "no keyUsage");
    } else if (!ku_ext->critical) {
      findings.warning("key_usage.leaf_not_critical", "keyUsage is not critical");
    }
  } else {
    if (bc_ext == nullptr) {
      findings.error("basic_constraints.ca_missing", "no basicConstraints");
    } else {
      if (!bc_ext->critical) findings.error("basic_constraints.ca_not_critical", "basicConstraints is not critical");
      if (ca && !*ca) findings.error("basic_constraints.ca_false", "basicConstraints of a CA does not say cA TRUE");
    }
    if (ku_ext == nullptr) {
      findings.error("key_usage.ca_missing", "no keyUsage");
    } else {
      if (!ku_ext->critical) findings.error("key_usage.ca_not_critical", "keyUsage is not critical");
      if (key_usage && !key_usage->bit(kKeyCertSignBit)) findings.error("key_usage.ca_no_cert_sign", "keyUsage lacks keyCertSign");
      if (key_usage && !key_usage->bit(kCrlSignBit)) findings.error("key_usage.ca_no_crl_sign", "keyUsage lacks cRLSign");
    }
    check_authority_key_id(findings, aki_ext, aki, own_ski, issuer, issuer.self_signed);
  }
  return signature.encoded;
}

// ---- CRLs (RFC 5280 5.1) ----------------------------------------------------

Bytes lint_tbs_crl_element(Findings& findings, const Element& tbs, const IssuerFacts& issuer) {
  if (!tbs.is_universal(der::kSequence)) malformed("expected TBSCertList SEQUENCE, found " + der::tag_name(tbs), tbs.offset);
  Reader fields(tbs);

  if (auto version = fields.next_if(TagClass::Universal, der::kInteger)) {
    const std::int64_t value = der::read_int64(*version);
    if (value != 1) findings.error("version.v2", "version is v" + std::to_string(value + 1) + ", not v2");
  } else {
    findings.error("version.v2", "no version field (v1), not v2");
  }

  const Element signature = fields.next(TagClass::Universal, der::kSequence, "signature AlgorithmIdentifier");
  check_signature_field(findings, signature.encoded, issuer);

  const Element issuer_name = fields.next(TagClass::Universal, der::kSequence, "issuer Name");
  check_issuer_name(findings, issuer_name, issuer);

  const der::Time this_update = read_time_field(fields, "thisUpdate");
  std::optional<der::Time> next_update;
  if (auto utc = fields.next_if(TagClass::Universal, der::kUtcTime)) {
    next_update = der::read_time(*utc);
  } else if (auto generalized = fields.next_if(TagClass::Universal, der::kGeneralizedTime)) {
    next_update = der::read_time(*generalized);
  }
  const std::optional<Element> revoked = fields.next_if(TagClass::Universal, der::kSequence);
  std::vector<Extension> extensions;
  if (auto tagged = fields.next_if(TagClass::ContextSpecific, 0)) {
    const Element sequence = der::explicit_inner(*tagged);
    if (!sequence.is_universal(der::kSequence)) malformed("expected Extensions SEQUENCE, found " + der::tag_name(sequence), sequence.offset);
    extensions = read_extensions(sequence);
  }
  fields.expect_end("TBSCertList");

  check_name(findings, issuer_name, "issuer");
  check_time(findings, this_update, "thisUpdate");
  if (!next_update) {
    findings.error("crl.next_update_missing", "no nextUpdate");
  } else {
    check_time(findings, *next_update, "nextUpdate");
    if (this_update.value && next_update->value && *this_update.value >= *next_update->value) {
      findings.error("crl.update_order", "thisUpdate " + format_seconds(*this_update.value) +
                                             " is not before nextUpdate " + format_seconds(*next_update->value));
    }
  }

  if (revoked) {
    Reader entries(*revoked);
    for (std::size_t index = 0; !entries.at_end(); ++index) {
      const Element entry = entries.next(TagClass::Universal, der::kSequence, "revoked certificate SEQUENCE");
      const std::string label = "revoked entry " + std::to_string(index);
      Reader parts(entry);
      const der::Integer serial = der::read_integer(parts.next(TagClass::Universal, der::kInteger, "userCertificate"));
      const der::Time revocation_date = read_time_field(parts, "revocationDate");
      std::vector<Extension> entry_extensions;
      if (auto sequence = parts.next_if(TagClass::Universal, der::kSequence)) entry_extensions = read_extensions(*sequence);
      parts.expect_end("revoked certificate");

      if (serial.negative() || serial.zero()) {
        findings.error("crl.revoked_serial_positive", label + " serial " + to_hex(serial.content) + " is not positive");
      }
      if (serial.content.size() > kMaxSerialOctets) {
        findings.error("crl.revoked_serial_length", label + " serial has " + std::to_string(serial.content.size()) +
                                                        " octets, more than 20");
      }
      check_time(findings, revocation_date, label + " revocationDate");
      const Extension* reason_ext = find_extension(entry_extensions, kOidReasonCode);
      // CRLReason ::= ENUMERATED { unspecified (0) .. aACompromise (10) }, 7 unused (5.3.1).
      const auto reason = decode_extension(findings, reason_ext, [](const Extension& ext) {
        const Element value = extension_value(ext);
        if (!value.is_universal(der::kEnumerated)) malformed("expected ENUMERATED, found " + der::tag_name(value), value.offset);
        return der::read_int64(value);
      });
      if (reason) {
        if (*reason == 0) {
          findings.warning("crl.reason_unspecified", label + " writes reasonCode unspecified; RFC 5280 5.3.1 says leave it out");
        } else if (*reason < 0 || *reason > 10 || *reason == 7) {
          findings.error("crl.reason_code", label + " reasonCode " + std::to_string(*reason) + " is not a CRLReason");
        }
      }
    }
  }

  const Extension* number_ext = find_extension(extensions, kOidCrlNumber);
  if (number_ext == nullptr) {
    findings.error("crl_number.missing", "no cRLNumber");
  } else {
    if (number_ext->critical) findings.error("crl_number.critical", "cRLNumber is critical");
    const auto number = decode_extension(findings, number_ext, [](const Extension& ext) {
      return der::read_integer(extension_value(ext));
    });
    if (number && number->negative()) findings.error("crl_number.negative", "cRLNumber " + to_hex(number->content) + " is negative");
    if (number && number->content.size() > kMaxSerialOctets) {
      findings.error("crl_number.length", "cRLNumber has " + std::to_string(number->content.size()) + " octets, more than 20");
    }
  }
  const Extension* aki_ext = find_extension(extensions, kOidAuthorityKeyId);
  check_authority_key_id(findings, aki_ext, decode_extension(findings, aki_ext, decode_authority_key_id), Bytes{}, issuer, false);
  return signature.encoded;
}

// Certificate / CertificateList ::= SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }
struct Signed {
  Element tbs;
  Element algorithm;
};

Signed split_signed(Bytes der_bytes, std::string_view what) {
  const Element outer = der::parse(der_bytes);
  if (!outer.is_universal(der::kSequence)) malformed("expected " + std::string(what) + " SEQUENCE, found " + der::tag_name(outer), outer.offset);
  Reader fields(outer);
  Signed out;
  out.tbs = fields.next(TagClass::Universal, der::kSequence, "to-be-signed SEQUENCE");
  out.algorithm = fields.next(TagClass::Universal, der::kSequence, "signatureAlgorithm");
  der::read_bit_string(fields.next(TagClass::Universal, der::kBitString, "signatureValue BIT STRING"));
  fields.expect_end("signatureValue");
  return out;
}

void check_outer_algorithm(Findings& findings, const Signed& parts, Bytes inner) {
  if (same_bytes(parts.algorithm.encoded, inner)) return;
  findings.error("signature.outer_mismatch", "signatureAlgorithm " + to_hex(parts.algorithm.encoded) +
                                                 " is not byte for byte the TBS signature field " + to_hex(inner));
}

}  // namespace

std::vector<LintFinding> lint_tbs_certificate(std::span<const std::uint8_t> tbs_der, CertificateKind kind,
                                              const IssuerFacts& issuer) {
  Findings findings;
  try {
    lint_tbs_certificate_element(findings, der::parse(tbs_der), kind, issuer);
  } catch (const Error& e) {
    findings.error("der.malformed", e.what());
  }
  return findings.take();
}

std::vector<LintFinding> lint_certificate(std::span<const std::uint8_t> certificate_der, CertificateKind kind,
                                          const IssuerFacts& issuer) {
  Findings findings;
  try {
    const Signed parts = split_signed(certificate_der, "Certificate");
    const Bytes inner = lint_tbs_certificate_element(findings, parts.tbs, kind, issuer);
    check_outer_algorithm(findings, parts, inner);
  } catch (const Error& e) {
    findings.error("der.malformed", e.what());
  }
  return findings.take();
}

std::vector<LintFinding> lint_tbs_crl(std::span<const std::uint8_t> tbs_crl_der, const IssuerFacts& issuer) {
  Findings findings;
  try {
    lint_tbs_crl_element(findings, der::parse(tbs_crl_der), issuer);
  } catch (const Error& e) {
    findings.error("der.malformed", e.what());
  }
  return findings.take();
}

std::vector<LintFinding> lint_crl(std::span<const std::uint8_t> crl_der, const IssuerFacts& issuer) {
  Findings findings;
  try {
    const Signed parts = split_signed(crl_der, "CertificateList");
    const Bytes inner = lint_tbs_crl_element(findings, parts.tbs, issuer);
    check_outer_algorithm(findings, parts, inner);
  } catch (const Error& e) {
    findings.error("der.malformed", e.what());
  }
  return findings.take();
}

IssuerFacts issuer_facts_from_certificate(std::span<const std::uint8_t> certificate_der,
                                          crypto::SignatureAlgorithm signature_algorithm) {
  const Signed parts = split_signed(certificate_der, "Certificate");
  Reader fields(parts.tbs);
  fields.next_if(TagClass::ContextSpecific, 0);
  fields.next(TagClass::Universal, der::kInteger, "serialNumber INTEGER");
  fields.next(TagClass::Universal, der::kSequence, "signature AlgorithmIdentifier");
  fields.next(TagClass::Universal, der::kSequence, "issuer Name");
  const Element validity = fields.next(TagClass::Universal, der::kSequence, "Validity SEQUENCE");
  const Element subject = fields.next(TagClass::Universal, der::kSequence, "subject Name");
  fields.next(TagClass::Universal, der::kSequence, "subjectPublicKeyInfo");
  fields.next_if(TagClass::ContextSpecific, 1);
  fields.next_if(TagClass::ContextSpecific, 2);

  IssuerFacts facts;
  facts.signature_algorithm = signature_algorithm;
  facts.subject_name_der.assign(subject.encoded.begin(), subject.encoded.end());
  Reader times(validity);
  const der::Time not_before = read_time_field(times, "notBefore");
  const der::Time not_after = read_time_field(times, "notAfter");
  times.expect_end("notAfter");
  if (!not_before.value || !not_after.value) {
    throw Error(ErrorCode::InvalidArgument, "issuer certificate validity is not in RFC 5280 4.1.2.5 form");
  }
  facts.not_before = *not_before.value;
  facts.not_after = *not_after.value;
  if (auto tagged = fields.next_if(TagClass::ContextSpecific, 3)) {
    const std::vector<Extension> extensions = read_extensions(der::explicit_inner(*tagged));
    if (const Extension* ski = find_extension(extensions, kOidSubjectKeyId)) {
      const Bytes id = decode_subject_key_id(*ski);
      facts.subject_key_id.assign(id.begin(), id.end());
    }
  }
  fields.expect_end("TBSCertificate");
  return facts;
}

bool has_errors(const std::vector<LintFinding>& findings) noexcept {
  return std::any_of(findings.begin(), findings.end(), [](const LintFinding& f) { return f.severity == Severity::Error; });
}

std::string describe(const std::vector<LintFinding>& findings, std::string_view what) {
  std::string out(what);
  if (findings.empty()) return out + " lint passed";
  out += has_errors(findings) ? " lint failed: " : " lint passed with warnings: ";
  bool first = true;
  for (Severity severity : {Severity::Error, Severity::Warning}) {
    for (const LintFinding& f : findings) {
      if (f.severity != severity) continue;
      if (!first) out += "; ";
      first = false;
      if (severity == Severity::Warning) out += "warning ";
      out += f.rule + " (" + f.detail + ")";
    }
  }
  return out;
}

}  // namespace keyhold::pki
