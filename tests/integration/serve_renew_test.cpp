// keyhold serve's renewal routes end to end: POST /v1/pki/{ca}/renew (the
// client certificate renews itself) and POST /v1/ssh/{ca}/renew, on the real
// binary with the DevSetup's throwaway token, spoken to by curl; the results
// are judged by openssl (verify, x509) and ssh-keygen (-L).
//
// One server for the whole binary, on a copy of the dev configuration whose
// policy_file is ours (admin may do everything; web.example.org and revokee
// may renew on ca:dev; norule may do nothing) and whose audit log is fresh.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/dev_setup.hpp"
#include "support/process.hpp"
#include "support/serve_fixture.hpp"
#include "support/temp_dir.hpp"

namespace keyhold::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// ---------------------------------------------------------------------------
// Helpers

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

const fs::path& work_dir() {
  static TempDir dir("keyhold-serve-renew-test");
  return dir.path();
}

std::string work_file(const std::string& name) { return (work_dir() / name).string(); }

std::string scratch(const std::string& stem) {
  static int counter = 0;
  return work_file(stem + "-" + std::to_string(++counter));
}

struct Reply {
  int status = 0;
  std::string body;
  std::string curl_error;
  Json json() const {
    Json j = Json::parse(body, nullptr, false);
    return j.is_discarded() ? Json() : j;
  }
  std::string describe() const {
    return "HTTP " + std::to_string(status) + "\n" + body + (curl_error.empty() ? "" : "\ncurl: " + curl_error);
  }
};

std::string text_of(const Json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

Reply http(const ServeProcess& server, const std::string& method, const std::string& path, const CurlIdentity& who,
           std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"-X", method};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = curl(who, server.url() + path, args);
  HttpReply h = reply_of(r);
  return {h.status, h.body, r.err};
}

Reply post(const ServeProcess& server, const std::string& path, const Json& body,
           const CurlIdentity& who = admin_identity()) {
  std::string file = scratch("body");
  write_file(file, body.dump());
  return http(server, "POST", path, who, {"-H", "Content-Type: application/json", "--data-binary", "@" + file});
}

void expect_error(const Reply& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.describe();
  Json j = r.json();
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.describe();
  EXPECT_EQ(text_of(j["error"], "code"), code) << r.describe();
}

std::string error_message(const Reply& r) {
  Json j = r.json();
  return j.is_object() && j.contains("error") ? text_of(j["error"], "message") : "";
}

// A new P-256 key and a CSR for it.
struct Csr {
  std::string key;
  std::string csr;
};
Csr make_csr(const std::string& name, const std::string& subject, const std::string& san) {
  Csr c{work_file(name + "-key.pem"), work_file(name + ".csr")};
  std::vector<std::string> argv = {
      "openssl", "req",     "-new", "-newkey", "ec",    "-pkeyopt", "ec_paramgen_curve:P-256",
      "-nodes",  "-keyout", c.key,  "-subj",   subject, "-out",     c.csr};
  if (!san.empty()) {
    argv.push_back("-addext");
    argv.push_back("subjectAltName=" + san);
  }
  must_run(argv);
  return c;
}

// A certificate of the dev CA issued with the keyhold CLI from an openssl CSR.
CurlIdentity dev_certificate(const std::string& name, const std::string& profile, const std::string& subject,
                             const std::string& san) {
  Csr csr = make_csr(name, subject, san);
  std::string pem = work_file(name + ".pem");
  must_keyhold({"ca", "issue", "--ca", "dev", "--profile", profile, "--csr", csr.csr, "--out", pem, "--days", "3"});
  return {pem, csr.key, path_in_setup("ca.pem")};
}

std::string x509_field(const std::string& pem_file, const std::string& option) {
  return trimmed(must_run({"openssl", "x509", "-in", pem_file, "-noout", option}).out);
}

std::string serial_of(const std::string& pem_file) {
  std::string out = x509_field(pem_file, "-serial");
  return out.substr(out.find('=') + 1);
}

