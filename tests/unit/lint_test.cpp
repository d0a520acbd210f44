// Pre-issuance lint: a valid leaf, CA, self-signed root and CRL pass every
// rule; each other test breaks exactly one rule and expects exactly that rule
// id (and no other error). Inputs are made by OpenSSL, then changed either
// through OpenSSL's API or, where OpenSSL would not write the broken form
// (non-minimal serial, GeneralizedTime before 2050, fractional seconds, wrong
// outer algorithm), by rebuilding the DER from its parts.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/pki/der.hpp"
#include "keyhold/pki/lint.hpp"

namespace keyhold::pki {
namespace {

using namespace std::chrono;
using Bytes = std::vector<std::uint8_t>;
using Rules = std::vector<std::string>;
using X509Ptr = CPtr<X509, &X509_free>;
using CrlPtr = CPtr<X509_CRL, &X509_CRL_free>;
using KeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using NamePtr = CPtr<X509_NAME, &X509_NAME_free>;
using TimePtr = CPtr<ASN1_TIME, &ASN1_TIME_free>;

// ---- Reading findings ------------------------------------------------------

Rules rules_of(const std::vector<LintFinding>& findings, Severity severity) {
  Rules out;
  for (const LintFinding& f : findings) {
    if (f.severity == severity) out.push_back(f.rule);
  }
  return out;
}
Rules errors(const std::vector<LintFinding>& findings) { return rules_of(findings, Severity::Error); }
Rules warnings(const std::vector<LintFinding>& findings) { return rules_of(findings, Severity::Warning); }

// ---- A tiny DER writer for the edits OpenSSL will not make ----------------

void append(Bytes& out, const Bytes& more) {
  for (std::uint8_t b : more) out.push_back(b);
}

Bytes tlv(std::uint8_t tag, const Bytes& content) {
  Bytes out{tag};
  const std::size_t n = content.size();
  if (n < 0x80) {
    out.push_back(static_cast<std::uint8_t>(n));
  } else if (n <= 0xff) {
    out.push_back(0x81);
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    out.push_back(0x82);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
    out.push_back(static_cast<std::uint8_t>(n & 0xff));
  }
  append(out, content);
  return out;
}

Bytes text(std::uint8_t tag, std::string_view value) { return tlv(tag, Bytes(value.begin(), value.end())); }

Bytes sequence(std::initializer_list<Bytes> parts) {
  Bytes content;
  for (const Bytes& part : parts) append(content, part);
  return tlv(0x30, content);
}

// A copy of sequence_der with its index-th child replaced (or removed when
// replacement is empty). Splits with keyhold's DER reader (tested in der_test).
Bytes replace_child(const Bytes& sequence_der, std::size_t index, const Bytes& replacement) {
  const der::Element outer = der::parse(sequence_der);
  Bytes content;
  std::size_t i = 0;
  for (const der::Element& child : der::children(outer)) {
    if (i++ == index) {
      append(content, replacement);
    } else {
      append(content, Bytes(child.encoded.begin(), child.encoded.end()));
    }
  }
  return tlv(0x30, content);
}

// TBSCertificate fields, in order (RFC 5280 4.1).
constexpr std::size_t kTbsSerial = 1;
constexpr std::size_t kTbsSignature = 2;
constexpr std::size_t kTbsValidity = 4;
constexpr std::size_t kTbsSubject = 5;

// ---- OpenSSL helpers ------------------------------------------------------

// OpenSSL fails quietly (a name it cannot canonicalise is not set, not
// encoded); a helper that got nothing throws, so no test passes by accident.
void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("OpenSSL refused: ") + what);
}

Bytes der_of_name(const X509_NAME* name) {
  unsigned char* buffer = nullptr;
  const int length = i2d_X509_NAME(name, &buffer);
  check(length > 0, "i2d_X509_NAME");
  Bytes out(buffer, buffer + length);
  OPENSSL_free(buffer);
  return out;
}

Bytes der_of(X509* cert) {
  unsigned char* buffer = nullptr;
  const int length = i2d_X509(cert, &buffer);
  check(length > 0, "i2d_X509");
  Bytes out(buffer, buffer + length);
  OPENSSL_free(buffer);
  return out;
}

time_t to_time_t(sys_seconds t) { return system_clock::to_time_t(system_clock::time_point(t)); }

void set_time(ASN1_TIME* field, sys_seconds t) { ASN1_TIME_set(field, to_time_t(t)); }

NamePtr make_name(std::initializer_list<std::pair<const char*, std::string>> entries) {
  NamePtr name(X509_NAME_new());
  for (const auto& [field, value] : entries) {
    // Country as PrintableString, the rest as UTF8String, as keyhold writes them.
    const int type = std::string_view(field) == "C" ? V_ASN1_PRINTABLESTRING : V_ASN1_UTF8STRING;
    check(X509_NAME_add_entry_by_txt(name.get(), field, type, reinterpret_cast<const unsigned char*>(value.data()),
                                     static_cast<int>(value.size()), -1, 0) == 1,
          "X509_NAME_add_entry_by_txt");
  }
  return name;
}

// A name with one attribute of a chosen ASN.1 string type and raw bytes.
NamePtr name_with(const char* field, int type, std::string_view value) {
  NamePtr name = make_name({{"O", "Example"}});
  check(X509_NAME_add_entry_by_txt(name.get(), field, type, reinterpret_cast<const unsigned char*>(value.data()),
                                   static_cast<int>(value.size()), -1, 0) == 1,
        "X509_NAME_add_entry_by_txt");
  return name;
}

void set_subject(X509* cert, X509_NAME* name) { check(X509_set_subject_name(cert, name) == 1, "X509_set_subject_name"); }
void set_issuer(X509* cert, X509_NAME* name) { check(X509_set_issuer_name(cert, name) == 1, "X509_set_issuer_name"); }

void remove_extension(X509* cert, int nid) {
  for (int i = X509_get_ext_by_NID(cert, nid, -1); i >= 0; i = X509_get_ext_by_NID(cert, nid, -1)) {
    X509_EXTENSION_free(X509_delete_ext(cert, i));
  }
}

