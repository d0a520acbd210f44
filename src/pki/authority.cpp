#include "keyhold/pki/authority.hpp"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/core/log.hpp"
#include "keyhold/core/names.hpp"
#include "keyhold/crypto/openssl_provider.hpp"
#include "keyhold/pki/lint.hpp"
#include "linting_signer.hpp"
#include "x509_util.hpp"

namespace keyhold::pki {
namespace {

using namespace std::chrono_literals;

constexpr int kMaxDays = 36500;
constexpr auto kBackdate = 60s;  // notBefore one minute in the past: clocks differ
constexpr std::size_t kSerialBytes = 16;

struct ReasonName {
  RevocationReason reason;
  std::string_view name;
  int code;  // RFC 5280 5.3.1 CRLReason
};
constexpr ReasonName kReasons[] = {
    {RevocationReason::Unspecified, "unspecified", CRL_REASON_UNSPECIFIED},
    {RevocationReason::KeyCompromise, "keyCompromise", CRL_REASON_KEY_COMPROMISE},
    {RevocationReason::CaCompromise, "cACompromise", CRL_REASON_CA_COMPROMISE},
    {RevocationReason::AffiliationChanged, "affiliationChanged", CRL_REASON_AFFILIATION_CHANGED},
    {RevocationReason::Superseded, "superseded", CRL_REASON_SUPERSEDED},
    {RevocationReason::CessationOfOperation, "cessationOfOperation", CRL_REASON_CESSATION_OF_OPERATION},
};

int reason_code(std::string_view name) {
  for (const ReasonName& r : kReasons) {
    if (r.name == name) return r.code;
  }
  return CRL_REASON_UNSPECIFIED;
}

Clock::time_point parse_rfc3339(const std::string& text) {
  std::optional<Clock::time_point> t = parse_utc(text);
  if (!t) throw Error(ErrorCode::Internal, "malformed timestamp in the store: " + text);
  return *t;
}

void set_time(ASN1_TIME* field, Clock::time_point t) {
  // ASN1_TIME_set writes UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
  if (ASN1_TIME_set(field, Clock::to_time_t(t)) == nullptr) openssl_failure("encoding a time");
}

// A fresh serial: 16 random bytes from the token's RNG, positive, and its
// first byte never zero, so it always encodes in 16 bytes (RFC 5280 4.1.2.2;
// CA/B BR 7.1: at least 64 bits of randomness).
std::vector<std::uint8_t> new_serial(crypto::KeyRing& ring) {
  std::vector<std::uint8_t> serial = ring.random(kSerialBytes);
  serial[0] &= 0x7f;
  if (serial[0] == 0) serial[0] = 0x01;
  return serial;
}

void set_serial(X509* certificate, const std::vector<std::uint8_t>& serial) {
  CPtr<BIGNUM, &BN_free> bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(certificate)) == nullptr) {
    openssl_failure("encoding a serial number");
  }
}

// The canonical text of a serial, as the store keeps it: lowercase hex
// without leading zeros ("a75e...", not "0a75e...").
std::string serial_text(std::span<const std::uint8_t> serial) {
  std::string hex = to_hex(serial);
  std::size_t first = hex.find_first_not_of('0');
  return first == std::string::npos ? "0" : hex.substr(first);
}

std::string normalise_serial(const std::string& text) {
  std::string digits;
  for (char c : text) {
    if (c != ':') digits += c;
  }
  if (digits.size() % 2 == 1) digits.insert(digits.begin(), '0');
  std::optional<std::vector<std::uint8_t>> bytes = from_hex(digits);
  if (!bytes || bytes->empty() || bytes->size() > 20) {
    throw Error(ErrorCode::InvalidArgument, "'" + text + "' is not a certificate serial number (hex, at most 20 bytes)");
  }
  return serial_text(*bytes);
}

crypto::SignatureAlgorithm algorithm_for(const std::string& key_type) {
  auto type = crypto::parse_key_type(key_type);
  auto algorithm = type ? crypto::default_signature_algorithm(*type) : std::nullopt;
  if (!algorithm) throw Error(ErrorCode::FailedPrecondition, "a CA key of type '" + key_type + "' cannot sign");
  return *algorithm;
}

int path_length(const X509* certificate) {
  long length = X509_get_pathlen(const_cast<X509*>(certificate));
  return static_cast<int>(length);  // -1: unlimited
}

bool self_signed(const X509* certificate) {
  return X509_NAME_cmp(X509_get_subject_name(certificate), X509_get_issuer_name(certificate)) == 0 &&
         X509_check_issued(const_cast<X509*>(certificate), const_cast<X509*>(certificate)) == X509_V_OK;
}

std::vector<std::uint8_t> authority_key_identifier(const X509* certificate) {
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(const_cast<X509*>(certificate));
  if (aki == nullptr) return {};
  return std::vector<std::uint8_t>(ASN1_STRING_get0_data(aki), ASN1_STRING_get0_data(aki) + ASN1_STRING_length(aki));
}

// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters
// (RFC 1123 2.1), at most 253 in all.
bool is_ldh_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '.') {
      if (label == 0 || name[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || (c == '-' && label > 0);
    if (!ok || ++label > 63) return false;
  }
  return label > 0 && name.back() != '-';
}

// A CN worth copying into the SAN: a DNS name with at least two labels, or a wildcard one.
bool looks_like_dns_name(std::string_view name) {
  if (name.starts_with("*.")) name.remove_prefix(2);
  return name.find('.') != std::string_view::npos && is_ldh_name(name);
}

// Profile vocabulary (RFC 5280 names) to OpenSSL's extension syntax.
std::string openssl_usage_name(const std::string& name) {
  if (name == "contentCommitment") return "nonRepudiation";
  if (name == "ocspSigning") return "OCSPSigning";
  return name;
}

IssuerFacts facts_of(const X509* ca_certificate, crypto::SignatureAlgorithm algorithm) {
  IssuerFacts facts;
  facts.subject_key_id = subject_key_identifier(ca_certificate);
  facts.subject_name_der = name_der(X509_get_subject_name(ca_certificate));
  facts.not_before = asn1_time_point(X509_get0_notBefore(ca_certificate));
  facts.not_after = asn1_time_point(X509_get0_notAfter(ca_certificate));
  facts.signature_algorithm = algorithm;
  return facts;
}

// Signs through keyhold's OpenSSL provider with the token key behind signer,
// handing the linter the exact to-be-signed bytes first. sign is e.g.
// [&](EVP_MD_CTX* md) { return X509_sign_ctx(x, md); }.
std::vector<LintFinding> sign_linted(const std::shared_ptr<const crypto::Signer>& signer,
                                     crypto::SignatureAlgorithm algorithm, LintingSigner::Linter linter,
                                     const std::function<int(EVP_MD_CTX*)>& sign, std::string_view what) {
  auto guard = std::make_shared<LintingSigner>(signer, std::move(linter));
  auto pkey = crypto::make_token_pkey(guard);
  auto md = crypto::make_sign_context(pkey.get(), algorithm);
  if (sign(md.get()) <= 0) {
    std::vector<LintFinding> findings = guard->findings();
    if (has_errors(findings)) {
      ERR_clear_error();
      throw Error(ErrorCode::FailedPrecondition, "refusing to sign the " + std::string(what) + ": " + describe(findings));
    }
    openssl_failure("signing the " + std::string(what) + " in the token");
  }
  return guard->findings();
}

std::vector<std::string> warnings_of(const std::vector<LintFinding>& findings) {
  std::vector<std::string> out;
  for (const LintFinding& f : findings) {
    if (f.severity == Severity::Warning) out.push_back(f.rule + ": " + f.detail);
  }
  return out;
}

// The names of a new certificate against the name constraints of every CA
// above it (RFC 5280 4.2.1.10), checked before anything is signed: clients
// would refuse a certificate outside them.
void check_name_constraints(X509* certificate, const std::vector<std::shared_ptr<X509>>& issuers,
                            const std::string& ca_name) {
  for (std::size_t i = 0; i < issuers.size(); ++i) {
    const std::shared_ptr<X509>& issuer = issuers[i];
    auto* constraints = static_cast<NAME_CONSTRAINTS*>(X509_get_ext_d2i(issuer.get(), NID_name_constraints, nullptr, nullptr));
    if (constraints == nullptr) continue;
    int rc = NAME_CONSTRAINTS_check(certificate, constraints);
    if (rc == X509_V_OK) rc = NAME_CONSTRAINTS_check_CN(certificate, constraints);
    NAME_CONSTRAINTS_free(constraints);
    if (rc != X509_V_OK) {
      std::string whose = i == 0 ? "CA '" + ca_name + "'"
                                 : name_to_string(X509_get_subject_name(issuer.get())) + " above CA '" + ca_name + "'";
      throw Error(ErrorCode::InvalidArgument, "the requested names are outside the name constraints of " + whose + " (" +
                                                  X509_verify_cert_error_string(rc) + ")");
    }
  }
}

// After signing: the whole certificate passes the linter (outer and inner
// algorithm identical) and its signature verifies with the issuer's key.
void check_signed(const X509* certificate, CertificateKind kind, const IssuerFacts& facts,
                  const crypto::PublicKey& issuer_key) {
  std::vector<std::uint8_t> der = certificate_der(certificate);
  std::vector<LintFinding> findings = lint_certificate(der, kind, facts);
  if (has_errors(findings)) {
    throw Error(ErrorCode::Internal, "the signed certificate fails the linter: " + describe(findings));
  }
  if (X509_verify(const_cast<X509*>(certificate), issuer_key.evp()) != 1) {
    ERR_clear_error();
    throw Error(ErrorCode::Internal, "the token's signature on the new certificate does not verify");
  }
}

std::shared_ptr<X509> shared_certificate(std::span<const std::uint8_t> der) {
  return std::shared_ptr<X509>(certificate_from_der(der).release(), X509_free);
}

// A CA's certificates start no earlier than a minute ago, and never before their issuer's.
Clock::time_point start_time(Clock::time_point now, const X509* issuer) {
  Clock::time_point not_before = now - kBackdate;
  if (issuer != nullptr) not_before = std::max(not_before, asn1_time_point(X509_get0_notBefore(issuer)));
  return not_before;
}

std::string ca_key_name(const std::string& ca, int version) { return "ca." + ca + ".v" + std::to_string(version); }
std::string ca_key_use(const std::string& ca, int version) { return "ca:" + ca + ":v" + std::to_string(version); }

}  // namespace

std::optional<RevocationReason> parse_revocation_reason(std::string_view text) {
  for (const ReasonName& r : kReasons) {
    if (r.name == text) return r.reason;
  }
  return std::nullopt;
}

std::string_view to_string(RevocationReason reason) {
  for (const ReasonName& r : kReasons) {
    if (r.reason == reason) return r.name;
  }
  return "unspecified";
}

// What never changes for a CA version once it exists.
struct Authority::VersionState {
  std::shared_ptr<X509> certificate;
  std::vector<std::shared_ptr<X509>> chain;  // this version's certificate first, then its issuers up to the root
  std::vector<std::string> chain_pem;
  std::vector<std::string> chain_serials;    // of the chain's certificates, as the store writes serials
  std::string serial;                        // of its certificate
  crypto::SignatureAlgorithm algorithm;
};

struct Authority::CaContext {
  store::CaRecord ca;
  store::CaVersionRecord version;  // the current (issuing) version
  std::shared_ptr<const VersionState> state;
  std::shared_ptr<const crypto::Signer> signer;  // only when loaded for signing (needs the login)
  X509* certificate() const { return state->certificate.get(); }
};

Authority::Authority(crypto::KeyVault& keys, store::Store& store, AuthoritySettings settings)
    : keys_(keys), store_(store), settings_(std::move(settings)),
      profiles_(std::make_shared<const std::map<std::string, Profile>>(settings_.profiles)),
      certificate_commits_(store) {}

void Authority::set_profiles(std::map<std::string, Profile> profiles) {
  std::atomic_store(&profiles_, std::make_shared<const std::map<std::string, Profile>>(std::move(profiles)));
}

std::shared_ptr<const Authority::VersionState> Authority::state_of(const store::CaRecord& ca,
                                                                   const store::CaVersionRecord& version, int depth) {
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = states_.find(version.id); it != states_.end()) return it->second;
  }
  auto state = std::make_shared<VersionState>();
  state->certificate = shared_certificate(version.certificate_der);
  state->algorithm = algorithm_for(version.key_type);
  const ASN1_INTEGER* serial = X509_get0_serialNumber(state->certificate.get());
  state->serial = serial_text(std::span<const std::uint8_t>(ASN1_STRING_get0_data(serial),
                                                            static_cast<std::size_t>(ASN1_STRING_length(serial))));
  state->chain.push_back(state->certificate);
  state->chain_pem.push_back(certificate_pem(version.certificate_der));
  state->chain_serials.push_back(state->serial);
  // The issuer: the parent's version whose key identifier is this certificate's AKI.
  if (!self_signed(state->certificate.get()) && ca.parent_id && depth < 16) {
    std::vector<std::uint8_t> aki = authority_key_identifier(state->certificate.get());
    if (std::optional<store::CaRecord> parent = store_.cas().find_by_id(*ca.parent_id)) {
      for (const store::CaVersionRecord& v : store_.cas().versions(parent->id)) {
        if (v.subject_key_id != aki) continue;
        std::shared_ptr<const VersionState> issuer = state_of(*parent, v, depth + 1);
        state->chain.insert(state->chain.end(), issuer->chain.begin(), issuer->chain.end());
        state->chain_pem.insert(state->chain_pem.end(), issuer->chain_pem.begin(), issuer->chain_pem.end());
        state->chain_serials.insert(state->chain_serials.end(), issuer->chain_serials.begin(), issuer->chain_serials.end());
        break;
      }
    }
  }
  std::lock_guard lock(cache_mutex_);
  return states_.emplace(version.id, std::move(state)).first->second;
}

std::shared_ptr<const crypto::Signer> Authority::signer_of(const store::CaVersionRecord& version) {
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = signers_.find(version.id); it != signers_.end()) return it->second;
  }
  // Checked once per process: the key must be in the token and safe to use.
  std::shared_ptr<const crypto::Signer> signer = keys_.signer_for(version.key_object_id);
  std::lock_guard lock(cache_mutex_);
  return signers_.emplace(version.id, std::move(signer)).first->second;
}

