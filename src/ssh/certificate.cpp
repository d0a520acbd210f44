#include "keyhold/ssh/certificate.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/ssh/wire.hpp"

namespace keyhold::ssh {
namespace {

using EcdsaSigPtr = CPtr<ECDSA_SIG, &ECDSA_SIG_free>;
using EvpMdCtxPtr = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using BignumPtr = CPtr<BIGNUM, &BN_free>;

constexpr std::string_view kCertSuffix = "-cert-v01@openssh.com";

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() > suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// How a CA key of each keyhold type signs a certificate: the SSH signature
// algorithm name (RFC 8709 section 6, RFC 5656 section 6.2.1, RFC 8332
// section 3) and the token signature that makes it.
struct CaAlgorithm {
  std::string_view ssh_name;
  crypto::SignatureAlgorithm algorithm;
};

CaAlgorithm ca_algorithm(crypto::KeyType type) {
  switch (type) {
    case crypto::KeyType::Ed25519: return {"ssh-ed25519", crypto::SignatureAlgorithm::Ed25519};
    case crypto::KeyType::EcP256: return {"ecdsa-sha2-nistp256", crypto::SignatureAlgorithm::EcdsaSha256};
    case crypto::KeyType::EcP384: return {"ecdsa-sha2-nistp384", crypto::SignatureAlgorithm::EcdsaSha384};
    // RFC 8332: rsa-sha2-512 is PKCS#1 v1.5 with SHA-512; ssh-rsa (SHA-1) is
    // refused by OpenSSH 8.8 and later, so keyhold never makes it.
    case crypto::KeyType::Rsa2048:
    case crypto::KeyType::Rsa3072:
    case crypto::KeyType::Rsa4096: return {"rsa-sha2-512", crypto::SignatureAlgorithm::RsaPkcs1Sha512};
    case crypto::KeyType::Aes256: break;
  }
  invalid("a " + std::string(crypto::to_string(type)) + " key cannot sign SSH certificates");
}

std::vector<std::uint8_t> bignum_bytes(const BIGNUM* bn) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  return out;
}

// The SSH signature blob (RFC 4253 section 6.6: string name, string data)
// from the encoding crypto::Signer returns.
std::vector<std::uint8_t> ssh_signature_blob(const crypto::Signer& ca, const CaAlgorithm& how,
                                             std::span<const std::uint8_t> signature) {
  WireWriter out;
  out.string(how.ssh_name);
  switch (how.algorithm) {
    case crypto::SignatureAlgorithm::Ed25519:
      // RFC 8709 section 6: the 64-byte signature as it is.
      if (signature.size() != 64) throw Error(ErrorCode::Internal, "the token returned an Ed25519 signature of the wrong size");
      out.string(signature);
      break;
    case crypto::SignatureAlgorithm::EcdsaSha256:
    case crypto::SignatureAlgorithm::EcdsaSha384: {
      // RFC 5656 section 3.1.2: string(mpint r || mpint s); the Signer gives DER Ecdsa-Sig-Value.
      const unsigned char* p = signature.data();
      EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signature.size())));
      if (!sig || p != signature.data() + signature.size()) {
        ERR_clear_error();
        throw Error(ErrorCode::Internal, "the token returned a malformed ECDSA signature");
      }
      WireWriter rs;
      rs.mpint(bignum_bytes(ECDSA_SIG_get0_r(sig.get()))).mpint(bignum_bytes(ECDSA_SIG_get0_s(sig.get())));
      out.string(rs.bytes());
      break;
    }
    default: {
      // RFC 8332 section 3: the PKCS#1 v1.5 signature, as long as the modulus
      // (OpenSSH's ssh_rsa_sign pads a short one the same way).
      auto modulus_bytes = static_cast<std::size_t>(EVP_PKEY_get_size(ca.public_key().evp()));
      if (signature.size() > modulus_bytes || signature.empty()) {
        throw Error(ErrorCode::Internal, "the token returned an RSA signature of the wrong size");
      }
      std::vector<std::uint8_t> padded(modulus_bytes - signature.size(), 0);
      padded.insert(padded.end(), signature.begin(), signature.end());
      out.string(padded);
      break;
    }
  }
  return out.bytes();
}

