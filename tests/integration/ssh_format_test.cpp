// keyhold's SSH certificate and KRL encodings against OpenSSH's own
// ssh-keygen (Debian 12: OpenSSH 9.2), in both directions: what ssh-keygen
// signs, keyhold parses into the same fields (and, given the same CA key and
// fields, signs into the same bytes); what keyhold signs, ssh-keygen -L
// accepts (it verifies the signature while parsing) and prints as intended;
// what keyhold's KRL revokes, ssh-keygen -Q reports as revoked. No token: the
// CA keys are OpenSSL keys in memory behind a crypto::Signer.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <ctime>
#include <filesystem>
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
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace keyhold::ssh {
namespace {

using Bytes = std::vector<std::uint8_t>;
using EvpPkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using EvpMdCtxPtr = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using BignumPtr = CPtr<BIGNUM, &BN_free>;
using keyhold::testing::ProcessResult;
using keyhold::testing::read_file;
using keyhold::testing::run_process;
using keyhold::testing::TempDir;
using keyhold::testing::write_file;

EvpPkeyPtr generate(const std::string& kind) {
  EVP_PKEY* key = nullptr;
  if (kind == "ed25519") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (kind == "p256") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (kind == "p384") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
  if (kind == "p521") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
  if (kind == "rsa2048") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  if (kind == "rsa3072") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072));
  if (key == nullptr) throw std::runtime_error("cannot generate " + kind);
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
  explicit SoftwareSigner(const std::string& kind) : key_(generate(kind)), public_key_(public_half(key_.get())) {}
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
  EVP_PKEY* evp() const { return key_.get(); }
  Bytes blob() const { return public_key_blob(public_key_); }
  OpenSshPublicKey openssh(const std::string& comment = "") const {
    return parse_public_key_line(authorized_keys_line(public_key_, comment));
  }

 private:
  EvpPkeyPtr key_;
  crypto::PublicKey public_key_;
};

Bytes bn_param(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) throw std::runtime_error(std::string("no parameter ") + name);
  BignumPtr bn(raw);
  Bytes out(static_cast<std::size_t>(BN_num_bytes(bn.get())));
  BN_bn2bin(bn.get(), out.data());
  return out;
}

// The key as an unencrypted OpenSSH private key file (PROTOCOL.key:
// "openssh-key-v1", cipher and KDF "none"), so ssh-keygen -s signs with the
// very key the SoftwareSigner holds.
void write_openssh_private_key(const SoftwareSigner& signer, const std::string& path) {
  EVP_PKEY* key = signer.evp();
  Bytes public_blob = signer.blob();
  WireReader public_fields(public_blob);
  std::string type = public_fields.text();
  WireWriter secret;
  secret.uint32(0x4b455948).uint32(0x4b455948).string(type);  // check ints, equal
  if (type == "ssh-ed25519") {
    std::uint8_t seed[32], pk[32];
    std::size_t seed_length = sizeof seed, pk_length = sizeof pk;
    EVP_PKEY_get_raw_private_key(key, seed, &seed_length);
    EVP_PKEY_get_raw_public_key(key, pk, &pk_length);
    Bytes sk(seed, seed + 32);
    sk.insert(sk.end(), pk, pk + 32);
    secret.string(Bytes(pk, pk + 32)).string(sk);
  } else if (type == "ssh-rsa") {
    secret.mpint(bn_param(key, OSSL_PKEY_PARAM_RSA_N))
        .mpint(bn_param(key, OSSL_PKEY_PARAM_RSA_E))
        .mpint(bn_param(key, OSSL_PKEY_PARAM_RSA_D))
        .mpint(bn_param(key, OSSL_PKEY_PARAM_RSA_COEFFICIENT1))  // iqmp = q^-1 mod p
        .mpint(bn_param(key, OSSL_PKEY_PARAM_RSA_FACTOR1))       // p
        .mpint(bn_param(key, OSSL_PKEY_PARAM_RSA_FACTOR2));      // q
  } else {
    secret.raw(public_fields.rest()).mpint(bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY));  // curve, Q, d
  }
  secret.string("test-ca");
  for (std::uint8_t pad = 1; secret.bytes().size() % 8 != 0; ++pad) secret.byte(pad);
  WireWriter file;
  file.raw(Bytes{'o', 'p', 'e', 'n', 's', 's', 'h', '-', 'k', 'e', 'y', '-', 'v', '1', 0})
      .string("none")
      .string("none")
      .string(std::string_view())
      .uint32(1)
      .string(public_blob)
      .string(secret.bytes());
  std::string b64 = to_base64(file.bytes());
  std::string pem = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
  for (std::size_t i = 0; i < b64.size(); i += 70) pem += b64.substr(i, 70) + "\n";
  pem += "-----END OPENSSH PRIVATE KEY-----\n";
  write_file(path, pem);
  ::chmod(path.c_str(), 0600);  // ssh-keygen refuses private keys others can read
}