Authority::CaContext Authority::load(const std::string& name, bool for_signing) {
  validate_name("CA", name);
  std::optional<store::CaRecord> ca = store_.cas().find(name);
  if (!ca) throw Error(ErrorCode::NotFound, "no CA named '" + name + "' ('keyhold ca list' shows the CAs)");
  std::optional<store::CaVersionRecord> version = store_.cas().current_version(ca->id);
  if (!version) throw Error(ErrorCode::FailedPrecondition, "CA '" + name + "' has no active version");
  CaContext context{*ca, *version, state_of(*ca, *version), nullptr};
  if (for_signing) context.signer = signer_of(*version);
  return context;
}

void Authority::refuse_if_revoked(const CaContext& context) {
  // A CA whose certificate, or the certificate of any CA above it, was
  // revoked signs nothing more: relying parties would reject it all.
  for (const std::string& serial : context.state->chain_serials) {
    std::optional<store::CertificateRecord> record = store_.certificates().find(serial);
    if (record && record->status == "revoked") {
      bool own = serial == context.state->serial;
      throw Error(ErrorCode::FailedPrecondition,
                  "CA '" + context.ca.name + "' version " + std::to_string(context.version.version) +
                      (own ? " was revoked at " : " is below a CA certificate (" + record->subject + ") revoked at ") +
                      record->revoked_at.value_or("?") + "; rotate " + (own ? "it" : "the CAs under the revoked one") +
                      " (keyhold ca rotate)");
    }
  }
}

store::CaVersionRecord Authority::find_version(const CaContext& context, std::optional<int> number) {
  if (!number) return context.version;
  for (const store::CaVersionRecord& v : store_.cas().versions(context.ca.id)) {
    if (v.version == *number) return v;
  }
  throw Error(ErrorCode::NotFound, "CA '" + context.ca.name + "' has no version " + std::to_string(*number));
}

void Authority::record_ca_certificate(const CaContext& parent, const std::vector<std::uint8_t>& der,
                                      const std::string& ca_name, const std::vector<std::uint8_t>& key_id,
                                      const std::string& now) {
  X509Ptr certificate = certificate_from_der(der);
  const ASN1_INTEGER* serial = X509_get0_serialNumber(certificate.get());
  store::CertificateRecord record;
  record.serial = serial_text(std::span<const std::uint8_t>(ASN1_STRING_get0_data(serial),
                                                            static_cast<std::size_t>(ASN1_STRING_length(serial))));
  record.ca_version_id = parent.version.id;
  record.subject = name_to_string(X509_get_subject_name(certificate.get()));
  record.profile = "ca:" + ca_name;
  record.not_before = rfc3339(asn1_time_point(X509_get0_notBefore(certificate.get())));
  record.not_after = rfc3339(asn1_time_point(X509_get0_notAfter(certificate.get())));
  record.requester = "keyhold";
  record.key_object_id = key_id;
  record.certificate_der = der;
  record.created_at = now;
  store_.certificates().insert(record);
}

CaDetails Authority::show(const std::string& name) {
  validate_name("CA", name);
  std::optional<store::CaRecord> ca = store_.cas().find(name);
  if (!ca) throw Error(ErrorCode::NotFound, "no CA named '" + name + "' ('keyhold ca list' shows the CAs)");
  CaDetails details{*ca, store_.cas().versions(ca->id), std::nullopt, {}};
  if (ca->parent_id) {
    if (auto parent = store_.cas().find_by_id(*ca->parent_id)) details.parent_name = parent->name;
  }
  return details;
}

std::vector<CaDetails> Authority::list() {
  std::vector<CaDetails> out;
  for (const store::CaRecord& ca : store_.cas().list()) out.push_back(show(ca.name));
  return out;
}

CaDetails Authority::create_ca(const NewCa& request) {
  validate_name("CA", request.name);
  if (store_.cas().find(request.name)) {
    throw Error(ErrorCode::AlreadyExists, "a CA named '" + request.name + "' exists already");
  }
  if (!crypto::is_key_pair(request.key_type)) {
    throw Error(ErrorCode::InvalidArgument, "a CA key must be a signing key type, not " +
                                                std::string(crypto::to_string(request.key_type)));
  }
  if (request.days && (*request.days < 1 || *request.days > kMaxDays)) {
    throw Error(ErrorCode::InvalidArgument, "--days must be between 1 and " + std::to_string(kMaxDays));
  }
  X509NamePtr subject = make_name(parse_distinguished_name(request.subject));
  if (request.path_length && *request.path_length < 0) {
    throw Error(ErrorCode::InvalidArgument, "--path-len must be 0 or more");
  }
  for (const std::string& dns : request.permitted_dns) {
    // RFC 5280 4.2.1.10: a host name, or ".domain" for everything below it.
    std::string_view bare = dns.starts_with('.') ? std::string_view(dns).substr(1) : std::string_view(dns);
    if (!is_ldh_name(bare)) {
      throw Error(ErrorCode::InvalidArgument, "'" + dns + "' is not a DNS name constraint (e.g. example.com or .example.com)");
    }
  }
  if (!request.permitted_dns.empty() && !request.parent) {
    throw Error(ErrorCode::InvalidArgument, "name constraints belong on an intermediate CA (give --parent)");
  }

  Clock::time_point now = settings_.now();
  Clock::time_point not_after = now + std::chrono::days(request.days.value_or(request.parent ? 1825 : 3650));
  std::optional<CaContext> parent;
  if (request.parent) {
    parent.emplace(load(*request.parent, true));
    refuse_if_revoked(*parent);
    int parent_path = path_length(parent->certificate());
    if (parent_path == 0) {
      throw Error(ErrorCode::PermissionDenied, "CA '" + *request.parent +
                                                   "' may not issue CA certificates (its pathLenConstraint is 0)");
    }
    Clock::time_point parent_end = asn1_time_point(X509_get0_notAfter(parent->certificate()));
    if (not_after > parent_end) {
      if (request.days) {
        throw Error(ErrorCode::InvalidArgument, "--days " + std::to_string(*request.days) + " ends after CA '" +
                                                    *request.parent + "' expires (" + rfc3339(parent_end) + ")");
      }
      not_after = parent_end;  // by default an intermediate lives as long as its parent lets it
    }
    if (request.path_length && parent_path > 0 && *request.path_length >= parent_path) {
      throw Error(ErrorCode::InvalidArgument, "--path-len must be below the parent's pathLenConstraint (" +
                                                  std::to_string(parent_path) + ")");
    }
  }
  Clock::time_point not_before = start_time(now, parent ? parent->certificate() : nullptr);

  std::string key_name = ca_key_name(request.name, 1);
  crypto::TokenKey key = keys_.create_key(key_name, request.key_type, ca_key_use(request.name, 1));
  try {
    std::shared_ptr<const crypto::Signer> own_signer = keys_.signer_for(key.id);
    X509Ptr certificate(X509_new());
    X509_set_version(certificate.get(), X509_VERSION_3);
    set_serial(certificate.get(), new_serial(keys_.ring()));
    X509_set_subject_name(certificate.get(), subject.get());
    X509_set_issuer_name(certificate.get(), parent ? X509_get_subject_name(parent->certificate()) : subject.get());
    set_time(X509_getm_notBefore(certificate.get()), not_before);
    set_time(X509_getm_notAfter(certificate.get()), not_after);
    X509_set_pubkey(certificate.get(), own_signer->public_key().evp());

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, parent ? parent->certificate() : certificate.get(), certificate.get(), nullptr, nullptr, 0);
    std::string basic = "critical,CA:TRUE";
    if (request.path_length) basic += ",pathlen:" + std::to_string(*request.path_length);
    add_extension(certificate.get(), &ctx, NID_basic_constraints, basic);
    add_extension(certificate.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
    if (!request.permitted_dns.empty()) {
      std::string constraints = "critical";
      for (const std::string& dns : request.permitted_dns) constraints += ",permitted;DNS:" + dns;
      add_extension(certificate.get(), &ctx, NID_name_constraints, constraints);
    }
    std::vector<std::uint8_t> ski = key_identifier(certificate.get());
    add_key_identifiers(certificate.get(), ski, parent ? parent->version.subject_key_id : ski);

    std::shared_ptr<const crypto::Signer> issuer_signer = parent ? parent->signer : own_signer;
    crypto::SignatureAlgorithm algorithm =
        parent ? parent->state->algorithm : *crypto::default_signature_algorithm(request.key_type);
    IssuerFacts facts;
    if (parent) {
      facts = facts_of(parent->certificate(), algorithm);
    } else {
      facts.subject_key_id = ski;
      facts.subject_name_der = name_der(subject.get());
      facts.not_before = not_before;
      facts.not_after = not_after;
      facts.signature_algorithm = algorithm;
      facts.self_signed = true;
    }
    sign_linted(
        issuer_signer, algorithm,
        [&facts](std::span<const std::uint8_t> tbs) { return lint_tbs_certificate(tbs, CertificateKind::Ca, facts); },
        [&](EVP_MD_CTX* md) { return X509_sign_ctx(certificate.get(), md); }, "CA certificate");
    check_signed(certificate.get(), CertificateKind::Ca, facts, issuer_signer->public_key());

    store::CaRecord ca;
    ca.name = request.name;
    ca.kind = parent ? "intermediate" : "root";
    if (parent) ca.parent_id = parent->ca.id;
    if (!request.permitted_dns.empty()) {
      std::string json = "[";
      for (const std::string& dns : request.permitted_dns) json += (json.size() > 1 ? ",\"" : "\"") + dns + "\"";
      ca.name_constraints = json + "]";
    }
    ca.created_at = rfc3339(now);
    store::CaVersionRecord version;
    version.version = 1;
    version.key_object_id = key.id;
    version.key_type = std::string(crypto::to_string(request.key_type));
    version.certificate_der = certificate_der(certificate.get());
    version.subject = name_to_string(subject.get());
    version.subject_key_id = ski;
    version.not_before = rfc3339(asn1_time_point(X509_get0_notBefore(certificate.get())));
    version.not_after = rfc3339(asn1_time_point(X509_get0_notAfter(certificate.get())));
    version.created_at = ca.created_at;
    store::Transaction tx(store_);
    store_.cas().insert(ca);
    version.ca_id = ca.id;
    store_.cas().insert_version(version);
    if (parent) record_ca_certificate(*parent, version.certificate_der, request.name, key.id, ca.created_at);
    tx.commit();
  } catch (...) {
    keys_.discard_key(key_name);
    throw;
  }
  return show(request.name);
}