// Replaces (or adds) an extension written from OpenSSL's configuration syntax.
void set_extension(X509* cert, X509* issuer, int nid, const char* value) {
  remove_extension(cert, nid);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, value);
  check(X509_add_ext(cert, ext, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(ext);
}

CPtr<X509_EXTENSION, &X509_EXTENSION_free> raw_extension(int nid, bool critical, const Bytes& value) {
  CPtr<ASN1_OCTET_STRING, &ASN1_OCTET_STRING_free> octets(ASN1_OCTET_STRING_new());
  ASN1_OCTET_STRING_set(octets.get(), value.data(), static_cast<int>(value.size()));
  return CPtr<X509_EXTENSION, &X509_EXTENSION_free>(
      X509_EXTENSION_create_by_NID(nullptr, nid, critical ? 1 : 0, octets.get()));
}

// Replaces (or adds) an extension whose extnValue is given as DER.
void set_raw_extension(X509* cert, int nid, bool critical, const Bytes& value) {
  remove_extension(cert, nid);
  check(X509_add_ext(cert, raw_extension(nid, critical, value).get(), -1) == 1, "X509_add_ext");
}

Bytes bytes_of(const ASN1_OCTET_STRING* octets) {
  return Bytes(ASN1_STRING_get0_data(octets), ASN1_STRING_get0_data(octets) + ASN1_STRING_length(octets));
}

// AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
Bytes aki_value(const Bytes& key_id) { return sequence({tlv(0x80, key_id)}); }

// GeneralName forms (RFC 5280 4.2.1.6), IMPLICIT tags.
Bytes email_name(std::string_view v) { return text(0x81, v); }
Bytes dns_name(std::string_view v) { return text(0x82, v); }
Bytes uri_name(std::string_view v) { return text(0x86, v); }
Bytes ip_name(const Bytes& v) { return tlv(0x87, v); }

void set_san(X509* cert, std::initializer_list<Bytes> names, bool critical = false) {
  set_raw_extension(cert, NID_subject_alt_name, critical, sequence(names));
}

// ---- The test PKI ----------------------------------------------------------

constexpr sys_seconds kRootFrom = sys_days{2024y / January / 1};
constexpr sys_seconds kRootTo = sys_days{2064y / January / 1};  // past 2049: GeneralizedTime
constexpr sys_seconds kLeafFrom = sys_days{2025y / January / 1};
constexpr sys_seconds kLeafTo = sys_days{2025y / March / 1};
constexpr sys_seconds kCaFrom = sys_days{2024y / June / 1};
constexpr sys_seconds kCaTo = sys_days{2034y / June / 1};

// 16 random-looking bytes, positive, as keyhold draws them.
const Bytes kSerial{0x3a, 0x91, 0x0c, 0x5e, 0x77, 0x21, 0xd4, 0x08, 0x9b, 0xe3, 0x46, 0x1f, 0xa2, 0x6d, 0x50, 0xc8};

// A self-signed root, a leaf and an intermediate CA issued by it, all with
// P-256 keys made in memory; every certificate is signed by the root key with
// ECDSA-SHA256 (300a06082a8648ce3d040302).
class TestPki {
 public:
  TestPki()
      : root_key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")),
        subject_key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")) {
    root_ = build(make_name({{"C", "US"}, {"O", "Example"}, {"CN", "Example Root CA"}}).get(), nullptr, root_key_.get(),
                  kRootFrom, kRootTo);
    set_extension(root_.get(), root_.get(), NID_basic_constraints, "critical,CA:TRUE");
    set_extension(root_.get(), root_.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    set_extension(root_.get(), root_.get(), NID_subject_key_identifier, "hash");
    set_extension(root_.get(), root_.get(), NID_authority_key_identifier, "keyid:always");
    sign(root_.get());
  }

  X509* root() const { return root_.get(); }
  EVP_PKEY* root_key() const { return root_key_.get(); }
  Bytes root_ski() const { return bytes_of(X509_get0_subject_key_id(root_.get())); }
  Bytes root_subject() const { return der_of_name(X509_get_subject_name(root_.get())); }

  // What keyhold knows about the root when it issues under it.
  IssuerFacts root_facts() const {
    IssuerFacts facts;
    facts.subject_key_id = root_ski();
    facts.subject_name_der = root_subject();
    facts.not_before = system_clock::time_point(kRootFrom);
    facts.not_after = system_clock::time_point(kRootTo);
    facts.signature_algorithm = crypto::SignatureAlgorithm::EcdsaSha256;
    return facts;
  }

  // What keyhold knows when the root signs itself.
  IssuerFacts self_signed_facts() const {
    IssuerFacts facts;
    facts.subject_name_der = root_subject();
    facts.signature_algorithm = crypto::SignatureAlgorithm::EcdsaSha256;
    facts.self_signed = true;
    return facts;
  }

  X509Ptr root_copy() const { return X509Ptr(X509_dup(root_.get())); }

  X509Ptr leaf() const {
    X509Ptr cert = build(make_name({{"C", "US"}, {"O", "Example"}, {"CN", "www.example.com"}}).get(),
                         X509_get_subject_name(root_.get()), subject_key_.get(), kLeafFrom, kLeafTo);
    set_extension(cert.get(), root_.get(), NID_basic_constraints, "critical,CA:FALSE");
    set_extension(cert.get(), root_.get(), NID_key_usage, "critical,digitalSignature");
    set_extension(cert.get(), root_.get(), NID_ext_key_usage, "serverAuth,clientAuth");
    set_extension(cert.get(), root_.get(), NID_subject_key_identifier, "hash");
    set_extension(cert.get(), root_.get(), NID_authority_key_identifier, "keyid:always");
    set_extension(cert.get(), root_.get(), NID_subject_alt_name,
                  "DNS:www.example.com,DNS:*.example.com,IP:192.0.2.1,IP:2001:db8::1,email:ops@example.com,"
                  "URI:spiffe://example.org/web");
    sign(cert.get());
    return cert;
  }

  X509Ptr intermediate() const {
    X509Ptr cert = build(make_name({{"C", "US"}, {"O", "Example"}, {"CN", "Example Issuing CA"}}).get(),
                         X509_get_subject_name(root_.get()), subject_key_.get(), kCaFrom, kCaTo);
    set_extension(cert.get(), root_.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    set_extension(cert.get(), root_.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    set_extension(cert.get(), root_.get(), NID_subject_key_identifier, "hash");
    set_extension(cert.get(), root_.get(), NID_authority_key_identifier, "keyid:always");
    sign(cert.get());
    return cert;
  }

  // Signs with the root key (this sets the TBS signature field) and returns
  // the TBSCertificate DER exactly as it was signed.
  Bytes tbs(X509* cert, const EVP_MD* digest = EVP_sha256()) const {
    check(X509_sign(cert, root_key_.get(), digest) > 0, "X509_sign");
    unsigned char* buffer = nullptr;
    const int length = i2d_re_X509_tbs(cert, &buffer);
    check(length > 0, "i2d_re_X509_tbs");
    Bytes out(buffer, buffer + length);
    OPENSSL_free(buffer);
    return out;
  }

  Bytes certificate(X509* cert) const {
    check(X509_sign(cert, root_key_.get(), EVP_sha256()) > 0, "X509_sign");
    return der_of(cert);
  }

 private:
  static X509Ptr build(X509_NAME* subject, X509_NAME* issuer, EVP_PKEY* key, sys_seconds from, sys_seconds to) {
    X509Ptr cert(X509_new());
    X509_set_version(cert.get(), X509_VERSION_3);
    CPtr<BIGNUM, &BN_free> serial(BN_bin2bn(kSerial.data(), static_cast<int>(kSerial.size()), nullptr));
    BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()));
    set_subject(cert.get(), subject);
    set_issuer(cert.get(), issuer != nullptr ? issuer : subject);
    set_time(X509_getm_notBefore(cert.get()), from);
    set_time(X509_getm_notAfter(cert.get()), to);
    X509_set_pubkey(cert.get(), key);
    return cert;
  }

  void sign(X509* cert) const { X509_sign(cert, root_key_.get(), EVP_sha256()); }

  KeyPtr root_key_;
  KeyPtr subject_key_;
  X509Ptr root_;
};

const TestPki& pki() {
  static const TestPki instance;
  return instance;
}

std::vector<LintFinding> lint_leaf(X509* cert) {
  return lint_tbs_certificate(pki().tbs(cert), CertificateKind::Leaf, pki().root_facts());
}
std::vector<LintFinding> lint_ca(X509* cert) {
  return lint_tbs_certificate(pki().tbs(cert), CertificateKind::Ca, pki().root_facts());
}
std::vector<LintFinding> lint_root(X509* cert) {
  return lint_tbs_certificate(pki().tbs(cert), CertificateKind::Ca, pki().self_signed_facts());
}

// The valid leaf's TBS with one field replaced by raw DER.
std::vector<LintFinding> lint_leaf_with_field(std::size_t index, const Bytes& field) {
  X509Ptr cert = pki().leaf();
  return lint_tbs_certificate(replace_child(pki().tbs(cert.get()), index, field), CertificateKind::Leaf,
                              pki().root_facts());
}

Bytes validity(const Bytes& not_before, const Bytes& not_after) { return sequence({not_before, not_after}); }
Bytes utc(std::string_view t) { return text(0x17, t); }
Bytes generalized(std::string_view t) { return text(0x18, t); }

// ---- Valid inputs ------------------------------------------------------------

TEST(Lint, ValidLeafPassesEveryRule) {
  X509Ptr cert = pki().leaf();
  const std::vector<LintFinding> findings = lint_leaf(cert.get());
  EXPECT_TRUE(findings.empty()) << describe(findings);
  const std::vector<LintFinding> full = lint_certificate(pki().certificate(cert.get()), CertificateKind::Leaf, pki().root_facts());
  EXPECT_TRUE(full.empty()) << describe(full);
}

TEST(Lint, ValidIntermediateCaPassesEveryRule) {
  X509Ptr cert = pki().intermediate();
  const std::vector<LintFinding> findings = lint_ca(cert.get());
  EXPECT_TRUE(findings.empty()) << describe(findings);
  const std::vector<LintFinding> full = lint_certificate(pki().certificate(cert.get()), CertificateKind::Ca, pki().root_facts());
  EXPECT_TRUE(full.empty()) << describe(full);
}

TEST(Lint, ValidSelfSignedRootPassesEveryRule) {
  // Its AKI equals its own SKI, and its notAfter (2064) is a GeneralizedTime.
  X509Ptr root = pki().root_copy();
  const std::vector<LintFinding> findings = lint_root(root.get());
  EXPECT_TRUE(findings.empty()) << describe(findings);
  const std::vector<LintFinding> full = lint_certificate(der_of(pki().root()), CertificateKind::Ca, pki().self_signed_facts());
  EXPECT_TRUE(full.empty()) << describe(full);
}

TEST(Lint, SelfSignedRootMayOmitAki) {
  X509Ptr root = pki().root_copy();
  remove_extension(root.get(), NID_authority_key_identifier);
  const std::vector<LintFinding> findings = lint_root(root.get());
  EXPECT_TRUE(findings.empty()) << describe(findings);
}

TEST(Lint, IssuerFactsAreReadFromTheIssuerCertificate) {
  const IssuerFacts facts = issuer_facts_from_certificate(der_of(pki().root()), crypto::SignatureAlgorithm::EcdsaSha256);
  const IssuerFacts expected = pki().root_facts();
  EXPECT_EQ(facts.subject_key_id, expected.subject_key_id);
  EXPECT_EQ(facts.subject_name_der, expected.subject_name_der);
  EXPECT_EQ(facts.not_before, expected.not_before);
  EXPECT_EQ(facts.not_after, expected.not_after);
  EXPECT_FALSE(facts.self_signed);
  EXPECT_THROW(issuer_facts_from_certificate(Bytes{0x30, 0x00}, crypto::SignatureAlgorithm::EcdsaSha256), Error);
}

// ---- Structure ---------------------------------------------------------------

TEST(Lint, MalformedDerIsReportedNotThrown) {
  X509Ptr cert = pki().leaf();
  Bytes tbs = pki().tbs(cert.get());
  Bytes truncated(tbs.begin(), tbs.end() - 1);
  std::vector<LintFinding> findings = lint_tbs_certificate(truncated, CertificateKind::Leaf, pki().root_facts());
  EXPECT_EQ(errors(findings), Rules{"der.malformed"});
  EXPECT_EQ(findings[0].detail, "DER: length runs past the end at offset 0");

  tbs.push_back(0x00);
  findings = lint_tbs_certificate(tbs, CertificateKind::Leaf, pki().root_facts());
  EXPECT_EQ(errors(findings), Rules{"der.malformed"});
  EXPECT_EQ(errors(lint_tbs_certificate(Bytes{}, CertificateKind::Leaf, pki().root_facts())), Rules{"der.malformed"});
}

TEST(Lint, CorruptedInputNeverThrows) {
  X509Ptr cert = pki().leaf();
  const Bytes tbs = pki().tbs(cert.get());
  for (std::size_t length = 0; length < tbs.size(); ++length) {
    const Bytes prefix(tbs.begin(), tbs.begin() + static_cast<std::ptrdiff_t>(length));
    const std::vector<LintFinding> findings = lint_tbs_certificate(prefix, CertificateKind::Leaf, pki().root_facts());
    EXPECT_EQ(errors(findings), Rules{"der.malformed"}) << "prefix of " << length << " bytes";
  }
  std::mt19937 random(5280);
  std::uniform_int_distribution<std::size_t> position(0, tbs.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 5000; ++round) {
    Bytes mutated = tbs;
    for (int i = 0; i <= round % 3; ++i) mutated[position(random)] = static_cast<std::uint8_t>(byte(random));
    EXPECT_NO_THROW(lint_tbs_certificate(mutated, CertificateKind::Leaf, pki().root_facts()));
    EXPECT_NO_THROW(lint_tbs_certificate(mutated, CertificateKind::Ca, pki().self_signed_facts()));
    EXPECT_NO_THROW(lint_tbs_crl(mutated, pki().root_facts()));
  }
}

TEST(Lint, UndecodableExtensionIsReported) {
  X509Ptr cert = pki().leaf();
  set_raw_extension(cert.get(), NID_basic_constraints, true, Bytes{0x05, 0x00});  // NULL, not a SEQUENCE
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"extension.malformed"});
}

