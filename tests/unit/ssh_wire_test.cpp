// The SSH wire formats without external tools: the RFC 4251 encoding,
// public key lines, certificates (PROTOCOL.certkeys) signed by an in-memory
// CA, and KRLs (PROTOCOL.krl). Fixed vectors below were made by OpenSSH 9.2's
// ssh-keygen; ssh_format_test checks the same against ssh-keygen live.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/crypto/signer.hpp"
#include "keyhold/ssh/certificate.hpp"
#include "keyhold/ssh/krl.hpp"
#include "keyhold/ssh/public_key.hpp"
#include "keyhold/ssh/wire.hpp"

namespace keyhold::ssh {
namespace {

using Bytes = std::vector<std::uint8_t>;
using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using EvpMdCtxPtr = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using EvpPkeyCtxPtr = CPtr<EVP_PKEY_CTX, &EVP_PKEY_CTX_free>;

// Runs f and returns the InvalidArgument message it throws ("" when it does not throw).
template <class F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    return e.what();
  }
  return "";
}

#define EXPECT_REFUSED(expr, fragment)                                                       \
  do {                                                                                       \
    std::string message_ = refusal([&] { (void)(expr); });                                   \
    EXPECT_NE(message_, "") << #expr " was accepted";                                        \
    EXPECT_NE(message_.find(fragment), std::string::npos) << "message was: " << message_;    \
  } while (false)

EvpPkeyPtr generate(const char* kind) {
  EVP_PKEY* key = nullptr;
  std::string k(kind);
  if (k == "ed25519") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (k == "p256") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (k == "p384") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
  if (k == "p521") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
  if (k == "rsa1024") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024));
  if (k == "rsa2048") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  if (k == "rsa3072") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072));
  if (key == nullptr) throw std::runtime_error(std::string("cannot generate ") + kind);
  return EvpPkeyPtr(key);
}

crypto::PublicKey public_half(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int length = i2d_PUBKEY(key, &der);
  if (length <= 0) throw std::runtime_error("i2d_PUBKEY");
  Bytes out(der, der + length);
  OPENSSL_free(der);
  return crypto::PublicKey::from_der(out);
}

// A crypto::Signer over an in-memory OpenSSL key, returning what keyhold's
// TokenSigner returns: DER Ecdsa-Sig-Value for ECDSA, raw bytes otherwise.
class SoftwareSigner : public crypto::Signer {
 public:
  explicit SoftwareSigner(const char* kind) : key_(generate(kind)), public_key_(public_half(key_.get())) {}
  crypto::KeyType key_type() const noexcept override { return *public_key_.type(); }
  const crypto::PublicKey& public_key() const noexcept override { return public_key_; }
  std::vector<std::uint8_t> sign(crypto::SignatureAlgorithm algorithm,
                                 std::span<const std::uint8_t> message) const override {
    if (!crypto::can_sign_with(key_type(), algorithm)) throw Error(ErrorCode::InvalidArgument, "wrong algorithm");
    std::string digest(crypto::digest_name(algorithm));
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    std::size_t length = 0;
    if (EVP_DigestSignInit_ex(ctx.get(), nullptr, digest.empty() ? nullptr : digest.c_str(), nullptr, nullptr,
                              key_.get(), nullptr) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &length, message.data(), message.size()) != 1) {
      throw std::runtime_error("EVP_DigestSign");
    }
    Bytes signature(length);
    if (EVP_DigestSign(ctx.get(), signature.data(), &length, message.data(), message.size()) != 1) {
      throw std::runtime_error("EVP_DigestSign");
    }
    signature.resize(length);
    return signature;
  }
  std::vector<std::uint8_t> sign_digest(crypto::SignatureAlgorithm, std::span<const std::uint8_t>) const override {
    throw Error(ErrorCode::Unimplemented, "not needed by these tests");
  }

 private:
  EvpPkeyPtr key_;
  crypto::PublicKey public_key_;
};

// Keys and signers are made once: RSA key generation is slow.
const SoftwareSigner& signer(const std::string& kind) {
  static std::map<std::string, std::unique_ptr<SoftwareSigner>> signers;
  auto& s = signers[kind];
  if (!s) s = std::make_unique<SoftwareSigner>(kind.c_str());
  return *s;
}

OpenSshPublicKey subject_key(const std::string& kind) {
  return parse_public_key_line(authorized_keys_line(signer(kind).public_key(), "subject@test"));
}

CertificateFields sample_fields(const std::string& subject_kind = "ed25519") {
  CertificateFields f;
  f.nonce = Bytes(32, 0x5a);
  f.subject = subject_key(subject_kind);
  f.serial = 0x0123456789abcdefULL;
  f.type = CertificateType::User;
  f.key_id = "alice@example";
  f.principals = {"alice", "root"};
  f.valid_after = 1893456000;   // 2030-01-01
  f.valid_before = 1893542400;  // 2030-01-02
  f.critical_options = {{"source-address", "10.0.0.0/8,192.168.1.1"}, {"force-command", "/usr/bin/id"}};
  f.extensions = {"permit-pty", "permit-X11-forwarding", "permit-agent-forwarding"};
  return f;
}

void expect_same_fields(const CertificateFields& a, const CertificateFields& b) {
  EXPECT_EQ(a.nonce, b.nonce);
  EXPECT_EQ(a.subject.type, b.subject.type);
  EXPECT_EQ(a.subject.blob, b.subject.blob);
  EXPECT_TRUE(a.subject.key == b.subject.key);
  EXPECT_EQ(a.serial, b.serial);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.key_id, b.key_id);
  EXPECT_EQ(a.principals, b.principals);
  EXPECT_EQ(a.valid_after, b.valid_after);
  EXPECT_EQ(a.valid_before, b.valid_before);
  EXPECT_EQ(a.critical_options, b.critical_options);
  EXPECT_EQ(a.extensions, b.extensions);
}

std::string line_of(const std::string& type, const Bytes& blob, const std::string& comment = "") {
  return type + " " + to_base64(blob) + (comment.empty() ? "" : " " + comment);
}

// ---------------------------------------------------------------- wire

TEST(WireWriter, EncodesRfc4251Examples) {
  // RFC 4251 section 5, the mpint examples.
  EXPECT_EQ(WireWriter().mpint(Bytes{}).bytes(), (Bytes{0, 0, 0, 0}));
  EXPECT_EQ(WireWriter().mpint(Bytes{0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7}).bytes(),
            (Bytes{0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7}));
  EXPECT_EQ(WireWriter().mpint(Bytes{0x80}).bytes(), (Bytes{0, 0, 0, 2, 0, 0x80}));
  EXPECT_EQ(WireWriter().mpint(Bytes{0, 0, 0x7f}).bytes(), (Bytes{0, 0, 0, 1, 0x7f}));
  EXPECT_EQ(WireWriter().string("testing").bytes(), (Bytes{0, 0, 0, 7, 't', 'e', 's', 't', 'i', 'n', 'g'}));
  EXPECT_EQ(WireWriter().uint64(0x0102030405060708ULL).bytes(), (Bytes{1, 2, 3, 4, 5, 6, 7, 8}));
  std::vector<std::string> names{"zlib", "none"};
  EXPECT_EQ(WireWriter().name_list(names).bytes(), (Bytes{0, 0, 0, 9, 'z', 'l', 'i', 'b', ',', 'n', 'o', 'n', 'e'}));
  EXPECT_EQ(WireWriter().name_list(std::vector<std::string>{}).bytes(), (Bytes{0, 0, 0, 0}));
}

