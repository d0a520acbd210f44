#include "x509_util.hpp"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstring>
#include <ctime>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"

namespace keyhold::pki {
namespace {

using BioPtr = CPtr<BIO, &BIO_free_all>;

struct AttributeName {
  std::string_view short_name;
  int nid;
};

constexpr AttributeName kAttributes[] = {
    {"CN", NID_commonName},          {"O", NID_organizationName},       {"OU", NID_organizationalUnitName},
    {"C", NID_countryName},          {"ST", NID_stateOrProvinceName},   {"L", NID_localityName},
    {"DC", NID_domainComponent},     {"serialNumber", NID_serialNumber},
};

int attribute_nid(std::string_view name) {
  for (const AttributeName& a : kAttributes) {
    if (a.short_name == name) return a.nid;
  }
  return NID_undef;
}

std::string trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return std::string(s);
}

bool has_control_character(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  return out;
}

}  // namespace

void openssl_failure(std::string_view what) {
  unsigned long code = ERR_get_error();
  char buf[256] = "unknown OpenSSL error";
  if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  throw Error(ErrorCode::Internal, std::string(what) + ": " + buf);
}

std::vector<std::pair<std::string, std::string>> parse_distinguished_name(std::string_view text) {
  std::vector<std::string> parts;
  if (!text.empty() && text.front() == '/') {
    // OpenSSL's one-line form: /CN=x/O=y
    std::string current;
    for (std::size_t i = 1; i < text.size(); ++i) {
      if (text[i] == '\\' && i + 1 < text.size()) {
        current += text[++i];
      } else if (text[i] == '/') {
        parts.push_back(current);
        current.clear();
      } else {
        current += text[i];
      }
    }
    parts.push_back(current);
  } else {
    std::string current;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\\' && i + 1 < text.size()) {
        current += text[++i];
      } else if (text[i] == ',') {
        parts.push_back(current);
        current.clear();
      } else {
        current += text[i];
      }
    }
    parts.push_back(current);
  }
  std::vector<std::pair<std::string, std::string>> attributes;
  for (const std::string& part : parts) {
    auto eq = part.find('=');
    if (eq == std::string::npos) {
      throw Error(ErrorCode::InvalidArgument, "subject '" + printable(text) + "': '" + printable(part) +
                                                  "' is not NAME=VALUE (e.g. CN=Example Root CA,O=Example)");
    }
    std::string name = trim(std::string_view(part).substr(0, eq));
    std::string value = trim(std::string_view(part).substr(eq + 1));
    if (attribute_nid(name) == NID_undef) {
      throw Error(ErrorCode::InvalidArgument,
                  "subject attribute '" + printable(name) + "' is not one keyhold writes (CN, O, OU, C, ST, L, DC, serialNumber)");
    }
    if (value.empty()) throw Error(ErrorCode::InvalidArgument, "subject attribute " + name + " is empty");
    if (has_control_character(value)) {
      throw Error(ErrorCode::InvalidArgument, "subject attribute " + name + " contains a control character");
    }
    if (name == "C" && (value.size() != 2 || !std::isalpha(static_cast<unsigned char>(value[0])) ||
                        !std::isalpha(static_cast<unsigned char>(value[1])))) {
      throw Error(ErrorCode::InvalidArgument, "country (C) must be two letters (ISO 3166), not '" + value + "'");
    }
    if (value.size() > 64 && name != "DC") {
      throw Error(ErrorCode::InvalidArgument, "subject attribute " + name + " is longer than 64 characters");
    }
    attributes.emplace_back(name, value);
  }
  return attributes;
}