CaDetails Authority::import_ca(const std::string& name, std::string_view certificate_text, std::string_view key_uri) {
  validate_name("CA", name);
  if (store_.cas().find(name)) throw Error(ErrorCode::AlreadyExists, "a CA named '" + name + "' exists already");
  X509Ptr certificate = parse_certificate(certificate_text);
  if (X509_check_ca(certificate.get()) <= 0 || (X509_get_key_usage(certificate.get()) & KU_KEY_CERT_SIGN) == 0) {
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "the certificate is not a CA certificate (basicConstraints CA and keyCertSign)");
  }
  std::optional<crypto::TokenKey> key = keys_.ring().find_by_uri(key_uri);
  if (!key) throw Error(ErrorCode::NotFound, "the token has no key matching " + std::string(key_uri));
  std::shared_ptr<const crypto::Signer> signer = keys_.signer_for(key->id);  // refuses unsafe keys, with the reason
  // keyhold makes CA keys that may sign and nothing else; a key made by
  // another tool often may do more (SoftHSM's defaults add decrypt and
  // unwrap). keyhold only signs with it, and says so.
  std::vector<std::string> warnings;
  if (key->attributes.decrypt || key->attributes.unwrap || key->attributes.derive) {
    std::string extra;
    for (const std::string& u : key->attributes.usages()) {
      if (u != "sign") extra += (extra.empty() ? "" : ", ") + u;
    }
    warnings.push_back("key " + std::string(key_uri) + " may also " + extra +
                       "; keyhold only signs with it, but a CA key made for the purpose would be sign-only");
  }
  EVP_PKEY* certificate_key = X509_get0_pubkey(certificate.get());
  if (certificate_key == nullptr || EVP_PKEY_eq(certificate_key, signer->public_key().evp()) != 1) {
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "the certificate's public key is not the public key of " + std::string(key_uri));
  }
  Clock::time_point not_after = asn1_time_point(X509_get0_notAfter(certificate.get()));
  if (not_after <= settings_.now()) throw Error(ErrorCode::InvalidArgument, "the CA certificate has expired");
  if (subject_key_identifier(certificate.get()).empty()) {
    // Every certificate keyhold issues names its issuer's key by this (AKI).
    throw Error(ErrorCode::InvalidArgument, "the CA certificate has no subjectKeyIdentifier (RFC 5280 4.2.1.2 requires one in CA certificates)");
  }

  // A parent among keyhold's CAs: the one whose key identifier is this certificate's AKI.
  std::vector<std::uint8_t> aki = authority_key_identifier(certificate.get());
  std::optional<std::int64_t> parent_id;
  if (!self_signed(certificate.get())) {
    for (const store::CaRecord& candidate : store_.cas().list()) {
      for (const store::CaVersionRecord& v : store_.cas().versions(candidate.id)) {
        if (!aki.empty() && v.subject_key_id == aki) parent_id = candidate.id;
      }
    }
  }
  store::CaRecord ca;
  ca.name = name;
  ca.kind = "imported";
  ca.parent_id = parent_id;
  ca.created_at = rfc3339(settings_.now());
  store::CaVersionRecord version;
  version.version = 1;
  version.key_object_id = key->id;
  version.key_type = std::string(crypto::to_string(signer->key_type()));
  version.certificate_der = certificate_der(certificate.get());
  version.subject = name_to_string(X509_get_subject_name(certificate.get()));
  version.subject_key_id = subject_key_identifier(certificate.get());
  version.not_before = rfc3339(asn1_time_point(X509_get0_notBefore(certificate.get())));
  version.not_after = rfc3339(not_after);
  version.created_at = ca.created_at;
  {
    store::Transaction tx(store_);
    keys_.adopt_key(ca_key_name(name, 1), *key, ca_key_use(name, 1));
    store_.cas().insert(ca);
    version.ca_id = ca.id;
    store_.cas().insert_version(version);
    tx.commit();
  }
  for (const std::string& w : warnings) log::warn(w);
  CaDetails details = show(name);
  details.warnings = std::move(warnings);
  return details;
}