TEST(WireWriter, RefusesBadNames) {
  EXPECT_REFUSED(WireWriter().name_list(std::vector<std::string>{"a", ""}), "name-list");
  EXPECT_REFUSED(WireWriter().name_list(std::vector<std::string>{"a,b"}), "name-list");
  EXPECT_REFUSED(WireWriter().name_list(std::vector<std::string>{"a b"}), "name-list");
}

TEST(WireReader, ReadsWhatTheWriterWrote) {
  std::vector<std::string> names{"aes128-ctr", "chacha20-poly1305@openssh.com"};
  WireWriter w;
  w.byte(7).uint32(0xdeadbeef).uint64(0xfedcba9876543210ULL).string("hello").mpint(Bytes{0x80, 1}).mpint(Bytes{})
      .mpint(Bytes{0, 0x12}).name_list(names).raw(Bytes{1, 2});
  WireReader r(w.bytes());
  EXPECT_EQ(r.byte(), 7);
  EXPECT_EQ(r.uint32(), 0xdeadbeefU);
  EXPECT_EQ(r.uint64(), 0xfedcba9876543210ULL);
  EXPECT_EQ(r.text(), "hello");
  auto m = r.mpint();
  EXPECT_EQ(Bytes(m.begin(), m.end()), (Bytes{0x80, 1}));
  EXPECT_TRUE(r.mpint().empty());
  m = r.mpint();
  EXPECT_EQ(Bytes(m.begin(), m.end()), (Bytes{0x12}));
  EXPECT_EQ(r.name_list(), names);
  EXPECT_EQ(r.remaining(), 2U);
  auto raw = r.raw(2);
  EXPECT_EQ(Bytes(raw.begin(), raw.end()), (Bytes{1, 2}));
  EXPECT_TRUE(r.at_end());
  EXPECT_NO_THROW(r.expect_end());
}

TEST(WireReader, RefusesTruncation) {
  Bytes three{0, 0, 0};
  EXPECT_REFUSED(WireReader(three).uint32(), "truncated");
  Bytes seven{0, 0, 0, 0, 0, 0, 0};
  EXPECT_REFUSED(WireReader(seven).uint64(), "truncated");
  Bytes empty;
  EXPECT_REFUSED(WireReader(empty).byte(), "truncated");
  Bytes short_string{0, 0, 0, 5, 'a', 'b'};
  EXPECT_REFUSED(WireReader(short_string).string(), "truncated");
  Bytes huge_length{0xff, 0xff, 0xff, 0xff, 'a'};
  EXPECT_REFUSED(WireReader(huge_length).string(), "truncated");
  EXPECT_REFUSED(WireReader(short_string).mpint(), "truncated");
  EXPECT_REFUSED(WireReader(three, "the thing").raw(4), "the thing is truncated");
}

TEST(WireReader, RefusesNegativeAndNonMinimalMpints) {
  Bytes negative{0, 0, 0, 2, 0xed, 0xcc};  // RFC 4251: -1234
  EXPECT_REFUSED(WireReader(negative).mpint(), "negative");
  Bytes padded{0, 0, 0, 2, 0, 0x7f};
  EXPECT_REFUSED(WireReader(padded).mpint(), "leading zeros");
  Bytes zero_byte{0, 0, 0, 1, 0};
  EXPECT_REFUSED(WireReader(zero_byte).mpint(), "leading zeros");
  Bytes two_zeros{0, 0, 0, 3, 0, 0, 0x80};
  EXPECT_REFUSED(WireReader(two_zeros).mpint(), "leading zeros");
  Bytes needed{0, 0, 0, 2, 0, 0x80};
  EXPECT_EQ(WireReader(needed).mpint().size(), 1U);
}

TEST(WireReader, RefusesTrailingDataAndNulInText) {
  Bytes data{0, 0, 0, 1, 'a', 9};
  WireReader r(data, "blob");
  r.string();
  EXPECT_REFUSED(r.expect_end(), "blob has 1 bytes of trailing data");
  Bytes nul{0, 0, 0, 3, 'a', 0, 'b'};
  EXPECT_REFUSED(WireReader(nul).text(), "NUL");
}

TEST(WireReader, RefusesMalformedNameLists) {
  for (std::string_view bad : {"a,,b", ",a", "a,", "a b", "caf\xc3\xa9", "a\tb"}) {
    SCOPED_TRACE(bad);
    Bytes encoded = WireWriter().string(bad).bytes();
    EXPECT_REFUSED(WireReader(encoded).name_list(), "name-list");
  }
}

TEST(WireText, PrintablePrefixIsShortAndClean) {
  EXPECT_EQ(printable_prefix("abc"), "abc");
  EXPECT_EQ(printable_prefix("a\x1b[31mb"), "a?[31mb");
  EXPECT_EQ(printable_prefix(std::string(100, 'x'), 8), "xxxxxxxx...");
  EXPECT_TRUE(has_control_character("a\tb"));
  EXPECT_TRUE(has_control_character("a\x7f"));
  EXPECT_FALSE(has_control_character("caf\xc3\xa9 ok"));
}

// ---------------------------------------------------------------- public keys