X509NamePtr make_name(const std::vector<std::pair<std::string, std::string>>& attributes) {
  X509NamePtr name(X509_NAME_new());
  for (const auto& [key, value] : attributes) {
    int nid = attribute_nid(key);
    // RFC 5280 4.1.2.4: countryName and serialNumber are PrintableString; the rest UTF8String.
    int type = (nid == NID_countryName || nid == NID_serialNumber) ? V_ASN1_PRINTABLESTRING
               : nid == NID_domainComponent                       ? V_ASN1_IA5STRING
                                                                   : V_ASN1_UTF8STRING;
    CPtr<ASN1_STRING, &ASN1_STRING_free> string(ASN1_STRING_type_new(type));
    if (!string || ASN1_STRING_set(string.get(), value.data(), static_cast<int>(value.size())) != 1) {
      openssl_failure("encoding a subject attribute");
    }
    X509_NAME_ENTRY* entry = X509_NAME_ENTRY_create_by_NID(nullptr, nid, type,
                                                           reinterpret_cast<const unsigned char*>(value.data()),
                                                           static_cast<int>(value.size()));
    if (entry == nullptr || X509_NAME_add_entry(name.get(), entry, -1, 0) != 1) {
      X509_NAME_ENTRY_free(entry);
      throw Error(ErrorCode::InvalidArgument, "subject attribute " + key + " has characters its string type cannot hold");
    }
    X509_NAME_ENTRY_free(entry);
  }
  return name;
}

std::string name_to_string(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

std::vector<std::uint8_t> name_der(const X509_NAME* name) {
  unsigned char* out = nullptr;
  int length = i2d_X509_NAME(name, &out);
  if (length <= 0) openssl_failure("encoding a name");
  std::vector<std::uint8_t> der(out, out + length);
  OPENSSL_free(out);
  return der;
}

std::vector<std::uint8_t> certificate_der(const X509* certificate) {
  unsigned char* out = nullptr;
  int length = i2d_X509(certificate, &out);
  if (length <= 0) openssl_failure("encoding a certificate");
  std::vector<std::uint8_t> der(out, out + length);
  OPENSSL_free(out);
  return der;
}

X509Ptr certificate_from_der(std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  X509Ptr certificate(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!certificate || p != der.data() + der.size()) {
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "not a DER certificate");
  }
  return certificate;
}

X509Ptr parse_certificate(std::string_view pem_or_der) {
  if (pem_or_der.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos) {
    BioPtr bio(BIO_new_mem_buf(pem_or_der.data(), static_cast<int>(pem_or_der.size())));
    X509Ptr certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!certificate) {
      ERR_clear_error();
      throw Error(ErrorCode::InvalidArgument, "malformed PEM certificate");
    }
    return certificate;
  }
  try {
    return certificate_from_der(std::span<const std::uint8_t>(
        reinterpret_cast<const std::uint8_t*>(pem_or_der.data()), pem_or_der.size()));
  } catch (const Error&) {
    throw Error(ErrorCode::InvalidArgument, "not a certificate (neither PEM nor DER)");
  }
}

std::string certificate_pem(std::span<const std::uint8_t> der) { return to_pem("CERTIFICATE", der); }

Clock::time_point asn1_time_point(const ASN1_TIME* time) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(time, &tm) != 1) throw Error(ErrorCode::InvalidArgument, "malformed certificate time");
  return Clock::from_time_t(timegm(&tm));
}

std::string rfc3339(Clock::time_point t) { return format_utc(t); }

std::vector<std::uint8_t> key_identifier(const X509* certificate) {
  const ASN1_BIT_STRING* bits = X509_get0_pubkey_bitstr(certificate);
  if (bits == nullptr) openssl_failure("reading a certificate's public key");
  unsigned char digest[20];
  unsigned int digest_length = 0;
  if (EVP_Digest(ASN1_STRING_get0_data(bits), static_cast<std::size_t>(ASN1_STRING_length(bits)), digest, &digest_length,
                 EVP_sha1(), nullptr) != 1) {
    openssl_failure("hashing a public key");
  }
  return std::vector<std::uint8_t>(digest, digest + digest_length);
}

std::vector<std::uint8_t> subject_key_identifier(const X509* certificate) {
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(const_cast<X509*>(certificate));
  if (ski == nullptr) return {};
  return std::vector<std::uint8_t>(ASN1_STRING_get0_data(ski), ASN1_STRING_get0_data(ski) + ASN1_STRING_length(ski));
}

void add_extension(X509* certificate, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (extension == nullptr || X509_add_ext(certificate, extension, -1) != 1) {
    X509_EXTENSION_free(extension);
    openssl_failure("adding a certificate extension");
  }
  X509_EXTENSION_free(extension);
}