void check_text(std::string_view what, std::string_view text) {
  if (has_control_character(text)) invalid(std::string(what) + " '" + printable_prefix(text) + "' has a control character");
}

void check_principal(std::string_view principal) {
  if (principal.empty()) invalid("a principal is empty");
  check_text("principal", principal);
  // sshd compares principals whole; ssh-keygen -n and AuthorizedPrincipals
  // lists separate them with commas and spaces, so neither fits inside one.
  if (principal.find_first_of(" ,") != std::string_view::npos) {
    invalid("principal '" + printable_prefix(principal) + "' has a space or a comma");
  }
}

void check_names_unique(std::string_view what, std::vector<std::string_view> names) {
  std::sort(names.begin(), names.end());
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) invalid(std::string(what) + " with an empty name");
    check_text(what, names[i]);
    if (i > 0 && names[i] == names[i - 1]) invalid("duplicate " + std::string(what) + " '" + printable_prefix(names[i]) + "'");
  }
}

void check_fields(const CertificateFields& f) {
  if (f.nonce.size() < 16) invalid("the certificate nonce must have at least 16 random bytes");
  if (f.type != CertificateType::User && f.type != CertificateType::Host) invalid("unknown certificate type");
  if (f.key_id.empty()) invalid("the certificate key id is empty");
  check_text("key id", f.key_id);
  // OpenSSH reads an empty principal list as "valid for every user or host".
  if (f.principals.empty()) invalid("a certificate needs at least one principal");
  if (f.principals.size() > kMaxPrincipals) {
    invalid("a certificate holds at most " + std::to_string(kMaxPrincipals) + " principals");
  }
  for (const std::string& p : f.principals) check_principal(p);
  if (f.valid_before <= f.valid_after) invalid("the certificate validity ends before it starts");

  std::vector<std::string_view> names;
  for (const auto& [name, value] : f.critical_options) {
    names.push_back(name);
    check_text("critical option value", value);
    // auth-options.c parses these two as one string and verify-required as a flag.
    if ((name == "force-command" || name == "source-address") && value.empty()) {
      invalid("critical option " + name + " needs a value");
    }
    if (name == "verify-required" && !value.empty()) invalid("critical option verify-required takes no value");
  }
  check_names_unique("critical option", names);
  if (f.type == CertificateType::Host && !f.critical_options.empty()) {
    // PROTOCOL.certkeys defines none for hosts, and ssh refuses host
    // certificates that carry any (sshkey_cert_check_host).
    invalid("host certificates cannot carry critical options");
  }
  check_names_unique("extension", std::vector<std::string_view>(f.extensions.begin(), f.extensions.end()));
}