// Made by ssh-keygen (OpenSSH 9.2) with the fingerprints ssh-keygen -l printed.
struct KnownKey {
  const char* line;
  const char* type;
  const char* fingerprint;
};
const KnownKey kKnownKeys[] = {
    {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINAOfoHU0GXoS8yIYAIaYVlRNqFbJyuMNNYsp1O/F2Za test@k_ed25519", "ssh-ed25519",
     "SHA256:LfzBxhIabMJQLHzpagguis6a7HItIzppOe1d5XJQeyI"},
    {"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBODiFsmJICenOAa31bEexRSpQdAJ2SSSQSR7ctFBR4M2Un+bLdAq8PXkNAXXLpSXJwZ0+WqA15obevZHIxBEeSI= test@k_ecdsab256",
     "ecdsa-sha2-nistp256", "SHA256:sm9K3b2GY7WhOC9oHU/rUp6P8VQWheo+hQkp7cw8x1c"},
    {"ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBKip6T4ByahNVIMuX4XmFHWi2bSkhBpSTNY6PxNLVbtU7eOcsHySGEI0TNFqFMJLkl6Y5tPa2iCkpfZ6zvAsBJEO4+7H4R99PrWkmp51rdBolUkrNpD4b4NZJqsJf7kQag== test@k_ecdsab384",
     "ecdsa-sha2-nistp384", "SHA256:HmgCictjwgJYd4kCflrCOx+aOSL+yM0jZaXH5GW4A40"},
    {"ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAE7ebKH7xDRFnWD1pdCWeLoMVf7WuW4jxzhRhS8r3F8vgS/JOyE2CsSB8kdeAabIup6KrRT2WZqW22xUhA7bH2u+wCCJPnIx+eohDLkDO+MvSxq5JmrfU2aphxLo0eOIJHizXhsWdakXDHHKxO8RQNgSBmOO7S6de4C0CSN45eSOjnY4g== test@k_ecdsab521",
     "ecdsa-sha2-nistp521", "SHA256:zzIGiGhlL48CrPn8zgFhdz8X4nlE322V9MBahRUU3vs"},
    {"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCpVjiv4iKYQpKdwhY/L0tlkEGcYC01AMXlQfzzG1cbMvlpUNe7K6lUADZgZPS7VgWLBKi5XsskI26m/mm4igoIAiFtu14CWU79UGV7gs86zGzb6FYZH5SIKiYpwVTDiYYJVsWpbvF+RYO4evHv5F6qftACA1p2qRSkLuuhixE80/tmA0USP4UXjKYOAPgauwWWwr6VU/APF05oqmRsNkT4N1ZzCMyftF/gZWxteM23dcmQDkaWITCgp5mlgTZVBdDO2sLcA3J52wsvMQ/LT/U/t4E7NwcnWwlr81MzuOV/Abb0/gB9XFNX6/FSQJR0CVlgUv7LqfUexCX09lsaQxfR test@k_rsab2048",
     "ssh-rsa", "SHA256:MU0bZKPywIFNTCtncvZqJo1e73E2aYbhdY1Gf6B4mss"},
};
const char* kDsaLine =
    "ssh-dss AAAAB3NzaC1kc3MAAACBAI473yILSGqD+e+Z7Lfuudh3y/2uYEUQp2DP+gz8niZEDwPp5mJhiyY3qUOSqacgVlvZURnQxnjdysfqypoSDOlplJe/Q2Zfnl4Ow93P32VYg/RvZyNbJoT7Ze1mFjkYgkN2XD8F41O281fAMQ4wn27bAUfKGfFfIFqzqD1bO1h7AAAAFQDqlgjngEyy0+3v9uiWyegpI3MlEQAAAIA0Lw3JogNmOK8qDDEPPwbhg4m9+0csgB7vx4ct0quxX4j44CeEqG/FoV1BlhHlDbFFqt8SYiyfHAHhlyKhchFrpvovyNPaIe5eyNKmfArcfKhAjeuRyhTzwFkuFti6/zv6sQSQ+HB4YRjHkbU3dMAI9M2XB4L36vaSQbTiqS8mUwAAAIAyJSLEFk+P6gA/mshdYO4gSJOnZ2WvoprW7vFhLViyBU+3ON2N2RaZMQDn+B6oh4khFjW31LJKYQ7Q5v61x1jgRgQwfz82K58bg77Q9+i8IwdC25crj2XQ+dRehNeJ9ut/jRYXlFL7cSqx34kKbzrWUMns0QNQuNBZPc6Yi6Ocmw== test@k_dsa";
const char* kRsa1024Line =
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCd2t8itwtnXsg4oj3552BaMbuNZjEiOCoeFIyLlbRGcrOGwsm/uHNL9W25a1iQ3P2rJJta7jRlu+w/1LgAXOA49Mk8sGcReGOw8x9DLPBm/bYAhvlRpt1J0GxQaOBWoRJPmbuxKyayI5bOERbgUZJEqUXdkHdXNn9wujM/NW6FlQ== test@k_rsab1024";

TEST(PublicKeyLine, AcceptsEachTypeSshKeygenWrites) {
  for (const KnownKey& k : kKnownKeys) {
    OpenSshPublicKey key = parse_public_key_line(k.line);
    EXPECT_EQ(key.type, k.type);
    EXPECT_EQ(key.comment, std::string(k.line).substr(std::string(k.line).rfind(' ') + 1));
    EXPECT_EQ(fingerprint_sha256(key.blob), k.fingerprint);
    EXPECT_EQ(fingerprint_sha256(key.key), k.fingerprint);  // the OpenSSL key encodes back to the same blob
    EXPECT_EQ(public_key_blob(key.key), key.blob);
    EXPECT_EQ(key_type_name(key.key), k.type);
  }
}

TEST(PublicKeyLine, RoundTripsKeysMadeByOpenSsl) {
  for (const char* kind : {"ed25519", "p256", "p384", "p521", "rsa2048", "rsa3072"}) {
    const crypto::PublicKey& original = signer(kind).public_key();
    std::string line = authorized_keys_line(original, "me@host and more words");
    OpenSshPublicKey key = parse_public_key_line(line);
    EXPECT_TRUE(key.key == original) << kind;
    EXPECT_EQ(key.blob, public_key_blob(original));
    EXPECT_EQ(key.comment, "me@host and more words");
    EXPECT_EQ(fingerprint_sha256(key.blob), fingerprint_sha256(original));
  }
}

TEST(PublicKeyLine, AcceptsTabsExtraSpacesAndNoComment) {
  OpenSshPublicKey key = parse_public_key_line(
      "  ssh-ed25519\tAAAAC3NzaC1lZDI1NTE5AAAAINAOfoHU0GXoS8yIYAIaYVlRNqFbJyuMNNYsp1O/F2Za   ");
  EXPECT_EQ(key.type, "ssh-ed25519");
  EXPECT_EQ(key.comment, "");
}

TEST(PublicKeyLine, RefusesEachBadKind) {
  const std::string ed_data = "AAAAC3NzaC1lZDI1NTE5AAAAINAOfoHU0GXoS8yIYAIaYVlRNqFbJyuMNNYsp1O/F2Za";
  Bytes ed_blob = parse_public_key_line("ssh-ed25519 " + ed_data).blob;

  EXPECT_REFUSED(parse_public_key_line(""), "empty");
  EXPECT_REFUSED(parse_public_key_line("   "), "empty");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519"), "no key data");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 AAAA#C3Nz c"), "base64");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 AAAAC3N"), "base64");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 AB=="), "not canonical");
  EXPECT_REFUSED(parse_public_key_line("ssh-rsa " + ed_data), "the line says 'ssh-rsa' but its key data is 'ssh-ed25519'");
  EXPECT_REFUSED(parse_public_key_line("ssh-foo " + ed_data), "unknown SSH key type 'ssh-foo'");
  EXPECT_REFUSED(parse_public_key_line(std::string(200, 'z') + " " + ed_data), "unknown SSH key type");
  EXPECT_REFUSED(parse_public_key_line(kDsaLine), "DSA");
  EXPECT_REFUSED(parse_public_key_line(kRsa1024Line), "RSA key of 1024 bits is below the 2048-bit minimum");
  EXPECT_REFUSED(parse_public_key_line(authorized_keys_line(public_half(generate("rsa1024").get()), "")),
                 "below the 2048-bit minimum");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519-cert-v01@openssh.com " + ed_data), "is a certificate");
  EXPECT_REFUSED(parse_public_key_line("ecdsa-sha2-nistp256-cert-v01@openssh.com AAAA"), "is a certificate");
  Bytes sk = WireWriter().string("sk-ssh-ed25519@openssh.com").string(Bytes(32, 1)).string("ssh:").bytes();
  EXPECT_REFUSED(parse_public_key_line(line_of("sk-ssh-ed25519@openssh.com", sk)), "security key");
  EXPECT_REFUSED(parse_public_key_line("sk-ecdsa-sha2-nistp256@openssh.com AAAA"), "security key");
  Bytes trailing = ed_blob;
  trailing.push_back(0);
  EXPECT_REFUSED(parse_public_key_line(line_of("ssh-ed25519", trailing)), "trailing data");
  Bytes truncated(ed_blob.begin(), ed_blob.end() - 1);
  EXPECT_REFUSED(parse_public_key_line(line_of("ssh-ed25519", truncated)), "truncated");
  EXPECT_REFUSED(parse_public_key_line("command=\"ls\" ssh-ed25519 " + ed_data), "options");
  EXPECT_REFUSED(parse_public_key_line("no-pty,no-agent-forwarding ssh-ed25519 " + ed_data), "options");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 " + ed_data + " evil\x1b[2Jcomment"), "control character");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 " + ed_data + " a\rb"), "control character");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 " + ed_data + "\n"), "control character");
  EXPECT_REFUSED(parse_public_key_line(std::string("ssh-ed25519 ") + ed_data + std::string(" a\0b", 4)), "control character");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 " + ed_data + " caf\xe9"), "UTF-8");
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 " + ed_data + " \xc2\x9b" "31m"), "UTF-8");  // C1 CSI
  EXPECT_REFUSED(parse_public_key_line("ssh-ed25519 " + std::string(20000, 'A')), "longer than 16 KiB");
}