ProcessResult ssh_keygen(std::vector<std::string> args) {
  args.insert(args.begin(), "ssh-keygen");
  keyhold::testing::ProcessOptions options;
  options.env["TZ"] = "UTC";  // ssh-keygen -L prints validity in local time
  return run_process(args, options);
}

void must(const ProcessResult& r, const std::string& what) {
  ASSERT_EQ(r.exit_code, 0) << what << ": " << r.out << r.err;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// "TYPE BASE64" of a one-line key file, without the comment.
std::string key_part(const std::string& line) {
  std::size_t second_space = line.find(' ', line.find(' ') + 1);
  return first_line(line.substr(0, second_space));
}

// sshkey_type() names, as ssh-keygen -L prints them.
std::string printed_type(const std::string& key_type) {
  if (key_type == "ssh-ed25519") return "ED25519";
  if (key_type == "ssh-rsa") return "RSA";
  return "ECDSA";
}

struct CaCase {
  const char* kind;
  const char* signature_algorithm;
  std::vector<std::string> subject_keygen;  // ssh-keygen -t/-b for the subject of part (a)
};
const std::vector<CaCase>& ca_cases() {
  static const std::vector<CaCase> cases{
      {"ed25519", "ssh-ed25519", {"-t", "ecdsa", "-b", "256"}},
      {"p256", "ecdsa-sha2-nistp256", {"-t", "ed25519"}},
      {"p384", "ecdsa-sha2-nistp384", {"-t", "rsa", "-b", "3072"}},
      {"rsa3072", "rsa-sha2-512", {"-t", "ecdsa", "-b", "521"}},
  };
  return cases;
}

class SshFormat : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return (dir_.path() / name).string(); }
  TempDir dir_{"keyhold-ssh-format"};
};

// (a) ssh-keygen signs; keyhold parses exactly those fields, and signs the
// same fields with the same CA key into the same certificate.
TEST_F(SshFormat, SshKeygenCertificatesParseIntoTheirFields) {
  for (const CaCase& c : ca_cases()) {
    SCOPED_TRACE(c.kind);
    SoftwareSigner ca(c.kind);
    std::string ca_path = path(std::string("ca-") + c.kind);
    write_openssh_private_key(ca, ca_path);
    // ssh-keygen reads the private key file as the same key.
    ProcessResult y = ssh_keygen({"-y", "-f", ca_path});
    must(y, "ssh-keygen -y");
    ASSERT_EQ(key_part(y.out), key_part(authorized_keys_line(ca.public_key(), "")));

    std::string user = path(std::string("user-") + c.kind);
    std::vector<std::string> keygen{"-q", "-N", "", "-C", "user@test", "-f", user};
    keygen.insert(keygen.begin(), c.subject_keygen.begin(), c.subject_keygen.end());
    must(ssh_keygen(keygen), "ssh-keygen -t");

    std::uint64_t before = static_cast<std::uint64_t>(std::time(nullptr));
    must(ssh_keygen({"-s", ca_path, "-I", "id", "-n", "a,b", "-V", "+1h", "-z", "1234", "-O", "force-command=x", "-O",
                     "source-address=10.0.0.0/8", user + ".pub"}),
         "ssh-keygen -s");
    std::uint64_t after = static_cast<std::uint64_t>(std::time(nullptr));
    std::string line = first_line(read_file(user + "-cert.pub"));
    ParsedCertificate cert = parse_certificate_line(line);
    OpenSshPublicKey subject = parse_public_key_file(read_file(user + ".pub"));

    EXPECT_EQ(cert.fields.nonce.size(), 32U);
    EXPECT_EQ(cert.fields.subject.type, subject.type);
    EXPECT_EQ(cert.fields.subject.blob, subject.blob);
    EXPECT_TRUE(cert.fields.subject.key == subject.key);
    EXPECT_EQ(cert.fields.subject.comment, "user@test");
    EXPECT_EQ(cert.fields.serial, 1234U);
    EXPECT_EQ(cert.fields.type, CertificateType::User);
    EXPECT_EQ(cert.fields.key_id, "id");
    EXPECT_EQ(cert.fields.principals, (std::vector<std::string>{"a", "b"}));
    // -V +1h: from the start of the minute a minute ago (ssh-keygen backdates), to now + 1 hour.
    EXPECT_EQ(cert.fields.valid_after % 60, 0U);
    EXPECT_LE(cert.fields.valid_after, before);
    EXPECT_GE(cert.fields.valid_after + 120, before);
    EXPECT_GE(cert.fields.valid_before, before + 3600);
    EXPECT_LE(cert.fields.valid_before, after + 3600);
    EXPECT_EQ(cert.fields.critical_options, (std::vector<std::pair<std::string, std::string>>{
                                                {"force-command", "x"}, {"source-address", "10.0.0.0/8"}}));
    EXPECT_EQ(cert.fields.extensions,
              (std::vector<std::string>{"permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding",
                                        "permit-pty", "permit-user-rc"}));
    EXPECT_EQ(cert.ca_key_blob, ca.blob());
    EXPECT_EQ(cert.signature_algorithm, c.signature_algorithm);
    EXPECT_TRUE(verify_certificate_signature(cert));

    // Same fields, same CA key: keyhold's certificate.
    Bytes ours = sign_certificate(ca, cert.fields);
    ParsedCertificate ours_parsed = parse_certificate(ours);
    EXPECT_EQ(ours_parsed.signed_bytes, cert.signed_bytes);
    EXPECT_TRUE(verify_certificate_signature(ours_parsed));
    if (std::string(c.kind) == "ed25519" || std::string(c.kind) == "rsa3072") {
      // Ed25519 and RSA PKCS#1 v1.5 signatures are deterministic: byte for byte ssh-keygen's certificate.
      EXPECT_EQ(certificate_line(ours, "user@test"), line);
    }
  }
}