// PROTOCOL.certkeys "Critical options": string name, string data; sorted by name.
std::vector<std::uint8_t> encode_options(std::vector<std::pair<std::string, std::string>> options) {
  std::sort(options.begin(), options.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  WireWriter w;
  for (const auto& [name, value] : options) {
    w.string(name);
    if (value.empty()) {
      w.string(std::string_view());
    } else {
      WireWriter data;
      data.string(value);
      w.string(data.bytes());
    }
  }
  return w.bytes();
}

std::vector<std::pair<std::string, std::string>> decode_options(std::span<const std::uint8_t> bytes, bool critical) {
  std::string_view what = critical ? "critical option" : "extension";
  WireReader reader(bytes, critical ? "certificate critical options" : "certificate extensions");
  std::vector<std::pair<std::string, std::string>> out;
  while (!reader.at_end()) {
    std::string name = reader.text();
    std::span<const std::uint8_t> data = reader.string();
    if (name.empty()) invalid("certificate has an " + std::string(what) + " with an empty name");
    check_text(what, name);
    // PROTOCOL.certkeys: "lexically ordered by name", each name at most once.
    if (!out.empty() && !(out.back().first < name)) {
      invalid("certificate " + std::string(what) + "s are out of order or repeated at '" + printable_prefix(name) + "'");
    }
    std::string value;
    if (!data.empty()) {
      if (!critical) invalid("certificate extension '" + printable_prefix(name) + "' carries data keyhold does not support");
      WireReader inner(data, "certificate critical option " + printable_prefix(name));
      value = inner.text();
      inner.expect_end();
      check_text("critical option value", value);
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

const EVP_MD* ecdsa_digest(std::string_view ca_type) {
  // RFC 5656 section 6.2.1: the hash follows the curve size.
  if (ca_type == "ecdsa-sha2-nistp256") return EVP_sha256();
  if (ca_type == "ecdsa-sha2-nistp384") return EVP_sha384();
  return EVP_sha512();
}

std::size_t ecdsa_field_bytes(std::string_view ca_type) {
  if (ca_type == "ecdsa-sha2-nistp256") return 32;
  if (ca_type == "ecdsa-sha2-nistp384") return 48;
  return 66;
}

bool verify_with(EVP_PKEY* key, const EVP_MD* md, std::span<const std::uint8_t> message,
                 std::span<const std::uint8_t> signature) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) == 1 &&
            EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(), message.size()) == 1;
  ERR_clear_error();
  return ok;
}

}  // namespace

std::string certificate_type_name(std::string_view subject_type) {
  check_public_key_type(subject_type);
  return std::string(subject_type) + std::string(kCertSuffix);
}

std::vector<std::uint8_t> sign_certificate(const crypto::Signer& ca, const CertificateFields& fields) {
  check_fields(fields);
  OpenSshPublicKey subject = parse_public_key_blob(fields.subject.blob);
  if (subject.type != fields.subject.type) {
    invalid("the subject key is " + subject.type + ", not " + printable_prefix(fields.subject.type, 48));
  }
  CaAlgorithm how = ca_algorithm(ca.key_type());
  if (!crypto::can_sign_with(ca.key_type(), how.algorithm)) {
    invalid("a " + std::string(crypto::to_string(ca.key_type())) + " key cannot make " + std::string(how.ssh_name) +
            " signatures");
  }
  std::vector<std::uint8_t> ca_blob = public_key_blob(ca.public_key());

  // PROTOCOL.certkeys "New public key formats": the subject's key fields sit
  // between the nonce and the serial, exactly as in its plain blob.
  WireReader subject_reader(subject.blob, "subject key");
  subject_reader.string();
  std::span<const std::uint8_t> key_fields = subject_reader.rest();

  WireWriter principals;
  for (const std::string& p : fields.principals) principals.string(p);
  WireWriter extensions;
  std::vector<std::string> sorted_extensions = fields.extensions;
  std::sort(sorted_extensions.begin(), sorted_extensions.end());
  for (const std::string& e : sorted_extensions) extensions.string(e).string(std::string_view());

  WireWriter w;
  w.string(certificate_type_name(subject.type))
      .string(fields.nonce)
      .raw(key_fields)
      .uint64(fields.serial)
      .uint32(static_cast<std::uint32_t>(fields.type))
      .string(fields.key_id)
      .string(principals.bytes())
      .uint64(fields.valid_after)
      .uint64(fields.valid_before)
      .string(encode_options(fields.critical_options))
      .string(extensions.bytes())
      .string(std::string_view())  // reserved
      .string(ca_blob);
  // The signature covers everything from the type name to the signature key.
  std::vector<std::uint8_t> signature = ca.sign(how.algorithm, w.bytes());
  w.string(ssh_signature_blob(ca, how, signature));
  return w.bytes();
}