TEST(PublicKeyLine, RefusesMalformedKeyFields) {
  Bytes short_ed = WireWriter().string("ssh-ed25519").string(Bytes(31, 1)).bytes();
  EXPECT_REFUSED(parse_public_key_line(line_of("ssh-ed25519", short_ed)), "32 bytes");

  OpenSshPublicKey p256 = parse_public_key_line(kKnownKeys[1].line);
  WireReader r(p256.blob);
  r.text();
  r.text();
  auto q_span = r.string();
  Bytes q(q_span.begin(), q_span.end());

  Bytes wrong_curve = WireWriter().string("ecdsa-sha2-nistp256").string("nistp384").string(q).bytes();
  EXPECT_REFUSED(parse_public_key_line(line_of("ecdsa-sha2-nistp256", wrong_curve)), "curve 'nistp384'");
  Bytes off_curve_q = q;
  off_curve_q.back() ^= 1;
  Bytes off_curve = WireWriter().string("ecdsa-sha2-nistp256").string("nistp256").string(off_curve_q).bytes();
  EXPECT_REFUSED(parse_public_key_line(line_of("ecdsa-sha2-nistp256", off_curve)), "not a valid public key");
  Bytes compressed_q(q.begin(), q.begin() + 33);
  compressed_q[0] = 0x02;
  Bytes compressed = WireWriter().string("ecdsa-sha2-nistp256").string("nistp256").string(compressed_q).bytes();
  EXPECT_REFUSED(parse_public_key_line(line_of("ecdsa-sha2-nistp256", compressed)), "uncompressed point");

  OpenSshPublicKey rsa = parse_public_key_line(kKnownKeys[4].line);
  WireReader rr(rsa.blob);
  rr.text();
  rr.mpint();
  auto n_span = rr.mpint();
  Bytes n(n_span.begin(), n_span.end());
  Bytes even_e = WireWriter().string("ssh-rsa").mpint(Bytes{1, 0, 0}).mpint(n).bytes();
  EXPECT_REFUSED(parse_public_key_line(line_of("ssh-rsa", even_e)), "exponent");
  // n with two leading zero bytes where one is needed (its top bit is set).
  ASSERT_EQ(n.size(), 256U);
  ASSERT_NE(n[0] & 0x80, 0);
  Bytes padded_n = WireWriter().string("ssh-rsa").mpint(Bytes{1, 0, 1}).uint32(258).byte(0).byte(0).raw(n).bytes();
  EXPECT_REFUSED(parse_public_key_line(line_of("ssh-rsa", padded_n)), "leading zeros");
}

TEST(PublicKeyFile, ReadsTheOneKeyLine) {
  std::string content = "# my key\r\n\r\n" + std::string(kKnownKeys[0].line) + "\r\n\n   # trailing note\n";
  OpenSshPublicKey key = parse_public_key_file(content);
  EXPECT_EQ(key.type, "ssh-ed25519");
  EXPECT_EQ(key.comment, "test@k_ed25519");
}

TEST(PublicKeyFile, RefusesOversizedEmptyAndMultiKeyFiles) {
  std::string big = std::string(kKnownKeys[0].line) + "\n" + std::string(16 * 1024, '#');
  EXPECT_REFUSED(parse_public_key_file(big), "larger than 16 KiB");
  EXPECT_REFUSED(parse_public_key_file("# nothing here\n\n"), "no key");
  EXPECT_REFUSED(parse_public_key_file(""), "no key");
  EXPECT_REFUSED(parse_public_key_file(std::string(kKnownKeys[0].line) + "\n" + kKnownKeys[1].line + "\n"),
                 "more than one");
  EXPECT_REFUSED(parse_public_key_file("# \x1b]0;pwned\x07\n" + std::string(kKnownKeys[0].line)), "control character");
  EXPECT_REFUSED(parse_public_key_file(kDsaLine), "DSA");
}

TEST(PublicKeyBlob, RefusesCertificatesAndTrailingData) {
  Bytes cert = sign_certificate(signer("ed25519"), sample_fields());
  EXPECT_REFUSED(parse_public_key_blob(cert), "is a certificate");
  Bytes blob = parse_public_key_line(kKnownKeys[0].line).blob;
  blob.push_back(1);
  EXPECT_REFUSED(parse_public_key_blob(blob), "trailing data");
}

TEST(PublicKey, EmptyKeyOfADefaultObjectMatchesNothing) {
  OpenSshPublicKey empty;
  EXPECT_FALSE(empty.key.type().has_value());
  EXPECT_FALSE(empty.key == signer("ed25519").public_key());
  EXPECT_REFUSED(key_type_name(empty.key), "no OpenSSH name");
}

// ---------------------------------------------------------------- certificates