CaDetails Authority::rotate(const std::string& name) {
  CaContext current = load(name, false);
  std::vector<store::CaVersionRecord> versions = store_.cas().versions(current.ca.id);
  int next = versions.back().version + 1;
  bool root = self_signed(current.certificate());
  std::optional<CaContext> parent;
  if (!root) {
    if (!current.ca.parent_id) {
      throw Error(ErrorCode::FailedPrecondition, "the issuer of CA '" + name + "' is not managed by keyhold, so keyhold cannot rotate it");
    }
    std::optional<store::CaRecord> parent_record = store_.cas().find_by_id(*current.ca.parent_id);
    parent.emplace(load(parent_record->name, true));
    refuse_if_revoked(*parent);
  }
  Clock::time_point now = settings_.now();
  auto lifetime = asn1_time_point(X509_get0_notAfter(current.certificate())) -
                  asn1_time_point(X509_get0_notBefore(current.certificate()));
  Clock::time_point not_before = start_time(now, parent ? parent->certificate() : nullptr);
  Clock::time_point not_after = not_before + lifetime;
  if (parent) not_after = std::min(not_after, asn1_time_point(X509_get0_notAfter(parent->certificate())));
  crypto::KeyType type = *crypto::parse_key_type(current.version.key_type);

  std::string key_name = ca_key_name(name, next);
  crypto::TokenKey key = keys_.create_key(key_name, type, ca_key_use(name, next));
  try {
    std::shared_ptr<const crypto::Signer> own_signer = keys_.signer_for(key.id);
    X509Ptr certificate(X509_new());
    X509_set_version(certificate.get(), X509_VERSION_3);
    set_serial(certificate.get(), new_serial(keys_.ring()));
    X509_set_subject_name(certificate.get(), X509_get_subject_name(current.certificate()));
    X509_set_issuer_name(certificate.get(), root ? X509_get_subject_name(current.certificate())
                                                 : X509_get_subject_name(parent->certificate()));
    set_time(X509_getm_notBefore(certificate.get()), not_before);
    set_time(X509_getm_notAfter(certificate.get()), not_after);
    X509_set_pubkey(certificate.get(), own_signer->public_key().evp());
    // The constraints of the CA stay as they were.
    for (int nid : {NID_basic_constraints, NID_key_usage, NID_name_constraints}) {
      int index = X509_get_ext_by_NID(current.certificate(), nid, -1);
      if (index >= 0) X509_add_ext(certificate.get(), X509_get_ext(current.certificate(), index), -1);
    }
    std::vector<std::uint8_t> ski = key_identifier(certificate.get());
    add_key_identifiers(certificate.get(), ski, root ? ski : parent->version.subject_key_id);

    std::shared_ptr<const crypto::Signer> issuer_signer = root ? own_signer : parent->signer;
    crypto::SignatureAlgorithm algorithm = root ? current.state->algorithm : parent->state->algorithm;
    IssuerFacts facts;
    if (root) {
      facts.subject_key_id = ski;
      facts.subject_name_der = name_der(X509_get_subject_name(current.certificate()));
      facts.not_before = not_before;
      facts.not_after = not_after;
      facts.signature_algorithm = algorithm;
      facts.self_signed = true;
    } else {
      facts = facts_of(parent->certificate(), algorithm);
    }
    sign_linted(
        issuer_signer, algorithm,
        [&facts](std::span<const std::uint8_t> tbs) { return lint_tbs_certificate(tbs, CertificateKind::Ca, facts); },
        [&](EVP_MD_CTX* md) { return X509_sign_ctx(certificate.get(), md); }, "CA certificate");
    check_signed(certificate.get(), CertificateKind::Ca, facts, issuer_signer->public_key());

    store::CaVersionRecord version;
    version.ca_id = current.ca.id;
    version.version = next;
    version.key_object_id = key.id;
    version.key_type = current.version.key_type;
    version.certificate_der = certificate_der(certificate.get());
    version.subject = current.version.subject;
    version.subject_key_id = ski;
    version.not_before = rfc3339(asn1_time_point(X509_get0_notBefore(certificate.get())));
    version.not_after = rfc3339(asn1_time_point(X509_get0_notAfter(certificate.get())));
    version.created_at = rfc3339(now);
    store::Transaction tx(store_);
    store_.cas().insert_version(version);
    // The old version issues no more; it still signs CRLs for what it issued.
    store_.cas().set_version_state(current.version.id, "retired");
    if (parent) record_ca_certificate(*parent, version.certificate_der, name, key.id, version.created_at);
    tx.commit();
  } catch (...) {
    keys_.discard_key(key_name);
    throw;
  }
  return show(name);
}

std::vector<std::string> Authority::chain(const std::string& name, std::optional<int> version) {
  CaContext context = load(name, false);
  return state_of(context.ca, find_version(context, version))->chain_pem;
}

namespace {

// What a certificate for request would name and hold (subject, SANs, key),
// from the CSR or the key to generate and the names given with the request.
struct Requested {
  IssuanceRequest checked;
  std::optional<CertificateRequest> csr;
};

Requested requested_certificate(const IssueRequest& request) {
  if (request.csr.has_value() == request.generate_key.has_value()) {
    throw Error(ErrorCode::InvalidArgument, "give either a CSR (--csr FILE) or --generate-key --key-type T");
  }

  Requested result;
  IssuanceRequest& checked = result.checked;
  std::optional<CertificateRequest>& csr = result.csr;
  if (request.csr) {
    csr.emplace(parse_certificate_request(*request.csr));
    checked.key = csr->key;
    checked.subject = csr->subject;
    checked.sans = csr->sans;
  } else {
    crypto::KeyType type = *request.generate_key;
    if (!crypto::is_key_pair(type)) throw Error(ErrorCode::InvalidArgument, "--key-type must be a signing key type");
    switch (type) {
      case crypto::KeyType::EcP256: checked.key = {"ec", 256, "P-256"}; break;
      case crypto::KeyType::EcP384: checked.key = {"ec", 384, "P-384"}; break;
      case crypto::KeyType::Ed25519: checked.key = {"ed25519", 256, ""}; break;
      default:
        checked.key = {"rsa", type == crypto::KeyType::Rsa2048 ? 2048 : type == crypto::KeyType::Rsa3072 ? 3072 : 4096, ""};
    }
  }
  if (request.common_name) {
    std::erase_if(checked.subject, [](const auto& a) { return a.first == "CN"; });
    checked.subject.insert(checked.subject.begin(), {"CN", *request.common_name});
  }
  auto append = [](std::vector<std::string>& to, const std::vector<std::string>& from) {
    for (const std::string& v : from) {
      if (std::find(to.begin(), to.end(), v) == to.end()) to.push_back(v);
    }
  };
  append(checked.sans.dns, request.sans.dns);
  append(checked.sans.ip, request.sans.ip);
  append(checked.sans.uri, request.sans.uri);
  append(checked.sans.email, request.sans.email);
  // A name only in the CN is put into the SAN too: clients match SANs only (RFC 6125).
  if (checked.sans.dns.empty() && checked.sans.ip.empty() && checked.sans.uri.empty() && checked.sans.email.empty()) {
    for (const auto& [field, value] : checked.subject) {
      if (field == "CN" && looks_like_dns_name(value)) checked.sans.dns.push_back(value);
    }
  }
  return result;
}

}  // namespace

IssuanceRequest requested_names(const IssueRequest& request) { return requested_certificate(request).checked; }