TEST(Lint, ExplicitCriticalFalseIsNotDer) {
  // Extension { extnID, critical BOOLEAN FALSE, extnValue }: DER leaves a DEFAULT value out.
  X509Ptr cert = pki().leaf();
  const Bytes tbs = pki().tbs(cert.get());
  const der::Element element = der::parse(tbs);
  const std::vector<der::Element> fields = der::children(element);
  const Bytes extra = sequence({tlv(0x06, Bytes{0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x01}), tlv(0x01, Bytes{0x00}),
                                tlv(0x04, Bytes{0x05, 0x00})});
  const der::Element extensions = der::explicit_inner(fields[7]);
  Bytes list(extensions.content.begin(), extensions.content.end());
  append(list, extra);
  const Bytes broken = replace_child(tbs, 7, tlv(0xa3, tlv(0x30, list)));
  EXPECT_EQ(errors(lint_tbs_certificate(broken, CertificateKind::Leaf, pki().root_facts())), Rules{"der.malformed"});
}

// ---- Version ---------------------------------------------------------------

TEST(Lint, CertificateVersion1IsRefused) {
  X509Ptr cert = pki().leaf();
  X509_set_version(cert.get(), X509_VERSION_1);
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"version.v3"});
}

TEST(Lint, CertificateVersion2IsRefused) {
  X509Ptr cert = pki().leaf();
  X509_set_version(cert.get(), X509_VERSION_2);
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"version.v3"});
}

// ---- Serial number -----------------------------------------------------------

Bytes serial_of(Bytes content) { return tlv(0x02, content); }

TEST(Lint, NegativeSerialIsRefused) {
  Bytes negative = kSerial;
  negative[0] = 0xba;
  EXPECT_EQ(errors(lint_leaf_with_field(kTbsSerial, serial_of(negative))), Rules{"serial.positive"});
}

TEST(Lint, ZeroSerialIsRefused) {
  EXPECT_EQ(errors(lint_leaf_with_field(kTbsSerial, serial_of(Bytes{0x00}))), Rules{"serial.nonzero"});
}

TEST(Lint, NonMinimalSerialIsRefused) {
  Bytes padded{0x00};
  append(padded, kSerial);  // kSerial starts below 0x80: the 0x00 is needless
  EXPECT_EQ(errors(lint_leaf_with_field(kTbsSerial, serial_of(padded))), Rules{"serial.minimal"});
}