struct CaCase {
  const char* kind;
  const char* key_type;
  const char* signature_algorithm;
};
const CaCase kCaCases[] = {
    {"ed25519", "ssh-ed25519", "ssh-ed25519"},
    {"p256", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"},
    {"p384", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"},
    {"rsa3072", "ssh-rsa", "rsa-sha2-512"},
};

TEST(Certificate, TypeNames) {
  EXPECT_EQ(certificate_type_name("ssh-ed25519"), "ssh-ed25519-cert-v01@openssh.com");
  EXPECT_EQ(certificate_type_name("ecdsa-sha2-nistp256"), "ecdsa-sha2-nistp256-cert-v01@openssh.com");
  EXPECT_EQ(certificate_type_name("ecdsa-sha2-nistp384"), "ecdsa-sha2-nistp384-cert-v01@openssh.com");
  EXPECT_EQ(certificate_type_name("ecdsa-sha2-nistp521"), "ecdsa-sha2-nistp521-cert-v01@openssh.com");
  EXPECT_EQ(certificate_type_name("ssh-rsa"), "ssh-rsa-cert-v01@openssh.com");
  EXPECT_REFUSED(certificate_type_name("ssh-dss"), "DSA");
  EXPECT_REFUSED(certificate_type_name("rsa-sha2-512"), "unknown");
}

TEST(Certificate, SignParseVerifyRoundTripForEachCaType) {
  for (const CaCase& c : kCaCases) {
    SCOPED_TRACE(c.kind);
    const SoftwareSigner& ca = signer(c.kind);
    CertificateFields fields = sample_fields();
    Bytes blob = sign_certificate(ca, fields);
    ParsedCertificate parsed = parse_certificate(blob);

    CertificateFields expected = fields;
    std::sort(expected.critical_options.begin(), expected.critical_options.end());
    std::sort(expected.extensions.begin(), expected.extensions.end());
    expect_same_fields(parsed.fields, expected);
    EXPECT_EQ(parsed.ca_key_blob, public_key_blob(ca.public_key()));
    EXPECT_EQ(parse_public_key_blob(parsed.ca_key_blob).type, c.key_type);
    EXPECT_EQ(parsed.signature_algorithm, c.signature_algorithm);
    EXPECT_EQ(Bytes(blob.begin(), blob.begin() + static_cast<std::ptrdiff_t>(parsed.signed_bytes.size())), parsed.signed_bytes);
    EXPECT_TRUE(verify_certificate_signature(parsed));

    // The signature data has the shape of its algorithm.
    if (std::string(c.kind) == "ed25519") {
      EXPECT_EQ(parsed.signature.size(), 64U);
    }
    if (std::string(c.kind) == "rsa3072") {
      EXPECT_EQ(parsed.signature.size(), 384U);
    }
    if (std::string(c.kind).starts_with("p")) {
      WireReader rs(parsed.signature, "r and s");
      EXPECT_FALSE(rs.mpint().empty());
      EXPECT_FALSE(rs.mpint().empty());
      EXPECT_NO_THROW(rs.expect_end());
    }

    // A flipped signature byte fails.
    ParsedCertificate bad_signature = parsed;
    bad_signature.signature[bad_signature.signature.size() / 2] ^= 0x01;
    EXPECT_FALSE(verify_certificate_signature(bad_signature));
    // A flipped byte in the signed part (the nonce) fails.
    Bytes tampered = blob;
    tampered[40] ^= 0x01;
    ParsedCertificate tampered_parsed = parse_certificate(tampered);
    EXPECT_NE(tampered_parsed.fields.nonce, fields.nonce);
    EXPECT_FALSE(verify_certificate_signature(tampered_parsed));
    // Another CA's key does not verify it.
    ParsedCertificate other_ca = parsed;
    other_ca.ca_key_blob = public_key_blob(signer(std::string(c.kind) == "ed25519" ? "p256" : "ed25519").public_key());
    EXPECT_FALSE(verify_certificate_signature(other_ca));
    // With the CA key given already decoded: the same answers.
    OpenSshPublicKey own = parse_public_key_blob(public_key_blob(ca.public_key()));
    OpenSshPublicKey foreign = parse_public_key_blob(other_ca.ca_key_blob);
    EXPECT_TRUE(verify_certificate_signature(parsed, own));
    EXPECT_FALSE(verify_certificate_signature(parsed, foreign)) << "a key that is not the certificate's CA";
    EXPECT_FALSE(verify_certificate_signature(bad_signature, own));
    EXPECT_FALSE(verify_certificate_signature(tampered_parsed, own));
  }
}

TEST(Certificate, EverySubjectTypeRoundTrips) {
  for (const char* kind : {"ed25519", "p256", "p384", "p521", "rsa2048"}) {
    SCOPED_TRACE(kind);
    CertificateFields fields = sample_fields(kind);
    Bytes blob = sign_certificate(signer("ed25519"), fields);
    ParsedCertificate parsed = parse_certificate(blob);
    EXPECT_EQ(parsed.fields.subject.blob, fields.subject.blob);
    EXPECT_TRUE(parsed.fields.subject.key == signer(kind).public_key());
    EXPECT_TRUE(verify_certificate_signature(parsed));
    std::string line = certificate_line(blob, "alice-cert");
    EXPECT_TRUE(line.starts_with(certificate_type_name(fields.subject.type) + " AAAA"));
    EXPECT_TRUE(line.ends_with(" alice-cert"));
    ParsedCertificate from_line = parse_certificate_line(line);
    EXPECT_EQ(from_line.fields.subject.comment, "alice-cert");
    expect_same_fields(from_line.fields, parsed.fields);
  }
}

TEST(Certificate, OptionsAndExtensionsAreWrittenSortedByName) {
  CertificateFields fields = sample_fields();
  fields.critical_options = {{"verify-required", ""}, {"source-address", "10.0.0.1"}, {"force-command", "ls -l"}};
  fields.extensions = {"permit-user-rc", "permit-X11-forwarding", "login@example.com", "permit-pty"};
  ParsedCertificate parsed = parse_certificate(sign_certificate(signer("ed25519"), fields));
  EXPECT_EQ(parsed.fields.critical_options,
            (std::vector<std::pair<std::string, std::string>>{
                {"force-command", "ls -l"}, {"source-address", "10.0.0.1"}, {"verify-required", ""}}));
  // Byte order, as strcmp: upper case before lower case.
  EXPECT_EQ(parsed.fields.extensions,
            (std::vector<std::string>{"login@example.com", "permit-X11-forwarding", "permit-pty", "permit-user-rc"}));
  // The exact encoding: a value is a string inside the data string, a flag has empty data.
  std::string signed_text(parsed.signed_bytes.begin(), parsed.signed_bytes.end());
  std::string expected_options;
  {
    WireWriter w;
    w.string("force-command").string(WireWriter().string("ls -l").bytes());
    w.string("source-address").string(WireWriter().string("10.0.0.1").bytes());
    w.string("verify-required").string(std::string_view());
    Bytes section = WireWriter().string(w.bytes()).bytes();
    expected_options.assign(section.begin(), section.end());
  }
  EXPECT_NE(signed_text.find(expected_options), std::string::npos);
}

TEST(Certificate, SignRefusesBadFields) {
  const SoftwareSigner& ca = signer("ed25519");
  auto with = [](auto change) {
    CertificateFields f = sample_fields();
    change(f);
    return f;
  };
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.critical_options.push_back({"force-command", "x"}); })),
                 "duplicate critical option 'force-command'");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.extensions.push_back("permit-pty"); })),
                 "duplicate extension 'permit-pty'");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.extensions.push_back(""); })), "empty name");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.critical_options.push_back({"", "x"}); })), "empty name");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.principals.push_back("bob\nroot"); })), "control character");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.principals.push_back("bob root"); })), "space or a comma");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.principals.push_back("bob,root"); })), "space or a comma");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.principals.push_back(""); })), "principal is empty");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.principals.clear(); })), "at least one principal");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.principals.assign(257, "p"); })), "at most 256");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.key_id = "id\x1b[1m"; })), "control character");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.key_id = ""; })), "key id is empty");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.valid_before = f.valid_after; })), "validity");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.nonce.resize(8); })), "nonce");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.critical_options = {{"force-command", ""}}; })),
                 "needs a value");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.critical_options = {{"verify-required", "yes"}}; })),
                 "takes no value");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.critical_options = {{"force-command", "a\tb"}}; })),
                 "control character");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.type = CertificateType::Host; })),
                 "host certificates cannot carry critical options");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.subject.type = "ssh-rsa"; })), "subject key is ssh-ed25519");
  EXPECT_REFUSED(sign_certificate(ca, with([](auto& f) { f.subject = OpenSshPublicKey{}; })), "truncated");
  // A host certificate without critical options is fine.
  CertificateFields host = with([](auto& f) {
    f.type = CertificateType::Host;
    f.critical_options.clear();
    f.principals = {"host.example.com"};
  });
  EXPECT_EQ(parse_certificate(sign_certificate(ca, host)).fields.type, CertificateType::Host);
}