void add_subject_alt_names(X509* certificate, const SubjectAltNames& sans, bool critical) {
  CPtr<GENERAL_NAMES, &GENERAL_NAMES_free> names(sk_GENERAL_NAME_new_null());
  auto add_string = [&](int type, const std::string& value) {
    GENERAL_NAME* name = GENERAL_NAME_new();
    ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
    ASN1_STRING_set(ia5, value.data(), static_cast<int>(value.size()));
    GENERAL_NAME_set0_value(name, type, ia5);
    sk_GENERAL_NAME_push(names.get(), name);
  };
  for (const std::string& dns : sans.dns) add_string(GEN_DNS, dns);
  for (const std::string& ip : sans.ip) {
    ASN1_OCTET_STRING* address = a2i_IPADDRESS(ip.c_str());
    if (address == nullptr) {
      ERR_clear_error();
      throw Error(ErrorCode::InvalidArgument, "'" + printable(ip) + "' is not an IP address");
    }
    GENERAL_NAME* name = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(name, GEN_IPADD, address);
    sk_GENERAL_NAME_push(names.get(), name);
  }
  for (const std::string& uri : sans.uri) add_string(GEN_URI, uri);
  for (const std::string& email : sans.email) add_string(GEN_EMAIL, email);
  if (sk_GENERAL_NAME_num(names.get()) == 0) return;
  if (X509_add1_ext_i2d(certificate, NID_subject_alt_name, names.get(), critical ? 1 : 0, X509V3_ADD_DEFAULT) != 1) {
    openssl_failure("adding subjectAltName");
  }
}

void add_key_identifiers(X509* certificate, const std::vector<std::uint8_t>& subject_key_id,
                         const std::vector<std::uint8_t>& authority_key_id) {
  CPtr<ASN1_OCTET_STRING, &ASN1_OCTET_STRING_free> ski(ASN1_OCTET_STRING_new());
  ASN1_OCTET_STRING_set(ski.get(), subject_key_id.data(), static_cast<int>(subject_key_id.size()));
  if (X509_add1_ext_i2d(certificate, NID_subject_key_identifier, ski.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    openssl_failure("adding subjectKeyIdentifier");
  }
  CPtr<AUTHORITY_KEYID, &AUTHORITY_KEYID_free> aki(AUTHORITY_KEYID_new());
  aki->keyid = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(aki->keyid, authority_key_id.data(), static_cast<int>(authority_key_id.size()));
  if (X509_add1_ext_i2d(certificate, NID_authority_key_identifier, aki.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    openssl_failure("adding authorityKeyIdentifier");
  }
}

SubjectAltNames subject_alt_names(const STACK_OF(GENERAL_NAME) * names) {
  SubjectAltNames sans;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    int type = 0;
    void* value = GENERAL_NAME_get0_value(name, &type);
    auto text = [](void* v) {
      auto* s = static_cast<ASN1_STRING*>(v);
      return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    };
    switch (type) {
      case GEN_DNS: sans.dns.push_back(text(value)); break;
      case GEN_URI: sans.uri.push_back(text(value)); break;
      case GEN_EMAIL: sans.email.push_back(text(value)); break;
      case GEN_IPADD: {
        auto* octets = static_cast<ASN1_OCTET_STRING*>(value);
        int length = ASN1_STRING_length(octets);
        char text_form[INET6_ADDRSTRLEN] = {};
        if ((length != 4 && length != 16) ||
            inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(octets), text_form, sizeof text_form) ==
                nullptr) {
          throw Error(ErrorCode::InvalidArgument, "an IP address subjectAltName is neither 4 nor 16 bytes");
        }
        sans.ip.push_back(text_form);
        break;
      }
      default:
        throw Error(ErrorCode::InvalidArgument, "the request names a kind of subjectAltName keyhold does not issue");
    }
  }
  return sans;
}

std::vector<std::string> san_strings(const SubjectAltNames& sans) {
  std::vector<std::string> out;
  for (const auto& v : sans.dns) out.push_back("dns:" + v);
  for (const auto& v : sans.ip) out.push_back("ip:" + v);
  for (const auto& v : sans.uri) out.push_back("uri:" + v);
  for (const auto& v : sans.email) out.push_back("email:" + v);
  return out;
}