TEST(Lint, SerialOver20OctetsIsRefused) {
  Bytes long_serial = kSerial;
  append(long_serial, Bytes{1, 2, 3, 4, 5});  // 21 octets
  EXPECT_EQ(errors(lint_leaf_with_field(kTbsSerial, serial_of(long_serial))), Rules{"serial.length"});
}

TEST(Lint, SerialUnder64BitsIsRefused) {
  const Bytes short_serial(kSerial.begin(), kSerial.begin() + 8);  // 8 octets: at most 63 bits
  EXPECT_EQ(errors(lint_leaf_with_field(kTbsSerial, serial_of(short_serial))), Rules{"serial.entropy"});
}

TEST(Lint, SerialBoundariesPass) {
  // 9 octets; 20 octets; 0x00 padding before a high octet (still 17 octets).
  const Bytes nine(kSerial.begin(), kSerial.begin() + 9);
  Bytes twenty = kSerial;
  append(twenty, Bytes{1, 2, 3, 4});
  Bytes padded{0x00, 0x9f};
  append(padded, kSerial);
  for (const Bytes& serial : {nine, twenty, padded}) {
    const std::vector<LintFinding> findings = lint_leaf_with_field(kTbsSerial, serial_of(serial));
    EXPECT_TRUE(findings.empty()) << describe(findings);
  }
}

// ---- Signature algorithm -----------------------------------------------------

TEST(Lint, TbsSignatureNotTheIssuersAlgorithmIsRefused) {
  X509Ptr cert = pki().leaf();
  // Signed with ECDSA-SHA384 while keyhold's CA key signs with ECDSA-SHA256.
  const Bytes tbs = pki().tbs(cert.get(), EVP_sha384());
  EXPECT_EQ(errors(lint_tbs_certificate(tbs, CertificateKind::Leaf, pki().root_facts())), Rules{"signature.algorithm_mismatch"});
  const auto rsa = crypto::algorithm_identifier(crypto::SignatureAlgorithm::RsaPkcs1Sha256);
  EXPECT_EQ(errors(lint_leaf_with_field(kTbsSignature, Bytes(rsa.begin(), rsa.end()))), Rules{"signature.algorithm_mismatch"});
}

TEST(Lint, UnknownTbsSignatureAlgorithmIsRefused) {
  // ecdsa-with-SHA512 is not in keyhold's table; ECDSA-SHA256 with NULL parameters
  // is not byte for byte the RFC 5758 form.
  const Bytes ecdsa_sha512{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04};
  const Bytes ecdsa_sha256_null{0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x05, 0x00};
  EXPECT_EQ(errors(lint_leaf_with_field(kTbsSignature, ecdsa_sha512)), Rules{"signature.algorithm_unknown"});
  EXPECT_EQ(errors(lint_leaf_with_field(kTbsSignature, ecdsa_sha256_null)), Rules{"signature.algorithm_unknown"});
}

TEST(Lint, OuterSignatureAlgorithmDifferentFromInnerIsRefused) {
  X509Ptr cert = pki().leaf();
  const auto ecdsa_sha384 = crypto::algorithm_identifier(crypto::SignatureAlgorithm::EcdsaSha384);
  const Bytes broken = replace_child(pki().certificate(cert.get()), 1, Bytes(ecdsa_sha384.begin(), ecdsa_sha384.end()));
  EXPECT_EQ(errors(lint_certificate(broken, CertificateKind::Leaf, pki().root_facts())), Rules{"signature.outer_mismatch"});
}

// ---- Issuer ------------------------------------------------------------------

TEST(Lint, IssuerNameNotTheIssuersSubjectIsRefused) {
  X509Ptr cert = pki().leaf();
  set_issuer(cert.get(), make_name({{"C", "US"}, {"O", "Example"}, {"CN", "Another CA"}}).get());
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"issuer.mismatch"});
}

TEST(Lint, IssuerNameMustMatchByteForByte) {
  // The same text, but O as PrintableString instead of UTF8String.
  X509Ptr cert = pki().leaf();
  NamePtr name(X509_NAME_new());
  const auto add = [&](const char* field, int type, std::string_view value) {
    X509_NAME_add_entry_by_txt(name.get(), field, type, reinterpret_cast<const unsigned char*>(value.data()),
                               static_cast<int>(value.size()), -1, 0);
  };
  add("C", V_ASN1_PRINTABLESTRING, "US");
  add("O", V_ASN1_PRINTABLESTRING, "Example");
  add("CN", V_ASN1_UTF8STRING, "Example Root CA");
  set_issuer(cert.get(), name.get());
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"issuer.mismatch"});
}

// ---- Validity ---------------------------------------------------------------

TEST(Lint, NotBeforeAfterNotAfterIsRefused) {
  X509Ptr cert = pki().leaf();
  set_time(X509_getm_notBefore(cert.get()), kLeafTo);
  set_time(X509_getm_notAfter(cert.get()), kLeafFrom);
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"validity.order"});
  set_time(X509_getm_notBefore(cert.get()), kLeafFrom);
  set_time(X509_getm_notAfter(cert.get()), kLeafFrom);
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"validity.order"});
}

TEST(Lint, ValidityBeyondTheIssuersIsRefused) {
  X509Ptr late = pki().intermediate();
  set_time(X509_getm_notAfter(late.get()), kRootTo + seconds{1});
  EXPECT_EQ(errors(lint_ca(late.get())), Rules{"validity.outside_issuer"});
  X509Ptr early = pki().leaf();
  set_time(X509_getm_notBefore(early.get()), kRootFrom - seconds{1});
  EXPECT_EQ(errors(lint_leaf(early.get())), Rules{"validity.outside_issuer"});
  // The issuer's own bounds are inside.
  X509Ptr edge = pki().intermediate();
  set_time(X509_getm_notBefore(edge.get()), kRootFrom);
  set_time(X509_getm_notAfter(edge.get()), kRootTo);
  EXPECT_TRUE(lint_ca(edge.get()).empty());
}

TEST(Lint, LeafOver398DaysIsOnlyAWarning) {
  // BR validity period: notAfter - notBefore + 1 second.
  X509Ptr cert = pki().leaf();
  set_time(X509_getm_notAfter(cert.get()), kLeafFrom + days{398});
  const std::vector<LintFinding> findings = lint_leaf(cert.get());
  EXPECT_EQ(errors(findings), Rules{});
  EXPECT_EQ(warnings(findings), Rules{"validity.leaf_over_398_days"});
  EXPECT_FALSE(has_errors(findings));
}

TEST(Lint, LeafOfExactly398DaysHasNoWarning) {
  X509Ptr cert = pki().leaf();
  set_time(X509_getm_notAfter(cert.get()), kLeafFrom + days{398} - seconds{1});
  const std::vector<LintFinding> findings = lint_leaf(cert.get());
  EXPECT_TRUE(findings.empty()) << describe(findings);
  // A CA is not held to it.
  X509Ptr ca = pki().intermediate();
  EXPECT_TRUE(lint_ca(ca.get()).empty());
}

// ---- Time encodings ----------------------------------------------------------

TEST(Lint, GeneralizedTimeBefore2050IsRefused) {
  const std::vector<LintFinding> findings =
      lint_leaf_with_field(kTbsValidity, validity(utc("250101000000Z"), generalized("20250301000000Z")));
  EXPECT_EQ(errors(findings), Rules{"time.generalized_before_2050"});
}