struct Printout {
  std::string text;
  int exit_code;
};

Printout ssh_keygen_list(const std::string& file) {
  ProcessResult r = ssh_keygen({"-L", "-f", file});
  return {r.out + r.err, r.exit_code};
}

// (b) keyhold signs; ssh-keygen -L verifies the signature while loading the
// certificate and prints every field as keyhold meant it.
TEST_F(SshFormat, SshKeygenAcceptsAndPrintsWhatKeyholdSigns) {
  SoftwareSigner subject_signer("p256");
  OpenSshPublicKey subject = subject_signer.openssh();
  for (const CaCase& c : ca_cases()) {
    SoftwareSigner ca(c.kind);
    for (CertificateType type : {CertificateType::User, CertificateType::Host}) {
      bool user = type == CertificateType::User;
      SCOPED_TRACE(std::string(c.kind) + (user ? " user" : " host"));
      CertificateFields fields;
      fields.nonce = Bytes(32, 0x42);
      fields.subject = subject;
      fields.type = type;
      std::string expected_validity, expected_options, expected_extensions, expected_principals;
      if (user) {
        fields.serial = 9876543210ULL;
        fields.key_id = "alice@example.com";
        fields.principals = {"alice", "deploy"};
        fields.valid_after = 1893456000;   // 2030-01-01T00:00:00Z
        fields.valid_before = 1893542400;  // 2030-01-02T00:00:00Z
        fields.critical_options = {
            {"source-address", "10.0.0.0/8,192.168.1.1"}, {"verify-required", ""}, {"force-command", "/usr/bin/uptime"}};
        fields.extensions = {"permit-pty", "permit-X11-forwarding", "login@example.com", "permit-agent-forwarding"};
        expected_validity = "from 2030-01-01T00:00:00 to 2030-01-02T00:00:00";
        expected_principals = "\n                alice\n                deploy\n";
        expected_options =
            "\n                force-command /usr/bin/uptime\n                source-address 10.0.0.0/8,192.168.1.1\n"
            "                verify-required\n";
        expected_extensions =
            "\n                login@example.com UNKNOWN FLAG OPTION\n                permit-X11-forwarding\n"
            "                permit-agent-forwarding\n                permit-pty\n";
      } else {
        fields.serial = 42;
        fields.key_id = "web-1";
        fields.principals = {"web-1.example.com", "10.1.2.3"};
        fields.valid_after = 0;
        fields.valid_before = kValidForever;
        fields.extensions = {"hostinfo@example.com"};
        expected_validity = "forever";
        expected_principals = "\n                web-1.example.com\n                10.1.2.3\n";
        expected_options = "(none)\n";
        expected_extensions = "\n                hostinfo@example.com UNKNOWN FLAG OPTION\n";
      }
      Bytes blob = sign_certificate(ca, fields);
      std::string file = path(std::string("k-") + c.kind + (user ? "-user" : "-host") + "-cert.pub");
      write_file(file, certificate_line(blob, fields.key_id) + "\n");

      Printout p = ssh_keygen_list(file);
      ASSERT_EQ(p.exit_code, 0) << p.text;
      std::string ca_type = parse_public_key_blob(ca.blob()).type;
      std::string expected = file + ":\n" +
                             "        Type: ecdsa-sha2-nistp256-cert-v01@openssh.com " + (user ? "user" : "host") +
                             " certificate\n" +
                             "        Public key: ECDSA-CERT " + fingerprint_sha256(subject.blob) + "\n" +
                             "        Signing CA: " + printed_type(ca_type) + " " + fingerprint_sha256(ca.blob()) +
                             " (using " + c.signature_algorithm + ")\n" +
                             "        Key ID: \"" + fields.key_id + "\"\n" +
                             "        Serial: " + std::to_string(fields.serial) + "\n" +
                             "        Valid: " + expected_validity + "\n" +
                             "        Principals: " + expected_principals +
                             "        Critical Options: " + expected_options +
                             "        Extensions: " + expected_extensions;
      EXPECT_EQ(p.text, expected);

      // ssh-keygen really checks the signature: a flipped bit in it is refused.
      Bytes tampered = blob;
      tampered[tampered.size() - 5] ^= 0x01;
      std::string bad_file = path(std::string("bad-") + c.kind + (user ? "-user" : "-host") + "-cert.pub");
      write_file(bad_file, certificate_line(tampered, "tampered") + "\n");
      Printout bad = ssh_keygen_list(bad_file);
      EXPECT_NE(bad.exit_code, 0) << bad.text;
    }
  }
}

