#include "keyhold/core/text.hpp"
#include "keyhold/ssh/public_key.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <algorithm>
#include <array>
#include <bit>
#include <memory>
#include <new>
#include <optional>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"

namespace keyhold::ssh {
namespace {

using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using EvpPkeyCtxPtr = CPtr<EVP_PKEY_CTX, &EVP_PKEY_CTX_free>;
using BignumPtr = CPtr<BIGNUM, &BN_free>;
using ParamBuildPtr = CPtr<OSSL_PARAM_BLD, &OSSL_PARAM_BLD_free>;
using ParamsPtr = CPtr<OSSL_PARAM, &OSSL_PARAM_free>;

// OpenSSH caps RSA moduli at 16384 bits (SSHBUF_MAX_BIGNUM); the floor is
// keyhold's: below 2048 bits RSA is no longer safe (NIST SP 800-131A).
constexpr std::size_t kMinRsaBits = 2048;
constexpr std::size_t kMaxRsaBits = 16384;

// RFC 5656 section 6.1 (curve identifiers) and section 3.1 (Q as an
// uncompressed SEC1 point: 0x04 || X || Y).
struct EcdsaCurve {
  std::string_view key_type;
  std::string_view identifier;
  const char* openssl_group;
  std::size_t field_bytes;
};
constexpr std::array<EcdsaCurve, 3> kCurves{{
    {"ecdsa-sha2-nistp256", "nistp256", "P-256", 32},
    {"ecdsa-sha2-nistp384", "nistp384", "P-384", 48},
    {"ecdsa-sha2-nistp521", "nistp521", "P-521", 66},
}};

const EcdsaCurve* curve_by_type(std::string_view type) {
  for (const EcdsaCurve& c : kCurves) {
    if (c.key_type == type) return &c;
  }
  return nullptr;
}

const EcdsaCurve* curve_by_group(std::string_view group) {
  if (group == "prime256v1" || group == "P-256") return &kCurves[0];
  if (group == "secp384r1" || group == "P-384") return &kCurves[1];
  if (group == "secp521r1" || group == "P-521") return &kCurves[2];
  return nullptr;
}

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

std::vector<std::uint8_t> bignum_param(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) {
    ERR_clear_error();
    throw Error(ErrorCode::Internal, std::string("cannot read RSA parameter ") + name);
  }
  BignumPtr bn(raw);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(BN_num_bytes(bn.get())));
  BN_bn2bin(bn.get(), out.data());
  return out;
}

std::vector<std::uint8_t> octet_param(EVP_PKEY* key, const char* name) {
  std::size_t length = 0;
  if (EVP_PKEY_get_octet_string_param(key, name, nullptr, 0, &length) != 1) {
    ERR_clear_error();
    throw Error(ErrorCode::Internal, std::string("cannot read key parameter ") + name);
  }
  std::vector<std::uint8_t> out(length);
  EVP_PKEY_get_octet_string_param(key, name, out.data(), out.size(), &length);
  out.resize(length);
  return out;
}

std::size_t bit_length(std::span<const std::uint8_t> magnitude) {
  if (magnitude.empty()) return 0;
  return (magnitude.size() - 1) * 8 + static_cast<std::size_t>(std::bit_width(magnitude[0]));
}

EvpPkeyPtr key_from_params(const char* algorithm, const OSSL_PARAM* params, std::string_view what) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, const_cast<OSSL_PARAM*>(params)) != 1) {
    ERR_clear_error();
    invalid(std::string(what) + " is not a valid public key");
  }
  return EvpPkeyPtr(raw);
}

// The point is on the curve, not the identity, and of the group's order
// (SEC1 section 3.2.2.1), as OpenSSH's sshkey_ec_validate_public checks.
// Not for RSA: OpenSSL's RSA public check runs a Miller-Rabin round over n,
// close to a second for the 16384-bit keys a caller could send.
void check_ec_point(EVP_PKEY* key, std::string_view what) {
  EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    ERR_clear_error();
    invalid(std::string(what) + " is not a valid public key");
  }
}