TEST(Lint, GeneralizedTimeFrom2050IsAccepted) {
  X509Ptr cert = pki().intermediate();
  set_time(X509_getm_notAfter(cert.get()), sys_days{2050y / January / 1});  // OpenSSL switches to GeneralizedTime
  EXPECT_TRUE(lint_ca(cert.get()).empty());
  const std::vector<LintFinding> findings =
      lint_leaf_with_field(kTbsValidity, validity(utc("250101000000Z"), generalized("20500101000000Z")));
  EXPECT_EQ(errors(findings), Rules{});
}

TEST(Lint, FractionalSecondsAreRefused) {
  const std::vector<LintFinding> findings =
      lint_leaf_with_field(kTbsValidity, validity(utc("250101000000Z"), generalized("20500301000000.5Z")));
  EXPECT_EQ(errors(findings), Rules{"time.format"});
}

TEST(Lint, TimesWithoutSecondsOrZuluAreRefused) {
  for (const Bytes& not_before : {utc("2501010000Z"), utc("250101000000+0000"), utc("250101000000"),
                                  utc("250230000000Z"), generalized("205001010000Z")}) {
    const std::vector<LintFinding> findings = lint_leaf_with_field(kTbsValidity, validity(not_before, utc("250301000000Z")));
    EXPECT_EQ(errors(findings), Rules{"time.format"}) << describe(findings);
  }
}

// ---- Names -------------------------------------------------------------------

TEST(Lint, ControlCharacterInSubjectIsRefused) {
  for (std::string_view bad : {std::string_view("Exam\x01ple"), std::string_view("Example\n"), std::string_view("Ex\x7f")}) {
    X509Ptr cert = pki().leaf();
    set_subject(cert.get(), name_with("OU", V_ASN1_UTF8STRING, bad).get());
    EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"name.control_character"}) << bad;
  }
}

TEST(Lint, ControlCharacterInIssuerIsRefused) {
  // The issuer really is called that, so issuer.mismatch holds; only the name is bad.
  NamePtr issuer = name_with("CN", V_ASN1_UTF8STRING, "Bad\x1b[0mCA");
  X509Ptr cert = pki().leaf();
  set_issuer(cert.get(), issuer.get());
  IssuerFacts facts = pki().root_facts();
  facts.subject_name_der = der_of_name(issuer.get());
  EXPECT_EQ(errors(lint_tbs_certificate(pki().tbs(cert.get()), CertificateKind::Leaf, facts)),
            Rules{"name.control_character"});
}

TEST(Lint, PrintableStringWithForbiddenCharacterIsRefused) {
  for (std::string_view bad : {"a@b", "under_score", "star*", "caf\xc3\xa9"}) {
    X509Ptr cert = pki().leaf();
    set_subject(cert.get(), name_with("OU", V_ASN1_PRINTABLESTRING, bad).get());
    EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"name.printable_charset"}) << bad;
  }
}

TEST(Lint, InvalidUtf8IsRefused) {
  // OpenSSL will not encode a name holding bad UTF-8, so the subject is written by hand.
  for (std::string_view bad : {"\xc3\x28", "\xc0\xaf", "\xed\xa0\x80", "abc\xff"}) {
    const Bytes common_name = sequence({tlv(0x31, sequence({tlv(0x06, Bytes{0x55, 0x04, 0x03}), text(0x0c, bad)}))});
    EXPECT_EQ(errors(lint_leaf_with_field(kTbsSubject, common_name)), Rules{"name.utf8_invalid"}) << bad;
  }
}

TEST(Lint, DirectoryStringOfAnotherTypeIsRefused) {
  X509Ptr bmp = pki().leaf();
  set_subject(bmp.get(), name_with("CN", V_ASN1_BMPSTRING, std::string_view("\0A\0B", 4)).get());
  EXPECT_EQ(errors(lint_leaf(bmp.get())), Rules{"name.string_type"});
  X509Ptr teletex = pki().leaf();
  set_subject(teletex.get(), name_with("CN", V_ASN1_T61STRING, "AB").get());
  EXPECT_EQ(errors(lint_leaf(teletex.get())), Rules{"name.string_type"});
  X509Ptr ia5 = pki().leaf();  // IA5String is for emailAddress and DC only
  set_subject(ia5.get(), name_with("CN", V_ASN1_IA5STRING, "AB").get());
  EXPECT_EQ(errors(lint_leaf(ia5.get())), Rules{"name.string_type"});
}

TEST(Lint, CountryNotTwoLettersIsRefused) {
  const std::vector<std::pair<int, std::string_view>> bad{
      {V_ASN1_PRINTABLESTRING, "USA"}, {V_ASN1_PRINTABLESTRING, "U1"}, {V_ASN1_PRINTABLESTRING, "U"},
      {V_ASN1_UTF8STRING, "US"}};
  for (const auto& [type, value] : bad) {
    X509Ptr cert = pki().leaf();
    set_subject(cert.get(), name_with("C", type, value).get());
    EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"name.country"}) << value;
  }
}

TEST(Lint, EmailAddressAttributeIsIa5String) {
  X509Ptr good = pki().leaf();
  set_subject(good.get(), name_with("emailAddress", V_ASN1_IA5STRING, "ops@example.com").get());
  EXPECT_TRUE(lint_leaf(good.get()).empty());
  X509Ptr non_ascii = pki().leaf();
  set_subject(non_ascii.get(), name_with("emailAddress", V_ASN1_IA5STRING, "op\xc3\xa9@example.com").get());
  EXPECT_EQ(errors(lint_leaf(non_ascii.get())), Rules{"name.ia5_charset"});
  X509Ptr utf8 = pki().leaf();
  set_subject(utf8.get(), name_with("emailAddress", V_ASN1_UTF8STRING, "ops@example.com").get());
  EXPECT_EQ(errors(lint_leaf(utf8.get())), Rules{"name.string_type"});
}

// ---- Extensions: all certificates -------------------------------------------

TEST(Lint, DuplicateExtensionIsRefused) {
  X509Ptr cert = pki().leaf();
  const Bytes server_auth = sequence({tlv(0x06, Bytes{0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01})});
  check(X509_add_ext(cert.get(), raw_extension(NID_ext_key_usage, false, server_auth).get(), -1) == 1, "X509_add_ext");
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"extensions.duplicate"});
}

TEST(Lint, MissingSkiIsRefused) {
  X509Ptr leaf = pki().leaf();
  remove_extension(leaf.get(), NID_subject_key_identifier);
  EXPECT_EQ(errors(lint_leaf(leaf.get())), Rules{"ski.missing"});
  X509Ptr ca = pki().intermediate();
  remove_extension(ca.get(), NID_subject_key_identifier);
  EXPECT_EQ(errors(lint_ca(ca.get())), Rules{"ski.missing"});
}

TEST(Lint, MissingAkiIsRefused) {
  X509Ptr leaf = pki().leaf();
  remove_extension(leaf.get(), NID_authority_key_identifier);
  EXPECT_EQ(errors(lint_leaf(leaf.get())), Rules{"aki.missing"});
  X509Ptr ca = pki().intermediate();
  remove_extension(ca.get(), NID_authority_key_identifier);
  EXPECT_EQ(errors(lint_ca(ca.get())), Rules{"aki.missing"});
}

TEST(Lint, AkiNotTheIssuersSkiIsRefused) {
  Bytes other = pki().root_ski();
  other.back() ^= 0x01;
  X509Ptr leaf = pki().leaf();
  set_raw_extension(leaf.get(), NID_authority_key_identifier, false, aki_value(other));
  EXPECT_EQ(errors(lint_leaf(leaf.get())), Rules{"aki.mismatch"});
  X509Ptr ca = pki().intermediate();
  set_raw_extension(ca.get(), NID_authority_key_identifier, false, aki_value(other));
  EXPECT_EQ(errors(lint_ca(ca.get())), Rules{"aki.mismatch"});
  // A self-signed root whose AKI names another key.
  X509Ptr root = pki().root_copy();
  set_raw_extension(root.get(), NID_authority_key_identifier, false, aki_value(other));
  EXPECT_EQ(errors(lint_root(root.get())), Rules{"aki.mismatch"});
}

