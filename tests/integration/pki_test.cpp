// The X.509 CA end to end through the keyhold command, checked by
// implementations that did not produce the bytes: openssl verify / crl /
// s_server + s_client, GnuTLS certtool, and Botan 2's path validation.
#include <botan/certstor.h>
#include <botan/x509path.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <thread>

#include "support/dev_setup.hpp"
#include "support/process.hpp"

namespace keyhold {
namespace {

namespace fs = std::filesystem;
using testing::expect_one_error_line;
using testing::keyhold;
using testing::keyhold_json;
using testing::path_in_setup;
using testing::ProcessResult;
using testing::read_file;
using testing::run_process;
using testing::write_file;

void must(const ProcessResult& r, const std::string& what) {
  ASSERT_EQ(r.exit_code, 0) << what << ": " << r.out << r.err;
}

// A key and CSR made by openssl, the way a service would ask for a certificate.
std::string make_csr(const std::string& name, const std::string& key_algorithm, const std::string& subject,
                     const std::vector<std::string>& extra = {}) {
  std::string key = path_in_setup(name + ".key"), csr = path_in_setup(name + ".csr");
  std::vector<std::string> argv = {"openssl", "req", "-new", "-nodes", "-keyout", key, "-subj", subject, "-out", csr};
  if (key_algorithm == "ed25519") {
    argv.insert(argv.end(), {"-newkey", "ed25519"});
  } else if (key_algorithm.rfind("rsa:", 0) == 0) {
    argv.insert(argv.end(), {"-newkey", key_algorithm});
  } else {
    argv.insert(argv.end(), {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:" + key_algorithm});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  ProcessResult r = run_process(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return csr;
}

std::string chain_file(const std::string& ca, const std::string& file, std::optional<int> version = std::nullopt) {
  std::vector<std::string> args = {"ca", "chain", ca, "--out", path_in_setup(file)};
  if (version) args.insert(args.end(), {"--version", std::to_string(*version)});
  ProcessResult r = keyhold(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return path_in_setup(file);
}

// The first certificate of a PEM file (the issuing CA of a chain file).
std::string first_certificate(const std::string& pem_file, const std::string& out) {
  std::string text = read_file(pem_file);
  std::string end = "-----END CERTIFICATE-----\n";
  write_file(path_in_setup(out), text.substr(0, text.find(end) + end.size()));
  return path_in_setup(out);
}

std::string root_of(const std::string& chain, const std::string& out) {
  std::string text = read_file(chain);
  write_file(path_in_setup(out), text.substr(text.rfind("-----BEGIN CERTIFICATE-----")));
  return path_in_setup(out);
}

ProcessResult openssl_verify(const std::string& root, const std::string& untrusted, const std::string& leaf,
                             std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {"openssl", "verify", "-x509_strict", "-CAfile", root, "-untrusted", untrusted};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(leaf);
  return run_process(argv);
}

int count_certificates(const std::string& ca) {
  return static_cast<int>(keyhold_json({"ca", "certs", "--ca", ca}).size());
}

bool botan_validates(const std::string& root, const std::string& intermediate, const std::string& leaf,
                     const std::string& hostname) {
  Botan::Certificate_Store_In_Memory trusted;
  trusted.add_certificate(Botan::X509_Certificate(root));
  std::vector<Botan::X509_Certificate> chain = {Botan::X509_Certificate(leaf), Botan::X509_Certificate(intermediate)};
  Botan::Path_Validation_Restrictions restrictions(false, 110);
  Botan::Path_Validation_Result result =
      Botan::x509_path_validate(chain, restrictions, trusted, hostname, Botan::Usage_Type::TLS_SERVER_AUTH);
  if (!result.successful_validation()) ADD_FAILURE() << "Botan: " << result.result_string();
  return result.successful_validation();
}

struct CaCase {
  std::string root_type, intermediate_type, leaf_key;
};

class ChainOfKeyTypes : public ::testing::TestWithParam<CaCase> {};

TEST_P(ChainOfKeyTypes, VerifiesWithOpenSslGnuTlsAndBotan) {
  const CaCase& c = GetParam();
  std::string tag = c.root_type + "-" + c.intermediate_type;
  std::string root = "root-" + tag, issuing = "issuing-" + tag;
  must(keyhold({"ca", "init-root", root, "--key-type", c.root_type, "--subject", "CN=Root " + tag + ",O=keyhold tests,C=DE"}), "init-root");
  must(keyhold({"ca", "init-intermediate", issuing, "--parent", root, "--key-type", c.intermediate_type, "--subject",
                "CN=Issuing " + tag + ",O=keyhold tests", "--path-len", "0"}),
       "init-intermediate");
  std::string host = "www-" + tag + ".example.test";
  std::string csr = make_csr("leaf-" + tag, c.leaf_key, "/CN=" + host);
  std::string leaf = path_in_setup("leaf-" + tag + ".pem"), chain = path_in_setup("chain-" + tag + ".pem");
  must(keyhold({"ca", "issue", "--ca", issuing, "--profile", "server", "--csr", csr, "--out", leaf, "--chain-out", chain}),
       "issue");
  std::string root_pem = root_of(chain, "root-" + tag + ".pem");
  std::string intermediate = first_certificate(chain, "int-" + tag + ".pem");

  ProcessResult v = openssl_verify(root_pem, chain, leaf, {"-purpose", "sslserver", "-verify_hostname", host});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find(": OK"), std::string::npos) << v.out;

  // GnuTLS: the leaf and intermediate, anchored at the root only.
  write_file(path_in_setup("full-" + tag + ".pem"), read_file(leaf) + read_file(intermediate));
  ProcessResult g = run_process({"certtool", "--verify", "--load-ca-certificate", root_pem, "--infile",
                                 path_in_setup("full-" + tag + ".pem"), "--verify-hostname", host});
  EXPECT_EQ(g.exit_code, 0) << g.out << g.err;
  EXPECT_NE(g.out.find("Chain verification output: Verified."), std::string::npos) << g.out;

  EXPECT_TRUE(botan_validates(root_pem, intermediate, leaf, host));
  // A wrong name does not pass: the checks above really check.
  EXPECT_NE(openssl_verify(root_pem, chain, leaf, {"-verify_hostname", "other.example.test"}).exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, ChainOfKeyTypes,
                         ::testing::Values(CaCase{"ec-p384", "ec-p256", "P-256"}, CaCase{"rsa-3072", "rsa-2048", "rsa:2048"},
                                           CaCase{"ec-p256", "rsa-2048", "ed25519"}, CaCase{"ed25519", "ed25519", "P-384"}),
                         [](const auto& info) {
                           std::string n = info.param.root_type + "_" + info.param.intermediate_type;
                           for (char& ch : n) ch = ch == '-' ? '_' : ch;
                           return n;
                         });

// One root and intermediate shared by the tests below.
struct Pki {
  std::string root_pem, chain_pem, intermediate_pem;
  static Pki& get() {
    static Pki* pki = [] {
      auto* p = new Pki;
      EXPECT_EQ(keyhold({"ca", "init-root", "root", "--key-type", "ec-p384", "--subject", "CN=Shared Root"}).exit_code, 0);
      EXPECT_EQ(keyhold({"ca", "init-intermediate", "issuing", "--parent", "root", "--key-type", "ec-p256", "--subject",
                         "CN=Shared Issuing"})
                    .exit_code,
                0);
      p->chain_pem = chain_file("issuing", "shared-chain.pem");
      p->root_pem = root_of(p->chain_pem, "shared-root.pem");
      p->intermediate_pem = first_certificate(p->chain_pem, "shared-int.pem");
      return p;
    }();
    return *pki;
  }
};

std::string issue(const std::string& name, const std::string& host, std::vector<std::string> extra = {}) {
  std::string csr = make_csr(name, "P-256", "/CN=" + host);
  std::string out = path_in_setup(name + ".pem");
  std::vector<std::string> args = {"ca", "issue", "--ca", "issuing", "--profile", "server", "--csr", csr, "--out", out};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = keyhold(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return out;
}

std::string serial_of(const std::string& pem) {
  ProcessResult r = run_process({"openssl", "x509", "-in", pem, "-noout", "-serial"});
  std::string serial = r.out.substr(r.out.find('=') + 1);
  while (!serial.empty() && (serial.back() == '\n')) serial.pop_back();
  for (char& ch : serial) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  // keyhold writes serials without leading zeros; openssl prints whole bytes.
  return serial.substr(std::min(serial.find_first_not_of('0'), serial.size() - 1));
}

TEST(Issue, CertificateHasTheProfilesExtensionsNotTheCsrs) {
  Pki& pki = Pki::get();
  // The CSR asks for a CA certificate that may sign code: keyhold ignores all of it.
  std::string csr = make_csr("greedy", "P-256", "/CN=greedy.example.test/O=Greedy",
                             {"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                              "-addext", "extendedKeyUsage=codeSigning", "-addext", "subjectAltName=DNS:greedy.example.test"});
  std::string out = path_in_setup("greedy.pem");
  ProcessResult r = keyhold({"ca", "issue", "--ca", "issuing", "--profile", "server", "--csr", csr, "--out", out, "--days", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ProcessResult text = run_process({"openssl", "x509", "-in", out, "-noout", "-text"});
  EXPECT_NE(text.out.find("CA:FALSE"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("Certificate Sign"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("Code Signing"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("TLS Web Server Authentication"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("DNS:greedy.example.test"), std::string::npos) << text.out;

  // Serial: 16 bytes, positive (first byte below 0x80), from the token's RNG.
  std::string serial = serial_of(out);
  EXPECT_GE(serial.size(), 30u) << serial;
  EXPECT_LE(serial.size(), 32u) << serial;
  EXPECT_TRUE(serial.size() < 32 || serial[0] < '8') << serial;
  // notBefore is a minute in the past; notAfter 30 days on.
  ProcessResult dates = run_process({"openssl", "x509", "-in", out, "-noout", "-startdate", "-enddate", "-dateopt", "iso_8601"});
  ASSERT_EQ(dates.exit_code, 0) << dates.err;
  EXPECT_EQ(openssl_verify(pki.root_pem, pki.chain_pem, out).exit_code, 0);
  // Recorded before it was returned.
  bool recorded = false;
  nlohmann::json certs = keyhold_json({"ca", "certs", "--ca", "issuing"});
  for (const auto& c : certs) recorded = recorded || c["serial"] == serial;
  EXPECT_TRUE(recorded);
}

TEST(Issue, ACertificateWithItsKeyInTheToken) {
  Pki::get();
  ProcessResult r = keyhold({"--json", "ca", "issue", "--ca", "issuing", "--profile", "client", "--generate-key", "--key-type",
                             "ec-p256", "--cn", "service-a", "--san", "uri:spiffe://example.test/service-a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json issued = nlohmann::json::parse(r.out);
  std::string uri = issued["key_uri"];
  EXPECT_EQ(uri.rfind("pkcs11:", 0), 0u);
  EXPECT_NE(uri.find("type=private"), std::string::npos);
  write_file(path_in_setup("service-a.pem"), issued["certificate"]);
  // The certificate's key is the token key keyhold recorded for it.
  std::string key_name;
  nlohmann::json keys = keyhold_json({"key", "list"});
  for (const auto& k : keys["keys"]) {
    if (k.contains("uri") && k["uri"] == uri) key_name = k["name"];
  }
  ASSERT_FALSE(key_name.empty());
  ProcessResult pub = keyhold({"key", "public", key_name});
  ProcessResult cert_pub = run_process({"openssl", "x509", "-in", path_in_setup("service-a.pem"), "-noout", "-pubkey"});
  EXPECT_EQ(pub.out, cert_pub.out);
  // It is in use: key destroy refuses (exit 5) and says by what.
  ProcessResult destroy = keyhold({"key", "destroy", key_name, "--yes"});
  EXPECT_EQ(destroy.exit_code, 5);
  expect_one_error_line(destroy);
  EXPECT_NE(destroy.err.find("certificate:" + std::string(issued["serial"])), std::string::npos) << destroy.err;
}

TEST(Tls, OpensslClientTrustingOnlyTheRootCompletesAHandshakeWithAnIssuedCertificate) {
  Pki& pki = Pki::get();
  std::string host = "tls.example.test";
  std::string cert = issue("tls", host);
  std::string key = path_in_setup("tls.key");
  int port = 20000 + static_cast<int>(::getpid() % 20000);
  pid_t server = ::fork();
  ASSERT_GE(server, 0);
  if (server == 0) {
    ::freopen("/dev/null", "w", stdout);
    ::freopen("/dev/null", "w", stderr);
    ::execlp("openssl", "openssl", "s_server", "-accept", std::to_string(port).c_str(), "-cert", cert.c_str(), "-key",
             key.c_str(), "-cert_chain", pki.intermediate_pem.c_str(), "-tls1_3", "-naccept", "1", "-quiet",
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ProcessResult client;
  for (int attempt = 0; attempt < 50; ++attempt) {
    testing::ProcessOptions o;
    o.input = "Q\n";
    client = run_process({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port), "-tls1_3",
                          "-CAfile", pki.root_pem, "-verify_return_error", "-verify_hostname", host, "-servername", host},
                         o);
    if (client.err.find("connect:errno") == std::string::npos && client.out.find("Connection refused") == std::string::npos &&
        client.err.find("Connection refused") == std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(server, SIGTERM);
  ::waitpid(server, nullptr, 0);
  EXPECT_EQ(client.exit_code, 0) << client.out << client.err;
  EXPECT_NE(client.out.find("Verification: OK"), std::string::npos) << client.out;
  EXPECT_NE(client.out.find("TLSv1.3"), std::string::npos) << client.out;
}

TEST(Revocation, ARevokedCertificateIsRejectedByOpensslWithTheCrl) {
  Pki& pki = Pki::get();
  std::string revoked = issue("revoked", "revoked.example.test");
  std::string kept = issue("kept", "kept.example.test");
  std::string serial = serial_of(revoked);
  ProcessResult r = keyhold({"ca", "revoke", "--ca", "issuing", "--serial", serial, "--reason", "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Twice: an error that says when.
  r = keyhold({"ca", "revoke", "--ca", "issuing", "--serial", serial});
  EXPECT_EQ(r.exit_code, 1);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("already revoked at"), std::string::npos) << r.err;

  std::string crl = path_in_setup("issuing.crl");
  ASSERT_EQ(keyhold({"ca", "crl", "--ca", "issuing", "--out", crl}).exit_code, 0);
  ProcessResult check = run_process({"openssl", "crl", "-in", crl, "-CAfile", pki.intermediate_pem, "-noout", "-text"});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.err.find("verify OK"), std::string::npos) << check.err;
  EXPECT_NE(check.out.find("Key Compromise"), std::string::npos) << check.out;
  std::smatch number;
  ASSERT_TRUE(std::regex_search(check.out, number, std::regex("CRL Number: *\\n *([0-9]+)")));
  int first_number = std::stoi(number[1]);

  ProcessResult bad = openssl_verify(pki.root_pem, pki.chain_pem, revoked, {"-crl_check", "-CRLfile", crl});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.out.find("certificate revoked") + bad.err.find("certificate revoked"), 2 * std::string::npos) << bad.out << bad.err;
  EXPECT_EQ(openssl_verify(pki.root_pem, pki.chain_pem, kept, {"-crl_check", "-CRLfile", crl}).exit_code, 0);

  // The next CRL's number is one more.
  ASSERT_EQ(keyhold({"ca", "crl", "--ca", "issuing", "--out", crl}).exit_code, 0);
  check = run_process({"openssl", "crl", "-in", crl, "-noout", "-text"});
  ASSERT_TRUE(std::regex_search(check.out, number, std::regex("CRL Number: *\\n *([0-9]+)")));
  EXPECT_EQ(std::stoi(number[1]), first_number + 1);
  // DER output too.
  ASSERT_EQ(keyhold({"ca", "crl", "--ca", "issuing", "--der", "--out", crl + ".der"}).exit_code, 0);
  EXPECT_EQ(run_process({"openssl", "crl", "-inform", "DER", "-in", crl + ".der", "-noout"}).exit_code, 0);
}

TEST(NameConstraints, AreEnforcedByOpenssl) {
  Pki& pki = Pki::get();
  ASSERT_EQ(keyhold({"ca", "init-intermediate", "constrained", "--parent", "root", "--key-type", "ec-p256", "--subject",
                     "CN=Constrained", "--permitted-dns", ".allowed.test"})
                .exit_code,
            0);
  std::string chain = chain_file("constrained", "constrained-chain.pem");
  std::string inside = path_in_setup("inside.pem");
  ProcessResult r = keyhold({"ca", "issue", "--ca", "constrained", "--profile", "server", "--csr",
                             make_csr("inside", "P-256", "/CN=www.allowed.test"), "--out", inside});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(openssl_verify(pki.root_pem, chain, inside).exit_code, 0);

  // keyhold refuses, before signing, what clients would refuse.
  testing::ProcessOptions trace;
  trace.env["KEYHOLD_LOG"] = "trace";
  int before = count_certificates("constrained");
  ProcessResult refused = keyhold({"ca", "issue", "--ca", "constrained", "--profile", "server", "--csr",
                                   make_csr("outside", "P-256", "/CN=www.elsewhere.test"), "--out", path_in_setup("outside.pem")},
                                  trace);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("outside the name constraints"), std::string::npos) << refused.err;
  EXPECT_EQ(refused.err.find("pkcs11 C_Sign "), std::string::npos) << "signed although refused";
  EXPECT_EQ(count_certificates("constrained"), before);
  EXPECT_FALSE(fs::exists(path_in_setup("outside.pem")));

}

TEST(Rotation, BothVersionsVerifyTheNewChainIsServedAndTheOldCrlStillWorks) {
  Pki& pki = Pki::get();
  ASSERT_EQ(keyhold({"ca", "init-intermediate", "rotating", "--parent", "root", "--key-type", "ec-p256", "--subject",
                     "CN=Rotating"})
                .exit_code,
            0);
  auto issue_under = [&](const std::string& name) {
    std::string out = path_in_setup(name + ".pem");
    ProcessResult r = keyhold({"ca", "issue", "--ca", "rotating", "--profile", "server", "--csr",
                               make_csr(name, "P-256", "/CN=" + name + ".example.test"), "--out", out});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out;
  };
  std::string old_leaf = issue_under("before-rotation");
  std::string old_chain = chain_file("rotating", "rotating-v1.pem");
  std::string first_crl = path_in_setup("rotating-first.crl");
  ASSERT_EQ(keyhold({"ca", "crl", "--ca", "rotating", "--out", first_crl}).exit_code, 0);
  ProcessResult rotated = keyhold({"--json", "ca", "rotate", "rotating"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  nlohmann::json ca = nlohmann::json::parse(rotated.out);
  ASSERT_EQ(ca["versions"].size(), 2u);
  EXPECT_EQ(ca["versions"][0]["state"], "retired");
  EXPECT_EQ(ca["versions"][1]["state"], "active");
  EXPECT_NE(ca["versions"][0]["subject_key_id"], ca["versions"][1]["subject_key_id"]);
  EXPECT_EQ(ca["versions"][0]["subject"], ca["versions"][1]["subject"]);

  std::string new_leaf = issue_under("after-rotation");
  std::string new_chain = chain_file("rotating", "rotating-v2.pem");
  EXPECT_NE(read_file(old_chain), read_file(new_chain)) << "the new chain is served";
  EXPECT_EQ(read_file(chain_file("rotating", "rotating-v1-again.pem", 1)), read_file(old_chain));
  EXPECT_EQ(openssl_verify(pki.root_pem, new_chain, new_leaf).exit_code, 0);
  EXPECT_EQ(openssl_verify(pki.root_pem, old_chain, old_leaf).exit_code, 0);
  EXPECT_NE(openssl_verify(pki.root_pem, new_chain, old_leaf).exit_code, 0) << "the old leaf is not under the new key";

  // The old version keeps signing CRLs for what it issued.
  ProcessResult revoked = keyhold({"ca", "revoke", "--ca", "rotating", "--serial", serial_of(old_leaf), "--reason", "superseded"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.err;
  EXPECT_NE(revoked.out.find("keyhold ca crl --ca rotating --version 1"), std::string::npos) << revoked.out;
  std::string old_crl = path_in_setup("rotating-v1.crl"), new_crl = path_in_setup("rotating-v2.crl");
  ASSERT_EQ(keyhold({"ca", "crl", "--ca", "rotating", "--version", "1", "--out", old_crl}).exit_code, 0);
  ASSERT_EQ(keyhold({"ca", "crl", "--ca", "rotating", "--out", new_crl}).exit_code, 0);
  ProcessResult v1 = run_process({"openssl", "crl", "-in", old_crl, "-CAfile", first_certificate(old_chain, "rot-v1.pem"), "-noout", "-text"});
  EXPECT_NE(v1.err.find("verify OK"), std::string::npos) << v1.err;
  EXPECT_NE(v1.out.find("Superseded"), std::string::npos);
  EXPECT_NE(openssl_verify(pki.root_pem, old_chain, old_leaf, {"-crl_check", "-CRLfile", old_crl}).exit_code, 0);
  EXPECT_EQ(openssl_verify(pki.root_pem, new_chain, new_leaf, {"-crl_check", "-CRLfile", new_crl}).exit_code, 0);

  // One issuer name, one increasing sequence of CRL numbers across both versions (RFC 5280 5.2.3).
  auto crl_number = [](const std::string& file) {
    std::smatch m;
    std::string text = run_process({"openssl", "crl", "-in", file, "-noout", "-crlnumber"}).out;
    EXPECT_TRUE(std::regex_search(text, m, std::regex("crlNumber=0x([0-9A-Fa-f]+)"))) << text;
    return std::stoi(m[1], nullptr, 16);
  };
  EXPECT_LT(crl_number(first_crl), crl_number(old_crl));
  EXPECT_LT(crl_number(old_crl), crl_number(new_crl));
}

TEST(CaCertificates, AnIntermediateIsRevokedByItsParentAndThenIssuesNothing) {
  Pki& pki = Pki::get();
  ASSERT_EQ(keyhold({"ca", "init-intermediate", "doomed", "--parent", "root", "--key-type", "ec-p256", "--subject", "CN=Doomed"}).exit_code, 0);
  // A CA below it, with the default lifetime: it ends with its parent rather than failing.
  ProcessResult below = keyhold({"ca", "init-intermediate", "below-doomed", "--parent", "doomed", "--key-type", "ec-p256",
                                 "--subject", "CN=Below Doomed"});
  ASSERT_EQ(below.exit_code, 0) << below.err;
  std::string chain = chain_file("doomed", "doomed-chain.pem");
  std::string leaf = path_in_setup("doomed-leaf.pem");
  must(keyhold({"ca", "issue", "--ca", "doomed", "--profile", "server", "--csr", make_csr("doomed-leaf", "P-256", "/CN=d.example.test"),
                "--out", leaf}),
       "issue");
  // The root recorded the intermediate's certificate when it signed it.
  std::string intermediate_serial = serial_of(first_certificate(chain, "doomed-int.pem"));
  bool listed = false;
  nlohmann::json root_certs = keyhold_json({"ca", "certs", "--ca", "root"});
  for (const auto& c : root_certs) listed = listed || c["serial"] == intermediate_serial;
  EXPECT_TRUE(listed);
  ASSERT_EQ(keyhold({"ca", "revoke", "--ca", "root", "--serial", intermediate_serial, "--reason", "cACompromise"}).exit_code, 0);

  std::string root_crl = path_in_setup("root.crl"), doomed_crl = path_in_setup("doomed.crl");
  ASSERT_EQ(keyhold({"ca", "crl", "--ca", "root", "--out", root_crl}).exit_code, 0);
  ASSERT_EQ(keyhold({"ca", "crl", "--ca", "doomed", "--out", doomed_crl}).exit_code, 0);
  write_file(path_in_setup("all.crl"), read_file(root_crl) + read_file(doomed_crl));
  ProcessResult v = openssl_verify(pki.root_pem, chain, leaf, {"-crl_check_all", "-CRLfile", path_in_setup("all.crl")});
  EXPECT_NE(v.exit_code, 0);
  EXPECT_NE((v.out + v.err).find("certificate revoked"), std::string::npos) << v.out << v.err;

  ProcessResult r = keyhold({"ca", "issue", "--ca", "doomed", "--profile", "server", "--csr",
                             make_csr("after", "P-256", "/CN=after.example.test")});
  EXPECT_EQ(r.exit_code, 1);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("was revoked"), std::string::npos) << r.err;
  // Nor does anything below it: not the CA under it, nor a new CA under it.
  r = keyhold({"ca", "issue", "--ca", "below-doomed", "--profile", "server", "--csr",
               make_csr("after-below", "P-256", "/CN=after-below.example.test")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is below a CA certificate"), std::string::npos) << r.err;
  r = keyhold({"ca", "init-intermediate", "under-revoked", "--parent", "doomed", "--key-type", "ec-p256", "--subject", "CN=x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("was revoked"), std::string::npos) << r.err;
}

TEST(Issue, AnOutputFileThatCannotBeWrittenFailsBeforeAnythingIsSigned) {
  Pki::get();
  int before = count_certificates("issuing");
  testing::ProcessOptions trace;
  trace.env["KEYHOLD_LOG"] = "trace";
  ProcessResult r = keyhold({"ca", "issue", "--ca", "issuing", "--profile", "server", "--csr",
                             make_csr("nowhere", "P-256", "/CN=nowhere.example.test"), "--out", "/nonexistent/dir/cert.pem"},
                            trace);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot write /nonexistent/dir/cert.pem"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("pkcs11 C_Sign "), std::string::npos);
  r = keyhold({"ca", "issue", "--ca", "issuing", "--profile", "server", "--csr",
               make_csr("into-dir", "P-256", "/CN=into-dir.example.test"), "--out", testing::DevSetup::get().dir.string()},
              trace);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("it is a directory"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("pkcs11 C_Sign "), std::string::npos);
  EXPECT_EQ(count_certificates("issuing"), before);

  // A recorded certificate can always be printed again.
  std::string pem = issue("again", "again.example.test");
  ProcessResult again = keyhold({"ca", "cert", "--ca", "issuing", "--serial", serial_of(pem)});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, read_file(pem));
}

TEST(BadInput, GetsOneLineTheDocumentedStatusAndNothingIsStoredOrSigned) {
  Pki::get();
  // A profile that allows little, appended to the configuration.
  std::string config = read_file(testing::DevSetup::get().config.string()) +
                       "\n[profiles.narrow]\ndns = [\"*.example.test\"]\nkey_types = [\"ec-p256\", \"rsa\"]\nmax_days = 30\n";
  std::string narrow_config = path_in_setup("narrow.toml");
  write_file(narrow_config, config);

  std::string good = make_csr("good", "P-256", "/CN=ok.example.test");
  std::string outside = make_csr("outside-profile", "P-256", "/CN=www.example.org");
  std::string rsa1024 = make_csr("rsa1024", "rsa:1024", "/CN=small.example.test");
  std::string p521 = make_csr("p521", "secp521r1", "/CN=big.example.test");
  std::string garbage = path_in_setup("garbage.csr");
  write_file(garbage, "-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all\n-----END CERTIFICATE REQUEST-----\n");
  std::string der_garbage = path_in_setup("garbage.der");
  write_file(der_garbage, std::string("\x30\x82\x01\x00\x02\x01", 6));
  // A CSR whose signature does not verify: one bit of the signature flipped.
  std::string tampered = path_in_setup("tampered.csr");
  {
    ProcessResult der = run_process({"openssl", "req", "-in", good, "-outform", "DER"});
    std::string bytes = der.out;
    bytes[bytes.size() - 5] = static_cast<char>(bytes[bytes.size() - 5] ^ 0x01);
    write_file(tampered, bytes);
  }
  std::string huge = path_in_setup("huge.csr");
  write_file(huge, std::string(70 * 1024, 'A'));

  ASSERT_EQ(keyhold({"ca", "init-intermediate", "short-lived", "--parent", "root", "--key-type", "ec-p256", "--subject",
                     "CN=Short Lived", "--days", "10"})
                .exit_code,
            0);
  int before = count_certificates("issuing") + count_certificates("short-lived");
  struct Case {
    std::vector<std::string> args;
    int status;
    std::string says;
  };
  auto issue_args = [&](const std::string& csr, const std::string& profile) {
    return std::vector<std::string>{"--config", narrow_config, "ca", "issue", "--ca", "issuing", "--profile", profile, "--csr", csr};
  };
  std::vector<Case> cases = {
      {issue_args(garbage, "narrow"), 2, "malformed PEM certificate request"},
      {issue_args(der_garbage, "narrow"), 2, "not a certificate request"},
      {issue_args(tampered, "narrow"), 2, "does not verify"},
      {issue_args(outside, "narrow"), 2, "www.example.org"},
      {issue_args(rsa1024, "narrow"), 2, "1024"},
      {issue_args(p521, "narrow"), 2, "521"},
      {issue_args(huge, "narrow"), 2, "64 KiB"},
      {issue_args(good, "no-such-profile"), 4, "no profile named 'no-such-profile'"},
      {{"ca", "issue", "--ca", "no-such-ca", "--profile", "server", "--csr", good}, 4, "no CA named 'no-such-ca'"},
      {[&] { auto a = issue_args(good, "narrow"); a.insert(a.end(), {"--days", "31"}); return a; }(), 2, "31"},
      {{"ca", "issue", "--ca", "short-lived", "--profile", "server", "--csr", good, "--days", "30"}, 2, "expires"},
      {{"ca", "issue", "--ca", "issuing", "--profile", "server", "--generate-key", "--key-type", "ec-p256", "--cn",
        std::string("bad\x01name")},
       2, "control character"},
      {{"ca", "issue", "--ca", "issuing", "--profile", "server"}, 2, "--csr"},
      {{"ca", "revoke", "--ca", "issuing", "--serial", "0123456789abcdef"}, 4, "no certificate with serial"},
      {{"ca", "revoke", "--ca", "issuing", "--serial", "xyz"}, 2, "not a certificate serial"},
      {{"ca", "init-root", "bad-root", "--key-type", "ec-p256", "--subject", std::string("CN=bad\x02root")}, 2, "control character"},
      {{"ca", "init-root", "bad-root", "--key-type", "ec-p256", "--subject", "XX=nope"}, 2, "not one keyhold writes"},
      {{"ca", "init-root", "bad-root", "--key-type", "aes-256", "--subject", "CN=x"}, 2, "signing key type"},
      {{"ca", "init-root", "root", "--key-type", "ec-p256", "--subject", "CN=again"}, 1, "exists already"},
      {{"ca", "init-intermediate", "bad-int", "--parent", "nope", "--key-type", "ec-p256", "--subject", "CN=x"}, 4, "no CA named 'nope'"},
  };
  testing::ProcessOptions trace;
  trace.env["KEYHOLD_LOG"] = "trace";
  for (const Case& c : cases) {
    ProcessResult r = keyhold(c.args);
    EXPECT_EQ(r.exit_code, c.status) << c.says << ": " << r.err;
    expect_one_error_line(r);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    // Nothing was signed: the token never saw a C_Sign.
    ProcessResult traced = keyhold(c.args, trace);
    EXPECT_EQ(traced.err.find("pkcs11 C_Sign "), std::string::npos) << c.says << " reached the token: " << traced.err;
  }
  EXPECT_EQ(count_certificates("issuing") + count_certificates("short-lived"), before);
  ProcessResult cas = keyhold({"--json", "ca", "list"});
  EXPECT_EQ(cas.out.find("bad-root"), std::string::npos);
  EXPECT_EQ(cas.out.find("bad-int"), std::string::npos);
}

TEST(Profiles, EmbedCrlDistributionPointsAndAiaAndTheCrlLivesAsConfigured) {
  Pki::get();
  std::string config = read_file(testing::DevSetup::get().config.string());
  // The dev set-up's [pki] section, with another CRL lifetime, and a profile with URLs.
  auto at = config.find("crl_next_update");
  ASSERT_NE(at, std::string::npos) << config;
  config.replace(at, config.find('\n', at) - at, "crl_next_update = \"2d\"");
  config += "\n[profiles.published]\ndns = [\"*.example.test\"]\n"
            "crl_distribution_points = [\"http://pki.example.test/crl/issuing.crl\"]\n"
            "ocsp_urls = [\"http://ocsp.example.test/\"]\n"
            "ca_issuers_urls = [\"http://pki.example.test/issuing.crt\"]\n";
  std::string published = path_in_setup("published.toml");
  write_file(published, config);
  std::string out = path_in_setup("published.pem");
  ProcessResult r = keyhold({"--config", published, "ca", "issue", "--ca", "issuing", "--profile", "published", "--csr",
                             make_csr("published", "P-256", "/CN=pub.example.test"), "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string text = run_process({"openssl", "x509", "-in", out, "-noout", "-text"}).out;
  EXPECT_NE(text.find("X509v3 CRL Distribution Points"), std::string::npos) << text;
  EXPECT_NE(text.find("URI:http://pki.example.test/crl/issuing.crl"), std::string::npos) << text;
  EXPECT_NE(text.find("OCSP - URI:http://ocsp.example.test/"), std::string::npos) << text;
  EXPECT_NE(text.find("CA Issuers - URI:http://pki.example.test/issuing.crt"), std::string::npos) << text;

  std::string crl = path_in_setup("published.crl");
  ASSERT_EQ(keyhold({"--config", published, "ca", "crl", "--ca", "issuing", "--out", crl}).exit_code, 0);
  std::string dates = run_process({"openssl", "crl", "-in", crl, "-noout", "-lastupdate", "-nextupdate", "-dateopt", "iso_8601"}).out;
  std::smatch last, next;
  ASSERT_TRUE(std::regex_search(dates, last, std::regex("lastUpdate=([0-9-]+) ([0-9:]+)Z"))) << dates;
  ASSERT_TRUE(std::regex_search(dates, next, std::regex("nextUpdate=([0-9-]+) ([0-9:]+)Z"))) << dates;
  auto seconds = [](const std::smatch& m) {
    std::tm tm{};
    strptime((m[1].str() + " " + m[2].str()).c_str(), "%Y-%m-%d %H:%M:%S", &tm);
    return timegm(&tm);
  };
  EXPECT_EQ(seconds(next) - seconds(last), 2 * 24 * 3600) << dates;
}

TEST(Certs, ListsByStatusAndExpiry) {
  Pki::get();
  std::string a = issue("listed-a", "a.example.test", {"--days", "10"});
  std::string b = issue("listed-b", "b.example.test", {"--days", "60"});
  ASSERT_EQ(keyhold({"ca", "revoke", "--ca", "issuing", "--serial", serial_of(b)}).exit_code, 0);
  auto serials = [](const nlohmann::json& list) {
    std::vector<std::string> out;
    for (const auto& c : list) out.push_back(c["serial"]);
    return out;
  };
  auto has = [](const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); };
  std::vector<std::string> soon = serials(keyhold_json({"ca", "certs", "--ca", "issuing", "--expiring-within", "15d"}));
  EXPECT_TRUE(has(soon, serial_of(a)));
  EXPECT_FALSE(has(soon, serial_of(b)));
  std::vector<std::string> revoked = serials(keyhold_json({"ca", "certs", "--ca", "issuing", "--status", "revoked"}));
  EXPECT_TRUE(has(revoked, serial_of(b)));
  EXPECT_FALSE(has(revoked, serial_of(a)));
  ProcessResult r = keyhold({"ca", "certs", "--ca", "issuing", "--status", "bogus"});
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace keyhold