OpenSshPublicKey read_ed25519(WireReader& reader) {
  std::span<const std::uint8_t> pk = reader.string();  // RFC 8709 section 4
  if (pk.size() != 32) invalid("an Ed25519 public key has 32 bytes, not " + std::to_string(pk.size()));
  EVP_PKEY* raw = EVP_PKEY_new_raw_public_key_ex(nullptr, "ED25519", nullptr, pk.data(), pk.size());
  if (raw == nullptr) {
    ERR_clear_error();
    invalid("the Ed25519 public key is not valid");
  }
  WireWriter w;
  w.string("ssh-ed25519").string(pk);
  return OpenSshPublicKey{"ssh-ed25519", w.bytes(), "", crypto::PublicKey(raw)};
}

OpenSshPublicKey read_ecdsa(const EcdsaCurve& curve, WireReader& reader) {
  std::string identifier = reader.text();  // RFC 5656 section 3.1
  if (identifier != curve.identifier) {
    invalid("the curve '" + printable_prefix(identifier) + "' does not match key type " + std::string(curve.key_type));
  }
  std::span<const std::uint8_t> q = reader.string();
  if (q.size() != 1 + 2 * curve.field_bytes || q[0] != 0x04) {
    invalid("the " + std::string(curve.key_type) + " public key is not an uncompressed point of that curve");
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(curve.openssl_group), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, const_cast<std::uint8_t*>(q.data()), q.size()),
      OSSL_PARAM_construct_end(),
  };
  std::string what = "the " + std::string(curve.key_type) + " point";
  EvpPkeyPtr key = key_from_params("EC", params, what);
  check_ec_point(key.get(), what);
  WireWriter w;
  w.string(curve.key_type).string(curve.identifier).string(q);
  return OpenSshPublicKey{std::string(curve.key_type), w.bytes(), "", crypto::PublicKey(key.release())};
}

OpenSshPublicKey read_rsa(WireReader& reader) {
  // RFC 4253 section 6.6: e before n.
  std::span<const std::uint8_t> e = reader.mpint();
  std::span<const std::uint8_t> n = reader.mpint();
  std::size_t bits = bit_length(n);
  if (bits < kMinRsaBits) {
    invalid("an RSA key of " + std::to_string(bits) + " bits is below the 2048-bit minimum");
  }
  if (bits > kMaxRsaBits) {
    invalid("an RSA key of " + std::to_string(bits) + " bits is above OpenSSH's 16384-bit maximum");
  }
  if ((n.back() & 1) == 0) invalid("the RSA modulus is even");
  if (e.empty() || (e.back() & 1) == 0 || (e.size() == 1 && e[0] == 1) || e.size() > n.size()) {
    invalid("the RSA public exponent is not valid");
  }
  BignumPtr bn_n(BN_bin2bn(n.data(), static_cast<int>(n.size()), nullptr));
  BignumPtr bn_e(BN_bin2bn(e.data(), static_cast<int>(e.size()), nullptr));
  ParamBuildPtr build(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !build || OSSL_PARAM_BLD_push_BN(build.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(build.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    ERR_clear_error();
    throw Error(ErrorCode::Internal, "cannot build RSA key parameters");
  }
  ParamsPtr params(OSSL_PARAM_BLD_to_param(build.get()));
  if (!params) {
    ERR_clear_error();
    throw Error(ErrorCode::Internal, "cannot build RSA key parameters");
  }
  EvpPkeyPtr key = key_from_params("RSA", params.get(), "the RSA key");
  WireWriter w;
  w.string("ssh-rsa").mpint(e).mpint(n);
  return OpenSshPublicKey{"ssh-rsa", w.bytes(), "", crypto::PublicKey(key.release())};
}

bool is_space(char c) noexcept { return c == ' ' || c == '\t'; }

bool has_control_other_than_tab(std::string_view text) noexcept {
  return std::any_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// Well-formed UTF-8 (RFC 3629 section 4: no overlong forms, no surrogates,
// nothing above U+10FFFF) without C1 control characters (U+0080..U+009F),
// which terminals act on like C0 ones.
bool is_clean_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    char32_t code = 0;
    std::size_t length = utf8_sequence(text, i, code);
    if (length == 0 || (code >= 0x80 && code <= 0x9f)) return false;
    i += length;
  }
  return true;
}

}  // namespace

