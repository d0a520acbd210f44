#pragma once
// Pre-issuance lint (CA/Browser Forum Baseline Requirements section 4.3.1.2).
//
// keyhold hands the exact to-be-signed bytes (DER TBSCertificate or
// TBSCertList) to these functions before the token signs; any finding of
// severity Error means nothing is signed. After signing, the full certificate
// (or CRL) is linted once more, which adds the outer == inner algorithm check.
// The bytes are read with keyhold's own strict DER reader (pki/der.hpp), not
// with OpenSSL, so the lint judges what will really be signed.
//
// Contract: the lint functions never throw for bad input: malformed DER is
// reported as the finding "der.malformed" (and checking stops there).
// They are pure functions of their arguments and thread-safe.
//
// Rules (rule id: what; Error unless marked [W] for Warning). Only these are
// checked; anything else in the input is accepted.
//
// Structure
//   der.malformed             not strict DER, or not the ASN.1 structure of RFC 5280 4.1 / 5.1
//   extension.malformed       a known extension's extnValue does not decode (RFC 5280 4.2.1.x)
// Version
//   version.v3                certificate version is not v3: explicit [0] INTEGER 2 (RFC 5280 4.1.2.1; BR 7.1.1)
//   version.v2                CRL version is not v2: INTEGER 1 (RFC 5280 5.1.2.1; keyhold CRLs carry extensions)
// Serial number (RFC 5280 4.1.2.2; BR 7.1)
//   serial.positive           the INTEGER is negative (first content octet >= 0x80)
//   serial.nonzero            the serial is zero
//   serial.minimal            needless leading 0x00 (or 0xFF) octet (X.690 8.3.2)
//   serial.length             more than 20 content octets
//   serial.entropy            fewer than 9 content octets. BR 7.1 wants at least 64 bits of
//                             CSPRNG output; the lint cannot see randomness, so it checks
//                             the size: 8 octets of a positive INTEGER carry at most 63
//                             bits, 9 carry at least 64 (a 0x00 pad plus 8 full octets).
//                             keyhold draws 16 random bytes, which encode to fewer than 9
//                             octets with probability about 2^-56.
// Signature algorithm (RFC 5280 4.1.1.2, 4.1.2.3, 5.1.1.2, 5.1.2.2)
//   signature.algorithm_unknown   the TBS signature field is none of the AlgorithmIdentifiers
//                                 of crypto/signature_algorithm.hpp
//   signature.algorithm_mismatch  the TBS signature field is not byte for byte the issuer's
//                                 crypto::algorithm_identifier(issuer.signature_algorithm)
//   signature.outer_mismatch      (full certificate / CRL) signatureAlgorithm != the TBS
//                                 signature field, byte for byte
// Issuer (RFC 5280 4.1.2.4, 5.1.2.3)
//   issuer.mismatch           the issuer Name DER is not byte for byte the issuer's subject DER
// Validity (RFC 5280 4.1.2.5)
//   validity.order            notBefore is not before notAfter
//   validity.outside_issuer   validity not inside the issuer's (not checked when self-signed)
//   validity.leaf_over_398_days [W] leaf validity period (notAfter - notBefore + 1 s, BR 1.6.1
//                             "Validity Period") over 398 days, the public-web maximum of BR 6.3.2;
//                             a private CA may choose otherwise
// Time encoding (RFC 5280 4.1.2.5.1, 4.1.2.5.2; for CRLs 5.1.2.4-5.1.2.6), for notBefore,
// notAfter, thisUpdate, nextUpdate and revocationDate
//   time.format               not YYMMDDHHMMSSZ (UTCTime) / YYYYMMDDHHMMSSZ (GeneralizedTime):
//                             no seconds, fractional seconds, an offset, or not a real date
//   time.generalized_before_2050  GeneralizedTime for a date through 2049 (UTCTime is required)
// Names: every attribute of the subject and issuer (RFC 5280 4.1.2.4, 4.1.2.6, appendix A.1)
//   name.control_character    a string value holds a byte < 0x20 or 0x7F
//   name.string_type          a DirectoryString that is neither PrintableString nor UTF8String
//                             (emailAddress and domainComponent: IA5String)
//   name.printable_charset    PrintableString with a character outside X.680 41.4
//   name.utf8_invalid         UTF8String that is not valid UTF-8 (RFC 3629)
//   name.ia5_charset          IA5String with a byte >= 0x80
//   name.country              countryName is not a PrintableString of exactly 2 letters
// Extensions (RFC 5280 4.2)
//   extensions.duplicate      an extension OID appears more than once
//   san.missing               leaf: no subjectAltName (BR 7.1.2.7.12)
//   san.critical              leaf: subjectAltName critical but subject non-empty, or not critical
//                             with an empty subject (RFC 5280 4.2.1.6; BR 7.1.2.7.12)
//   san.empty                 subjectAltName with no GeneralName (SIZE (1..MAX))
//   san.dns_name              dNSName not in LDH form (RFC 1034 3.5, RFC 5280 4.2.1.6): labels of
//                             1-63 letters, digits, hyphens, not starting or ending with a hyphen;
//                             at most 253 characters; "*" only as the whole first label
//   san.ip_address            iPAddress not 4 or 16 octets
//   san.email                 rfc822Name without exactly one '@', an empty or non-ASCII
//                             local part, or a domain that is not LDH
//   san.uri                   uniformResourceIdentifier empty, without a scheme (RFC 3986 3.1),
//                             or with a control, space or non-ASCII byte
//   eku.any                   leaf: extendedKeyUsage holds anyExtendedKeyUsage (2.5.29.37.0)
//   basic_constraints.leaf_ca leaf: basicConstraints with cA TRUE
//   basic_constraints.ca_missing / .ca_not_critical / .ca_false
//                             CA: basicConstraints absent, not critical, or cA not TRUE (4.2.1.9)
//   key_usage.ca_missing / .ca_not_critical / .ca_no_cert_sign / .ca_no_crl_sign
//                             CA: keyUsage absent, not critical, without keyCertSign or
//                             without cRLSign (RFC 5280 4.2.1.3, 4.2.1.9)
//   key_usage.leaf_missing    [W] leaf: no keyUsage (RFC 5280 4.2.1.3)
//   key_usage.leaf_not_critical [W] leaf: keyUsage not critical (RFC 5280 4.2.1.3 SHOULD)
//   ski.missing               no subjectKeyIdentifier (RFC 5280 4.2.1.2)
//   aki.missing               no authorityKeyIdentifier (RFC 5280 4.2.1.1, 5.2.1); a self-signed
//                             CA may omit it
//   aki.mismatch              AKI without keyIdentifier, or keyIdentifier != the issuer's SKI
//                             (self-signed: its own SKI, or issuer.subject_key_id when given)
// CRL (RFC 5280 5.1, 5.2, 5.3)
//   crl.next_update_missing   no nextUpdate (5.1.2.5)
//   crl.update_order          thisUpdate is not before nextUpdate
//   crl_number.missing / .critical / .negative / .length
//                             CRL Number (2.5.29.20) absent, critical, negative, or more than
//                             20 octets (5.2.3)
//   crl.revoked_serial_positive   a revoked entry's serial is zero or negative (5.1.2.6, 4.1.2.2)
//   crl.revoked_serial_length     a revoked entry's serial has more than 20 octets
//   crl.reason_code           reasonCode not one of the CRLReason values 0-6, 8-10 (5.3.1)
//   crl.reason_unspecified    [W] reasonCode unspecified (0) written out: 5.3.1 says the
//                             extension SHOULD be absent instead

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/crypto/signature_algorithm.hpp"