RequestKey describe_key(EVP_PKEY* key) {
  RequestKey k;
  if (EVP_PKEY_is_a(key, "RSA")) {
    k.algorithm = "rsa";
    k.bits = EVP_PKEY_get_bits(key);
  } else if (EVP_PKEY_is_a(key, "EC")) {
    k.algorithm = "ec";
    k.bits = EVP_PKEY_get_bits(key);
    char group[80] = {};
    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, nullptr);
    std::string_view g(group);
    k.curve = g == "prime256v1" ? "P-256" : g == "secp384r1" ? "P-384" : std::string(g);
  } else if (EVP_PKEY_is_a(key, "ED25519")) {
    k.algorithm = "ed25519";
    k.bits = 256;
  } else {
    const char* name = EVP_PKEY_get0_type_name(key);
    k.algorithm = name != nullptr ? name : "unknown";
  }
  return k;
}

}  // namespace keyhold::pki

namespace keyhold::pki {

CertificateRequest parse_certificate_request(std::string_view pem_or_der) {
  constexpr std::size_t kMaxRequestBytes = 64 * 1024;
  if (pem_or_der.size() > kMaxRequestBytes) {
    throw Error(ErrorCode::InvalidArgument, "the CSR is larger than 64 KiB");
  }
  X509ReqPtr request;
  if (pem_or_der.find("-----BEGIN") != std::string_view::npos) {
    BioPtr bio(BIO_new_mem_buf(pem_or_der.data(), static_cast<int>(pem_or_der.size())));
    request.reset(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (!request) {
      ERR_clear_error();
      throw Error(ErrorCode::InvalidArgument, "malformed PEM certificate request");
    }
  } else {
    const auto* p = reinterpret_cast<const unsigned char*>(pem_or_der.data());
    request.reset(d2i_X509_REQ(nullptr, &p, static_cast<long>(pem_or_der.size())));
    if (!request || p != reinterpret_cast<const unsigned char*>(pem_or_der.data()) + pem_or_der.size()) {
      ERR_clear_error();
      throw Error(ErrorCode::InvalidArgument, "not a certificate request (neither PEM nor DER)");
    }
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(request.get());
  if (key == nullptr) {
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "the CSR's public key cannot be read (unknown key type or curve?)");
  }
  // Proof of possession (RFC 2986 section 3): the requester holds the private key.
  if (X509_REQ_verify(request.get(), key) != 1) {
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "the CSR's signature does not verify: no proof of possession of its key");
  }
  EVP_PKEY_up_ref(key);
  CertificateRequest result{std::move(request), crypto::PublicKey(key), describe_key(key), {}, {}};

  const X509_NAME* subject = X509_REQ_get_subject_name(result.request.get());
  for (int i = 0; i < X509_NAME_entry_count(subject); ++i) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(subject, i);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
    const char* short_name = nid == NID_undef ? "?" : OBJ_nid2sn(nid);
    unsigned char* utf8 = nullptr;
    int length = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
    if (length < 0) {
      ERR_clear_error();
      throw Error(ErrorCode::InvalidArgument, "the CSR's subject has a value that is not valid text");
    }
    result.subject.emplace_back(short_name, std::string(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(length)));
    OPENSSL_free(utf8);
  }
  CPtr<STACK_OF(X509_EXTENSION), [](STACK_OF(X509_EXTENSION) * s) { sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free); }>
      extensions(X509_REQ_get_extensions(result.request.get()));
  if (extensions) {
    auto* names = static_cast<GENERAL_NAMES*>(X509V3_get_d2i(extensions.get(), NID_subject_alt_name, nullptr, nullptr));
    if (names != nullptr) {
      try {
        result.sans = subject_alt_names(names);
      } catch (...) {
        GENERAL_NAMES_free(names);
        throw;
      }
      GENERAL_NAMES_free(names);
    }
  }
  ERR_clear_error();
  return result;
}

}  // namespace keyhold::pki