// The subjectAltName extension as openssl prints it (its value line).
std::string sans_of(const std::string& pem_file) {
  return trimmed(must_run({"openssl", "x509", "-in", pem_file, "-noout", "-ext", "subjectAltName"}).out);
}

std::string public_key_of_certificate(const std::string& pem_file) {
  return must_run({"openssl", "x509", "-in", pem_file, "-noout", "-pubkey"}).out;
}

std::string public_key_of_key(const std::string& key_file) {
  return must_run({"openssl", "pkey", "-in", key_file, "-pubout"}).out;
}

// `keyhold --json ca certs --ca dev`: how many certificates the CA recorded.
std::size_t dev_certificate_count() {
  Json j = keyhold_json({"ca", "certs", "--ca", "dev"});
  if (j.is_array()) return j.size();
  if (j.is_object() && j.contains("certificates") && j["certificates"].is_array()) return j["certificates"].size();
  throw std::runtime_error("unexpected output of keyhold --json ca certs: " + j.dump());
}

// A fresh ed25519 SSH key; returns the path of the private key (NAME.pub beside it).
std::string ssh_key(const std::string& name) {
  std::string path = work_file(name);
  fs::remove(path);
  fs::remove(path + ".pub");
  must_run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path});
  return path;
}

struct SshListing {
  std::string key_id;
  std::string serial;
  std::vector<std::string> principals;
  std::string public_key;  // the "Public key:" line's fingerprint part
  std::string signing_ca;
};
SshListing ssh_listing(const std::string& cert_file) {
  std::string out = must_run({"ssh-keygen", "-L", "-f", cert_file}).out;
  SshListing l;
  std::istringstream in(out);
  std::string line;
  bool in_principals = false;
  while (std::getline(in, line)) {
    std::string t = line;
    t.erase(0, t.find_first_not_of(" \t"));
    if (in_principals) {
      if (line.rfind("                ", 0) == 0) {
        l.principals.push_back(trimmed(t));
        continue;
      }
      in_principals = false;
    }
    if (t.rfind("Key ID: ", 0) == 0) l.key_id = trimmed(t.substr(8));
    else if (t.rfind("Serial: ", 0) == 0) l.serial = trimmed(t.substr(8));
    else if (t.rfind("Public key: ", 0) == 0) l.public_key = trimmed(t.substr(12));
    else if (t.rfind("Signing CA: ", 0) == 0) l.signing_ca = trimmed(t.substr(12));
    else if (t.rfind("Principals:", 0) == 0) in_principals = true;
  }
  return l;
}

std::string ssh_fingerprint(const std::string& pub_file) {
  // "256 SHA256:... comment (ED25519)"
  std::istringstream in(must_run({"ssh-keygen", "-l", "-E", "sha256", "-f", pub_file}).out);
  std::string bits, fp;
  in >> bits >> fp;
  return fp;
}

const char* kPolicy = R"([[rule]]
name = "admin"
identities = ["admin"]
operations = ["pki.issue", "pki.renew", "pki.revoke", "pki.read", "ssh.sign", "ssh.renew", "ssh.revoke", "ssh.read", "kek.datakey", "kek.encrypt", "kek.decrypt", "kek.rewrap", "kek.rotate", "kek.read", "keys.create", "keys.read", "audit.read"]
resources = ["ca:*", "ssh-ca:*", "kek:*", "key:*", "audit:*"]

[[rule]]
name = "self-renewal"
identities = ["web.example.org", "revokee"]
operations = ["pki.renew"]
resources = ["ca:dev"]
)";

// ---------------------------------------------------------------------------