IssuedCertificate Authority::issue(const IssueRequest& request) {
  CaContext ca = load(request.ca, true);
  if (X509_check_ca(ca.certificate()) <= 0) throw Error(ErrorCode::FailedPrecondition, "CA '" + request.ca + "' cannot issue");
  refuse_if_revoked(ca);
  std::shared_ptr<const std::map<std::string, Profile>> profiles = std::atomic_load(&profiles_);
  auto profile_it = profiles->find(request.profile);
  if (profile_it == profiles->end()) {
    std::string known;
    for (const auto& [name, p] : *profiles) known += (known.empty() ? "" : ", ") + name;
    throw Error(ErrorCode::NotFound, "no profile named '" + request.profile + "' (configured: " +
                                         (known.empty() ? "none" : known) + ")");
  }
  const Profile& profile = profile_it->second;
  Requested requested = requested_certificate(request);
  IssuanceRequest checked = std::move(requested.checked);
  std::optional<CertificateRequest> csr = std::move(requested.csr);
  checked.days = request.days;
  ProfileDecision decision = check_request(profile, checked);
  // URLs and usages were checked when the configuration was loaded (pki::validate_profile).
  std::vector<std::string> warnings = decision.warnings;

  Clock::time_point now = settings_.now();
  Clock::time_point not_before = start_time(now, ca.certificate());
  Clock::time_point not_after = now + std::chrono::days(decision.days);
  Clock::time_point ca_end = asn1_time_point(X509_get0_notAfter(ca.certificate()));
  if (not_after > ca_end) {
    if (request.days) {
      throw Error(ErrorCode::InvalidArgument, "--days " + std::to_string(*request.days) + " ends after CA '" +
                                                  request.ca + "' expires (" + rfc3339(ca_end) + ")");
    }
    not_after = ca_end;
    warnings.push_back("validity shortened to end with CA '" + request.ca + "' (" + rfc3339(ca_end) + ")");
  }
  X509NamePtr subject = make_name(decision.subject);

  // The certificate without serial and signature: checked against the name
  // constraints above the CA before any key is made or anything signed.
  X509Ptr draft(X509_new());
  X509_set_subject_name(draft.get(), subject.get());
  add_subject_alt_names(draft.get(), checked.sans, false);
  check_name_constraints(draft.get(), ca.state->chain, request.ca);

  // The subject's key: the CSR's, or a new one made in the token.
  std::optional<std::string> key_name;
  std::optional<crypto::TokenKey> generated;
  std::optional<crypto::PublicKey> subject_key;
  if (csr) {
    subject_key = csr->public_key;
  } else {
    key_name = "cert-" + to_hex(keys_.ring().random(8));
    generated = keys_.create_key(*key_name, *request.generate_key, "certificate");
    subject_key = keys_.ring().public_key(generated->id);
  }

  try {
    IssuerFacts facts = facts_of(ca.certificate(), ca.state->algorithm);
    for (int attempt = 0;; ++attempt) {
      std::vector<std::uint8_t> serial = new_serial(keys_.ring());
      X509Ptr certificate(X509_new());
      X509_set_version(certificate.get(), X509_VERSION_3);
      set_serial(certificate.get(), serial);
      X509_set_subject_name(certificate.get(), subject.get());
      X509_set_issuer_name(certificate.get(), X509_get_subject_name(ca.certificate()));
      set_time(X509_getm_notBefore(certificate.get()), not_before);
      set_time(X509_getm_notAfter(certificate.get()), not_after);
      X509_set_pubkey(certificate.get(), subject_key->evp());

      // Extensions come from the profile only: keyhold never copies key
      // usage, EKU, basic constraints or anything else from a CSR.
      X509V3_CTX ctx;
      X509V3_set_ctx(&ctx, ca.certificate(), certificate.get(), nullptr, nullptr, 0);
      add_extension(certificate.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
      std::string usage = "critical";
      for (const std::string& u : decision.key_usage) usage += "," + openssl_usage_name(u);
      add_extension(certificate.get(), &ctx, NID_key_usage, usage);
      std::string eku;
      for (const std::string& u : profile.extended_key_usage) eku += (eku.empty() ? "" : ",") + openssl_usage_name(u);
      if (!eku.empty()) add_extension(certificate.get(), &ctx, NID_ext_key_usage, eku);
      add_subject_alt_names(certificate.get(), checked.sans, X509_NAME_entry_count(subject.get()) == 0);
      add_key_identifiers(certificate.get(), key_identifier(certificate.get()), ca.version.subject_key_id);
      if (!profile.crl_distribution_points.empty()) {
        std::string points;
        for (const std::string& url : profile.crl_distribution_points) points += (points.empty() ? "URI:" : ",URI:") + url;
        add_extension(certificate.get(), &ctx, NID_crl_distribution_points, points);
      }
      std::string aia;
      for (const std::string& url : profile.ocsp_urls) aia += (aia.empty() ? "" : ",") + ("OCSP;URI:" + url);
      for (const std::string& url : profile.ca_issuers_urls) aia += (aia.empty() ? "" : ",") + ("caIssuers;URI:" + url);
      if (!aia.empty()) add_extension(certificate.get(), &ctx, NID_info_access, aia);

      std::vector<LintFinding> findings = sign_linted(
          ca.signer, ca.state->algorithm,
          [&facts](std::span<const std::uint8_t> tbs) { return lint_tbs_certificate(tbs, CertificateKind::Leaf, facts); },
          [&](EVP_MD_CTX* md) { return X509_sign_ctx(certificate.get(), md); }, "certificate");
      check_signed(certificate.get(), CertificateKind::Leaf, facts, ca.signer->public_key());
      for (std::string& w : warnings_of(findings)) warnings.push_back(std::move(w));

      // Recorded before it is returned: a certificate keyhold returned is always revocable.
      store::CertificateRecord record;
      record.serial = serial_text(serial);
      record.ca_version_id = ca.version.id;
      record.subject = name_to_string(subject.get());
      record.sans = san_strings(checked.sans);
      record.profile = profile.name;
      record.not_before = rfc3339(asn1_time_point(X509_get0_notBefore(certificate.get())));
      record.not_after = rfc3339(asn1_time_point(X509_get0_notAfter(certificate.get())));
      record.requester = request.requester;
      if (generated) record.key_object_id = generated->id;
      record.certificate_der = certificate_der(certificate.get());
      record.created_at = rfc3339(now);
      try {
        // Shared with concurrent issuances: one fsync for all of them.
        certificate_commits_.run([&] {
          store_.certificates().insert(record);
          if (key_name) keys_.set_used_by(*key_name, "certificate:" + record.serial);
        });
      } catch (const Error& e) {
        // A serial collision (2^-127 odds, or a broken RNG): draw again, a few times.
        if (e.code() == ErrorCode::AlreadyExists && attempt < 3) continue;
        throw;
      }
      IssuedCertificate issued;
      issued.record = record;
      issued.pem = certificate_pem(record.certificate_der);
      issued.chain_pem = ca.state->chain_pem;  // the chain of the version that signed
      if (generated) issued.key_uri = generated->uri;
      issued.warnings = std::move(warnings);
      for (const std::string& w : issued.warnings) log::warn_once(w);
      return issued;
    }
  } catch (...) {
    if (key_name) keys_.discard_key(*key_name);
    throw;
  }
}

store::CertificateRecord Authority::certificate(const std::string& ca_name, const std::string& serial_hex) {
  std::string serial = normalise_serial(serial_hex);
  CaContext ca = load(ca_name, false);
  std::optional<store::CertificateRecord> record = store_.certificates().find(serial);
  bool ours = false;
  if (record) {
    for (const store::CaVersionRecord& v : store_.cas().versions(ca.ca.id)) ours = ours || v.id == record->ca_version_id;
  }
  if (!ours) throw Error(ErrorCode::NotFound, "CA '" + ca_name + "' issued no certificate with serial " + serial);
  return *record;
}

int Authority::issuing_version(const std::string& ca_name, const store::CertificateRecord& record) {
  CaContext ca = load(ca_name, false);
  for (const store::CaVersionRecord& v : store_.cas().versions(ca.ca.id)) {
    if (v.id == record.ca_version_id) return v.version;
  }
  throw Error(ErrorCode::NotFound, "CA '" + ca_name + "' did not issue certificate " + record.serial);
}

store::CertificateRecord Authority::revoke(const std::string& ca_name, const std::string& serial_hex,
                                           RevocationReason reason) {
  store::CertificateRecord record = certificate(ca_name, serial_hex);
  store_.certificates().revoke(record.serial, rfc3339(settings_.now()), to_string(reason));
  return *store_.certificates().find(record.serial);
}

namespace {

// SHA-256 of the revoked set as a CRL lists it (serial, date, reason per
// entry, in the store's serial order): what a published CRL is compared by.
std::vector<std::uint8_t> revoked_digest(const std::vector<store::RevokedEntry>& revoked) {
  CPtr<EVP_MD_CTX, &EVP_MD_CTX_free> md(EVP_MD_CTX_new());
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1) openssl_failure("hashing the revoked set");
  for (const store::RevokedEntry& entry : revoked) {
    std::string line = entry.serial + "\t" + entry.revoked_at + "\t" + entry.reason + "\n";
    if (EVP_DigestUpdate(md.get(), line.data(), line.size()) != 1) openssl_failure("hashing the revoked set");
  }
  std::vector<std::uint8_t> digest(EVP_MAX_MD_SIZE);
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(md.get(), digest.data(), &length) != 1) openssl_failure("hashing the revoked set");
  digest.resize(length);
  return digest;
}

}  // namespace