// Re-encodes parsed fields without sorting or checks, to feed parse_certificate bad bodies.
Bytes raw_certificate(const ParsedCertificate& p, const Bytes& critical, const Bytes& extensions,
                      std::uint32_t type_code, const std::string& algorithm) {
  WireReader key(p.fields.subject.blob);
  key.string();
  WireWriter principals;
  for (const auto& name : p.fields.principals) principals.string(name);
  WireWriter w;
  w.string(certificate_type_name(p.fields.subject.type)).string(p.fields.nonce).raw(key.rest())
      .uint64(p.fields.serial).uint32(type_code).string(p.fields.key_id).string(principals.bytes())
      .uint64(p.fields.valid_after).uint64(p.fields.valid_before).string(critical).string(extensions)
      .string(std::string_view()).string(p.ca_key_blob);
  w.string(WireWriter().string(algorithm).string(p.signature).bytes());
  return w.bytes();
}

TEST(Certificate, ParseRefusesMalformedCertificates) {
  Bytes blob = sign_certificate(signer("ed25519"), sample_fields());
  ParsedCertificate p = parse_certificate(blob);
  Bytes flag = WireWriter().string("permit-pty").string(std::string_view()).bytes();
  Bytes two = WireWriter().string("permit-pty").string(std::string_view()).string("permit-X11-forwarding")
                  .string(std::string_view()).bytes();
  Bytes twice = WireWriter().string("permit-pty").string(std::string_view()).string("permit-pty")
                    .string(std::string_view()).bytes();
  Bytes with_data = WireWriter().string("permit-pty").string(WireWriter().string("x").bytes()).bytes();
  Bytes bad_option = WireWriter().string("force-command").string(Bytes{1, 2, 3}).bytes();

  EXPECT_NO_THROW(parse_certificate(raw_certificate(p, {}, flag, 1, "ssh-ed25519")));
  EXPECT_REFUSED(parse_certificate(raw_certificate(p, {}, two, 1, "ssh-ed25519")), "out of order");
  EXPECT_REFUSED(parse_certificate(raw_certificate(p, {}, twice, 1, "ssh-ed25519")), "out of order or repeated");
  EXPECT_REFUSED(parse_certificate(raw_certificate(p, {}, with_data, 1, "ssh-ed25519")), "carries data");
  EXPECT_REFUSED(parse_certificate(raw_certificate(p, bad_option, {}, 1, "ssh-ed25519")), "truncated");
  EXPECT_REFUSED(parse_certificate(raw_certificate(p, {}, {}, 3, "ssh-ed25519")), "type code 3");
  EXPECT_REFUSED(parse_certificate(raw_certificate(p, {}, {}, 1, "ecdsa-sha2-nistp256")), "does not fit");

  Bytes trailing = blob;
  trailing.push_back(0);
  EXPECT_REFUSED(parse_certificate(trailing), "trailing data");
  EXPECT_REFUSED(parse_certificate(Bytes(blob.begin(), blob.end() - 10)), "truncated");
  Bytes plain = parse_public_key_line(kKnownKeys[0].line).blob;
  EXPECT_REFUSED(parse_certificate(plain), "not an OpenSSH v01 certificate type");
  Bytes dsa_cert = WireWriter().string("ssh-dss-cert-v01@openssh.com").string(Bytes(32, 0)).bytes();
  EXPECT_REFUSED(parse_certificate(dsa_cert), "DSA");
  EXPECT_REFUSED(parse_certificate_line("ssh-rsa-cert-v01@openssh.com " + to_base64(blob)), "the line says");
  EXPECT_REFUSED(parse_certificate_line(certificate_line(blob, "") + " \x1b[0m"), "control character");
  EXPECT_REFUSED(certificate_line(plain, "x"), "not a certificate type");
  EXPECT_REFUSED(certificate_line(blob, "a\nb"), "control character");
}

TEST(Certificate, ParseRefusesSha1RsaSignatures) {
  Bytes blob = sign_certificate(signer("rsa3072"), sample_fields());
  ParsedCertificate p = parse_certificate(blob);
  EXPECT_REFUSED(parse_certificate(raw_certificate(p, {}, {}, 1, "ssh-rsa")), "SHA-1");
  // rsa-sha2-256 is accepted (OpenSSH makes it with -t rsa-sha2-256) but no longer verifies here.
  ParsedCertificate sha256 = parse_certificate(raw_certificate(p, {}, {}, 1, "rsa-sha2-256"));
  EXPECT_EQ(sha256.signature_algorithm, "rsa-sha2-256");
  EXPECT_FALSE(verify_certificate_signature(sha256));
}

// Made by ssh-keygen 9.2: `ssh-keygen -s ca_ed -I alice@example -n alice,root
// -V 20300101000000:20300102000000 -z 77 -O force-command=/usr/bin/id
// -O source-address=10.0.0.0/8,192.168.1.1 subj.pub` (TZ=UTC), and a host
// certificate `ssh-keygen -s ca_ec -h -I host-1 -n host.example.com
// -V always:forever -z 18446744073709551615 host.pub`.
const char* kSshKeygenUserCert =
    "ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgBADR/sPMqaFutdTIMcr1D1sW7XfZql3pfd5wSo+KX7kAAAAIbmlzdHAyNTYAAABBBODiFsmJICenOAa31bEexRSpQdAJ2SSSQSR7ctFBR4M2Un+bLdAq8PXkNAXXLpSXJwZ0+WqA15obevZHIxBEeSIAAAAAAAAATQAAAAEAAAANYWxpY2VAZXhhbXBsZQAAABEAAAAFYWxpY2UAAAAEcm9vdAAAAABw29iAAAAAAHDdKgAAAABUAAAADWZvcmNlLWNvbW1hbmQAAAAPAAAACy91c3IvYmluL2lkAAAADnNvdXJjZS1hZGRyZXNzAAAAGgAAABYxMC4wLjAuMC84LDE5Mi4xNjguMS4xAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACCIB+FKh3MLELNcVdkqXHK3KTe+sOLYheZuEBfTzvIljgAAAFMAAAALc3NoLWVkMjU1MTkAAABA8sKVFAqL0E5SexZDQiS6OWJ8UVNANkH1jH5ejwJyOf8PWyXiDPKvumHQBd2I/gkSnmbxxXJGC4b2JkmCyU1ADg== test@k_ecdsab256";
