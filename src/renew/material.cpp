#include "keyhold/renew/material.hpp"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/ssh/certificate.hpp"
#include "keyhold/ssh/public_key.hpp"
#include "keyhold/ssh/wire.hpp"

namespace keyhold::renew {
namespace {

namespace fs = std::filesystem;

using BioPtr = CPtr<BIO, &BIO_free>;
using X509Ptr = CPtr<X509, &X509_free>;
using X509ReqPtr = CPtr<X509_REQ, &X509_REQ_free>;
using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using EvpMdCtxPtr = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using GeneralNamesPtr = CPtr<GENERAL_NAMES, &GENERAL_NAMES_free>;
using BignumPtr = CPtr<BIGNUM, &BN_free>;

constexpr std::size_t kMaxFileBytes = 256 * 1024;

void free_extensions(STACK_OF(X509_EXTENSION) * extensions) { sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free); }

[[noreturn]] void openssl_failed(const std::string& what) {
  ERR_clear_error();
  throw Error(ErrorCode::Internal, "OpenSSL could not " + what);
}

std::optional<std::string> read_small_file(const fs::path& path, std::string_view what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  if (fs::is_directory(path, ec)) throw Error(ErrorCode::InvalidArgument, "the " + std::string(what) + " " + path.string() + " is a directory");
  if (fs::file_size(path, ec) > kMaxFileBytes) {
    throw Error(ErrorCode::InvalidArgument, "the " + std::string(what) + " " + path.string() + " is larger than 256 KiB");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::InvalidArgument, "cannot read the " + std::string(what) + " " + path.string());
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

TimePoint time_of(const ASN1_TIME* time) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(time, &tm) != 1) throw Error(ErrorCode::InvalidArgument, "the certificate has a malformed validity");
  return Clock::from_time_t(timegm(&tm));
}

X509Ptr first_certificate(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr certificate(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!certificate) {
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "no PEM certificate in it");
  }
  return certificate;
}

EvpPkeyPtr private_key(const SecretBytes& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EvpPkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) {
    ERR_clear_error();
    throw Error(ErrorCode::InvalidArgument, "the key file holds no unencrypted PEM private key");
  }
  return key;
}

std::string name_line(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

std::string address_text(const ASN1_OCTET_STRING* ip) {
  char text[INET6_ADDRSTRLEN] = {};
  int length = ASN1_STRING_length(ip);
  const unsigned char* data = ASN1_STRING_get0_data(ip);
  if (length == 4) ::inet_ntop(AF_INET, data, text, sizeof text);
  if (length == 16) ::inet_ntop(AF_INET6, data, text, sizeof text);
  return text;
}

// Signs a test message with the private key and verifies it with the public key.
bool proves_possession(EVP_PKEY* private_key, EVP_PKEY* public_key) {
  static constexpr unsigned char kMessage[] = "keyhold renew: does this key match its certificate?";
  const EVP_MD* digest = EVP_PKEY_get_id(private_key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  EvpMdCtxPtr sign(EVP_MD_CTX_new());
  std::size_t length = 0;
  if (!sign || EVP_DigestSignInit(sign.get(), nullptr, digest, nullptr, private_key) != 1 ||
      EVP_DigestSign(sign.get(), nullptr, &length, kMessage, sizeof kMessage) != 1) {
    ERR_clear_error();
    return false;
  }
  std::vector<unsigned char> signature(length);
  if (EVP_DigestSign(sign.get(), signature.data(), &length, kMessage, sizeof kMessage) != 1) {
    ERR_clear_error();
    return false;
  }
  EvpMdCtxPtr verify(EVP_MD_CTX_new());
  bool ok = verify && EVP_DigestVerifyInit(verify.get(), nullptr, digest, nullptr, public_key) == 1 &&
            EVP_DigestVerify(verify.get(), signature.data(), length, kMessage, sizeof kMessage) == 1;
  ERR_clear_error();
  return ok;
}

}  // namespace

X509Details read_x509(std::string_view pem) {
  X509Ptr certificate = first_certificate(pem);
  X509Details details;
  details.validity.not_before = time_of(X509_get0_notBefore(certificate.get()));
  details.validity.not_after = time_of(X509_get0_notAfter(certificate.get()));
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate.get()), nullptr));
  if (!serial) openssl_failed("read the certificate's serial number");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(BN_num_bytes(serial.get())));
  BN_bn2bin(serial.get(), bytes.data());
  std::string hex = to_hex(bytes);
  std::size_t first = hex.find_first_not_of('0');
  details.validity.serial = first == std::string::npos ? "0" : hex.substr(first);
  details.subject = name_line(X509_get_subject_name(certificate.get()));
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(certificate.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type == GEN_DNS) {
      const ASN1_IA5STRING* dns = name->d.dNSName;
      details.names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                                 static_cast<std::size_t>(ASN1_STRING_length(dns)));
    } else if (name->type == GEN_IPADD) {
      details.names.push_back(address_text(name->d.iPAddress));
    }
  }
  ERR_clear_error();
  return details;
}