CrlResult Authority::sign_crl(const store::CaRecord& ca, const store::CaVersionRecord& version,
                              const std::vector<store::RevokedEntry>& revoked) {
  std::shared_ptr<const VersionState> state = state_of(ca, version);
  std::shared_ptr<const crypto::Signer> signer = signer_of(version);

  Clock::time_point now = settings_.now();
  X509CrlPtr crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(state->certificate.get()));
  CPtr<ASN1_TIME, &ASN1_TIME_free> this_update(ASN1_TIME_new()), next_update(ASN1_TIME_new());
  set_time(this_update.get(), now);
  set_time(next_update.get(), now + settings_.crl_next_update);
  X509_CRL_set1_lastUpdate(crl.get(), this_update.get());
  X509_CRL_set1_nextUpdate(crl.get(), next_update.get());
  CPtr<ASN1_TIME, &ASN1_TIME_free> revoked_at(ASN1_TIME_new());
  for (const store::RevokedEntry& entry : revoked) {
    X509_REVOKED* item = X509_REVOKED_new();
    std::vector<std::uint8_t> serial = *from_hex(entry.serial.size() % 2 ? "0" + entry.serial : entry.serial);
    CPtr<BIGNUM, &BN_free> bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
    CPtr<ASN1_INTEGER, &ASN1_INTEGER_free> number(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    set_time(revoked_at.get(), parse_rfc3339(entry.revoked_at));
    X509_REVOKED_set_serialNumber(item, number.get());
    X509_REVOKED_set_revocationDate(item, revoked_at.get());
    int code = reason_code(entry.reason);
    // RFC 5280 5.3.1: the reason code is absent rather than "unspecified".
    if (code != CRL_REASON_UNSPECIFIED) {
      CPtr<ASN1_ENUMERATED, &ASN1_ENUMERATED_free> reason(ASN1_ENUMERATED_new());
      ASN1_ENUMERATED_set(reason.get(), code);
      X509_REVOKED_add1_ext_i2d(item, NID_crl_reason, reason.get(), 0, 0);
    }
    X509_CRL_add0_revoked(crl.get(), item);
  }
  X509_CRL_sort(crl.get());

  CPtr<AUTHORITY_KEYID, &AUTHORITY_KEYID_free> aki(AUTHORITY_KEYID_new());
  aki->keyid = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(aki->keyid, version.subject_key_id.data(), static_cast<int>(version.subject_key_id.size()));
  X509_CRL_add1_ext_i2d(crl.get(), NID_authority_key_identifier, aki.get(), 0, 0);

  IssuerFacts facts = facts_of(state->certificate.get(), state->algorithm);
  CrlResult result;
  // CRL numbers come from the database (one sequence per CA), so several
  // replicas never reuse one. The caller's transaction gives it back on failure.
  result.number = store_.cas().next_crl_number(version.id);
  CPtr<ASN1_INTEGER, &ASN1_INTEGER_free> number(ASN1_INTEGER_new());
  ASN1_INTEGER_set_int64(number.get(), result.number);
  X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0);
  sign_linted(
      signer, state->algorithm, [&facts](std::span<const std::uint8_t> tbs) { return lint_tbs_crl(tbs, facts); },
      [&](EVP_MD_CTX* md) { return X509_CRL_sign_ctx(crl.get(), md); }, "CRL");
  unsigned char* out = nullptr;
  int length = i2d_X509_CRL(crl.get(), &out);
  if (length <= 0) openssl_failure("encoding the CRL");
  result.der.assign(out, out + length);
  OPENSSL_free(out);
  // As for certificates: the signed CRL passes the linter whole, and its signature verifies.
  std::vector<LintFinding> findings = lint_crl(result.der, facts);
  if (has_errors(findings)) throw Error(ErrorCode::Internal, "the signed CRL fails the linter: " + describe(findings, "CRL"));
  if (X509_CRL_verify(crl.get(), signer->public_key().evp()) != 1) {
    ERR_clear_error();
    throw Error(ErrorCode::Internal, "the token's signature on the new CRL does not verify");
  }
  result.version = version.version;
  result.revoked = revoked.size();
  // As encoded: whole seconds.
  result.this_update = rfc3339(asn1_time_point(X509_CRL_get0_lastUpdate(crl.get())));
  result.next_update = rfc3339(asn1_time_point(X509_CRL_get0_nextUpdate(crl.get())));
  return result;
}

CrlResult Authority::crl(const std::string& ca_name, std::optional<int> version_number) {
  CaContext current = load(ca_name, false);
  store::CaVersionRecord version = find_version(current, version_number);
  store::Transaction tx(store_);
  CrlResult result = sign_crl(current.ca, version, store_.certificates().revoked(version.id));
  tx.commit();
  return result;
}

bool Authority::crl_due(const store::PublishedCrlRecord& record, Clock::time_point now) const {
  return now >= parse_rfc3339(record.next_update) - settings_.crl_next_update / kCrlRepublishDivisor;
}

PublishedCrl Authority::published_view(const store::CaVersionRecord& version, const store::PublishedCrlRecord& record) {
  PublishedCrl view;
  view.crl.der = record.crl_der;
  view.crl.number = record.crl_number;
  view.crl.version = version.version;
  view.crl.revoked = static_cast<std::size_t>(record.revoked_count);
  view.crl.this_update = record.this_update;
  view.crl.next_update = record.next_update;
  view.due_at = rfc3339(parse_rfc3339(record.next_update) - settings_.crl_next_update / kCrlRepublishDivisor);
  return view;
}