namespace keyhold::pki {

enum class Severity { Error, Warning };

struct LintFinding {
  std::string rule;    // a stable id from the list above, e.g. "serial.positive"
  Severity severity;
  std::string detail;  // for people: what was found, e.g. "serial is negative"
};

enum class CertificateKind { Leaf, Ca };

// What the linter needs to know about the issuing CA (its current certificate
// and key).
struct IssuerFacts {
  // The issuer's subjectKeyIdentifier: the AKI keyIdentifier must equal it.
  // Empty for a self-signed root being created (then the AKI, if present,
  // must equal the certificate's own SKI).
  std::vector<std::uint8_t> subject_key_id;
  // The issuer's subject Name DER; the issuer field must equal it byte for byte.
  // For a self-signed root: the root's own subject.
  std::vector<std::uint8_t> subject_name_der;
  // The issuer's validity; the certificate's must lie inside it. Not used
  // when self_signed (a root's validity is its own).
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  // What the CA key signs with: the TBS signature field must be exactly
  // crypto::algorithm_identifier(signature_algorithm).
  crypto::SignatureAlgorithm signature_algorithm = crypto::SignatureAlgorithm::EcdsaSha256;
  bool self_signed = false;
};

// The DER TBSCertificate about to be signed.
std::vector<LintFinding> lint_tbs_certificate(std::span<const std::uint8_t> tbs_der, CertificateKind kind,
                                              const IssuerFacts& issuer);
// A signed DER Certificate: the TBS rules plus signature.outer_mismatch.
std::vector<LintFinding> lint_certificate(std::span<const std::uint8_t> certificate_der, CertificateKind kind,
                                          const IssuerFacts& issuer);
// The DER TBSCertList about to be signed.
std::vector<LintFinding> lint_tbs_crl(std::span<const std::uint8_t> tbs_crl_der, const IssuerFacts& issuer);
// A signed DER CertificateList: the TBS rules plus signature.outer_mismatch.
std::vector<LintFinding> lint_crl(std::span<const std::uint8_t> crl_der, const IssuerFacts& issuer);

// The facts of an issuer read from its signed DER certificate (SKI, subject
// DER, validity), with the algorithm its key signs with. self_signed is
// false. Throws keyhold::Error (InvalidArgument) when the certificate does
// not parse.
IssuerFacts issuer_facts_from_certificate(std::span<const std::uint8_t> certificate_der,
                                          crypto::SignatureAlgorithm signature_algorithm);

bool has_errors(const std::vector<LintFinding>& findings) noexcept;
// One line for an error message or log, errors first, e.g.
// "certificate lint failed: serial.positive (serial is negative); warning validity.leaf_over_398_days (...)",
// "CRL lint passed", "certificate lint passed with warnings: ...". what names the object.
std::string describe(const std::vector<LintFinding>& findings, std::string_view what = "certificate");

}  // namespace keyhold::pki