TEST(Lint, AkiWithoutKeyIdentifierIsRefused) {
  // AuthorityKeyIdentifier { authorityCertSerialNumber [2] 1 } only.
  X509Ptr leaf = pki().leaf();
  set_raw_extension(leaf.get(), NID_authority_key_identifier, false, sequence({tlv(0x82, Bytes{0x01})}));
  EXPECT_EQ(errors(lint_leaf(leaf.get())), Rules{"aki.mismatch"});
}

// ---- Extensions: leaf --------------------------------------------------------

TEST(Lint, LeafWithoutSanIsRefused) {
  X509Ptr cert = pki().leaf();
  remove_extension(cert.get(), NID_subject_alt_name);
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"san.missing"});
}

TEST(Lint, CriticalSanWithNonEmptySubjectIsRefused) {
  X509Ptr cert = pki().leaf();
  set_san(cert.get(), {dns_name("www.example.com")}, true);
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"san.critical"});
}

TEST(Lint, EmptySubjectNeedsCriticalSan) {
  NamePtr empty(X509_NAME_new());
  X509Ptr cert = pki().leaf();
  set_subject(cert.get(), empty.get());
  set_san(cert.get(), {dns_name("www.example.com")}, false);
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"san.critical"});
  set_san(cert.get(), {dns_name("www.example.com")}, true);
  EXPECT_TRUE(lint_leaf(cert.get()).empty());
}

TEST(Lint, EmptySanIsRefused) {
  X509Ptr cert = pki().leaf();
  set_san(cert.get(), {});
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"san.empty"});
}

TEST(Lint, LeafWithAnyExtendedKeyUsageIsRefused) {
  X509Ptr cert = pki().leaf();
  set_extension(cert.get(), pki().root(), NID_ext_key_usage, "serverAuth,anyExtendedKeyUsage");
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"eku.any"});
}

TEST(Lint, LeafWithCaTrueIsRefused) {
  X509Ptr cert = pki().leaf();
  set_extension(cert.get(), pki().root(), NID_basic_constraints, "critical,CA:TRUE");
  EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"basic_constraints.leaf_ca"});
}

TEST(Lint, LeafWithoutBasicConstraintsPasses) {
  X509Ptr cert = pki().leaf();
  remove_extension(cert.get(), NID_basic_constraints);
  EXPECT_TRUE(lint_leaf(cert.get()).empty());
}

TEST(Lint, LeafWithoutKeyUsageIsOnlyAWarning) {
  X509Ptr cert = pki().leaf();
  remove_extension(cert.get(), NID_key_usage);
  const std::vector<LintFinding> findings = lint_leaf(cert.get());
  EXPECT_EQ(errors(findings), Rules{});
  EXPECT_EQ(warnings(findings), Rules{"key_usage.leaf_missing"});
}

TEST(Lint, LeafWithNonCriticalKeyUsageIsOnlyAWarning) {
  X509Ptr cert = pki().leaf();
  set_extension(cert.get(), pki().root(), NID_key_usage, "digitalSignature");
  const std::vector<LintFinding> findings = lint_leaf(cert.get());
  EXPECT_EQ(errors(findings), Rules{});
  EXPECT_EQ(warnings(findings), Rules{"key_usage.leaf_not_critical"});
}

// ---- SAN contents ----------------------------------------------------------

TEST(Lint, DnsNamesNotInLdhFormAreRefused) {
  const std::string long_label(64, 'a');
  const std::string label50(50, 'b');
  const std::string too_long = label50 + "." + label50 + "." + label50 + "." + label50 + "." + label50;  // 254
  for (const std::string& bad : std::vector<std::string>{
           "bad_name.example.com", "-lead.example.com", "trail-.example.com", "double..dot.com", "example.com.",
           ".example.com", "", long_label + ".com", too_long, "*.*.example.com", "a*.example.com", "foo.*.example.com",
           "*", "exa mple.com", "caf\xc3\xa9.com", "host\n.example.com"}) {
    X509Ptr cert = pki().leaf();
    set_san(cert.get(), {dns_name(bad)});
    EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"san.dns_name"}) << "\"" << bad << "\"";
  }
}

TEST(Lint, DnsNamesInLdhFormPass) {
  const std::string label63(63, 'c');
  const std::string max_length = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'd');  // 253
  for (const std::string& good : std::vector<std::string>{"example.com", "*.example.com", "Example.COM",
                                                          "xn--bcher-kva.example", "localhost", "a-b.c",
                                                          label63 + ".com", max_length, "0.example"}) {
    X509Ptr cert = pki().leaf();
    set_san(cert.get(), {dns_name(good)});
    EXPECT_TRUE(lint_leaf(cert.get()).empty()) << good;
  }
}

TEST(Lint, IpAddressNotFourOrSixteenOctetsIsRefused) {
  for (const Bytes& bad : {Bytes{192, 0, 2, 1, 0}, Bytes{}, Bytes{192, 0, 2, 0, 255, 255, 255, 0}}) {
    X509Ptr cert = pki().leaf();
    set_san(cert.get(), {dns_name("www.example.com"), ip_name(bad)});
    EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"san.ip_address"}) << bad.size();
  }
}

TEST(Lint, InvalidEmailAddressIsRefused) {
  for (std::string_view bad : {"nobody", "a@b@example.com", "@example.com", "user@", "user@bad_domain.com",
                               "us er@example.com", "user@*.example.com", "us\xc3\xa9r@example.com"}) {
    X509Ptr cert = pki().leaf();
    set_san(cert.get(), {dns_name("www.example.com"), email_name(bad)});
    EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"san.email"}) << bad;
  }
}

TEST(Lint, UriWithoutSchemeIsRefused) {
  for (std::string_view bad : {"", "no-scheme", "1http://x", ":foo", "http://a b", "ht_tp://x", "/relative/path"}) {
    X509Ptr cert = pki().leaf();
    set_san(cert.get(), {dns_name("www.example.com"), uri_name(bad)});
    EXPECT_EQ(errors(lint_leaf(cert.get())), Rules{"san.uri"}) << bad;
  }
  for (std::string_view good : {"spiffe://example.org/web", "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
                                "https://example.com/a?b=c", "git+ssh://h/x"}) {
    X509Ptr cert = pki().leaf();
    set_san(cert.get(), {dns_name("www.example.com"), uri_name(good)});
    EXPECT_TRUE(lint_leaf(cert.get()).empty()) << good;
  }
}

// ---- Extensions: CA ------------------------------------------------------------

TEST(Lint, CaWithoutBasicConstraintsIsRefused) {
  X509Ptr cert = pki().intermediate();
  remove_extension(cert.get(), NID_basic_constraints);
  EXPECT_EQ(errors(lint_ca(cert.get())), Rules{"basic_constraints.ca_missing"});
}

TEST(Lint, CaWithNonCriticalBasicConstraintsIsRefused) {
  X509Ptr cert = pki().intermediate();
  set_extension(cert.get(), pki().root(), NID_basic_constraints, "CA:TRUE,pathlen:0");
  EXPECT_EQ(errors(lint_ca(cert.get())), Rules{"basic_constraints.ca_not_critical"});
}