crypto::PublicKey empty_public_key() {
  EVP_PKEY* empty = EVP_PKEY_new();
  if (empty == nullptr) throw std::bad_alloc();
  return crypto::PublicKey(empty);
}

std::string key_type_name(const crypto::PublicKey& key) {
  EVP_PKEY* evp = key.evp();
  if (EVP_PKEY_is_a(evp, "ED25519")) return "ssh-ed25519";
  if (EVP_PKEY_is_a(evp, "RSA")) return "ssh-rsa";
  if (EVP_PKEY_is_a(evp, "EC")) {
    char group[64] = {};
    if (EVP_PKEY_get_utf8_string_param(evp, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, nullptr) == 1) {
      if (const EcdsaCurve* curve = curve_by_group(group)) return std::string(curve->key_type);
    }
    ERR_clear_error();
  }
  throw Error(ErrorCode::InvalidArgument, "this key type has no OpenSSH name keyhold supports");
}

std::vector<std::uint8_t> public_key_blob(const crypto::PublicKey& key) {
  std::string name = key_type_name(key);
  WireWriter w;
  w.string(name);
  EVP_PKEY* evp = key.evp();
  if (name == "ssh-ed25519") {
    std::uint8_t raw[32];
    std::size_t length = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(evp, raw, &length) != 1 || length != 32) {
      ERR_clear_error();
      throw Error(ErrorCode::Internal, "cannot read the Ed25519 public key");
    }
    w.string(std::span<const std::uint8_t>(raw, length));  // RFC 8709 section 4
  } else if (name == "ssh-rsa") {
    // RFC 4253 section 6.6: e before n.
    w.mpint(bignum_param(evp, OSSL_PKEY_PARAM_RSA_E));
    w.mpint(bignum_param(evp, OSSL_PKEY_PARAM_RSA_N));
  } else {
    // RFC 5656 section 3.1: curve identifier, then Q as an uncompressed point.
    w.string(curve_by_type(name)->identifier);
    w.string(octet_param(evp, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY));
  }
  return w.bytes();
}

std::string authorized_keys_line(const crypto::PublicKey& key, std::string_view comment) {
  std::string line = key_type_name(key) + " " + to_base64(public_key_blob(key));
  if (!comment.empty()) line += " " + std::string(comment);
  return line;
}

std::string fingerprint_sha256(const crypto::PublicKey& key) { return fingerprint_sha256(public_key_blob(key)); }