// (b) also for the subject key types: each certificate type keyhold makes loads.
TEST_F(SshFormat, SshKeygenLoadsEverySubjectKeyType) {
  SoftwareSigner ca("ed25519");
  for (const char* kind : {"ed25519", "p256", "p384", "p521", "rsa2048"}) {
    SCOPED_TRACE(kind);
    SoftwareSigner subject_signer(kind);
    CertificateFields fields;
    fields.nonce = Bytes(32, 1);
    fields.subject = subject_signer.openssh();
    fields.serial = 7;
    fields.key_id = std::string("subject-") + kind;
    fields.principals = {"someone"};
    fields.valid_before = kValidForever;
    std::string file = path(std::string("subject-") + kind + "-cert.pub");
    write_file(file, certificate_line(sign_certificate(ca, fields), "") + "\n");
    Printout p = ssh_keygen_list(file);
    ASSERT_EQ(p.exit_code, 0) << p.text;
    EXPECT_NE(p.text.find("Type: " + certificate_type_name(fields.subject.type) + " user certificate\n"),
              std::string::npos) << p.text;
    EXPECT_NE(p.text.find("Key ID: \"subject-" + std::string(kind) + "\"\n"), std::string::npos) << p.text;
  }
}

struct RevocationCase {
  std::string file;
  std::string comment;
  bool revoked;
};