std::string certificate_line(std::span<const std::uint8_t> certificate_blob, std::string_view comment) {
  WireReader reader(certificate_blob, "certificate");
  std::string type = reader.text();
  if (!ends_with(type, kCertSuffix)) invalid("'" + printable_prefix(type, 48) + "' is not a certificate type");
  check_public_key_type(type.substr(0, type.size() - kCertSuffix.size()));
  if (has_control_character(comment)) invalid("the certificate comment has a control character");
  std::string line = type + " " + to_base64(certificate_blob);
  if (!comment.empty()) line += " " + std::string(comment);
  return line;
}

ParsedCertificate parse_certificate(std::span<const std::uint8_t> certificate_blob) {
  WireReader reader(certificate_blob, "certificate");
  std::string cert_type = reader.text();
  if (!ends_with(cert_type, kCertSuffix)) {
    invalid("'" + printable_prefix(cert_type, 48) + "' is not an OpenSSH v01 certificate type");
  }
  std::string key_type = cert_type.substr(0, cert_type.size() - kCertSuffix.size());
  check_public_key_type(key_type);
  std::span<const std::uint8_t> nonce = reader.string();
  OpenSshPublicKey subject = read_public_key_fields(key_type, reader);
  std::uint64_t serial = reader.uint64();
  std::uint32_t type_code = reader.uint32();
  if (type_code != 1 && type_code != 2) invalid("unknown certificate type code " + std::to_string(type_code));
  std::string key_id = reader.text();
  check_text("key id", key_id);
  std::span<const std::uint8_t> principal_bytes = reader.string();
  std::uint64_t valid_after = reader.uint64();
  std::uint64_t valid_before = reader.uint64();
  std::span<const std::uint8_t> critical = reader.string();
  std::span<const std::uint8_t> extension_bytes = reader.string();
  reader.string();  // reserved: "ignored in this version of the protocol"
  std::span<const std::uint8_t> ca_key = reader.string();
  std::size_t signed_length = reader.offset();
  std::span<const std::uint8_t> signature_blob = reader.string();
  reader.expect_end();

  std::vector<std::string> principals;
  WireReader principal_reader(principal_bytes, "certificate principals");
  while (!principal_reader.at_end()) {
    if (principals.size() == kMaxPrincipals) invalid("the certificate has more than 256 principals");
    principals.push_back(principal_reader.text());
    check_text("principal", principals.back());
  }
  std::vector<std::string> extensions;
  for (auto& [name, value] : decode_options(extension_bytes, false)) extensions.push_back(std::move(name));

  // "Chained" certificates are not supported (PROTOCOL.certkeys): the CA key
  // must be a plain key, which parse_public_key_blob insists on.
  OpenSshPublicKey ca;
  try {
    ca = parse_public_key_blob(ca_key);
  } catch (const Error& e) {
    invalid(std::string("the certificate's CA key is refused: ") + e.what());
  }

  WireReader signature_reader(signature_blob, "certificate signature");
  std::string algorithm = signature_reader.text();
  std::span<const std::uint8_t> signature = signature_reader.string();
  signature_reader.expect_end();
  bool fits = ca.type == "ssh-rsa" ? (algorithm == "rsa-sha2-256" || algorithm == "rsa-sha2-512")
                                   : algorithm == ca.type;
  if (ca.type == "ssh-rsa" && algorithm == "ssh-rsa") {
    invalid("the certificate is signed with ssh-rsa (RSA with SHA-1), which is refused");
  }
  if (!fits) {
    invalid("signature algorithm '" + printable_prefix(algorithm, 48) + "' does not fit the CA key type " + ca.type);
  }

  return ParsedCertificate{
      CertificateFields{
          std::vector<std::uint8_t>(nonce.begin(), nonce.end()),
          std::move(subject),
          serial,
          static_cast<CertificateType>(type_code),
          std::move(key_id),
          std::move(principals),
          valid_after,
          valid_before,
          decode_options(critical, true),
          std::move(extensions),
      },
      std::vector<std::uint8_t>(ca_key.begin(), ca_key.end()),
      std::move(algorithm),
      std::vector<std::uint8_t>(signature.begin(), signature.end()),
      std::vector<std::uint8_t>(certificate_blob.begin(), certificate_blob.begin() + static_cast<std::ptrdiff_t>(signed_length)),
  };
}