std::string fingerprint_sha256(std::span<const std::uint8_t> blob) {
  unsigned char digest[32];
  unsigned int length = 0;
  if (EVP_Digest(blob.data(), blob.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    throw Error(ErrorCode::Internal, "cannot hash the public key");
  }
  std::string b64 = to_base64(std::span<const std::uint8_t>(digest, length));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();  // ssh-keygen prints it unpadded
  return "SHA256:" + b64;
}

void check_public_key_type(std::string_view type) {
  if (type == "ssh-ed25519" || type == "ssh-rsa" || curve_by_type(type) != nullptr) return;
  if (type == "ssh-dss") {
    invalid("DSA keys (ssh-dss) are refused: 1024-bit DSA is obsolete and OpenSSH no longer accepts it");
  }
  constexpr std::string_view kCertSuffix = "-cert-v01@openssh.com";
  if (type.size() > kCertSuffix.size() && type.substr(type.size() - kCertSuffix.size()) == kCertSuffix) {
    invalid("'" + printable_prefix(type, 48) + "' is a certificate, not a plain public key");
  }
  if (type.substr(0, 3) == "sk-") {
    invalid("security key types (sk-*, FIDO) are not supported: '" + printable_prefix(type, 48) + "'");
  }
  invalid("unknown SSH key type '" + printable_prefix(type) + "'");
}

OpenSshPublicKey read_public_key_fields(std::string_view type, WireReader& reader) {
  check_public_key_type(type);
  if (type == "ssh-ed25519") return read_ed25519(reader);
  if (type == "ssh-rsa") return read_rsa(reader);
  return read_ecdsa(*curve_by_type(type), reader);
}

OpenSshPublicKey parse_public_key_blob(std::span<const std::uint8_t> blob) {
  WireReader reader(blob, "public key data");
  std::string type = reader.text();
  OpenSshPublicKey key = read_public_key_fields(type, reader);
  reader.expect_end();
  return key;
}

std::vector<std::uint8_t> decode_base64(std::string_view text) {
  std::optional<std::vector<std::uint8_t>> bytes = from_base64(text);
  if (!bytes) invalid("the base64 data is not canonical standard base64 with padding");
  return std::move(*bytes);
}

OpenSshLine split_openssh_line(std::string_view line, std::string_view what) {
  std::string subject(what);
  if (line.size() > kMaxPublicKeyFileSize) invalid("the " + subject + " line is longer than 16 KiB");
  // Tabs separate fields like spaces do (sshd's authorized_keys parser skips
  // both); any other control character could rewrite a terminal or a log.
  if (has_control_other_than_tab(line)) invalid("the " + subject + " line contains a control character");
  line = trim(line);
  if (line.empty()) invalid("the " + subject + " line is empty");
  std::size_t end = 0;
  while (end < line.size() && !is_space(line[end])) ++end;
  std::string_view type = line.substr(0, end);
  if (type.find_first_of("=\",") != std::string_view::npos) {
    invalid("authorized_keys options (such as command=\"...\") are not accepted before the key type");
  }
  line = trim(line.substr(end));
  if (line.empty()) invalid("the " + subject + " line has no key data after the type");
  end = 0;
  while (end < line.size() && !is_space(line[end])) ++end;
  std::string_view data = line.substr(0, end);
  std::string_view comment = trim(line.substr(end));
  if (!is_clean_utf8(comment)) invalid("the " + subject + " comment is not clean UTF-8");
  std::vector<std::uint8_t> blob;
  try {
    blob = decode_base64(data);
  } catch (const Error& e) {
    invalid("the " + subject + " key data is not valid base64: " + e.what());
  }
  return OpenSshLine{std::string(type), std::move(blob), std::string(comment)};
}

OpenSshPublicKey parse_public_key_line(std::string_view line) {
  OpenSshLine parts = split_openssh_line(line, "public key");
  check_public_key_type(parts.type);
  WireReader reader(parts.blob, "public key data");
  std::string blob_type = reader.text();
  if (blob_type != parts.type) {
    invalid("the line says '" + printable_prefix(parts.type, 48) + "' but its key data is '" +
            printable_prefix(blob_type, 48) + "'");
  }
  OpenSshPublicKey key = read_public_key_fields(blob_type, reader);
  reader.expect_end();
  key.comment = std::move(parts.comment);
  return key;
}

OpenSshPublicKey parse_public_key_file(std::string_view content) {
  if (content.size() > kMaxPublicKeyFileSize) invalid("the public key file is larger than 16 KiB");
  if (trim(content).substr(0, 11) == "-----BEGIN ") {
    invalid(trim(content).find("PRIVATE KEY") != std::string_view::npos
                ? "the file holds a private key, not an OpenSSH public key line: give the .pub file"
                : "the file is PEM, not an OpenSSH public key line (ssh-keygen -i -m PKCS8 -f FILE converts one)");
  }
  std::optional<std::string_view> key_line;
  while (!content.empty()) {
    std::size_t newline = content.find('\n');
    std::string_view line = content.substr(0, newline);
    content = newline == std::string_view::npos ? std::string_view() : content.substr(newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string_view trimmed = trim(line);
    if (trimmed.empty() || trimmed.front() == '#') {
      if (has_control_other_than_tab(trimmed)) invalid("the public key file contains a control character");
      continue;
    }
    if (key_line) invalid("the public key file holds more than one key line");
    key_line = line;
  }
  if (!key_line) invalid("the public key file holds no key");
  return parse_public_key_line(*key_line);
}

}  // namespace keyhold::ssh