const char* kSshKeygenUserCa = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIgH4UqHcwsQs1xV2SpccrcpN76w4tiF5m4QF9PO8iWO ca-ed";
const char* kSshKeygenHostCert =
    "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIIuihKd/PGmAwDa8zeApfRjNfgMcWub2ZoQK7fAo2oqtAAAAINAOfoHU0GXoS8yIYAIaYVlRNqFbJyuMNNYsp1O/F2Za//////////8AAAACAAAABmhvc3QtMQAAABQAAAAQaG9zdC5leGFtcGxlLmNvbQAAAAAAAAAA//////////8AAAAAAAAAAAAAAAAAAACIAAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBFkrJB4syoXRXdV/RzerZYwMfp3PnWLN9IYWzwI7qoooDkkKF1pbj44Gm5h+wzBebmBaEI9vYNjGlYxtIexWzvygOZWnfHK44royXldLVKzNI3ArCu1yhZAEiN/u1wrc1gAAAIQAAAATZWNkc2Etc2hhMi1uaXN0cDM4NAAAAGkAAAAxAK/sTlZFCL4eP9Yww1UaspH7AdZQkcXxB8tInYTeCbUIfEtt5FUkvlRwxI4dTug30AAAADATseNpFXvGGESMAvXz0TwzIXuMEbovSjuzEMLOWp573NlNV91JKXimcKsftNas+gE= test@k_ed25519";
const char* kSshKeygenHostCa =
    "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBFkrJB4syoXRXdV/RzerZYwMfp3PnWLN9IYWzwI7qoooDkkKF1pbj44Gm5h+wzBebmBaEI9vYNjGlYxtIexWzvygOZWnfHK44royXldLVKzNI3ArCu1yhZAEiN/u1wrc1g== ca-ec";

TEST(Certificate, ParsesWhatSshKeygenSigned) {
  ParsedCertificate user = parse_certificate_line(kSshKeygenUserCert);
  EXPECT_EQ(user.fields.subject.blob, parse_public_key_line(kKnownKeys[1].line).blob);
  EXPECT_EQ(user.fields.subject.comment, "test@k_ecdsab256");
  EXPECT_EQ(user.fields.nonce.size(), 32U);
  EXPECT_EQ(user.fields.serial, 77U);
  EXPECT_EQ(user.fields.type, CertificateType::User);
  EXPECT_EQ(user.fields.key_id, "alice@example");
  EXPECT_EQ(user.fields.principals, (std::vector<std::string>{"alice", "root"}));
  EXPECT_EQ(user.fields.valid_after, 1893456000U);
  EXPECT_EQ(user.fields.valid_before, 1893542400U);
  EXPECT_EQ(user.fields.critical_options, (std::vector<std::pair<std::string, std::string>>{
                                              {"force-command", "/usr/bin/id"},
                                              {"source-address", "10.0.0.0/8,192.168.1.1"}}));
  EXPECT_EQ(user.fields.extensions,
            (std::vector<std::string>{"permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding",
                                      "permit-pty", "permit-user-rc"}));
  EXPECT_EQ(user.ca_key_blob, parse_public_key_line(kSshKeygenUserCa).blob);
  EXPECT_EQ(user.signature_algorithm, "ssh-ed25519");
  EXPECT_TRUE(verify_certificate_signature(user));

  ParsedCertificate host = parse_certificate_line(kSshKeygenHostCert);
  EXPECT_EQ(host.fields.type, CertificateType::Host);
  EXPECT_EQ(host.fields.serial, 18446744073709551615ULL);
  EXPECT_EQ(host.fields.key_id, "host-1");
  EXPECT_EQ(host.fields.principals, (std::vector<std::string>{"host.example.com"}));
  EXPECT_EQ(host.fields.valid_after, 0U);
  EXPECT_EQ(host.fields.valid_before, kValidForever);
  EXPECT_TRUE(host.fields.critical_options.empty());
  EXPECT_TRUE(host.fields.extensions.empty());
  EXPECT_EQ(host.ca_key_blob, parse_public_key_line(kSshKeygenHostCa).blob);
  EXPECT_EQ(host.signature_algorithm, "ecdsa-sha2-nistp384");
  EXPECT_TRUE(verify_certificate_signature(host));

  // The parsed fields encode back to ssh-keygen's bytes, signature included.
  EXPECT_EQ(raw_certificate(host, {}, {}, 2, host.signature_algorithm), split_openssh_line(kSshKeygenHostCert).blob);
}

// ---------------------------------------------------------------- KRL

TEST(Krl, EncodeParseRoundTrip) {
  KrlContent krl;
  krl.version = 42;
  krl.generated_date = 1893456000;
  krl.comment = "keyhold KRL";
  krl.ca_key_blob = public_key_blob(signer("ed25519").public_key());
  krl.serials = {0xffffffffffffffffULL, 5, 1234, 5};
  krl.key_ids = {"mallory", "alice@example", "mallory"};
  krl.revoked_keys = {public_key_blob(signer("p256").public_key()), public_key_blob(signer("rsa2048").public_key())};
  Bytes encoded = encode_krl(krl);
  EXPECT_EQ(Bytes(encoded.begin(), encoded.begin() + 12), (Bytes{'S', 'S', 'H', 'K', 'R', 'L', '\n', 0, 0, 0, 0, 1}));

  KrlContent parsed = parse_krl(encoded);
  EXPECT_EQ(parsed.version, 42U);
  EXPECT_EQ(parsed.generated_date, 1893456000U);
  EXPECT_EQ(parsed.comment, "keyhold KRL");
  EXPECT_EQ(parsed.ca_key_blob, krl.ca_key_blob);
  EXPECT_EQ(parsed.serials, (std::vector<std::uint64_t>{5, 1234, 0xffffffffffffffffULL}));
  EXPECT_EQ(parsed.key_ids, (std::vector<std::string>{"alice@example", "mallory"}));
  std::vector<Bytes> keys = krl.revoked_keys;
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(parsed.revoked_keys, keys);
  // Deterministic: the same content in another order gives the same bytes.
  KrlContent shuffled = krl;
  std::reverse(shuffled.serials.begin(), shuffled.serials.end());
  std::reverse(shuffled.revoked_keys.begin(), shuffled.revoked_keys.end());
  EXPECT_EQ(encode_krl(shuffled), encoded);
}