class ServeRenew : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    must_keyhold({"ssh", "init-ca", "users", "--key-type", "ed25519"});
    must_keyhold({"ssh", "init-ca", "others", "--key-type", "ed25519"});
    std::string policy = work_file("policy-renew.toml");
    write_file(policy, kPolicy);
    std::string log = work_file("audit-renew.log");
    fs::remove(log);
    fs::path config = config_variant("serve-renew", "policy_file = \"policy.toml\"", "policy_file = \"" + policy + "\"");
    std::string text = read_file(config.string());
    const std::string from = "audit_log = \"audit.log\"";
    std::size_t at = text.find(from);
    if (at == std::string::npos) throw std::runtime_error("keyhold.toml has no '" + from + "'");
    text.replace(at, from.size(), "audit_log = \"" + log + "\"");
    write_file(config.string(), text);
    server_ = ServeProcess::start(config).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr) << "the suite's server did not start"; }
  static ServeProcess& server() { return *server_; }

  // Writes the "certificate" of a 200 answer to a file; returns its path.
  static std::string save_certificate(const Reply& r, const std::string& name) {
    std::string path = work_file(name);
    write_file(path, text_of(r.json(), "certificate"));
    return path;
  }

  // POST /v1/ssh/users/sign for a user certificate; the certificate's file content (with its newline).
  static std::string ssh_sign(const std::string& ca, const std::string& key, const std::string& key_id,
                              const std::vector<std::string>& principals, std::string* serial = nullptr) {
    Reply r = post(server(), "/v1/ssh/" + ca + "/sign",
                   {{"public_key", read_file(key + ".pub")},
                    {"type", "user"},
                    {"key_id", key_id},
                    {"principals", principals},
                    {"validity", "8h"}});
    if (r.status != 200) throw std::runtime_error("ssh sign: " + r.describe());
    if (serial) *serial = text_of(r.json(), "serial");
    std::string line = text_of(r.json(), "certificate");
    if (line.empty() || line.back() != '\n') line += "\n";
    write_file(key + "-cert.pub", line);
    return line;
  }

  static ServeProcess* server_;
};
ServeProcess* ServeRenew::server_ = nullptr;

// 1. The dev admin certificate renews itself with its own key.
TEST_F(ServeRenew, AdminCertificateRenewsItself) {
  std::string admin = path_in_setup("admin.pem");
  std::string csr = work_file("admin-renew.csr");
  must_run({"openssl", "x509", "-x509toreq", "-in", admin, "-signkey", path_in_setup("admin-key.pem"),
            "-copy_extensions", "copyall", "-out", csr});
  Reply r = post(server(), "/v1/pki/dev/renew", {{"csr", read_file(csr)}});
  ASSERT_EQ(r.status, 200) << r.describe();
  std::string renewed = save_certificate(r, "admin-renewed.pem");

  ProcessResult verify = run_process({"openssl", "verify", "-CAfile", path_in_setup("ca.pem"), renewed});
  EXPECT_TRUE(verify.ok()) << verify.out << verify.err;
  EXPECT_EQ(trimmed(verify.out), renewed + ": OK");
  EXPECT_EQ(x509_field(renewed, "-subject"), x509_field(admin, "-subject"));
  EXPECT_EQ(sans_of(renewed), sans_of(admin));
  EXPECT_TRUE(contains(sans_of(renewed), "admin@localhost")) << sans_of(renewed);
  EXPECT_NE(serial_of(renewed), serial_of(admin));
  EXPECT_EQ(public_key_of_certificate(renewed), public_key_of_certificate(admin));
  // The answer's serial is the certificate's.
  std::string answered = text_of(r.json(), "serial");
  std::string printed = serial_of(renewed);
  std::transform(printed.begin(), printed.end(), printed.begin(), [](unsigned char c) { return std::tolower(c); });
  EXPECT_EQ(answered.substr(answered.find_first_not_of('0')), printed.substr(printed.find_first_not_of('0')));
}