TEST(Lint, CaWithCaFalseIsRefused) {
  X509Ptr cert = pki().intermediate();
  set_extension(cert.get(), pki().root(), NID_basic_constraints, "critical,CA:FALSE");
  EXPECT_EQ(errors(lint_ca(cert.get())), Rules{"basic_constraints.ca_false"});
}

TEST(Lint, CaWithoutKeyUsageIsRefused) {
  X509Ptr cert = pki().intermediate();
  remove_extension(cert.get(), NID_key_usage);
  EXPECT_EQ(errors(lint_ca(cert.get())), Rules{"key_usage.ca_missing"});
}

TEST(Lint, CaWithNonCriticalKeyUsageIsRefused) {
  X509Ptr cert = pki().intermediate();
  set_extension(cert.get(), pki().root(), NID_key_usage, "keyCertSign,cRLSign");
  EXPECT_EQ(errors(lint_ca(cert.get())), Rules{"key_usage.ca_not_critical"});
}

TEST(Lint, CaWithoutKeyCertSignIsRefused) {
  X509Ptr cert = pki().intermediate();
  set_extension(cert.get(), pki().root(), NID_key_usage, "critical,digitalSignature,cRLSign");
  EXPECT_EQ(errors(lint_ca(cert.get())), Rules{"key_usage.ca_no_cert_sign"});
}

TEST(Lint, CaWithoutCrlSignIsRefused) {
  X509Ptr cert = pki().intermediate();
  set_extension(cert.get(), pki().root(), NID_key_usage, "critical,keyCertSign");
  EXPECT_EQ(errors(lint_ca(cert.get())), Rules{"key_usage.ca_no_crl_sign"});
}

// ---- Reporting -------------------------------------------------------------

TEST(Lint, DescribeListsErrorsThenWarnings) {
  const std::vector<LintFinding> findings{
      {"validity.leaf_over_398_days", Severity::Warning, "leaf validity is over 400 days; the public-web maximum is 398"},
      {"serial.positive", Severity::Error, "serial ba is negative"},
      {"san.missing", Severity::Error, "no subjectAltName"}};
  EXPECT_TRUE(has_errors(findings));
  EXPECT_EQ(describe(findings),
            "certificate lint failed: serial.positive (serial ba is negative); san.missing (no subjectAltName); "
            "warning validity.leaf_over_398_days (leaf validity is over 400 days; the public-web maximum is 398)");
  EXPECT_EQ(describe({findings[0]}, "certificate"),
            "certificate lint passed with warnings: warning validity.leaf_over_398_days (leaf validity is over 400 "
            "days; the public-web maximum is 398)");
  EXPECT_EQ(describe({}, "CRL"), "CRL lint passed");
  EXPECT_FALSE(has_errors({findings[0]}));
}

TEST(Lint, FindingsSayWhatWasFound) {
  Bytes negative = kSerial;
  negative[0] = 0xba;
  const std::vector<LintFinding> findings = lint_leaf_with_field(kTbsSerial, serial_of(negative));
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].detail, "serial ba910c5e7721d4089be3461fa26d50c8 is negative");
  EXPECT_EQ(describe(findings), "certificate lint failed: serial.positive (serial ba910c5e7721d4089be3461fa26d50c8 is negative)");
}

// ---- CRLs ------------------------------------------------------------------

struct RevokedSpec {
  Bytes serial;                      // INTEGER content octets
  sys_seconds date = sys_days{2024y / December / 1};
  std::optional<Bytes> reason;       // reasonCode extnValue DER
  std::optional<std::string> date_generalized;  // write revocationDate as this GeneralizedTime text
};

// Everything a test may change in the CRL; the defaults make a valid one.
struct CrlSpec {
  long version = X509_CRL_VERSION_2;
  NamePtr issuer = NamePtr(X509_NAME_dup(X509_get_subject_name(pki().root())));
  sys_seconds this_update = sys_days{2025y / January / 1};
  std::optional<sys_seconds> next_update = sys_days{2025y / January / 8};
  std::optional<std::string> this_update_generalized;  // write thisUpdate as this GeneralizedTime text
  std::vector<RevokedSpec> revoked{
      {Bytes{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01},
       sys_days{2024y / December / 1}, Bytes{0x0a, 0x01, 0x01}, std::nullopt},  // keyCompromise
      {kSerial, sys_days{2024y / December / 2}, std::nullopt, std::nullopt}};
  std::optional<Bytes> crl_number = Bytes{0x02, 0x01, 0x2a};  // 42
  bool crl_number_critical = false;
  std::optional<Bytes> aki = aki_value(pki().root_ski());
  const EVP_MD* digest = EVP_sha256();
};

TimePtr generalized_time(const std::string& text) {
  TimePtr t(ASN1_TIME_new());
  check(ASN1_GENERALIZEDTIME_set_string(t.get(), text.c_str()) == 1, "ASN1_GENERALIZEDTIME_set_string");
  return t;
}

CrlPtr build_crl(const CrlSpec& spec) {
  CrlPtr crl(X509_CRL_new());
  check(X509_CRL_set_version(crl.get(), spec.version) == 1, "X509_CRL_set_version");
  check(X509_CRL_set_issuer_name(crl.get(), spec.issuer.get()) == 1, "X509_CRL_set_issuer_name");
  TimePtr this_update(ASN1_TIME_new());
  ASN1_TIME_set(this_update.get(), to_time_t(spec.this_update));
  if (spec.this_update_generalized) this_update = generalized_time(*spec.this_update_generalized);
  check(X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) == 1, "X509_CRL_set1_lastUpdate");
  if (spec.next_update) {
    TimePtr next_update(ASN1_TIME_new());
    ASN1_TIME_set(next_update.get(), to_time_t(*spec.next_update));
    check(X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) == 1, "X509_CRL_set1_nextUpdate");
  }
  for (const RevokedSpec& entry : spec.revoked) {
    X509_REVOKED* revoked = X509_REVOKED_new();
    const Bytes integer = tlv(0x02, entry.serial);
    const unsigned char* p = integer.data();
    CPtr<ASN1_INTEGER, &ASN1_INTEGER_free> serial(d2i_ASN1_INTEGER(nullptr, &p, static_cast<long>(integer.size())));
    check(serial != nullptr && X509_REVOKED_set_serialNumber(revoked, serial.get()) == 1, "revoked serial");
    TimePtr date(ASN1_TIME_new());
    ASN1_TIME_set(date.get(), to_time_t(entry.date));
    if (entry.date_generalized) date = generalized_time(*entry.date_generalized);
    check(X509_REVOKED_set_revocationDate(revoked, date.get()) == 1, "X509_REVOKED_set_revocationDate");
    if (entry.reason) {
      check(X509_REVOKED_add_ext(revoked, raw_extension(NID_crl_reason, false, *entry.reason).get(), -1) == 1, "reasonCode");
    }
    X509_CRL_add0_revoked(crl.get(), revoked);
  }
  if (spec.crl_number) {
    check(X509_CRL_add_ext(crl.get(), raw_extension(NID_crl_number, spec.crl_number_critical, *spec.crl_number).get(), -1) == 1,
          "cRLNumber");
  }
  if (spec.aki) {
    check(X509_CRL_add_ext(crl.get(), raw_extension(NID_authority_key_identifier, false, *spec.aki).get(), -1) == 1,
          "authorityKeyIdentifier");
  }
  check(X509_CRL_sign(crl.get(), pki().root_key(), spec.digest) > 0, "X509_CRL_sign");
  return crl;
}

Bytes crl_tbs(const CrlSpec& spec) {
  CrlPtr crl = build_crl(spec);
  unsigned char* buffer = nullptr;
  const int length = i2d_re_X509_CRL_tbs(crl.get(), &buffer);
  check(length > 0, "i2d_re_X509_CRL_tbs");
  Bytes out(buffer, buffer + length);
  OPENSSL_free(buffer);
  return out;
}