// The published CRL of the version with that number, from memory when it is
// the one last seen, else read from the store (another thread or process
// published it) and kept. nullptr when the store holds another number by now.
std::shared_ptr<const store::PublishedCrlRecord> Authority::cached_crl(std::int64_t version_id, std::int64_t number) {
  {
    std::lock_guard lock(published_mutex_);
    auto it = published_.find(version_id);
    if (it != published_.end() && it->second->crl_number == number) return it->second;
  }
  std::optional<store::PublishedCrlRecord> record = store_.cas().published_crl(version_id);
  if (!record) return nullptr;
  auto shared = std::make_shared<const store::PublishedCrlRecord>(std::move(*record));
  std::lock_guard lock(published_mutex_);
  std::shared_ptr<const store::PublishedCrlRecord>& slot = published_[version_id];
  if (!slot || slot->crl_number < shared->crl_number) slot = shared;
  return shared->crl_number == number ? shared : nullptr;
}

PublishedCrl Authority::published_crl(const std::string& ca_name, std::optional<int> version_number,
                                      const PublicationCheck& check) {
  CaContext current = load(ca_name, false);
  store::CaVersionRecord version = find_version(current, version_number);
  Clock::time_point now = check.now.value_or(settings_.now());
  // The common case, without the write lock: the published CRL is current.
  if (!check.compare_revoked) {
    std::optional<store::PublishedCrlRecord> summary = store_.cas().published_crl_summary(version.id);
    if (summary && !summary->stale && !crl_due(*summary, now)) {
      // nullptr: another publisher replaced it since; see below.
      if (auto record = cached_crl(version.id, summary->crl_number)) return published_view(version, *record);
    }
  }
  return publish_if_needed(current.ca, version, now, check.compare_revoked, false);
}

std::optional<PublishedCrl> Authority::last_published_crl(const std::string& ca_name, std::optional<int> version_number) {
  CaContext current = load(ca_name, false);
  store::CaVersionRecord version = find_version(current, version_number);
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::optional<store::PublishedCrlRecord> summary = store_.cas().published_crl_summary(version.id);
    if (!summary) return std::nullopt;
    // nullptr: replaced between the two reads; read again.
    if (auto record = cached_crl(version.id, summary->crl_number)) return published_view(version, *record);
  }
  throw Error(ErrorCode::Unavailable, "the published CRL of CA '" + ca_name + "' keeps changing; try again");
}

PublishedCrl Authority::publish_crl(const std::string& ca_name, std::optional<int> version_number) {
  CaContext current = load(ca_name, false);
  store::CaVersionRecord version = find_version(current, version_number);
  return publish_if_needed(current.ca, version, settings_.now(), false, true);
}

PublishedCrl Authority::publish_if_needed(const store::CaRecord& ca, const store::CaVersionRecord& version,
                                          Clock::time_point now, bool compare_revoked, bool force) {
  // One signer per version in this process; the others wait and find its CRL.
  std::unique_lock publishing = publishing_.lock(version.id);
  // The write lock, across processes too: what is read below stays true
  // until the new CRL is recorded (a revocation waits for the commit).
  store::Transaction tx(store_);
  std::optional<store::PublishedCrlRecord> existing = store_.cas().published_crl_summary(version.id);
  std::optional<std::vector<store::RevokedEntry>> revoked;
  std::string reason;
  if (force) {
    reason = "forced";
  } else if (!existing) {
    reason = "none published yet";
  } else if (existing->stale) {
    reason = "certificates revoked since CRL " + std::to_string(existing->crl_number);
  } else {
    if (compare_revoked) {
      revoked = store_.certificates().revoked(version.id);
      if (static_cast<std::int64_t>(revoked->size()) != existing->revoked_count ||
          revoked_digest(*revoked) != existing->revoked_digest) {
        reason = "the revoked set differs from CRL " + std::to_string(existing->crl_number) + "'s";
      }
    }
    if (reason.empty() && crl_due(*existing, now)) {
      reason = "CRL " + std::to_string(existing->crl_number) + " was due at " +
               rfc3339(parse_rfc3339(existing->next_update) - settings_.crl_next_update / kCrlRepublishDivisor);
    }
  }
  if (reason.empty()) {
    // Read under the write lock: nobody can have replaced it since the summary.
    std::shared_ptr<const store::PublishedCrlRecord> record = cached_crl(version.id, existing->crl_number);
    tx.rollback();
    if (!record) throw Error(ErrorCode::Internal, "the published CRL of CA '" + ca.name + "' changed while being read");
    return published_view(version, *record);
  }

  if (!revoked) revoked = store_.certificates().revoked(version.id);
  CrlResult signed_crl = sign_crl(ca, version, *revoked);
  store::PublishedCrlRecord record;
  record.ca_version_id = version.id;
  record.crl_number = signed_crl.number;
  record.this_update = signed_crl.this_update;
  record.next_update = signed_crl.next_update;
  record.revoked_count = static_cast<std::int64_t>(revoked->size());
  record.revoked_digest = revoked_digest(*revoked);
  record.crl_der = signed_crl.der;
  record.published_at = rfc3339(settings_.now());
  store_.cas().publish_crl(record);  // the number is new (taken in this transaction): it replaces the old one
  tx.commit();
  log::info("published CRL " + std::to_string(record.crl_number) + " of CA '" + ca.name + "' version " +
            std::to_string(version.version) + ": " + reason);

  auto shared = std::make_shared<const store::PublishedCrlRecord>(record);
  {
    std::lock_guard guard(published_mutex_);
    std::shared_ptr<const store::PublishedCrlRecord>& slot = published_[version.id];
    if (!slot || slot->crl_number < shared->crl_number) slot = shared;
  }
  PublishedCrl view = published_view(version, record);
  view.published = true;
  view.reason = reason;
  return view;
}

std::vector<int> Authority::crl_versions(const std::string& ca_name, Clock::time_point now) {
  CaContext current = load(ca_name, false);
  std::string at = rfc3339(now);
  std::vector<int> out;
  for (const store::CaVersionRecord& v : store_.cas().versions(current.ca.id)) {
    std::optional<std::string> last = store_.certificates().last_not_after(v.id);
    if (v.id == current.version.id || (last && *last >= at)) out.push_back(v.version);
  }
  return out;
}

std::vector<ExpiredCertificate> Authority::mark_expired(Clock::time_point now) {
  std::string at = rfc3339(now);
  std::vector<store::CertificateRecord> marked = store_.certificates().mark_expired(at, at);
  std::map<std::int64_t, std::pair<std::string, int>> versions;  // version id -> CA name, version
  if (!marked.empty()) {
    for (const store::CaRecord& ca : store_.cas().list()) {
      for (const store::CaVersionRecord& v : store_.cas().versions(ca.id)) versions[v.id] = {ca.name, v.version};
    }
  }
  std::vector<ExpiredCertificate> out;
  for (store::CertificateRecord& record : marked) {
    auto it = versions.find(record.ca_version_id);
    ExpiredCertificate expired;
    if (it != versions.end()) {
      expired.ca = it->second.first;
      expired.ca_version = it->second.second;
    }
    expired.record = std::move(record);
    out.push_back(std::move(expired));
  }
  return out;
}

std::vector<store::CertificateRecord> Authority::certificates(const std::string& ca_name,
                                                              const store::CertificateFilter& filter) {
  CaContext ca = load(ca_name, false);
  store::CertificateFilter f = filter;
  f.ca_id = ca.ca.id;
  if (!f.now) f.now = rfc3339(settings_.now());
  return store_.certificates().list(f);
}

}  // namespace keyhold::pki