// 2. A server certificate (serverAuth only) renews itself with a new key, and reaches nothing else.
TEST_F(ServeRenew, ServerCertificateRenewsWithANewKeyButReachesNothingElse) {
  CurlIdentity web = dev_certificate("web", "server", "/CN=web.example.org", "DNS:web.example.org");
  std::string eku = trimmed(must_run({"openssl", "x509", "-in", web.certificate, "-noout", "-ext",
                                      "extendedKeyUsage"}).out);
  ASSERT_TRUE(contains(eku, "TLS Web Server Authentication")) << eku;
  ASSERT_FALSE(contains(eku, "Client Authentication")) << eku;

  Csr next = make_csr("web-next", "/CN=web.example.org", "DNS:web.example.org");
  Reply r = post(server(), "/v1/pki/dev/renew", {{"csr", read_file(next.csr)}}, web);
  ASSERT_EQ(r.status, 200) << r.describe();
  std::string renewed = save_certificate(r, "web-renewed.pem");
  ProcessResult verify = run_process({"openssl", "verify", "-CAfile", path_in_setup("ca.pem"), renewed});
  EXPECT_TRUE(verify.ok()) << verify.out << verify.err;
  EXPECT_EQ(x509_field(renewed, "-subject"), x509_field(web.certificate, "-subject"));
  EXPECT_EQ(sans_of(renewed), sans_of(web.certificate));
  EXPECT_NE(serial_of(renewed), serial_of(web.certificate));
  EXPECT_EQ(public_key_of_certificate(renewed), public_key_of_key(next.key));
  EXPECT_NE(public_key_of_certificate(renewed), public_key_of_certificate(web.certificate));

  // Not meant for client authentication: health (no policy) is refused all the same.
  Reply health = http(server(), "GET", "/v1/health", web);
  expect_error(health, 403, "permission_denied");
  Reply health_new = http(server(), "GET", "/v1/health", {renewed, next.key, path_in_setup("ca.pem")});
  expect_error(health_new, 403, "permission_denied");
}

// 3. A CSR naming another subject is refused, and nothing is issued.
TEST_F(ServeRenew, CsrWithAnotherSubjectIsRefused) {
  std::size_t before = dev_certificate_count();
  Csr evil = make_csr("evil", "/CN=evil.example.org", "DNS:evil.example.org");
  Reply r = post(server(), "/v1/pki/dev/renew", {{"csr", read_file(evil.csr)}});
  expect_error(r, 400, "invalid_argument");
  EXPECT_EQ(dev_certificate_count(), before);

  // Same subject as admin, other names: refused too.
  Csr other_names = make_csr("admin-other-names", "/CN=admin", "email:someone@localhost");
  Reply r2 = post(server(), "/v1/pki/dev/renew", {{"csr", read_file(other_names.csr)}});
  expect_error(r2, 400, "invalid_argument");
  EXPECT_EQ(dev_certificate_count(), before);
}

// 4. A revoked certificate cannot renew itself (no CRL configured: the handshake passes).
TEST_F(ServeRenew, RevokedCertificateCannotRenew) {
  CurlIdentity revokee = dev_certificate("revokee", "client", "/CN=revokee", "email:revokee@localhost");
  std::string csr = work_file("revokee-renew.csr");
  must_run({"openssl", "x509", "-x509toreq", "-in", revokee.certificate, "-signkey", revokee.key,
            "-copy_extensions", "copyall", "-out", csr});
  must_keyhold({"ca", "revoke", "--ca", "dev", "--serial", serial_of(revokee.certificate)});
  std::size_t before = dev_certificate_count();
  Reply r = post(server(), "/v1/pki/dev/renew", {{"csr", read_file(csr)}}, revokee);
  expect_error(r, 403, "permission_denied");
  EXPECT_TRUE(contains(error_message(r), "revoked")) << r.describe();
  EXPECT_EQ(dev_certificate_count(), before);
}

// 5. Without a pki.renew rule for its identity the renewal is refused by the policy.
TEST_F(ServeRenew, RenewalWithoutARuleIsDenied) {
  CurlIdentity norule = dev_certificate("norule", "client", "/CN=norule", "email:norule@localhost");
  std::string csr = work_file("norule-renew.csr");
  must_run({"openssl", "x509", "-x509toreq", "-in", norule.certificate, "-signkey", norule.key,
            "-copy_extensions", "copyall", "-out", csr});
  std::size_t before = dev_certificate_count();
  Reply r = post(server(), "/v1/pki/dev/renew", {{"csr", read_file(csr)}}, norule);
  expect_error(r, 403, "permission_denied");
  EXPECT_EQ(error_message(r), "pki.renew on ca:dev denied") << r.describe();
  EXPECT_EQ(dev_certificate_count(), before);
}