Bytes crl_der(const CrlSpec& spec) {
  CrlPtr crl = build_crl(spec);
  unsigned char* buffer = nullptr;
  const int length = i2d_X509_CRL(crl.get(), &buffer);
  check(length > 0, "i2d_X509_CRL");
  Bytes out(buffer, buffer + length);
  OPENSSL_free(buffer);
  return out;
}

std::vector<LintFinding> lint_crl_spec(const CrlSpec& spec) { return lint_tbs_crl(crl_tbs(spec), pki().root_facts()); }

TEST(LintCrl, ValidCrlPassesEveryRule) {
  const CrlSpec spec;
  const std::vector<LintFinding> findings = lint_crl_spec(spec);
  EXPECT_TRUE(findings.empty()) << describe(findings, "CRL");
  const std::vector<LintFinding> full = lint_crl(crl_der(spec), pki().root_facts());
  EXPECT_TRUE(full.empty()) << describe(full, "CRL");
  CrlSpec empty;
  empty.revoked.clear();
  EXPECT_TRUE(lint_crl_spec(empty).empty());
}

TEST(LintCrl, Version1IsRefused) {
  CrlSpec spec;
  spec.version = X509_CRL_VERSION_1;
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"version.v2"});
}

TEST(LintCrl, SignatureFieldNotTheIssuersAlgorithmIsRefused) {
  CrlSpec spec;
  spec.digest = EVP_sha384();
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"signature.algorithm_mismatch"});
}

TEST(LintCrl, OuterSignatureAlgorithmDifferentFromInnerIsRefused) {
  const auto ecdsa_sha384 = crypto::algorithm_identifier(crypto::SignatureAlgorithm::EcdsaSha384);
  const Bytes broken = replace_child(crl_der(CrlSpec{}), 1, Bytes(ecdsa_sha384.begin(), ecdsa_sha384.end()));
  EXPECT_EQ(errors(lint_crl(broken, pki().root_facts())), Rules{"signature.outer_mismatch"});
}

TEST(LintCrl, IssuerNotTheIssuersSubjectIsRefused) {
  CrlSpec spec;
  spec.issuer = make_name({{"C", "US"}, {"O", "Example"}, {"CN", "Another CA"}});
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"issuer.mismatch"});
}

TEST(LintCrl, MissingNextUpdateIsRefused) {
  CrlSpec spec;
  spec.next_update.reset();
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl.next_update_missing"});
}

TEST(LintCrl, ThisUpdateNotBeforeNextUpdateIsRefused) {
  CrlSpec spec;
  spec.next_update = spec.this_update;
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl.update_order"});
}

TEST(LintCrl, GeneralizedTimeBefore2050IsRefused) {
  CrlSpec spec;
  spec.this_update_generalized = "20250101000000Z";
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"time.generalized_before_2050"});
}

TEST(LintCrl, FractionalSecondsAreRefused) {
  CrlSpec spec;
  spec.this_update_generalized = "20250101000000.25Z";
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"time.format"});
}

TEST(LintCrl, RevocationDateEncodingIsChecked) {
  CrlSpec before_2050;
  before_2050.revoked[1].date_generalized = "20241202000000Z";
  EXPECT_EQ(errors(lint_crl_spec(before_2050)), Rules{"time.generalized_before_2050"});
  CrlSpec fraction;
  fraction.revoked[1].date_generalized = "20501202000000.5Z";
  EXPECT_EQ(errors(lint_crl_spec(fraction)), Rules{"time.format"});
}

TEST(LintCrl, MissingCrlNumberIsRefused) {
  CrlSpec spec;
  spec.crl_number.reset();
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl_number.missing"});
}

TEST(LintCrl, CriticalCrlNumberIsRefused) {
  CrlSpec spec;
  spec.crl_number_critical = true;
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl_number.critical"});
}

TEST(LintCrl, NegativeCrlNumberIsRefused) {
  CrlSpec spec;
  spec.crl_number = Bytes{0x02, 0x01, 0xff};
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl_number.negative"});
}

TEST(LintCrl, CrlNumberOver20OctetsIsRefused) {
  Bytes number(21, 0x01);
  CrlSpec spec;
  spec.crl_number = tlv(0x02, number);
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl_number.length"});
  spec.crl_number = tlv(0x02, Bytes(20, 0x01));
  EXPECT_TRUE(lint_crl_spec(spec).empty());
  spec.crl_number = Bytes{0x02, 0x01, 0x00};  // zero is non-negative
  EXPECT_TRUE(lint_crl_spec(spec).empty());
}

TEST(LintCrl, MissingAkiIsRefused) {
  CrlSpec spec;
  spec.aki.reset();
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"aki.missing"});
}

TEST(LintCrl, AkiNotTheIssuersSkiIsRefused) {
  Bytes other = pki().root_ski();
  other.front() ^= 0x80;
  CrlSpec spec;
  spec.aki = aki_value(other);
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"aki.mismatch"});
}

TEST(LintCrl, RevokedSerialNotPositiveIsRefused) {
  for (const Bytes& serial : {Bytes{0xba, 0x91, 0x0c, 0x5e, 0x77, 0x21, 0xd4, 0x08, 0x9b}, Bytes{0x00}}) {
    CrlSpec spec;
    spec.revoked[1].serial = serial;
    EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl.revoked_serial_positive"}) << serial.size();
  }
}

TEST(LintCrl, RevokedSerialOver20OctetsIsRefused) {
  CrlSpec spec;
  spec.revoked[1].serial = Bytes(21, 0x42);
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl.revoked_serial_length"});
}

TEST(LintCrl, InvalidReasonCodeIsRefused) {
  for (std::uint8_t reason : {7, 11, 0xff}) {
    CrlSpec spec;
    spec.revoked[0].reason = Bytes{0x0a, 0x01, reason};
    EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"crl.reason_code"}) << int(reason);
  }
  // Every defined CRLReason passes (RFC 5280 5.3.1).
  for (std::uint8_t reason : {1, 2, 3, 4, 5, 6, 8, 9, 10}) {
    CrlSpec spec;
    spec.revoked[0].reason = Bytes{0x0a, 0x01, reason};
    EXPECT_TRUE(lint_crl_spec(spec).empty()) << int(reason);
  }
}

TEST(LintCrl, ReasonCodeNotEnumeratedIsMalformed) {
  CrlSpec spec;
  spec.revoked[0].reason = Bytes{0x02, 0x01, 0x01};  // INTEGER, not ENUMERATED
  EXPECT_EQ(errors(lint_crl_spec(spec)), Rules{"extension.malformed"});
}

TEST(LintCrl, UnspecifiedReasonCodeIsOnlyAWarning) {
  CrlSpec spec;
  spec.revoked[0].reason = Bytes{0x0a, 0x01, 0x00};
  const std::vector<LintFinding> findings = lint_crl_spec(spec);
  EXPECT_EQ(errors(findings), Rules{});
  EXPECT_EQ(warnings(findings), Rules{"crl.reason_unspecified"});
}

TEST(LintCrl, ControlCharacterInIssuerIsRefused) {
  CrlSpec spec;
  spec.issuer = name_with("CN", V_ASN1_UTF8STRING, "Bad\tCA");
  IssuerFacts facts = pki().root_facts();
  facts.subject_name_der = der_of_name(spec.issuer.get());
  EXPECT_EQ(errors(lint_tbs_crl(crl_tbs(spec), facts)), Rules{"name.control_character"});
}

}  // namespace
}  // namespace keyhold::pki