TEST(Krl, EncodesTheSectionsOfProtocolKrl) {
  KrlContent krl;
  krl.version = 1;
  krl.ca_key_blob = public_key_blob(signer("ed25519").public_key());
  krl.serials = {7};
  krl.key_ids = {"x"};
  krl.revoked_keys = {public_key_blob(signer("p256").public_key())};
  Bytes encoded = encode_krl(krl);
  WireReader r(encoded);
  r.raw(8);
  EXPECT_EQ(r.uint32(), 1U);
  EXPECT_EQ(r.uint64(), 1U);  // version
  r.uint64();                 // date
  EXPECT_EQ(r.uint64(), 0U);  // flags
  EXPECT_TRUE(r.string().empty());
  EXPECT_EQ(r.text(), "");
  EXPECT_EQ(r.byte(), 1);  // KRL_SECTION_CERTIFICATES
  WireReader certs(r.string());
  auto ca = certs.string();
  EXPECT_EQ(Bytes(ca.begin(), ca.end()), krl.ca_key_blob);
  EXPECT_TRUE(certs.string().empty());
  EXPECT_EQ(certs.byte(), 0x20);  // KRL_SECTION_CERT_SERIAL_LIST
  auto list = certs.string();
  EXPECT_EQ(Bytes(list.begin(), list.end()), (Bytes{0, 0, 0, 0, 0, 0, 0, 7}));
  EXPECT_EQ(certs.byte(), 0x23);  // KRL_SECTION_CERT_KEY_ID
  auto ids = certs.string();
  EXPECT_EQ(Bytes(ids.begin(), ids.end()), (Bytes{0, 0, 0, 1, 'x'}));
  EXPECT_TRUE(certs.at_end());
  EXPECT_EQ(r.byte(), 2);  // KRL_SECTION_EXPLICIT_KEY
  WireReader keys(r.string());
  auto key = keys.string();
  EXPECT_EQ(Bytes(key.begin(), key.end()), krl.revoked_keys[0]);
  EXPECT_TRUE(keys.at_end());
  EXPECT_TRUE(r.at_end());

  KrlContent empty;
  Bytes header_only = encode_krl(empty);
  EXPECT_EQ(header_only.size(), 8U + 4 + 8 + 8 + 8 + 4 + 4);
  EXPECT_TRUE(parse_krl(header_only).serials.empty());
}

TEST(Krl, EncodeRefusesWhatOpenSshWouldNotLoad) {
  KrlContent krl;
  krl.ca_key_blob = public_key_blob(signer("ed25519").public_key());
  krl.serials = {0};
  EXPECT_REFUSED(encode_krl(krl), "serial 0");
  krl.serials = {1};
  krl.ca_key_blob.clear();
  EXPECT_REFUSED(encode_krl(krl), "needs the CA key");
  krl = KrlContent{};
  krl.key_ids = {"a\nb"};
  EXPECT_REFUSED(encode_krl(krl), "control character");
  krl = KrlContent{};
  krl.revoked_keys = {sign_certificate(signer("ed25519"), sample_fields())};
  EXPECT_REFUSED(encode_krl(krl), "is a certificate");
  krl = KrlContent{};
  krl.ca_key_blob = Bytes{1, 2, 3};
  krl.key_ids = {"a"};
  EXPECT_REFUSED(encode_krl(krl), "CA key");
  krl = KrlContent{};
  krl.comment = "a\x1b";
  EXPECT_REFUSED(encode_krl(krl), "control character");
}

Bytes krl_header() {
  return WireWriter().raw(Bytes{'S', 'S', 'H', 'K', 'R', 'L', '\n', 0}).uint32(1).uint64(3).uint64(4).uint64(0)
      .string(std::string_view()).string("c").bytes();
}

TEST(Krl, ParseExpandsRangesAndBitmaps) {
  Bytes ca = public_key_blob(signer("ed25519").public_key());
  WireWriter section;
  section.string(ca).string(std::string_view());
  section.byte(0x21).string(WireWriter().uint64(100).uint64(103).bytes());
  // Bitmap offset 200: bits 0, 2 and 9 -> serials 200, 202, 209 (0x0205).
  section.byte(0x22).string(WireWriter().uint64(200).mpint(Bytes{0x02, 0x05}).bytes());
  section.byte(0x20).string(WireWriter().uint64(50).uint64(101).bytes());
  section.byte(0x23).string(WireWriter().string("b").string("a").bytes());
  Bytes krl = WireWriter().raw(krl_header()).byte(1).string(section.bytes()).bytes();
  KrlContent parsed = parse_krl(krl);
  EXPECT_EQ(parsed.version, 3U);
  EXPECT_EQ(parsed.generated_date, 4U);
  EXPECT_EQ(parsed.comment, "c");
  EXPECT_EQ(parsed.ca_key_blob, ca);
  EXPECT_EQ(parsed.serials, (std::vector<std::uint64_t>{50, 100, 101, 102, 103, 200, 202, 209}));
  EXPECT_EQ(parsed.key_ids, (std::vector<std::string>{"a", "b"}));
}

TEST(Krl, ParseRefusesWhatItDoesNotRead) {
  Bytes header = krl_header();
  Bytes ca = public_key_blob(signer("ed25519").public_key());
  Bytes other_ca = public_key_blob(signer("p256").public_key());
  auto with_section = [&](std::uint8_t type, const Bytes& data) {
    return WireWriter().raw(header).byte(type).string(data).bytes();
  };
  auto cert_section = [](const Bytes& ca_blob, std::uint8_t sub, const Bytes& data) {
    return WireWriter().string(ca_blob).string(std::string_view()).byte(sub).string(data).bytes();
  };
  Bytes bad_magic = header;
  bad_magic[0] = 'X';
  EXPECT_REFUSED(parse_krl(bad_magic), "bad magic");
  Bytes bad_version = header;
  bad_version[11] = 2;
  EXPECT_REFUSED(parse_krl(bad_version), "format version 2");
  EXPECT_REFUSED(parse_krl(Bytes(header.begin(), header.end() - 2)), "truncated");
  EXPECT_REFUSED(parse_krl(with_section(5, WireWriter().string(Bytes(32, 1)).bytes())), "fingerprint");
  EXPECT_REFUSED(parse_krl(with_section(3, WireWriter().string(Bytes(20, 1)).bytes())), "fingerprint");
  EXPECT_REFUSED(parse_krl(with_section(4, WireWriter().string(ca).bytes())), "signed");
  EXPECT_REFUSED(parse_krl(with_section(9, {})), "unknown section type 9");
  EXPECT_REFUSED(parse_krl(with_section(1, cert_section(ca, 0x20, WireWriter().uint64(0).bytes()))), "serial 0");
  EXPECT_REFUSED(parse_krl(with_section(1, cert_section(ca, 0x21, WireWriter().uint64(5).uint64(4).bytes()))),
                 "ends before it starts");
  EXPECT_REFUSED(parse_krl(with_section(1, cert_section(ca, 0x21, WireWriter().uint64(1).uint64(1ULL << 40).bytes()))),
                 "more serials");
  EXPECT_REFUSED(parse_krl(with_section(1, cert_section(ca, 0x20, Bytes{0, 0, 0, 0, 0, 0, 1}))), "truncated");
  EXPECT_REFUSED(parse_krl(with_section(1, cert_section(ca, 0x23, {}))), "empty key id section");
  EXPECT_REFUSED(parse_krl(with_section(1, cert_section(ca, 0x24, {}))), "unknown certificate subsection");
  EXPECT_REFUSED(parse_krl(with_section(2, {})), "empty explicit key section");
  EXPECT_REFUSED(parse_krl(with_section(2, WireWriter().string(Bytes{1, 2}).bytes())), "revoked key");
  Bytes two_cas = WireWriter()
                      .raw(header)
                      .byte(1)
                      .string(cert_section(ca, 0x20, WireWriter().uint64(1).bytes()))
                      .byte(1)
                      .string(cert_section(other_ca, 0x20, WireWriter().uint64(2).bytes()))
                      .bytes();
  EXPECT_REFUSED(parse_krl(two_cas), "more than one CA");
  Bytes trailing = with_section(2, WireWriter().string(ca).bytes());
  trailing.push_back(1);
  EXPECT_REFUSED(parse_krl(trailing), "truncated");
}

}  // namespace
}  // namespace keyhold::ssh