std::optional<X509Details> read_x509_file(const fs::path& path) {
  std::optional<std::string> content = read_small_file(path, "certificate file");
  if (!content) return std::nullopt;
  try {
    return read_x509(*content);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidArgument, "cannot read the certificate " + path.string() + ": " + e.what());
  }
}

SecretBytes generate_x509_key(std::string_view key_type) {
  EvpPkeyPtr key;
  if (key_type == "ec-p256") {
    key.reset(EVP_EC_gen("P-256"));
  } else if (key_type == "ec-p384") {
    key.reset(EVP_EC_gen("P-384"));
  } else if (key_type == "ed25519") {
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  } else if (key_type == "rsa-2048" || key_type == "rsa-3072" || key_type == "rsa-4096") {
    key.reset(EVP_RSA_gen(static_cast<unsigned>(std::stoul(std::string(key_type.substr(4))))));
  } else {
    throw Error(ErrorCode::InvalidArgument, "unknown key type '" + std::string(key_type) + "'");
  }
  if (!key) openssl_failed("generate a " + std::string(key_type) + " key");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    openssl_failed("encode the new key");
  }
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  SecretBytes pem(reinterpret_cast<const std::uint8_t*>(data), static_cast<std::size_t>(size));
  OPENSSL_cleanse(data, static_cast<std::size_t>(size));
  return pem;
}

std::string make_csr(const SecretBytes& key_pem, const std::vector<std::string>& names,
                     std::optional<std::string_view> identity) {
  EvpPkeyPtr key = private_key(key_pem);
  X509ReqPtr request(X509_REQ_new());
  if (!request || X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_pubkey(request.get(), key.get()) != 1) {
    openssl_failed("make a certificate request");
  }
  CPtr<STACK_OF(X509_EXTENSION), &free_extensions> extensions(sk_X509_EXTENSION_new_null());
  if (identity) {
    X509Ptr current = first_certificate(*identity);
    if (X509_REQ_set_subject_name(request.get(), X509_get_subject_name(current.get())) != 1) {
      openssl_failed("copy the certificate's subject");
    }
    int at = X509_get_ext_by_NID(current.get(), NID_subject_alt_name, -1);
    if (at >= 0) {
      X509_EXTENSION* copy = X509_EXTENSION_dup(X509_get_ext(current.get(), at));
      if (copy == nullptr || sk_X509_EXTENSION_push(extensions.get(), copy) <= 0) openssl_failed("copy the subjectAltName");
    }
  } else {
    if (names.empty()) throw Error(ErrorCode::InvalidArgument, "a certificate request needs a name");
    if (X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(request.get()), "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(names[0].data()),
                                   static_cast<int>(names[0].size()), -1, 0) != 1) {
      throw Error(ErrorCode::InvalidArgument, "'" + names[0] + "' cannot be a common name");
    }
    GeneralNamesPtr sans(GENERAL_NAMES_new());
    for (const std::string& name : names) {
      unsigned char address[16];
      GENERAL_NAME* general = nullptr;
      if (::inet_pton(AF_INET, name.c_str(), address) == 1 || ::inet_pton(AF_INET6, name.c_str(), address) == 1) {
        general = a2i_GENERAL_NAME(nullptr, nullptr, nullptr, GEN_IPADD, name.c_str(), 0);
      } else {
        general = a2i_GENERAL_NAME(nullptr, nullptr, nullptr, GEN_DNS, name.c_str(), 0);
      }
      if (general == nullptr || sk_GENERAL_NAME_push(sans.get(), general) <= 0) {
        ERR_clear_error();
        throw Error(ErrorCode::InvalidArgument, "'" + name + "' is neither a DNS name nor an IP address");
      }
    }
    X509_EXTENSION* extension = X509V3_EXT_i2d(NID_subject_alt_name, 0, sans.get());
    if (extension == nullptr || sk_X509_EXTENSION_push(extensions.get(), extension) <= 0) openssl_failed("encode the names");
  }
  if (sk_X509_EXTENSION_num(extensions.get()) > 0 && X509_REQ_add_extensions(request.get(), extensions.get()) != 1) {
    openssl_failed("add the names to the request");
  }
  const EVP_MD* digest = EVP_PKEY_get_id(key.get()) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  if (X509_REQ_sign(request.get(), key.get(), digest) <= 0) openssl_failed("sign the certificate request");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), request.get()) != 1) openssl_failed("encode the certificate request");
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

void check_x509_set(std::string_view cert_pem, const SecretBytes& key_pem, std::string_view chain_pem) {
  X509Ptr certificate;
  try {
    certificate = first_certificate(cert_pem);
  } catch (const Error&) {
    throw Error(ErrorCode::FailedPrecondition, "the new certificate is not a PEM certificate");
  }
  EvpPkeyPtr key = private_key(key_pem);
  EVP_PKEY* public_key = X509_get0_pubkey(certificate.get());
  if (public_key == nullptr || EVP_PKEY_eq(public_key, key.get()) != 1 || !proves_possession(key.get(), public_key)) {
    ERR_clear_error();
    throw Error(ErrorCode::FailedPrecondition, "the new certificate is not for the new key");
  }
  if (!chain_pem.empty()) {
    X509Ptr issuer;
    try {
      issuer = first_certificate(chain_pem);
    } catch (const Error&) {
      throw Error(ErrorCode::FailedPrecondition, "the new chain holds no PEM certificate");
    }
    if (X509_check_issued(issuer.get(), certificate.get()) != X509_V_OK ||
        X509_verify(certificate.get(), X509_get0_pubkey(issuer.get())) != 1) {
      ERR_clear_error();
      throw Error(ErrorCode::FailedPrecondition, "the new certificate was not issued by the first certificate of its chain");
    }
  }
  ERR_clear_error();
}