ParsedCertificate parse_certificate_line(std::string_view line) {
  OpenSshLine parts = split_openssh_line(line, "certificate");
  ParsedCertificate certificate = parse_certificate(parts.blob);
  std::string blob_type = certificate_type_name(certificate.fields.subject.type);
  if (parts.type != blob_type) {
    invalid("the line says '" + printable_prefix(parts.type, 48) + "' but its certificate is '" + blob_type + "'");
  }
  certificate.fields.subject.comment = std::move(parts.comment);
  return certificate;
}

bool verify_certificate_signature(const ParsedCertificate& certificate) {
  try {
    return verify_certificate_signature(certificate, parse_public_key_blob(certificate.ca_key_blob));
  } catch (const Error&) {
    return false;
  }
}

bool verify_certificate_signature(const ParsedCertificate& certificate, const OpenSshPublicKey& ca) {
  try {
    if (certificate.ca_key_blob != ca.blob) return false;
    EVP_PKEY* key = ca.key.evp();
    std::span<const std::uint8_t> message = certificate.signed_bytes;
    std::span<const std::uint8_t> signature = certificate.signature;
    const std::string& algorithm = certificate.signature_algorithm;
    if (ca.type == "ssh-ed25519") {
      return algorithm == "ssh-ed25519" && signature.size() == 64 && verify_with(key, nullptr, message, signature);
    }
    if (ca.type == "ssh-rsa") {
      const EVP_MD* md = algorithm == "rsa-sha2-512" ? EVP_sha512() : algorithm == "rsa-sha2-256" ? EVP_sha256() : nullptr;
      auto modulus_bytes = static_cast<std::size_t>(EVP_PKEY_get_size(key));
      if (md == nullptr || signature.empty() || signature.size() > modulus_bytes) return false;
      // OpenSSH accepts a signature shorter than the modulus (ssh_rsa_verify pads it).
      std::vector<std::uint8_t> padded(modulus_bytes - signature.size(), 0);
      padded.insert(padded.end(), signature.begin(), signature.end());
      return verify_with(key, md, message, padded);
    }
    // ECDSA: RFC 5656 section 3.1.2, mpint r and mpint s, back to DER for OpenSSL.
    if (algorithm != ca.type) return false;
    WireReader reader(signature, "ECDSA signature");
    std::span<const std::uint8_t> r = reader.mpint();
    std::span<const std::uint8_t> s = reader.mpint();
    reader.expect_end();
    std::size_t field = ecdsa_field_bytes(ca.type);
    if (r.empty() || s.empty() || r.size() > field || s.size() > field) return false;
    BignumPtr bn_r(BN_bin2bn(r.data(), static_cast<int>(r.size()), nullptr));
    BignumPtr bn_s(BN_bin2bn(s.data(), static_cast<int>(s.size()), nullptr));
    EcdsaSigPtr sig(ECDSA_SIG_new());
    if (!bn_r || !bn_s || !sig || ECDSA_SIG_set0(sig.get(), bn_r.get(), bn_s.get()) != 1) {
      ERR_clear_error();
      return false;
    }
    bn_r.release();
    bn_s.release();
    unsigned char* der = nullptr;
    int der_length = i2d_ECDSA_SIG(sig.get(), &der);
    if (der_length <= 0) {
      ERR_clear_error();
      return false;
    }
    std::vector<std::uint8_t> der_signature(der, der + der_length);
    OPENSSL_free(der);
    return verify_with(key, ecdsa_digest(ca.type), message, der_signature);
  } catch (const Error&) {
    return false;
  }
}

}  // namespace keyhold::ssh