// 6. SSH: renewal with the same key and a new one; revoked and foreign certificates are refused.
TEST_F(ServeRenew, SshCertificateRenewsWithTheSameKey) {
  std::string alice = ssh_key("alice");
  std::string line = ssh_sign("users", alice, "alice@laptop", {"alice", "backup"});
  SshListing current = ssh_listing(alice + "-cert.pub");
  ASSERT_EQ(current.key_id, "\"alice@laptop\"");

  Reply r = post(server(), "/v1/ssh/users/renew", {{"certificate", line}});
  ASSERT_EQ(r.status, 200) << r.describe();
  std::string renewed = work_file("alice-renewed-cert.pub");
  write_file(renewed, text_of(r.json(), "certificate") + "\n");
  SshListing next = ssh_listing(renewed);
  EXPECT_EQ(next.key_id, current.key_id);
  EXPECT_EQ(next.principals, current.principals);
  EXPECT_EQ(next.principals, (std::vector<std::string>{"alice", "backup"}));
  EXPECT_NE(next.serial, current.serial);
  EXPECT_EQ(next.serial, text_of(r.json(), "serial"));
  EXPECT_EQ(next.signing_ca, current.signing_ca);
  EXPECT_TRUE(contains(next.public_key, ssh_fingerprint(alice + ".pub"))) << next.public_key;
}

TEST_F(ServeRenew, SshCertificateRenewsForANewKey) {
  std::string bob = ssh_key("bob");
  std::string line = ssh_sign("users", bob, "bob@laptop", {"bob"});
  SshListing current = ssh_listing(bob + "-cert.pub");
  std::string bob2 = ssh_key("bob2");
  Reply r = post(server(), "/v1/ssh/users/renew", {{"certificate", line}, {"public_key", read_file(bob2 + ".pub")}});
  ASSERT_EQ(r.status, 200) << r.describe();
  std::string renewed = work_file("bob2-cert.pub");
  write_file(renewed, text_of(r.json(), "certificate") + "\n");
  SshListing next = ssh_listing(renewed);
  EXPECT_EQ(next.key_id, current.key_id);
  EXPECT_EQ(next.principals, current.principals);
  EXPECT_NE(next.serial, current.serial);
  EXPECT_TRUE(contains(next.public_key, ssh_fingerprint(bob2 + ".pub"))) << next.public_key;
  EXPECT_FALSE(contains(next.public_key, ssh_fingerprint(bob + ".pub"))) << next.public_key;
}

TEST_F(ServeRenew, RevokedSshCertificateCannotBeRenewed) {
  std::string carol = ssh_key("carol");
  std::string serial;
  std::string line = ssh_sign("users", carol, "carol@laptop", {"carol"}, &serial);
  ASSERT_FALSE(serial.empty());
  Reply revoked = post(server(), "/v1/ssh/users/revoke", {{"serial", serial}});
  ASSERT_EQ(revoked.status, 200) << revoked.describe();
  Reply r = post(server(), "/v1/ssh/users/renew", {{"certificate", line}});
  expect_error(r, 403, "permission_denied");
  EXPECT_TRUE(contains(error_message(r), "revoked")) << r.describe();
}

TEST_F(ServeRenew, SshCertificateOfAnotherCaIsRefused) {
  std::string dave = ssh_key("dave");
  std::string line = ssh_sign("others", dave, "dave@laptop", {"dave"});
  Reply r = post(server(), "/v1/ssh/users/renew", {{"certificate", line}});
  expect_error(r, 403, "permission_denied");
  EXPECT_TRUE(contains(error_message(r), "not signed by SSH CA 'users'")) << r.describe();
  // Its own CA renews it.
  Reply own = post(server(), "/v1/ssh/others/renew", {{"certificate", line}});
  EXPECT_EQ(own.status, 200) << own.describe();
}

}  // namespace
}  // namespace keyhold::testing