// ---- SSH ---------------------------------------------------------------------

SshDetails read_ssh_certificate(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  ssh::ParsedCertificate parsed = ssh::parse_certificate_line(line);
  SshDetails details;
  const ssh::CertificateFields& f = parsed.fields;
  details.host = f.type == ssh::CertificateType::Host;
  details.key_id = f.key_id;
  details.principals = f.principals;
  details.subject_blob = f.subject.blob;
  details.validity.serial = std::to_string(f.serial);
  details.validity.not_before = Clock::from_time_t(static_cast<std::time_t>(f.valid_after));
  // "forever" is far enough away that it is never due.
  std::uint64_t before = std::min<std::uint64_t>(f.valid_before, 253402300799ULL);  // 9999-12-31T23:59:59Z
  details.validity.not_after = Clock::from_time_t(static_cast<std::time_t>(before));
  return details;
}

std::optional<SshDetails> read_ssh_certificate_file(const fs::path& path) {
  std::optional<std::string> content = read_small_file(path, "certificate file");
  if (!content) return std::nullopt;
  try {
    return read_ssh_certificate(*content);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidArgument, "cannot read the SSH certificate " + path.string() + ": " + e.what());
  }
}

std::vector<std::uint8_t> ssh_public_key_blob(std::string_view line) { return ssh::parse_public_key_file(line).blob; }

std::vector<std::uint8_t> openssh_private_key_public_blob(std::string_view file) {
  constexpr std::string_view kBegin = "-----BEGIN OPENSSH PRIVATE KEY-----";
  constexpr std::string_view kEnd = "-----END OPENSSH PRIVATE KEY-----";
  std::size_t begin = file.find(kBegin);
  std::size_t end = file.find(kEnd);
  if (begin == std::string_view::npos || end == std::string_view::npos || end < begin) {
    throw Error(ErrorCode::InvalidArgument, "not an OpenSSH private key file");
  }
  std::string base64;
  for (char c : file.substr(begin + kBegin.size(), end - begin - kBegin.size())) {
    if (c != '\n' && c != '\r' && c != ' ' && c != '\t') base64 += c;
  }
  std::optional<std::vector<std::uint8_t>> bytes = from_base64(base64);
  if (!bytes) throw Error(ErrorCode::InvalidArgument, "the OpenSSH private key file is not base64");
  // PROTOCOL.key: "openssh-key-v1\0", cipher, kdf, kdf options, number of keys, public keys, encrypted part.
  constexpr std::string_view kMagic("openssh-key-v1\0", 15);
  std::vector<std::uint8_t> blob;
  if (bytes->size() < kMagic.size() || std::string_view(reinterpret_cast<const char*>(bytes->data()), kMagic.size()) != kMagic) {
    OPENSSL_cleanse(bytes->data(), bytes->size());
    throw Error(ErrorCode::InvalidArgument, "not an openssh-key-v1 private key");
  }
  try {
    ssh::WireReader reader(std::span<const std::uint8_t>(*bytes).subspan(kMagic.size()), "OpenSSH private key");
    reader.string();  // cipher
    reader.string();  // kdf
    reader.string();  // kdf options
    if (reader.uint32() != 1) throw Error(ErrorCode::InvalidArgument, "the OpenSSH private key file holds more than one key");
    auto pub = reader.string();
    blob.assign(pub.begin(), pub.end());
  } catch (...) {
    OPENSSL_cleanse(bytes->data(), bytes->size());
    throw;
  }
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return blob;
}

void check_ssh_set(std::string_view certificate_line, std::string_view private_key_file, std::string_view public_key_line) {
  SshDetails certificate;
  try {
    certificate = read_ssh_certificate(certificate_line);
  } catch (const Error& e) {
    throw Error(ErrorCode::FailedPrecondition, std::string("the new SSH certificate cannot be read: ") + e.what());
  }
  std::vector<std::uint8_t> from_private, from_public;
  try {
    from_private = openssh_private_key_public_blob(private_key_file);
    from_public = ssh_public_key_blob(public_key_line);
  } catch (const Error& e) {
    throw Error(ErrorCode::FailedPrecondition, std::string("the new SSH key cannot be read: ") + e.what());
  }
  if (from_private != from_public) throw Error(ErrorCode::FailedPrecondition, "the SSH public key file is not that of the private key");
  if (certificate.subject_blob != from_public) {
    throw Error(ErrorCode::FailedPrecondition, "the new SSH certificate is not for the new key");
  }
}

}  // namespace keyhold::renew