// (c) keyhold's KRL, read by ssh-keygen -Q; and ssh-keygen's KRL, read by keyhold.
TEST_F(SshFormat, KrlRevokesWhatSshKeygenReportsRevoked) {
  SoftwareSigner ca("ed25519");
  SoftwareSigner other_ca("p256");
  SoftwareSigner alice("ed25519"), mallory("p256"), bob("ed25519"), carol("p384"), dave("rsa2048");
  auto certificate = [&](const SoftwareSigner& signing_ca, const SoftwareSigner& holder, std::uint64_t serial,
                         const std::string& key_id) {
    CertificateFields f;
    f.nonce = Bytes(32, 7);
    f.subject = holder.openssh();
    f.serial = serial;
    f.key_id = key_id;
    f.principals = {key_id};
    f.valid_before = kValidForever;
    std::string file = path(key_id + "-" + std::to_string(serial) + (&signing_ca == &ca ? "" : "-other") + "-cert.pub");
    write_file(file, certificate_line(sign_certificate(signing_ca, f), key_id) + "\n");
    return file;
  };
  auto plain = [&](const SoftwareSigner& holder, const std::string& name) {
    std::string file = path(name + ".pub");
    write_file(file, authorized_keys_line(holder.public_key(), name) + "\n");
    return file;
  };

  KrlContent krl;
  krl.version = 7;
  krl.generated_date = static_cast<std::uint64_t>(std::time(nullptr));
  krl.comment = "keyhold test KRL";
  krl.ca_key_blob = ca.blob();
  krl.serials = {1001, 5000};
  krl.key_ids = {"mallory"};
  krl.revoked_keys = {carol.blob()};
  std::string krl_file = path("revoked.krl");
  Bytes encoded = encode_krl(krl);
  write_file(krl_file, std::string(encoded.begin(), encoded.end()));

  std::vector<RevocationCase> cases{
      {certificate(ca, alice, 1001, "alice"), "alice", true},              // by serial
      {certificate(ca, mallory, 1002, "mallory"), "mallory", true},        // by key id
      {certificate(ca, bob, 1003, "bob"), "bob", false},                   // neither
      {certificate(ca, carol, 1004, "carol"), "carol", true},              // its key is revoked explicitly
      {certificate(other_ca, alice, 1001, "alice"), "alice", false},       // same serial, another CA
      {certificate(other_ca, mallory, 1005, "mallory"), "mallory", false}, // same key id, another CA
      {plain(carol, "carol"), "carol", true},                              // the explicitly revoked plain key
      {plain(dave, "dave"), "dave", false},
  };
  for (const RevocationCase& c : cases) {
    SCOPED_TRACE(c.file);
    ProcessResult r = ssh_keygen({"-Q", "-f", krl_file, c.file});
    EXPECT_EQ(r.exit_code, c.revoked ? 1 : 0) << r.out << r.err;
    EXPECT_EQ(r.out, c.file + " (" + c.comment + "): " + (c.revoked ? "REVOKED" : "ok") + "\n") << r.err;
  }
  // ssh-keygen's own view of the KRL header.
  ProcessResult dump = ssh_keygen({"-Q", "-l", "-f", krl_file});
  must(dump, "ssh-keygen -Q -l");
  EXPECT_NE(dump.out.find("# KRL version 7"), std::string::npos) << dump.out;
  EXPECT_NE(dump.out.find("# Comment: keyhold test KRL"), std::string::npos) << dump.out;

  // ssh-keygen -k writes a KRL (serial list, range or bitmap, key ids,
  // explicit key); keyhold reads the same revocations out of it.
  std::string ca_pub = path("ca.pub");
  write_file(ca_pub, authorized_keys_line(ca.public_key(), "ca") + "\n");
  std::string spec = path("krl.spec");
  write_file(spec, "serial: 1001\nserial: 2000-2003\nserial: 3000\nserial: 3002\nserial: 3009\n"
                   "id: mallory\nid: eve@example.com\nkey: " + authorized_keys_line(carol.public_key(), "carol") + "\n");
  std::string theirs = path("ssh-keygen.krl");
  must(ssh_keygen({"-k", "-f", theirs, "-s", ca_pub, "-z", "9", spec}), "ssh-keygen -k");
  std::string their_bytes = read_file(theirs);
  KrlContent parsed = parse_krl(Bytes(their_bytes.begin(), their_bytes.end()));
  EXPECT_EQ(parsed.version, 9U);
  EXPECT_EQ(parsed.ca_key_blob, ca.blob());
  EXPECT_EQ(parsed.serials, (std::vector<std::uint64_t>{1001, 2000, 2001, 2002, 2003, 3000, 3002, 3009}));
  EXPECT_EQ(parsed.key_ids, (std::vector<std::string>{"eve@example.com", "mallory"}));
  EXPECT_EQ(parsed.revoked_keys, (std::vector<Bytes>{carol.blob()}));
  // Re-encoded by keyhold, it still revokes the same certificates for ssh-keygen.
  Bytes reencoded = encode_krl(parsed);
  std::string reencoded_file = path("reencoded.krl");
  write_file(reencoded_file, std::string(reencoded.begin(), reencoded.end()));
  EXPECT_EQ(ssh_keygen({"-Q", "-f", reencoded_file, cases[0].file}).exit_code, 1);
  EXPECT_EQ(ssh_keygen({"-Q", "-f", reencoded_file, cases[2].file}).exit_code, 0);
  EXPECT_EQ(ssh_keygen({"-Q", "-f", reencoded_file, certificate(ca, bob, 2002, "bob")}).exit_code, 1);
}

}  // namespace
}  // namespace keyhold::ssh
