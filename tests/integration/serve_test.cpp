// keyhold serve end to end: the real binary on 127.0.0.1 with the DevSetup's
// throwaway token, spoken to by curl and openssl s_client, and its answers
// checked with independent tools (openssl verify / crl / x509, ssh-keygen).
//
// Suites, each with its own server (servers run one after the other: only
// one may hold an audit log at a time):
//   ServeAdmin      every route with the dev admin; bad input; secrets in
//                   error bodies; the dev policy refusing CN=intruder
//   ServePolicy     a policy of our own: context and principal constraints
//   ServeAudit      one audit record per request, audit verify afterwards
//   ServeRateLimit  429 with a tiny bucket
//   ServePlain      the plain-HTTP listener: public material only
//   ServeTls        refusals in the TLS handshake (no, foreign, expired and
//                   revoked client certificates; TLS 1.2), and a
//                   certificate without identity
//   ServeStartup    a policy with a mistake stops the start
//   ServeKeys       the server's private key never exists as a file

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
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

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

std::string upper(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::toupper(c); });
  return text;
}

// A hex serial as openssl prints it and keyhold writes it alike: upper case, no leading zeros.
std::string hex_serial(std::string text) {
  text = upper(text);
  std::size_t first = text.find_first_not_of('0');
  return first == std::string::npos ? "0" : text.substr(first);
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string base64_encode(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(const std::string& text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

// The bytes of a base64 JSON string, or a marker that cannot be plaintext.
std::string decoded(const Json& value) {
  if (!value.is_string()) return "<not a string: " + value.dump() + ">";
  return base64_decode(value.get<std::string>()).value_or("<not base64: " + value.get<std::string>() + ">");
}

// Files the tests make (keys, CSRs, bodies); removed at the end of the binary.
const fs::path& work_dir() {
  static TempDir dir("keyhold-serve-test");
  return dir.path();
}

std::string work_file(const std::string& name) { return (work_dir() / name).string(); }

// A unique name for a scratch file.
std::string scratch(const std::string& stem) {
  static int counter = 0;
  return work_file(stem + "-" + std::to_string(++counter));
}

// One HTTP exchange through curl.
struct Reply {
  int status = 0;  // 0: no HTTP response (curl's 000)
  std::string body;
  std::string headers;  // the response head as received
  std::string curl_error;
  int curl_exit = 0;

  // The body as JSON (null when it is not JSON), parsed once; a reference
  // into this Reply, so keep the Reply alive while using it.
  Json& json() const {
    if (!parsed_) {
      Json j = Json::parse(body, nullptr, false);
      json_ = j.is_discarded() ? Json() : std::move(j);
      parsed_ = true;
    }
    return json_;
  }
  // The value of a response header (first one), case-insensitive name.
  std::optional<std::string> header(const std::string& name) const {
    std::istringstream in(headers);
    std::string line;
    while (std::getline(in, line)) {
      std::size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      if (lower(line.substr(0, colon)) == lower(name))
        return trimmed(line.substr(line.find_first_not_of(' ', colon + 1)));
    }
    return std::nullopt;
  }
  std::string describe() const {
    return "HTTP " + std::to_string(status) + "\n" + headers + body +
           (curl_error.empty() ? "" : "\ncurl: " + curl_error);
  }

 private:
  mutable Json json_;
  mutable bool parsed_ = false;
};

// A string member of a JSON object, "" when missing or not a string.
std::string text_of(const Json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// One request to URL (https://... or the plain listener's http://...).
Reply http_at(const std::string& url, const std::string& method, const CurlIdentity& who,
              std::vector<std::string> extra = {}) {
  std::string head = scratch("head");
  std::vector<std::string> args = {"-X", method, "-D", head};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = curl(who, url, args);
  HttpReply h = reply_of(r);
  Reply reply;
  reply.status = h.status;
  reply.body = h.body;
  reply.curl_error = r.err;
  reply.curl_exit = r.exit_code;
  if (fs::exists(head)) reply.headers = read_file(head);
  return reply;
}

Reply http(const ServeProcess& server, const std::string& method, const std::string& path,
           const CurlIdentity& who = admin_identity(), std::vector<std::string> extra = {}) {
  return http_at(server.url() + path, method, who, std::move(extra));
}

Reply get(const ServeProcess& server, const std::string& path, const CurlIdentity& who = admin_identity()) {
  return http(server, "GET", path, who);
}

// POST with a raw body and a content type.
Reply post_raw(const ServeProcess& server, const std::string& path, const std::string& body,
               const CurlIdentity& who = admin_identity(), const std::string& content_type = "application/json") {
  std::string file = scratch("body");
  write_file(file, body);
  return http(server, "POST", path, who, {"-H", "Content-Type: " + content_type, "--data-binary", "@" + file});
}

Reply post(const ServeProcess& server, const std::string& path, const Json& body,
           const CurlIdentity& who = admin_identity()) {
  return post_raw(server, path, body.dump(), who);
}

// {"error":{"code":CODE,"message":...,"request_id":...}} and nothing else.
void expect_error(const Reply& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.describe();
  Json j = r.json();
  ASSERT_TRUE(j.is_object()) << r.describe();
  ASSERT_EQ(j.size(), 1u) << r.describe();
  ASSERT_TRUE(j.contains("error")) << r.describe();
  const Json& e = j["error"];
  EXPECT_EQ(text_of(e, "code"), code) << r.describe();
  EXPECT_TRUE(e.contains("message") && e["message"].is_string()) << r.describe();
  EXPECT_TRUE(e.contains("request_id") && e["request_id"].is_string()) << r.describe();
  EXPECT_EQ(e.size(), 3u) << r.describe();
  if (auto id = r.header("X-Request-Id")) {
    EXPECT_EQ(text_of(e, "request_id"), *id) << r.describe();
  }
}

// A 403 of the policy: the message names the operation and the resource, nothing more.
void expect_denied(const Reply& r, const std::string& operation, const std::string& resource) {
  expect_error(r, 403, "permission_denied");
  EXPECT_EQ(text_of(r.json()["error"], "message"), operation + " on " + resource + " denied") << r.describe();
}

// A key pair and a CSR made by openssl; returns the CSR's path (the key is PATH-key.pem).
struct Csr {
  std::string key;
  std::string csr;
};
Csr make_csr(const std::string& name, const std::string& subject, const std::string& san = "") {
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

std::string serial_of(const std::string& pem_file) {
  std::string out = trimmed(must_run({"openssl", "x509", "-in", pem_file, "-noout", "-serial"}).out);
  return out.substr(out.find('=') + 1);
}

// A client certificate of the dev CA (profile client), issued with the keyhold CLI from an openssl CSR.
struct Client {
  CurlIdentity id;
  std::string serial;  // hex, as openssl prints it
};
Client dev_client(const std::string& name, const std::string& subject, const std::string& san) {
  Csr csr = make_csr(name, subject, san);
  std::string pem = work_file(name + ".pem");
  must_keyhold({"ca", "issue", "--ca", "dev", "--profile", "client", "--csr", csr.csr, "--out", pem, "--days", "3"});
  return {{pem, csr.key, path_in_setup("ca.pem")}, serial_of(pem)};
}

// CN=intruder: a valid client certificate of the dev CA that no policy rule names.
const Client& intruder() {
  static Client c = dev_client("intruder", "/CN=intruder", "email:intruder@localhost");
  return c;
}

// spiffe://example.org/payments (URI SAN from the CSR; the CN is not the identity).
const Client& payments() {
  static Client c = dev_client("payments", "/CN=payments-service", "URI:spiffe://example.org/payments");
  return c;
}

// KEKs and an SSH CA in the set-up's token, made once with the CLI.
void ensure_resources() {
  static bool done = [] {
    must_keyhold({"kek", "create", "payments"});
    must_keyhold({"kek", "create", "other"});
    must_keyhold({"kek", "create", "rotating"});
    must_keyhold({"ssh", "init-ca", "users", "--key-type", "ed25519"});
    return true;
  }();
  (void)done;
}

// A copy of the set-up's keyhold.toml (in its directory, so that its relative
// paths still hold) with pieces of text replaced and lines added to [server]
// (the last section).
fs::path variant(const std::string& name, const std::vector<std::pair<std::string, std::string>>& replacements,
                 const std::string& append = "") {
  std::string text = read_file(DevSetup::get().config.string());
  for (const auto& [from, to] : replacements) {
    std::size_t at = text.find(from);
    if (at == std::string::npos) throw std::runtime_error("keyhold.toml has no '" + from + "'");
    text.replace(at, from.size(), to);
  }
  if (!text.empty() && text.back() != '\n') text += "\n";
  text += append;
  fs::path path = DevSetup::get().dir / (name + ".toml");
  write_file(path.string(), text);
  return path;
}

// The path of a fresh audit log of the tests' own (none left from a --gtest_repeat).
std::string fresh_log(const std::string& name) {
  std::string path = work_file(name);
  fs::remove(path);
  return path;
}

std::string ssh_keygen_pair(const std::string& name) {
  std::string key = work_file(name);
  for (const std::string& old : {key, key + ".pub", key + "-cert.pub"}) fs::remove(old);  // --gtest_repeat
  must_run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key});
  return key;  // key + ".pub" is the public key
}

std::string public_key_of_private(const std::string& pem_file) {
  return must_run({"openssl", "pkey", "-in", pem_file, "-pubout"}).out;
}

std::string public_key_of_certificate(const std::string& pem_file) {
  return must_run({"openssl", "x509", "-in", pem_file, "-pubkey", "-noout"}).out;
}

std::string fingerprint(const std::string& pem_file) {
  return must_run({"openssl", "x509", "-in", pem_file, "-noout", "-fingerprint", "-sha256"}).out;
}

// A server per suite: started in SetUpTestSuite, stopped in TearDownTestSuite.
class ServeSuite : public ::testing::Test {
 protected:
  static void start(const fs::path& config) {
    ensure_resources();
    server_ = ServeProcess::start(config).release();
  }
  static void stop() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr) << "the suite's server did not start"; }
  static ServeProcess& server() { return *server_; }

  static ServeProcess* server_;
};
ServeProcess* ServeSuite::server_ = nullptr;

// ---------------------------------------------------------------------------

TEST(Serve, HealthIsOkWithTheAdminCertificate) {
  auto server = ServeProcess::start(DevSetup::get().config);
  HttpReply reply = reply_of(curl(admin_identity(), server->url() + "/v1/health"));
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(nlohmann::json::parse(reply.body)["status"], "ok");
}

// ---------------------------------------------------------------------------
// Every route with the dev admin, on the dev configuration.

class ServeAdmin : public ServeSuite {
 protected:
  static void SetUpTestSuite() {
    intruder();
    start(DevSetup::get().config);
  }
  static void TearDownTestSuite() { stop(); }
};

TEST_F(ServeAdmin, HealthReportsEveryCheck) {
  Reply r = get(server(), "/v1/health");
  ASSERT_EQ(r.status, 200) << r.describe();
  Json j = r.json();
  EXPECT_EQ(j["status"], "ok") << r.body;
  EXPECT_EQ(j["checks"], (Json{{"audit", "ok"}, {"store", "ok"}, {"token", "ok"}})) << r.body;
  EXPECT_TRUE(std::regex_match(r.header("X-Request-Id").value_or(""), std::regex("[0-9a-f]{32}"))) << r.headers;
  EXPECT_EQ(r.header("Cache-Control").value_or(""), "no-store") << r.headers;
  EXPECT_EQ(r.header("X-Content-Type-Options").value_or(""), "nosniff") << r.headers;
  // The server makes the request id; the client's is ignored.
  Reply mine = http(server(), "GET", "/v1/no-such-path", admin_identity(), {"-H", "X-Request-Id: chosen-by-client"});
  EXPECT_NE(mine.header("X-Request-Id").value_or(""), "chosen-by-client") << mine.headers;
  expect_error(mine, 404, "not_found");
  EXPECT_EQ(mine.header("Cache-Control").value_or(""), "no-store") << mine.headers;
}

TEST_F(ServeAdmin, MetricsArePrometheusTextCountingRequests) {
  ASSERT_EQ(get(server(), "/v1/health").status, 200);
  Reply r = get(server(), "/metrics");
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.header("Content-Type").value_or(""), "text/plain; version=0.0.4; charset=utf-8") << r.headers;
  EXPECT_TRUE(contains(r.body, "# TYPE keyhold_requests_total counter")) << r.body;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.body, m, std::regex("\nkeyhold_requests_total\\{operation=\"health\",outcome=\"allowed\"\\} ([0-9]+)\n")))
      << r.body;
  EXPECT_GE(std::stoi(m[1]), 1) << r.body;
  EXPECT_TRUE(contains(r.body, "keyhold_audit_records ")) << r.body;
}

TEST_F(ServeAdmin, KeysAreCreatedListedAndShown) {
  static int run = 0;  // a new name for each --gtest_repeat
  const std::string name = "api-made-" + std::to_string(++run);
  Reply created = post(server(), "/v1/keys", {{"name", name}, {"type", "ec-p256"}});
  ASSERT_EQ(created.status, 200) << created.describe();
  Json key = created.json();
  EXPECT_EQ(key["name"], name);
  EXPECT_EQ(key["type"], "ec-p256");
  EXPECT_EQ(key["in_token"], true);
  EXPECT_EQ(key["attributes"]["sensitive"], true) << created.body;
  EXPECT_EQ(key["attributes"]["extractable"], false) << created.body;
  EXPECT_EQ(key["attributes"]["never_extractable"], true) << created.body;

  Reply shown = get(server(), "/v1/keys/" + name);
  ASSERT_EQ(shown.status, 200) << shown.describe();
  EXPECT_EQ(shown.json()["id"], key["id"]) << shown.body;

  Reply listed = get(server(), "/v1/keys");
  ASSERT_EQ(listed.status, 200) << listed.describe();
  std::set<std::string> names;
  for (const Json& k : listed.json()["keys"]) names.insert(text_of(k, "name"));
  EXPECT_TRUE(names.count(name) && names.count("server-tls") && names.count("audit")) << listed.body;

  // The CLI sees the key the service made, with the same id.
  EXPECT_EQ(keyhold_json({"key", "show", name})["id"], key["id"]);

  expect_error(post(server(), "/v1/keys", {{"name", name}, {"type", "ec-p256"}}), 409, "already_exists");
  expect_error(post(server(), "/v1/keys", {{"name", "api-bad"}, {"type", "dsa-1024"}}), 400, "invalid_argument");
  expect_error(get(server(), "/v1/keys/no-such-key"), 404, "not_found");
}

TEST_F(ServeAdmin, KekIsShownLikeTheCliShowsIt) {
  Reply r = get(server(), "/v1/keks/payments");
  ASSERT_EQ(r.status, 200) << r.describe();
  Json kek = r.json();
  Json cli = keyhold_json({"kek", "show", "payments"});
  EXPECT_EQ(kek["name"], "payments");
  EXPECT_EQ(kek["kek_id"], cli["kek_id"]) << r.body << "\n" << cli.dump();
  EXPECT_EQ(kek["primary_version"], cli["primary_version"]) << r.body;
  ASSERT_TRUE(kek["versions"].is_array()) << r.body;
  EXPECT_FALSE(kek["versions"].empty()) << r.body;
  expect_error(get(server(), "/v1/keks/no-such-kek"), 404, "not_found");
}

TEST_F(ServeAdmin, DataKeysWithAndWithoutPlaintextDecryptToTheSameBytes) {
  const Json context = {{"tenant", "acme"}};
  Reply with = post(server(), "/v1/keks/payments/datakey", {{"context", context}});
  ASSERT_EQ(with.status, 200) << with.describe();
  Json key = with.json();
  ASSERT_TRUE(key.contains("plaintext")) << with.body;
  std::optional<std::string> bytes = base64_decode(key["plaintext"].get<std::string>());
  ASSERT_TRUE(bytes.has_value()) << with.body;
  EXPECT_EQ(bytes->size(), 32u);
  EXPECT_GE(key["kek_version"].get<int>(), 1);

  Reply decrypted =
      post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", key["ciphertext"]}, {"context", context}});
  ASSERT_EQ(decrypted.status, 200) << decrypted.describe();
  EXPECT_EQ(decrypted.json()["plaintext"], key["plaintext"]) << decrypted.body;

  // The keyhold CLI (another client of the same KEK) unwraps it to the same bytes.
  ProcessOptions input;
  input.input = key["ciphertext"].get<std::string>() + "\n";
  ProcessResult cli = keyhold({"decrypt", "--kek", "payments", "--context", "tenant=acme"}, input);
  ASSERT_TRUE(cli.ok()) << cli.err;
  EXPECT_EQ(cli.out, *bytes);

  Reply without = post(server(), "/v1/keks/payments/datakey", {{"context", context}, {"plaintext", false}});
  ASSERT_EQ(without.status, 200) << without.describe();
  EXPECT_FALSE(without.json().contains("plaintext")) << without.body;
  EXPECT_NE(without.json()["ciphertext"], key["ciphertext"]);
  Reply unwrapped =
      post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", without.json()["ciphertext"]}, {"context", context}});
  ASSERT_EQ(unwrapped.status, 200) << unwrapped.describe();
  std::optional<std::string> other = base64_decode(unwrapped.json()["plaintext"].get<std::string>());
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->size(), 32u);
  EXPECT_NE(*other, *bytes);

  Reply small = post(server(), "/v1/keks/payments/datakey", {{"bytes", 16}});
  ASSERT_EQ(small.status, 200) << small.describe();
  EXPECT_EQ(decoded(small.json()["plaintext"]).size(), 16u) << small.body;
  expect_error(post(server(), "/v1/keks/payments/datakey", {{"bytes", 20}}), 400, "invalid_argument");
}

TEST_F(ServeAdmin, EncryptDecryptAndRewrapWithANewContext) {
  const std::string secret = "the payroll of March";
  const Json context = {{"app", "billing"}};
  Reply encrypted =
      post(server(), "/v1/keks/payments/encrypt", {{"plaintext", base64_encode(secret)}, {"context", context}});
  ASSERT_EQ(encrypted.status, 200) << encrypted.describe();
  std::string ciphertext = encrypted.json()["ciphertext"];
  EXPECT_EQ(ciphertext.rfind("kh1:", 0), 0u) << ciphertext;

  Reply decrypted = post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", ciphertext}, {"context", context}});
  ASSERT_EQ(decrypted.status, 200) << decrypted.describe();
  EXPECT_EQ(decoded(decrypted.json()["plaintext"]), secret) << decrypted.body;

  // The CLI decrypts what the service encrypted.
  ProcessOptions input;
  input.input = ciphertext + "\n";
  ProcessResult cli = keyhold({"decrypt", "--context", "app=billing"}, input);
  ASSERT_TRUE(cli.ok()) << cli.err;
  EXPECT_EQ(cli.out, secret);

  const Json new_context = {{"app", "billing"}, {"year", "2026"}};
  Reply rewrapped = post(server(), "/v1/keks/payments/rewrap",
                         {{"ciphertext", ciphertext}, {"context", context}, {"new_context", new_context}});
  ASSERT_EQ(rewrapped.status, 200) << rewrapped.describe();
  std::string again = rewrapped.json()["ciphertext"];
  EXPECT_NE(again, ciphertext);
  expect_error(post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", again}, {"context", context}}), 400,
               "invalid_argument");
  Reply with_new = post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", again}, {"context", new_context}});
  ASSERT_EQ(with_new.status, 200) << with_new.describe();
  EXPECT_EQ(decoded(with_new.json()["plaintext"]), secret);

  // The empty plaintext is a plaintext too.
  Reply empty = post(server(), "/v1/keks/payments/encrypt", {{"plaintext", ""}});
  ASSERT_EQ(empty.status, 200) << empty.describe();
  Reply back = post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", empty.json()["ciphertext"]}});
  ASSERT_EQ(back.status, 200) << back.describe();
  EXPECT_EQ(back.json()["plaintext"], "");
}

TEST_F(ServeAdmin, RotateRaisesThePrimaryVersionAndOldCiphertextsStillDecrypt) {
  Reply before = get(server(), "/v1/keks/rotating");
  ASSERT_EQ(before.status, 200) << before.describe();
  int version = before.json()["primary_version"];

  Reply old = post(server(), "/v1/keks/rotating/encrypt", {{"plaintext", base64_encode("old")}});
  ASSERT_EQ(old.status, 200) << old.describe();
  EXPECT_EQ(old.json()["kek_version"], version);

  Reply rotated = post(server(), "/v1/keks/rotating/rotate", Json::object());
  ASSERT_EQ(rotated.status, 200) << rotated.describe();
  EXPECT_EQ(rotated.json()["primary_version"], version + 1) << rotated.body;
  EXPECT_EQ(rotated.json()["versions"].size(), static_cast<std::size_t>(version + 1)) << rotated.body;
  EXPECT_EQ(keyhold_json({"kek", "show", "rotating"})["primary_version"], version + 1);

  Reply fresh = post(server(), "/v1/keks/rotating/encrypt", {{"plaintext", base64_encode("new")}});
  ASSERT_EQ(fresh.status, 200) << fresh.describe();
  EXPECT_EQ(fresh.json()["kek_version"], version + 1);

  Reply decrypted = post(server(), "/v1/keks/rotating/decrypt", {{"ciphertext", old.json()["ciphertext"]}});
  ASSERT_EQ(decrypted.status, 200) << decrypted.describe();
  EXPECT_EQ(decrypted.json()["kek_version"], version);
  EXPECT_EQ(decoded(decrypted.json()["plaintext"]), "old");

  Reply rewrapped = post(server(), "/v1/keks/rotating/rewrap", {{"ciphertext", old.json()["ciphertext"]}});
  ASSERT_EQ(rewrapped.status, 200) << rewrapped.describe();
  EXPECT_EQ(rewrapped.json()["kek_version"], version + 1);

  // An empty body is an empty object too; a body with fields is refused.
  Reply no_body = http(server(), "POST", "/v1/keks/rotating/rotate");
  ASSERT_EQ(no_body.status, 200) << no_body.describe();
  EXPECT_EQ(no_body.json()["primary_version"], version + 2);
  expect_error(post(server(), "/v1/keks/rotating/rotate", {{"force", true}}), 400, "invalid_argument");
}

TEST_F(ServeAdmin, IssuesACertificateThatOpensslVerifies) {
  Csr csr = make_csr("api-server", "/CN=api.example.org", "DNS:api.example.org,DNS:www.example.org");
  Reply r = post(server(), "/v1/pki/dev/issue", {{"profile", "server"}, {"csr", read_file(csr.csr)}, {"days", 7}});
  ASSERT_EQ(r.status, 200) << r.describe();
  Json issued = r.json();
  std::string pem = work_file("api-server.pem");
  write_file(pem, issued["certificate"].get<std::string>());

  ProcessResult verify = run_process({"openssl", "verify", "-CAfile", path_in_setup("ca.pem"), pem});
  EXPECT_TRUE(verify.ok()) << verify.out << verify.err;
  EXPECT_TRUE(contains(verify.out, ": OK")) << verify.out;
  ProcessResult purpose =
      run_process({"openssl", "verify", "-purpose", "sslserver", "-CAfile", path_in_setup("ca.pem"), pem});
  EXPECT_TRUE(purpose.ok()) << purpose.out << purpose.err;

  EXPECT_EQ(hex_serial(serial_of(pem)), hex_serial(issued["serial"].get<std::string>()));
  EXPECT_EQ(public_key_of_certificate(pem), public_key_of_private(csr.key))
      << "the certificate is not for the CSR's key";
  EXPECT_EQ(issued["subject"], "CN=api.example.org");
  EXPECT_EQ(issued["sans"], Json::array({"dns:api.example.org", "dns:www.example.org"})) << r.body;
  // The dev profile's warning comes with every answer, and goes to the
  // server's log once per process, not once per issuance.
  const std::string dev_warning = "profile 'server' is for development only";
  EXPECT_TRUE(contains(issued["warnings"].dump(), dev_warning)) << r.body;
  Reply again = post(server(), "/v1/pki/dev/issue", {{"profile", "server"}, {"csr", read_file(csr.csr)}, {"days", 7}});
  ASSERT_EQ(again.status, 200) << again.describe();
  EXPECT_TRUE(contains(again.json()["warnings"].dump(), dev_warning)) << again.body;
  std::string log = server().err();
  std::size_t first = log.find(dev_warning);
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find(dev_warning, first + 1), std::string::npos) << log;
  std::string sans = must_run({"openssl", "x509", "-in", pem, "-noout", "-ext", "subjectAltName"}).out;
  EXPECT_TRUE(contains(sans, "DNS:api.example.org") && contains(sans, "DNS:www.example.org")) << sans;
  // The chain is the CA's.
  std::string chain = work_file("api-server-chain.pem");
  write_file(chain, issued["chain"].get<std::string>());
  EXPECT_EQ(fingerprint(chain), fingerprint(path_in_setup("ca.pem")));
  // It is in the CA's list of valid certificates, requested by admin.
  Reply listed = get(server(), "/v1/pki/dev/certs?status=valid");
  ASSERT_EQ(listed.status, 200) << listed.describe();
  bool found = false;
  for (const Json& c : listed.json()["certificates"]) {
    if (c["serial"] == issued["serial"]) {
      found = true;
      EXPECT_EQ(c["requester"], "admin") << c.dump();
    }
  }
  EXPECT_TRUE(found) << listed.body;

  // A CSR that is not one, and an unknown profile, issue nothing.
  expect_error(post(server(), "/v1/pki/dev/issue", {{"profile", "server"}, {"csr", "not a csr"}}), 400,
               "invalid_argument");
  Reply no_profile = post(server(), "/v1/pki/dev/issue", {{"profile", "nope"}, {"csr", read_file(csr.csr)}});
  EXPECT_GE(no_profile.status, 400) << no_profile.describe();
  EXPECT_LT(no_profile.status, 500) << no_profile.describe();
  EXPECT_EQ(get(server(), "/v1/pki/dev/certs").json()["certificates"].size(),
            keyhold_json({"ca", "certs", "--ca", "dev"}).size());
}

TEST_F(ServeAdmin, RevokedCertificateIsInTheCrlForOpenssl) {
  Csr csr = make_csr("to-revoke", "/CN=revoke-me.example.org");
  Reply issued = post(server(), "/v1/pki/dev/issue", {{"profile", "server"}, {"csr", read_file(csr.csr)}});
  ASSERT_EQ(issued.status, 200) << issued.describe();
  std::string serial = issued.json()["serial"];
  std::string pem = work_file("to-revoke.pem");
  write_file(pem, issued.json()["certificate"].get<std::string>());

  Reply revoked = post(server(), "/v1/pki/dev/revoke", {{"serial", serial}, {"reason", "keyCompromise"}});
  ASSERT_EQ(revoked.status, 200) << revoked.describe();
  EXPECT_EQ(revoked.json()["serial"], serial);
  EXPECT_EQ(revoked.json()["reason"], "keyCompromise") << revoked.body;
  EXPECT_TRUE(revoked.json()["revoked_at"].is_string()) << revoked.body;
  // The first revocation stands.
  expect_error(post(server(), "/v1/pki/dev/revoke", {{"serial", serial}}), 409, "failed_precondition");
  expect_error(post(server(), "/v1/pki/dev/revoke", {{"serial", "abcdef0123"}}), 404, "not_found");
  expect_error(post(server(), "/v1/pki/dev/revoke", {{"serial", serial}, {"reason", "boredom"}}), 400,
               "invalid_argument");

  // DER CRL: openssl checks its signature against ca.pem and lists the serial.
  std::string der = work_file("dev.crl.der");
  Reply crl = http(server(), "GET", "/v1/pki/dev/crl", admin_identity(), {"-o", der});
  ASSERT_EQ(crl.status, 200) << crl.describe();
  EXPECT_EQ(crl.header("Content-Type").value_or(""), "application/pkix-crl") << crl.headers;
  ProcessResult text = run_process(
      {"openssl", "crl", "-inform", "DER", "-in", der, "-noout", "-text", "-CAfile", path_in_setup("ca.pem")});
  ASSERT_TRUE(text.ok()) << text.err;
  EXPECT_TRUE(contains(text.err + text.out, "verify OK")) << text.err << text.out;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("Serial Number: 0*" + hex_serial(serial) + "\n"))) << text.out;
  EXPECT_TRUE(contains(text.out, "Key Compromise")) << text.out;

  // PEM CRL: the same list; openssl verify with it refuses the certificate.
  Reply pem_crl = get(server(), "/v1/pki/dev/crl?format=pem");
  ASSERT_EQ(pem_crl.status, 200) << pem_crl.describe();
  EXPECT_EQ(pem_crl.body.rfind("-----BEGIN X509 CRL-----", 0), 0u) << pem_crl.body;
  std::string crl_pem = work_file("dev.crl.pem");
  write_file(crl_pem, pem_crl.body);
  ProcessResult pem_text = run_process({"openssl", "crl", "-in", crl_pem, "-noout", "-text"});
  ASSERT_TRUE(pem_text.ok()) << pem_text.err;
  EXPECT_TRUE(std::regex_search(pem_text.out, std::regex("Serial Number: 0*" + hex_serial(serial) + "\n")))
      << pem_text.out;
  ProcessResult check =
      run_process({"openssl", "verify", "-crl_check", "-CAfile", path_in_setup("ca.pem"), "-CRLfile", crl_pem, pem});
  EXPECT_FALSE(check.ok()) << check.out;
  EXPECT_TRUE(contains(check.out + check.err, "certificate revoked")) << check.out << check.err;
  expect_error(get(server(), "/v1/pki/dev/crl?format=xml"), 400, "invalid_argument");

  // The list of revoked certificates has it; the list of valid ones does not.
  Reply list = get(server(), "/v1/pki/dev/certs?status=revoked");
  ASSERT_EQ(list.status, 200) << list.describe();
  bool found = false;
  for (const Json& c : list.json()["certificates"]) {
    EXPECT_EQ(c["status"], "revoked") << c.dump();
    if (c["serial"] == serial) {
      found = true;
      EXPECT_EQ(c["reason"], "keyCompromise") << c.dump();
    }
  }
  EXPECT_TRUE(found) << list.body;
  Reply valid = get(server(), "/v1/pki/dev/certs?status=valid");
  ASSERT_EQ(valid.status, 200) << valid.describe();
  for (const Json& c : valid.json()["certificates"]) EXPECT_NE(c["serial"], serial);
  expect_error(get(server(), "/v1/pki/dev/certs?status=lost"), 400, "invalid_argument");
  expect_error(get(server(), "/v1/pki/dev/certs?colour=red"), 400, "invalid_argument");
  expect_error(get(server(), "/v1/pki/nope/crl"), 404, "not_found");
}

TEST_F(ServeAdmin, ChainIsTheCaCertificate) {
  Reply r = get(server(), "/v1/pki/dev/chain");
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.header("Content-Type").value_or(""), "application/pem-certificate-chain") << r.headers;
  std::string file = work_file("chain.pem");
  write_file(file, r.body);
  EXPECT_EQ(fingerprint(file), fingerprint(path_in_setup("ca.pem")));
  EXPECT_EQ(r.body, must_keyhold({"ca", "chain", "dev"}).out);
}

TEST_F(ServeAdmin, SignsAnSshCertificateThatSshKeygenReads) {
  std::string key = ssh_keygen_pair("alice-ssh");
  Reply r = post(server(), "/v1/ssh/users/sign",
                 {{"public_key", read_file(key + ".pub")},
                  {"type", "user"},
                  {"key_id", "alice@example.org"},
                  {"principals", Json::array({"alice", "backup"})},
                  {"validity", "1h"}});
  ASSERT_EQ(r.status, 200) << r.describe();
  Json signed_cert = r.json();
  std::string cert = key + "-cert.pub";
  write_file(cert, signed_cert["certificate"].get<std::string>() + "\n");

  ProcessResult shown = run_process({"ssh-keygen", "-L", "-f", cert});
  ASSERT_TRUE(shown.ok()) << shown.err;
  EXPECT_TRUE(contains(shown.out, "Type: ssh-ed25519-cert-v01@openssh.com user certificate")) << shown.out;
  EXPECT_TRUE(contains(shown.out, "Key ID: \"alice@example.org\"")) << shown.out;
  EXPECT_TRUE(contains(shown.out, "Serial: " + signed_cert["serial"].get<std::string>())) << shown.out;
  EXPECT_TRUE(std::regex_search(shown.out, std::regex("Principals: \n\\s+alice\n\\s+backup\n"))) << shown.out;
  // Signed by the CA key the CLI shows.
  std::string ca_pub = work_file("users-ca.pub");
  write_file(ca_pub, must_keyhold({"ssh", "ca-key", "users"}).out);
  std::string ca_fp = must_run({"ssh-keygen", "-l", "-f", ca_pub}).out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(ca_fp, m, std::regex("(SHA256:[A-Za-z0-9+/]+)"))) << ca_fp;
  EXPECT_TRUE(contains(shown.out, "Signing CA: ED25519 " + m[1].str())) << shown.out << ca_fp;
  // The certificate is for the key that was sent.
  std::string key_fp = must_run({"ssh-keygen", "-l", "-f", key + ".pub"}).out;
  ASSERT_TRUE(std::regex_search(key_fp, m, std::regex("(SHA256:[A-Za-z0-9+/]+)"))) << key_fp;
  EXPECT_TRUE(contains(shown.out, "ED25519-CERT " + m[1].str())) << shown.out;

  expect_error(post(server(), "/v1/ssh/users/sign",
                    {{"public_key", "ssh-ed25519 AAAAnotakey"},
                     {"type", "user"},
                     {"key_id", "x"},
                     {"principals", Json::array({"x"})}}),
               400, "invalid_argument");
  // No principal would be every user: refused.
  expect_error(
      post(server(), "/v1/ssh/users/sign",
           {{"public_key", read_file(key + ".pub")}, {"type", "user"}, {"key_id", "x"}, {"principals", Json::array()}}),
      400, "invalid_argument");
  expect_error(post(server(), "/v1/ssh/users/sign",
                    {{"public_key", read_file(key + ".pub")},
                     {"type", "admin"},
                     {"key_id", "x"},
                     {"principals", Json::array({"x"})}}),
               400, "invalid_argument");
}

TEST_F(ServeAdmin, SshCaKeyIsTheOneTheCliShows) {
  Reply r = get(server(), "/v1/ssh/users/ca-key");
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.body, must_keyhold({"ssh", "ca-key", "users"}).out);
  EXPECT_EQ(r.body.rfind("ssh-ed25519 ", 0), 0u) << r.body;
  expect_error(get(server(), "/v1/ssh/nope/ca-key"), 404, "not_found");
}

TEST_F(ServeAdmin, RevokedSshCertificateIsInTheKrlForSshKeygen) {
  static int run = 0;  // new key ids for each --gtest_repeat: revoked ones cannot be certified again
  const std::string tag = "-" + std::to_string(++run);
  auto sign = [&](const std::string& name) {
    std::string key = ssh_keygen_pair(name);
    Reply r = post(server(), "/v1/ssh/users/sign",
                   {{"public_key", read_file(key + ".pub")},
                    {"type", "user"},
                    {"key_id", name},
                    {"principals", Json::array({"deploy"})}});
    EXPECT_EQ(r.status, 200) << r.describe();
    std::string cert = key + "-cert.pub";
    write_file(cert, text_of(r.json(), "certificate") + "\n");
    return std::make_pair(cert, text_of(r.json(), "serial"));
  };
  auto [revoked_cert, revoked_serial] = sign("ssh-revoked" + tag);
  auto [kept_cert, kept_serial] = sign("ssh-kept" + tag);
  ASSERT_FALSE(revoked_serial.empty());

  Reply revoked = post(server(), "/v1/ssh/users/revoke", {{"serial", revoked_serial}});
  ASSERT_EQ(revoked.status, 200) << revoked.describe();
  EXPECT_EQ(revoked.json()["revoked"], 1) << revoked.body;
  EXPECT_EQ(revoked.json()["serial"], revoked_serial) << revoked.body;
  expect_error(post(server(), "/v1/ssh/users/revoke", {{"serial", revoked_serial}}), 409, "failed_precondition");
  expect_error(post(server(), "/v1/ssh/users/revoke", {{"serial", revoked_serial}, {"key_id", "ssh-revoked" + tag}}),
               400, "invalid_argument");

  std::string krl = work_file("users.krl");
  Reply got = http(server(), "GET", "/v1/ssh/users/krl", admin_identity(), {"-o", krl});
  ASSERT_EQ(got.status, 200) << got.describe();
  ProcessResult q = run_process({"ssh-keygen", "-Q", "-f", krl, revoked_cert});
  EXPECT_NE(q.exit_code, 0) << q.out << q.err;
  EXPECT_TRUE(contains(q.out, "REVOKED")) << q.out << q.err;
  ProcessResult ok = run_process({"ssh-keygen", "-Q", "-f", krl, kept_cert});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_TRUE(contains(ok.out, ": ok")) << ok.out;

  Reply list = get(server(), "/v1/ssh/users/certs");
  ASSERT_EQ(list.status, 200) << list.describe();
  std::map<std::string, std::string> status;
  for (const Json& c : list.json()["certificates"]) status[text_of(c, "serial")] = text_of(c, "status");
  EXPECT_EQ(status[revoked_serial], "revoked") << list.body;
  EXPECT_EQ(status[kept_serial], "valid") << list.body;
  Reply only_revoked = get(server(), "/v1/ssh/users/certs?status=revoked");
  ASSERT_EQ(only_revoked.status, 200) << only_revoked.describe();
  for (const Json& c : only_revoked.json()["certificates"]) EXPECT_EQ(c["status"], "revoked") << c.dump();
  Reply by_id = get(server(), "/v1/ssh/users/certs?key_id=ssh-kept" + tag);
  ASSERT_EQ(by_id.status, 200) << by_id.describe();
  ASSERT_EQ(by_id.json()["certificates"].size(), 1u) << by_id.body;
  EXPECT_EQ(by_id.json()["certificates"][0]["serial"], kept_serial);
  // The CLI's list agrees.
  EXPECT_EQ(list.json()["certificates"].size(), keyhold_json({"ssh", "certs", "--ca", "users"}).size());

  // Revocation by key id and by public key: the next KRL has them too.
  auto [by_id_cert, by_id_serial] = sign("ssh-by-id" + tag);
  auto [by_key_cert, by_key_serial] = sign("ssh-by-key" + tag);
  Reply id_revoked = post(server(), "/v1/ssh/users/revoke", {{"key_id", "ssh-by-id" + tag}});
  ASSERT_EQ(id_revoked.status, 200) << id_revoked.describe();
  EXPECT_EQ(id_revoked.json()["revoked"], 1) << id_revoked.body;
  expect_error(post(server(), "/v1/ssh/users/revoke", {{"key_id", "ssh-by-id" + tag}}), 409, "failed_precondition");
  Reply key_revoked =
      post(server(), "/v1/ssh/users/revoke", {{"public_key", read_file(work_file("ssh-by-key" + tag) + ".pub")}});
  ASSERT_EQ(key_revoked.status, 200) << key_revoked.describe();
  EXPECT_EQ(key_revoked.json()["revoked"], 1) << key_revoked.body;
  Reply next = http(server(), "GET", "/v1/ssh/users/krl", admin_identity(), {"-o", krl});
  ASSERT_EQ(next.status, 200) << next.describe();
  for (const std::string& cert : {by_id_cert, by_key_cert, revoked_cert}) {
    ProcessResult r = run_process({"ssh-keygen", "-Q", "-f", krl, cert});
    EXPECT_NE(r.exit_code, 0) << cert << ": " << r.out << r.err;
    EXPECT_TRUE(contains(r.out, "REVOKED")) << r.out << r.err;
  }
  EXPECT_EQ(run_process({"ssh-keygen", "-Q", "-f", krl, kept_cert}).exit_code, 0);
  // A serial the CA never issued is not found.
  expect_error(post(server(), "/v1/ssh/users/revoke", {{"serial", "12345"}}), 404, "not_found");
}

// --- bad input: the documented 4xx, and the service stays up

TEST_F(ServeAdmin, MalformedJsonIs400) {
  expect_error(post_raw(server(), "/v1/keks/payments/encrypt", "{\"plaintext\": "), 400, "invalid_argument");
  expect_error(post_raw(server(), "/v1/keks/payments/encrypt", "[1,2]"), 400, "invalid_argument");
  expect_error(post_raw(server(), "/v1/keks/payments/encrypt", "\"plaintext\""), 400, "invalid_argument");
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeAdmin, WrongContentTypeIs415) {
  Json body = {{"plaintext", base64_encode("x")}};
  expect_error(post_raw(server(), "/v1/keks/payments/encrypt", body.dump(), admin_identity(), "text/plain"), 415,
               "unsupported_media_type");
  expect_error(post_raw(server(), "/v1/keks/payments/encrypt", body.dump(), admin_identity(),
                        "application/x-www-form-urlencoded"),
               415, "unsupported_media_type");
  // Parameters and case do not matter.
  EXPECT_EQ(
      post_raw(server(), "/v1/keks/payments/encrypt", body.dump(), admin_identity(), "Application/JSON; charset=utf-8")
          .status,
      200);
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeAdmin, BodyOverTheLimitIs413) {
  std::string big = "{\"plaintext\":\"" + std::string(70 * 1024, 'A') + "\"}";
  Reply r = post_raw(server(), "/v1/keks/payments/encrypt", big);
  EXPECT_EQ(r.status, 413) << r.describe();
  EXPECT_EQ(text_of(r.json()["error"], "code"), "too_large") << r.describe();
  // Just under the limit, the body is read and judged by the API (a plaintext
  // is at most 4096 bytes).
  std::string fits = "{\"plaintext\":\"" + base64_encode(std::string(40 * 1024, 'x')) + "\"}";
  ASSERT_LT(fits.size(), 64u * 1024);
  expect_error(post_raw(server(), "/v1/keks/payments/encrypt", fits), 400, "invalid_argument");
  EXPECT_EQ(post(server(), "/v1/keks/payments/encrypt", {{"plaintext", base64_encode(std::string(4096, 'x'))}}).status,
            200);
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeAdmin, CiphertextOfAnotherKekIsRefused) {
  Reply encrypted = post(server(), "/v1/keks/payments/encrypt", {{"plaintext", base64_encode("for payments only")}});
  ASSERT_EQ(encrypted.status, 200) << encrypted.describe();
  Reply r = post(server(), "/v1/keks/other/decrypt", {{"ciphertext", encrypted.json()["ciphertext"]}});
  EXPECT_GE(r.status, 400) << r.describe();
  EXPECT_LT(r.status, 500) << r.describe();
  EXPECT_FALSE(r.json().contains("plaintext")) << r.body;
  EXPECT_FALSE(contains(r.body, base64_encode("for payments only"))) << r.body;
  Reply rewrap = post(server(), "/v1/keks/other/rewrap", {{"ciphertext", encrypted.json()["ciphertext"]}});
  EXPECT_GE(rewrap.status, 400) << rewrap.describe();
  EXPECT_LT(rewrap.status, 500) << rewrap.describe();
  EXPECT_FALSE(rewrap.json().contains("ciphertext")) << rewrap.body;
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeAdmin, GarbageBase64AndUnknownFieldsAre400) {
  expect_error(post(server(), "/v1/keks/payments/encrypt", {{"plaintext", "not base64!"}}), 400, "invalid_argument");
  expect_error(post(server(), "/v1/keks/payments/encrypt", {{"plaintext", "aGVsbG8"}}), 400, "invalid_argument");
  expect_error(post(server(), "/v1/keks/payments/encrypt", {{"plaintext", 42}}), 400, "invalid_argument");
  expect_error(post(server(), "/v1/keks/payments/encrypt", Json::object()), 400, "invalid_argument");
  Reply unknown = post(server(), "/v1/keks/payments/encrypt", {{"plaintext", "aGVsbG8="}, {"colour", "red"}});
  expect_error(unknown, 400, "invalid_argument");
  EXPECT_TRUE(contains(text_of(unknown.json()["error"], "message"), "colour")) << unknown.body;
  expect_error(post(server(), "/v1/keks/payments/encrypt", {{"plaintext", "aGVsbG8="}, {"context", "tenant=a"}}), 400,
               "invalid_argument");
  expect_error(post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", "kh1:garbage"}}), 400, "invalid_argument");
  expect_error(get(server(), "/v1/health?verbose=1"), 400, "invalid_argument");
  // A field twice, at the top or in the context: refused, not "the last one wins".
  Reply twice = post_raw(server(), "/v1/keks/payments/encrypt", R"({"plaintext":"aGVsbG8=","plaintext":"d29ybGQ="})");
  expect_error(twice, 400, "invalid_argument");
  EXPECT_EQ(text_of(twice.json()["error"], "message"), "the request body has the key plaintext twice in one object")
      << twice.body;
  Reply context_twice = post_raw(server(), "/v1/keks/payments/encrypt",
                                 R"({"plaintext":"aGVsbG8=","context":{"tenant":"a","tenant":"b"}})");
  expect_error(context_twice, 400, "invalid_argument");
  EXPECT_EQ(text_of(context_twice.json()["error"], "message"), "the request body has the key tenant twice in one object")
      << context_twice.body;
  // The same key in two different objects is no duplicate.
  Reply apart = post_raw(server(), "/v1/keks/payments/encrypt",
                         R"({"context":{"plaintext":"x"},"plaintext":"aGVsbG8="})");
  EXPECT_EQ(apart.status, 200) << apart.describe();
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeAdmin, UnknownRouteIs404AndWrongMethodIs405WithAllow) {
  for (const char* path :
       {"/v1/nothing", "/v2/health", "/v1/keks", "/v1/keks/payments/explode", "/v1//health", "/v1/health/", "/"}) {
    expect_error(get(server(), path), 404, "not_found");
  }
  Reply r = http(server(), "DELETE", "/v1/keks/payments");
  expect_error(r, 405, "method_not_allowed");
  EXPECT_EQ(r.header("Allow").value_or(""), "GET") << r.headers;
  Reply encrypt = get(server(), "/v1/keks/payments/encrypt");
  expect_error(encrypt, 405, "method_not_allowed");
  EXPECT_EQ(encrypt.header("Allow").value_or(""), "POST") << encrypt.headers;
  Reply keys = http(server(), "PUT", "/v1/keys");
  expect_error(keys, 405, "method_not_allowed");
  EXPECT_EQ(keys.header("Allow").value_or(""), "GET, POST") << keys.headers;
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeAdmin, NamesThatAreNotKeyholdNamesAre400NotDenied) {
  // A path segment or a body name that cannot name anything is bad input,
  // for admin too, not a refusal of the policy.
  for (const char* path : {"/v1/keks/pay%6Dents", "/v1/keks/..%2Fpayments", "/v1/keks/-payments/encrypt",
                           "/v1/pki/dev%21/chain", "/v1/ssh/users%20x/ca-key", "/v1/keys/a%0Ab"}) {
    Reply r = std::string(path).find("/encrypt") != std::string::npos
                  ? post(server(), path, {{"plaintext", base64_encode("x")}})
                  : get(server(), path);
    expect_error(r, 400, "invalid_argument");
  }
  Reply body = post(server(), "/v1/keys", {{"name", "bad name"}, {"type", "ec-p256"}});
  expect_error(body, 400, "invalid_argument");
  // The intruder learns nothing more from it than admin.
  expect_error(get(server(), "/v1/keks/pay%6Dents", intruder().id), 400, "invalid_argument");
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeAdmin, QueryParametersARouteDoesNotTakeAre400) {
  expect_error(post(server(), "/v1/keks/payments/encrypt?debug=1", {{"plaintext", base64_encode("x")}}), 400,
               "invalid_argument");
  expect_error(post(server(), "/v1/keks/payments/datakey?bytes=16", Json::object()), 400, "invalid_argument");
  expect_error(get(server(), "/v1/keks/payments?verbose=1"), 400, "invalid_argument");
  expect_error(get(server(), "/v1/keys/server-tls?format=pem"), 400, "invalid_argument");
  expect_error(get(server(), "/v1/keys?all=1"), 400, "invalid_argument");
  expect_error(get(server(), "/v1/ssh/users/ca-key?known_hosts=1"), 400, "invalid_argument");
  expect_error(get(server(), "/v1/pki/dev/crl?format=pem&x=1"), 400, "invalid_argument");
  // The ones a route takes are fine.
  EXPECT_EQ(get(server(), "/v1/pki/dev/certs?status=valid&expiring_within=30d").status, 200);
  EXPECT_EQ(get(server(), "/v1/ssh/users/certs?status=valid&key_id=nobody").status, 200);
}

TEST_F(ServeAdmin, HeadIsAnsweredLikeGetWithoutBody) {
  ProcessResult r = curl(admin_identity(), server().url() + "/v1/health", {"--head"});
  HttpReply head = reply_of(r);
  EXPECT_EQ(head.status, 200) << r.out << r.err;
  EXPECT_TRUE(contains(head.body, "Content-Type: application/json")) << head.body;
  EXPECT_FALSE(contains(head.body, "\"status\"")) << head.body;
  ProcessResult missing = curl(admin_identity(), server().url() + "/v1/keks/no-such-kek", {"--head"});
  EXPECT_EQ(reply_of(missing).status, 404) << missing.out;
}

// --- the dev policy refuses a client it does not name

TEST_F(ServeAdmin, IntruderIsDeniedWithABodyNamingOnlyOperationAndResource) {
  const CurlIdentity& who = intruder().id;
  expect_denied(get(server(), "/v1/keks/payments", who), "kek.read", "kek:payments");
  expect_denied(post(server(), "/v1/keks/payments/datakey", {{"context", {{"tenant", "t-secret-1"}}}}, who),
                "kek.datakey", "kek:payments");
  Reply encrypt = post(server(), "/v1/keks/payments/encrypt",
                       {{"plaintext", base64_encode("intruder's secret")}, {"context", {{"k", "v-secret-2"}}}}, who);
  expect_denied(encrypt, "kek.encrypt", "kek:payments");
  EXPECT_FALSE(contains(encrypt.body, "v-secret-2")) << encrypt.body;
  EXPECT_FALSE(contains(encrypt.body, base64_encode("intruder's secret"))) << encrypt.body;
  expect_denied(post(server(), "/v1/keks/payments/rotate", Json::object(), who), "kek.rotate", "kek:payments");
  expect_denied(get(server(), "/v1/keys/server-tls", who), "keys.read", "key:server-tls");
  expect_denied(post(server(), "/v1/keys", {{"name", "intruder-key"}, {"type", "ec-p256"}}, who), "keys.create",
                "key:intruder-key");
  expect_denied(get(server(), "/v1/pki/dev/certs", who), "pki.read", "ca:dev");
  expect_denied(post(server(), "/v1/pki/dev/revoke", {{"serial", intruder().serial}}, who), "pki.revoke", "ca:dev");
  expect_denied(get(server(), "/v1/ssh/users/certs", who), "ssh.read", "ssh-ca:users");

  // A denied issue issues nothing; a denied sign signs nothing.
  std::size_t certs = keyhold_json({"ca", "certs", "--ca", "dev"}).size();
  Csr csr = make_csr("intruder-wants", "/CN=www.intruder.example", "DNS:www.intruder.example");
  Reply issue = post(server(), "/v1/pki/dev/issue", {{"profile", "server"}, {"csr", read_file(csr.csr)}}, who);
  expect_denied(issue, "pki.issue", "ca:dev");
  EXPECT_FALSE(contains(issue.body, "intruder.example")) << issue.body;
  EXPECT_EQ(keyhold_json({"ca", "certs", "--ca", "dev"}).size(), certs);
  std::size_t ssh_certs = keyhold_json({"ssh", "certs", "--ca", "users"}).size();
  std::string key = ssh_keygen_pair("intruder-ssh");
  Reply sign = post(server(), "/v1/ssh/users/sign",
                    {{"public_key", read_file(key + ".pub")},
                     {"type", "user"},
                     {"key_id", "intruder"},
                     {"principals", Json::array({"root"})}},
                    who);
  expect_denied(sign, "ssh.sign", "ssh-ca:users");
  EXPECT_FALSE(contains(sign.body, "root")) << sign.body;
  EXPECT_EQ(keyhold_json({"ssh", "certs", "--ca", "users"}).size(), ssh_certs);

  // The key listing is filtered, not refused: the intruder may read no key.
  Reply keys = get(server(), "/v1/keys", who);
  ASSERT_EQ(keys.status, 200) << keys.describe();
  EXPECT_EQ(keys.json()["keys"], Json::array()) << keys.body;
  // Health needs no policy.
  EXPECT_EQ(get(server(), "/v1/health", who).status, 200);
}

// --- error bodies carry no secret data

TEST_F(ServeAdmin, ErrorBodiesDoNotEchoSecrets) {
  const std::string secret = "TOP-SECRET-PLAINTEXT-4711";
  const std::string secret64 = base64_encode(secret);
  Reply encrypted = post(server(), "/v1/keks/payments/encrypt",
                         {{"plaintext", secret64}, {"context", {{"tenant", "tenant-value-9931"}}}});
  ASSERT_EQ(encrypted.status, 200) << encrypted.describe();
  std::string ciphertext = encrypted.json()["ciphertext"];
  std::string body_of_ciphertext = ciphertext.substr(4);

  std::vector<Reply> failures;
  // Decrypt with a wrong context value.
  failures.push_back(post(server(), "/v1/keks/payments/decrypt",
                          {{"ciphertext", ciphertext}, {"context", {{"tenant", "wrong-value-5521"}}}}));
  // ... with a wrong key, without context, with a changed ciphertext, under another KEK.
  failures.push_back(post(server(), "/v1/keks/payments/decrypt",
                          {{"ciphertext", ciphertext}, {"context", {{"tenant-x", "tenant-value-9931"}}}}));
  failures.push_back(post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", ciphertext}}));
  std::string changed = ciphertext;
  changed[changed.size() - 10] = changed[changed.size() - 10] == 'A' ? 'B' : 'A';
  failures.push_back(post(server(), "/v1/keks/payments/decrypt",
                          {{"ciphertext", changed}, {"context", {{"tenant", "tenant-value-9931"}}}}));
  failures.push_back(post(server(), "/v1/keks/other/decrypt",
                          {{"ciphertext", ciphertext}, {"context", {{"tenant", "tenant-value-9931"}}}}));
  failures.push_back(
      post(server(), "/v1/keks/payments/rewrap",
           {{"ciphertext", ciphertext}, {"context", {{"tenant", "wrong-value-5521"}}}, {"new_context", {{"a", "b"}}}}));
  // Encrypt failures with the plaintext in the request.
  failures.push_back(post(server(), "/v1/keks/no-such-kek/encrypt", {{"plaintext", secret64}}));
  failures.push_back(post(server(), "/v1/keks/payments/encrypt", {{"plaintext", secret64}, {"unknown", secret}}));
  failures.push_back(post(server(), "/v1/keks/payments/encrypt", {{"plaintext", secret + "!"}}));
  failures.push_back(
      post(server(), "/v1/keks/payments/encrypt", {{"plaintext", secret64}, {"context", {{"tenant", 5}}}}));
  failures.push_back(post(server(), "/v1/keks/payments/encrypt",
                          {{"plaintext", secret64}, {"context", {{"tenant", "tenant-value-9931\x01"}}}}));
  failures.push_back(post_raw(server(), "/v1/keks/payments/encrypt", "{\"plaintext\":\"" + secret64 + "\", " + secret));
  failures.push_back(post_raw(server(), "/v1/keks/payments/encrypt", "{\"plaintext\":\"" + secret + "\"}"));
  failures.push_back(post_raw(server(), "/v1/keks/payments/encrypt", "{\"plaintext\":\"" + secret64 + "\"}",
                              admin_identity(), "text/plain"));
  // A ciphertext that is not one.
  failures.push_back(post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", "kh1:" + secret}}));
  failures.push_back(post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", secret}}));

  for (const Reply& r : failures) {
    EXPECT_GE(r.status, 400) << r.describe();
    EXPECT_LT(r.status, 500) << r.describe();
    EXPECT_TRUE(r.json().contains("error")) << r.describe();
    EXPECT_FALSE(r.json().contains("plaintext")) << r.describe();
    for (const std::string& leak : {secret, secret64, ciphertext, body_of_ciphertext, std::string("tenant-value-9931"),
                                    std::string("wrong-value-5521")}) {
      EXPECT_FALSE(contains(r.body, leak)) << "the error body carries '" << leak << "': " << r.describe();
      EXPECT_FALSE(contains(r.headers, leak)) << "the headers carry '" << leak << "': " << r.describe();
    }
  }
  // Nor does the audit log: it holds names and contexts, never plaintext or ciphertext.
  std::string audit = read_file(path_in_setup("audit.log"));
  EXPECT_FALSE(contains(audit, secret));
  EXPECT_FALSE(contains(audit, secret64));
  EXPECT_FALSE(contains(audit, body_of_ciphertext));
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

// ---------------------------------------------------------------------------
// A policy of our own: constraints on the context and the principals.

class ServePolicy : public ServeSuite {
 protected:
  static void SetUpTestSuite() {
    payments();
    intruder();
    std::string policy = work_file("policy-constrained.toml");
    write_file(policy, R"([[rule]]
name = "admin"
identities = ["admin"]
operations = ["pki.issue", "pki.revoke", "pki.read", "ssh.sign", "ssh.revoke", "ssh.read", "kek.datakey", "kek.encrypt", "kek.decrypt", "kek.rewrap", "kek.rotate", "kek.read", "keys.create", "keys.read", "audit.read"]
resources = ["ca:*", "ssh-ca:*", "kek:*", "key:*", "audit:*"]

[[rule]]
name = "payments-kek"
identities = ["spiffe://example.org/payments"]
operations = ["kek.datakey", "kek.encrypt", "kek.decrypt", "kek.rewrap"]
resources = ["kek:payments"]
[rule.when]
context = { tenant = "payments" }

[[rule]]
name = "payments-ssh"
identities = ["spiffe://example.org/payments"]
operations = ["ssh.sign"]
resources = ["ssh-ca:users"]
[rule.when]
principals = ["$identity"]
)");
    audit_log_ = fresh_log("audit-policy.log");
    start(variant("serve-policy", {{"policy_file = \"policy.toml\"", "policy_file = \"" + policy + "\""},
                                   {"audit_log = \"audit.log\"", "audit_log = \"" + audit_log_ + "\""}}));
  }
  static void TearDownTestSuite() { stop(); }
  static std::string audit_log_;
};
std::string ServePolicy::audit_log_;

TEST_F(ServePolicy, DecryptIsAllowedOnlyInTheTenantOfTheRule) {
  const CurlIdentity& who = payments().id;
  const Json mine = {{"tenant", "payments"}, {"order", "1234"}};
  Reply encrypted =
      post(server(), "/v1/keks/payments/encrypt", {{"plaintext", base64_encode("card data")}, {"context", mine}}, who);
  ASSERT_EQ(encrypted.status, 200) << encrypted.describe();
  Reply decrypted = post(server(), "/v1/keks/payments/decrypt",
                         {{"ciphertext", encrypted.json()["ciphertext"]}, {"context", mine}}, who);
  ASSERT_EQ(decrypted.status, 200) << decrypted.describe();
  EXPECT_EQ(decoded(decrypted.json()["plaintext"]), "card data");

  // A ciphertext of another tenant (made by admin): the policy refuses before anything is decrypted.
  const Json theirs = {{"tenant", "other"}};
  Reply other =
      post(server(), "/v1/keks/payments/encrypt", {{"plaintext", base64_encode("not yours")}, {"context", theirs}});
  ASSERT_EQ(other.status, 200) << other.describe();
  Reply denied = post(server(), "/v1/keks/payments/decrypt",
                      {{"ciphertext", other.json()["ciphertext"]}, {"context", theirs}}, who);
  expect_denied(denied, "kek.decrypt", "kek:payments");
  EXPECT_FALSE(contains(denied.body, "tenant")) << denied.body;
  EXPECT_FALSE(contains(denied.body, "other")) << denied.body;
  EXPECT_FALSE(contains(denied.body, base64_encode("not yours"))) << denied.body;

  // No tenant, or a datakey / encrypt for another tenant: denied too.
  expect_denied(post(server(), "/v1/keks/payments/decrypt", {{"ciphertext", encrypted.json()["ciphertext"]}}, who),
                "kek.decrypt", "kek:payments");
  expect_denied(post(server(), "/v1/keks/payments/datakey", {{"context", theirs}}, who), "kek.datakey", "kek:payments");
  EXPECT_EQ(post(server(), "/v1/keks/payments/datakey", {{"context", mine}}, who).status, 200);
  // A rewrap needs both contexts allowed: it cannot move a ciphertext to another tenant.
  Reply rewrapped = post(
      server(), "/v1/keks/payments/rewrap",
      {{"ciphertext", encrypted.json()["ciphertext"]}, {"context", mine}, {"new_context", {{"tenant", "payments"}}}},
      who);
  EXPECT_EQ(rewrapped.status, 200) << rewrapped.describe();
  expect_denied(post(server(), "/v1/keks/payments/rewrap",
                     {{"ciphertext", encrypted.json()["ciphertext"]}, {"context", mine}, {"new_context", theirs}}, who),
                "kek.rewrap", "kek:payments");
  expect_denied(post(server(), "/v1/keks/payments/rewrap",
                     {{"ciphertext", other.json()["ciphertext"]}, {"context", theirs}, {"new_context", mine}}, who),
                "kek.rewrap", "kek:payments");
  // Not listed: other operations, other KEKs.
  expect_denied(post(server(), "/v1/keks/payments/rotate", Json::object(), who), "kek.rotate", "kek:payments");
  expect_denied(get(server(), "/v1/keks/payments", who), "kek.read", "kek:payments");
  expect_denied(post(server(), "/v1/keks/other/encrypt", {{"plaintext", base64_encode("x")}, {"context", mine}}, who),
                "kek.encrypt", "kek:other");
  // The audit log names the identity of the URI SAN, and the outcome.
  std::vector<Json> events = audit_events(audit_log_);
  ASSERT_FALSE(events.empty());
  bool saw_denied = false;
  for (const Json& e : events) {
    if (e["identity"] == "spiffe://example.org/payments" && e["operation"] == "kek.decrypt" &&
        e["outcome"] == "denied") {
      saw_denied = true;
    }
  }
  EXPECT_TRUE(saw_denied);
}

TEST_F(ServePolicy, SshSignIsAllowedOnlyForTheCallersOwnName) {
  const CurlIdentity& who = payments().id;
  std::string key = ssh_keygen_pair("payments-ssh");
  auto sign = [&](const Json& principals) {
    return post(
        server(), "/v1/ssh/users/sign",
        {{"public_key", read_file(key + ".pub")}, {"type", "user"}, {"key_id", "payments"}, {"principals", principals}},
        who);
  };
  Reply own = sign(Json::array({"payments"}));
  ASSERT_EQ(own.status, 200) << own.describe();
  std::string cert = key + "-cert.pub";
  write_file(cert, text_of(own.json(), "certificate") + "\n");
  ProcessResult shown = run_process({"ssh-keygen", "-L", "-f", cert});
  ASSERT_TRUE(shown.ok()) << shown.err;
  EXPECT_TRUE(std::regex_search(shown.out, std::regex("Principals: \n\\s+payments\n\\s+Critical"))) << shown.out;

  for (const Json& principals :
       {Json::array({"root"}), Json::array({"payments", "root"}), Json::array(), Json::array({"payments-svc"})}) {
    Reply r = sign(principals);
    expect_denied(r, "ssh.sign", "ssh-ca:users");
    EXPECT_FALSE(contains(r.body, "root")) << r.body;
  }
  // The intruder, named by no rule, may not sign either.
  expect_denied(post(server(), "/v1/ssh/users/sign",
                     {{"public_key", read_file(key + ".pub")},
                      {"type", "user"},
                      {"key_id", "i"},
                      {"principals", Json::array({"intruder"})}},
                     intruder().id),
                "ssh.sign", "ssh-ca:users");
  // Admin's rule has no constraint.
  EXPECT_EQ(post(server(), "/v1/ssh/users/sign",
                 {{"public_key", read_file(key + ".pub")},
                  {"type", "user"},
                  {"key_id", "a"},
                  {"principals", Json::array({"root"})}})
                .status,
            200);
}

// ---------------------------------------------------------------------------
// Every request leaves exactly one audit record, and the log verifies.

TEST(ServeAudit, EveryRequestLeavesExactlyOneRecordAndTheLogVerifies) {
  ensure_resources();
  const Client& who = intruder();
  std::string log = fresh_log("audit-count.log");
  fs::path config = variant("serve-audit", {{"audit_log = \"audit.log\"", "audit_log = \"" + log + "\""}});
  auto server = ServeProcess::start(config);

  struct Expect {
    std::string operation, resource, outcome, error_code, identity;
  };
  std::size_t before = audit_events(log).size();
  auto step = [&](Reply r, int status, Expect e) {
    EXPECT_EQ(r.status, status) << r.describe();
    std::vector<Json> events = audit_events(log);
    // Durable before the answer: the record is there as soon as the reply is.
    EXPECT_EQ(events.size(), before + 1) << "after " << e.operation << " (" << r.describe() << ")";
    before = events.size();
    if (events.empty()) return;
    const Json& last = events.back();
    EXPECT_EQ(last["operation"], e.operation) << last.dump();
    EXPECT_EQ(last["resource"], e.resource) << last.dump();
    EXPECT_EQ(last["outcome"], e.outcome) << last.dump();
    EXPECT_EQ(last["error_code"], e.error_code) << last.dump();
    EXPECT_EQ(last["identity"], e.identity) << last.dump();
    EXPECT_EQ(last["request_id"], r.header("X-Request-Id").value_or("?")) << last.dump() << "\n" << r.headers;
  };
  step(get(*server, "/v1/health"), 200, {"health", "", "allowed", "", "admin"});
  step(get(*server, "/v1/keks/payments"), 200, {"kek.read", "kek:payments", "allowed", "", "admin"});
  step(post(*server, "/v1/keks/payments/encrypt", {{"plaintext", base64_encode("x")}, {"context", {{"app", "audit"}}}}),
       200, {"kek.encrypt", "kek:payments", "allowed", "", "admin"});
  EXPECT_EQ(audit_events(log).back()["context"], (Json{{"app", "audit"}}));
  step(get(*server, "/v1/no/such/route"), 404, {"unknown", "", "failed", "not_found", "admin"});
  step(get(*server, "/v1/keks/payments", who.id), 403,
       {"kek.read", "kek:payments", "denied", "permission_denied", "intruder"});
  step(post_raw(*server, "/v1/keks/payments/encrypt", "{oops"), 400,
       {"kek.encrypt", "kek:payments", "failed", "invalid_argument", "admin"});
  step(http(*server, "DELETE", "/v1/keys"), 405, {"unknown", "", "failed", "method_not_allowed", "admin"});
  step(post_raw(*server, "/v1/keks/payments/encrypt", "{}", admin_identity(), "text/plain"), 415,
       {"kek.encrypt", "kek:payments", "failed", "unsupported_media_type", "admin"});
  step(get(*server, "/v1/keks/nope"), 404, {"kek.read", "kek:nope", "failed", "not_found", "admin"});
  step(get(*server, "/metrics", who.id), 200, {"metrics", "", "allowed", "", "intruder"});

  // SIGTERM: a clean exit that signs the tail of the log.
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait(), 0) << server->err();
  std::string last_line;
  {
    std::istringstream in(read_file(log));
    std::string line;
    while (std::getline(in, line)) last_line = line;
  }
  EXPECT_TRUE(contains(last_line, "\"type\":\"checkpoint\"")) << last_line;
  ProcessResult verify = keyhold({"audit", "verify", "--log", log});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_TRUE(contains(verify.out, ", ok")) << verify.out;
  EXPECT_FALSE(contains(verify.out, "0 checkpoints")) << verify.out;
}

// ---------------------------------------------------------------------------
// Rate limit: a bucket of 2, refilled at 1 per second, per identity.

TEST(ServeRateLimit, TooManyRequestsAre429AndOtherIdentitiesAreServed) {
  ensure_resources();
  const Client& other = intruder();
  const std::string log = fresh_log("audit-rate.log");
  fs::path config = variant("serve-rate", {{"audit_log = \"audit.log\"", "audit_log = \"" + log + "\""}},
                            "rate_limit_per_second = 1\nrate_limit_burst = 2\n");
  auto server = ServeProcess::start(config);

  // Twenty requests in one curl (one keep-alive connection): the bucket holds
  // two and gets one more a second, so most of them are refused.
  const std::size_t requests = 20;
  std::vector<std::string> extra = {"-D", work_file("rate-head"), "--write-out", "\n%{http_code}\n"};
  for (std::size_t i = 1; i < requests; ++i) extra.push_back(server->url() + "/v1/health");
  ProcessResult r = curl(admin_identity(), server->url() + "/v1/health", extra);
  std::vector<int> codes;
  {
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() == 3 && std::all_of(line.begin(), line.end(), ::isdigit)) codes.push_back(std::stoi(line));
    }
  }
  ASSERT_EQ(codes.size(), requests) << r.out << r.err;
  EXPECT_EQ(codes[0], 200) << r.out;
  EXPECT_EQ(codes[1], 200) << r.out;
  long limited = std::count(codes.begin(), codes.end(), 429);
  EXPECT_GE(limited, 1) << r.out;
  EXPECT_EQ(static_cast<std::size_t>(limited + std::count(codes.begin(), codes.end(), 200)), requests) << r.out;
  EXPECT_TRUE(contains(r.out, "\"code\":\"resource_exhausted\"")) << r.out;
  std::string heads = read_file(work_file("rate-head"));
  EXPECT_TRUE(contains(heads, "HTTP/1.1 429")) << heads;
  EXPECT_TRUE(contains(heads, "Retry-After: 1")) << heads;

  // Another identity has its own bucket: the service is up for it.
  Reply health = get(*server, "/v1/health", other.id);
  EXPECT_EQ(health.status, 200) << health.describe();
  Reply metrics = get(*server, "/metrics", other.id);
  ASSERT_EQ(metrics.status, 200) << metrics.describe();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(metrics.body, m, std::regex("\nkeyhold_rate_limited_total ([0-9]+)\n")))
      << metrics.body;
  EXPECT_EQ(std::stol(m[1]), limited) << metrics.body;
  // Each refusal was audited too.
  long audited = 0;
  for (const Json& e : audit_events(log)) audited += e["error_code"] == "resource_exhausted";
  EXPECT_EQ(audited, limited);

  // Paths that do not exist count too: each is an audit record like any request.
  std::vector<std::string> unknown = {"--write-out", "\n%{http_code}\n"};
  for (std::size_t i = 1; i < requests; ++i) unknown.push_back(server->url() + "/v1/no-such-path");
  ProcessResult probes = curl(admin_identity(), server->url() + "/v1/no-such-path", unknown);
  long not_found = 0, refused = 0;
  {
    std::istringstream in(probes.out);
    std::string line;
    while (std::getline(in, line)) {
      not_found += line == "404";
      refused += line == "429";
    }
  }
  EXPECT_EQ(static_cast<std::size_t>(not_found + refused), requests) << probes.out << probes.err;
  EXPECT_GE(refused, 1) << probes.out;
}

// ---------------------------------------------------------------------------
// The plain-HTTP listener: public material only, without identity.

TEST(ServePlain, PublicMaterialIsServedAndNothingElse) {
  ensure_resources();
  std::string log = fresh_log("audit-plain.log");
  fs::path config = variant("serve-plain", {{"audit_log = \"audit.log\"", "audit_log = \"" + log + "\""}},
                            "plain_listen = \"127.0.0.1:0\"\n");
  auto server = ServeProcess::start(config);
  ASSERT_EQ(server->plain_url().rfind("http://127.0.0.1:", 0), 0u) << server->out();
  const CurlIdentity nobody;
  const std::string base = server->plain_url();

  Reply chain = http_at(base + "/v1/pki/dev/chain", "GET", nobody);
  ASSERT_EQ(chain.status, 200) << chain.describe();
  std::string chain_file = work_file("plain-chain.pem");
  write_file(chain_file, chain.body);
  EXPECT_EQ(fingerprint(chain_file), fingerprint(path_in_setup("ca.pem")));

  std::string crl = work_file("plain.crl");
  Reply got_crl = http_at(base + "/v1/pki/dev/crl", "GET", nobody, {"-o", crl});
  ASSERT_EQ(got_crl.status, 200) << got_crl.describe();
  ProcessResult crl_check =
      run_process({"openssl", "crl", "-inform", "DER", "-in", crl, "-noout", "-CAfile", path_in_setup("ca.pem")});
  EXPECT_TRUE(crl_check.ok() && contains(crl_check.err + crl_check.out, "verify OK")) << crl_check.out << crl_check.err;

  Reply ca_key = http_at(base + "/v1/ssh/users/ca-key", "GET", nobody);
  ASSERT_EQ(ca_key.status, 200) << ca_key.describe();
  EXPECT_EQ(ca_key.body, must_keyhold({"ssh", "ca-key", "users"}).out);
  Reply krl = http_at(base + "/v1/ssh/users/krl", "GET", nobody);
  ASSERT_EQ(krl.status, 200) << krl.describe();
  EXPECT_EQ(krl.body.rfind(std::string("SSHKRL\n\0", 8), 0), 0u) << "not an OpenSSH KRL";

  // Nothing that needs an identity is there.
  for (const char* path :
       {"/v1/health", "/metrics", "/v1/keys", "/v1/keks/payments", "/v1/pki/dev/certs", "/v1/ssh/users/certs"}) {
    expect_error(http_at(base + path, "GET", nobody), 404, "not_found");
  }
  expect_error(http_at(base + "/v1/pki/dev/revoke", "POST", nobody,
                       {"-H", "Content-Type: application/json", "--data-binary", "{}"}),
               404, "not_found");
  expect_error(http_at(base + "/v1/keks/payments/encrypt", "POST", nobody,
                       {"-H", "Content-Type: application/json", "--data-binary", "{\"plaintext\":\"eA==\"}"}),
               404, "not_found");
  expect_error(http_at(base + "/v1/pki/dev/chain", "POST", nobody), 405, "method_not_allowed");
  // The mTLS listener is unchanged.
  EXPECT_EQ(get(*server, "/v1/health").status, 200);

  // Anonymous callers are audited as such.
  std::vector<Json> events = audit_events(log);
  ASSERT_EQ(events.size(), 14u);
  for (std::size_t i = 0; i + 1 < events.size(); ++i) EXPECT_EQ(events[i]["identity"], "") << events[i].dump();
  EXPECT_EQ(events[0]["operation"], "pki.read");
  EXPECT_EQ(events[0]["outcome"], "allowed");
  EXPECT_EQ(events.back()["identity"], "admin");
}

// ---------------------------------------------------------------------------
// Refusals in the TLS handshake: curl gets no HTTP status, s_client an alert.

// A CA made by plain openssl, and client certificates it signs (openssl ca,
// so that validity dates can lie in the past).
class OpensslCa {
 public:
  explicit OpensslCa(const std::string& name) : dir_(work_dir() / name) {
    fs::create_directories(dir_);
    write_file((dir_ / "index.txt").string(), "");
    write_file((dir_ / "serial").string(), "1000\n");
    config_ = (dir_ / "ca.cnf").string();
    std::string d = dir_.string();
    write_file(config_, "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = " + name +
                            "\n[ca_ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
                            "subjectKeyIdentifier = hash\n"
                            "[ca]\ndefault_ca = this_ca\n[this_ca]\ndatabase = " +
                            d + "/index.txt\nnew_certs_dir = " + d + "\nserial = " + d + "/serial\ncertificate = " + d +
                            "/ca.pem\nprivate_key = " + d +
                            "/ca-key.pem\ndefault_md = sha256\npolicy = any\nemail_in_dn = no\nunique_subject = no\n"
                            "x509_extensions = client_ext\n[any]\ncommonName = supplied\n"
                            "[client_ext]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                            "extendedKeyUsage = clientAuth\nauthorityKeyIdentifier = keyid\n");
    must_run({"openssl", "req", "-config", config_, "-x509", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/ca-key.pem", "-out", d + "/ca.pem", "-days", "30",
              "-extensions", "ca_ext"});
  }
  std::string certificate() const { return (dir_ / "ca.pem").string(); }

  // A client certificate for CN=cn, valid from start to end (openssl's YYYYMMDDHHMMSSZ), or for a day from now.
  CurlIdentity client(const std::string& name, const std::string& cn, const std::string& start = "",
                      const std::string& end = "") {
    Csr csr = make_csr(dir_.filename().string() + "-" + name, "/CN=" + cn);
    std::string pem = (dir_ / (name + ".pem")).string();
    std::vector<std::string> argv = {"openssl", "ca",  "-config", config_, "-batch",
                                     "-notext", "-in", csr.csr,   "-out",  pem};
    if (start.empty()) {
      argv.insert(argv.end(), {"-days", "1"});
    } else {
      argv.insert(argv.end(), {"-startdate", start, "-enddate", end});
    }
    must_run(argv);
    return {pem, csr.key, path_in_setup("ca.pem")};
  }

 private:
  fs::path dir_;
  std::string config_;
};

class ServeTls : public ServeSuite {
 protected:
  static void SetUpTestSuite() {
    intruder();
    // Trusted besides the dev CA: a throwaway CA with a valid and an expired client.
    trusted_ca_ = new OpensslCa("trusted-extra-ca");
    trusted_ok_ = trusted_ca_->client("ok", "throwaway-ok");
    expired_ = trusted_ca_->client("expired", "admin", "20200101000000Z", "20200201000000Z");
    // Not trusted at all: a foreign CA whose client calls itself admin.
    foreign_ca_ = new OpensslCa("foreign-ca");
    foreign_ = foreign_ca_->client("admin", "admin");
    // A dev client, revoked, and the dev CA's CRL that says so.
    revoked_ = dev_client("revoked-client", "/CN=revoked-client", "email:revoked@localhost");
    must_keyhold({"ca", "revoke", "--ca", "dev", "--serial", revoked_.serial, "--reason", "keyCompromise"});
    std::string crl = work_file("dev-crl.pem");
    must_keyhold({"ca", "crl", "--ca", "dev", "--out", crl});
    start(variant("serve-tls",
                  {{"client_ca_files = [\"ca.pem\"]", "client_ca_files = [\"ca.pem\", \"" + trusted_ca_->certificate() +
                                                          "\"]\ncrl_files = [\"" + crl + "\"]"}}));
  }
  static void TearDownTestSuite() {
    stop();
    delete trusted_ca_;
    delete foreign_ca_;
  }

  // curl gets no HTTP status and names the alert; the server answers admin afterwards.
  static void expect_refused_by_curl(const CurlIdentity& who, const std::string& alert) {
    Reply r = get(server(), "/v1/health", who);
    EXPECT_EQ(r.status, 0) << r.describe();
    EXPECT_NE(r.curl_exit, 0) << r.describe();
    EXPECT_TRUE(contains(r.curl_error, alert)) << r.describe();
    EXPECT_TRUE(r.body.empty()) << r.describe();
  }

  // openssl s_client: the handshake ends with the alert, no HTTP response arrives.
  static void expect_refused_by_s_client(const CurlIdentity& who, const std::string& alert) {
    std::vector<std::string> argv = {"openssl",
                                     "s_client",
                                     "-ign_eof",
                                     "-connect",
                                     "127.0.0.1:" + std::to_string(server().port()),
                                     "-servername",
                                     "localhost",
                                     "-CAfile",
                                     path_in_setup("ca.pem")};
    if (!who.certificate.empty()) argv.insert(argv.end(), {"-cert", who.certificate, "-key", who.key});
    ProcessOptions options;
    options.input = "GET /v1/health HTTP/1.0\r\n\r\n";
    ProcessResult r = run_process(argv, options);
    EXPECT_NE(r.exit_code, 0) << r.out << r.err;
    EXPECT_TRUE(contains(r.err + r.out, alert)) << r.out << r.err;
    EXPECT_FALSE(contains(r.out, "HTTP/1.")) << r.out;
  }

  static OpensslCa* trusted_ca_;
  static OpensslCa* foreign_ca_;
  static CurlIdentity trusted_ok_, expired_, foreign_;
  static Client revoked_;
};
OpensslCa* ServeTls::trusted_ca_ = nullptr;
OpensslCa* ServeTls::foreign_ca_ = nullptr;
CurlIdentity ServeTls::trusted_ok_, ServeTls::expired_, ServeTls::foreign_;
Client ServeTls::revoked_;

TEST_F(ServeTls, AdminAndOtherValidClientsGetThroughTheHandshake) {
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
  EXPECT_EQ(get(server(), "/v1/keks/payments").status, 200);
  // A valid client of the extra CA is accepted by TLS, and then the policy decides.
  EXPECT_EQ(get(server(), "/v1/health", trusted_ok_).status, 200);
  expect_denied(get(server(), "/v1/keks/payments", trusted_ok_), "kek.read", "kek:payments");
  expect_denied(get(server(), "/v1/keks/payments", intruder().id), "kek.read", "kek:payments");
  // s_client with the admin certificate gets an HTTP answer.
  ProcessOptions options;
  options.input = "GET /v1/health HTTP/1.0\r\n\r\n";
  ProcessResult r =
      run_process({"openssl", "s_client", "-ign_eof", "-connect", "127.0.0.1:" + std::to_string(server().port()),
                   "-servername", "localhost", "-CAfile", path_in_setup("ca.pem"), "-cert",
                   admin_identity().certificate, "-key", admin_identity().key},
                  options);
  EXPECT_TRUE(contains(r.out, "HTTP/1.0 200 OK") || contains(r.out, "HTTP/1.1 200 OK")) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "Verify return code: 0 (ok)")) << r.out;
}

TEST_F(ServeTls, Tls12IsRefusedByDefault) {
  Reply r = http(server(), "GET", "/v1/health", admin_identity(), {"--tls-max", "1.2"});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_TRUE(contains(r.curl_error, "protocol version")) << r.describe();
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeTls, NoClientCertificateIsRefused) {
  CurlIdentity none{"", "", path_in_setup("ca.pem")};
  expect_refused_by_curl(none, "certificate required");
  expect_refused_by_s_client(none, "certificate required");
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeTls, ClientCertificateOfAForeignCaIsRefused) {
  expect_refused_by_curl(foreign_, "unknown ca");
  expect_refused_by_s_client(foreign_, "unknown ca");
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeTls, ExpiredClientCertificateIsRefused) {
  ProcessResult dates = run_process({"openssl", "x509", "-in", expired_.certificate, "-noout", "-enddate"});
  ASSERT_TRUE(contains(dates.out, "2020")) << dates.out;
  expect_refused_by_curl(expired_, "certificate expired");
  expect_refused_by_s_client(expired_, "certificate expired");
  EXPECT_EQ(get(server(), "/v1/health").status, 200);
}

TEST_F(ServeTls, VerifiedCertificateWithoutIdentityIs403) {
  // Neither a URI SAN nor a CN: TLS accepts it, the server refuses every request.
  Client nobody = dev_client("no-identity", "/O=nobody", "email:nobody@localhost");
  for (const char* path : {"/v1/health", "/v1/keks/payments"}) {
    Reply r = get(server(), path, nobody.id);
    expect_error(r, 403, "permission_denied");
    EXPECT_EQ(text_of(r.json()["error"], "message"), "the client certificate carries no identity (URI SAN or CN)")
        << r.describe();
  }
}

TEST_F(ServeTls, RevokedClientCertificateIsRefusedWhileAdminWorks) {
  expect_refused_by_curl(revoked_.id, "certificate revoked");
  expect_refused_by_s_client(revoked_.id, "certificate revoked");
  Reply admin = get(server(), "/v1/keks/payments");
  EXPECT_EQ(admin.status, 200) << admin.describe();
  // The refusals are counted.
  Reply metrics = get(server(), "/metrics");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(metrics.body, m, std::regex("\nkeyhold_tls_handshake_failures_total ([0-9]+)\n")))
      << metrics.body;
  EXPECT_GE(std::stol(m[1]), 2) << metrics.body;
}

// ---------------------------------------------------------------------------
// A policy with a mistake: the service does not start, and says where.

TEST(ServeStartup, APolicyWithAMistakeIsRefusedWithFileAndLine) {
  std::string policy = work_file("policy-typo.toml");
  write_file(policy,
             "[[rule]]\nname = \"x\"\nidentities = [\"admin\"]\noperations = [\"kek.decypt\"]\nresources = "
             "[\"kek:*\"]\n");
  fs::path config = variant("serve-typo", {{"policy_file = \"policy.toml\"", "policy_file = \"" + policy + "\""}});
  try {
    auto server = ServeProcess::start(config);
    ADD_FAILURE() << "keyhold serve started with a bad policy";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(
        contains(e.what(), policy + ":4: rule 'x': unknown operation 'kek.decypt' (did you mean 'kek.decrypt'?)"))
        << e.what();
  }
}

// ---------------------------------------------------------------------------
// The server's private key is in the token, never in a file.

TEST(ServeKeys, TheServersPrivateKeyNeverExistsAsAFile) {
  ensure_resources();
  intruder();
  payments();
  const DevSetup& setup = DevSetup::get();
  std::string server_public = public_key_of_certificate(path_in_setup("server.pem"));
  ASSERT_TRUE(contains(server_public, "BEGIN PUBLIC KEY")) << server_public;

  // The key the server's certificate is for is the token key 'server-tls' ...
  EXPECT_EQ(trimmed(must_keyhold({"key", "public", "server-tls"}).out), trimmed(server_public));
  // ... and the server presents that certificate.
  {
    auto server = ServeProcess::start(setup.config);
    ProcessOptions options;
    options.input = "GET /v1/health HTTP/1.0\r\n\r\n";
    ProcessResult r =
        run_process({"openssl", "s_client", "-ign_eof", "-showcerts", "-connect",
                     "127.0.0.1:" + std::to_string(server->port()), "-servername", "localhost", "-CAfile",
                     path_in_setup("ca.pem"), "-cert", admin_identity().certificate, "-key", admin_identity().key},
                    options);
    std::size_t begin = r.out.find("-----BEGIN CERTIFICATE-----");
    std::size_t end = r.out.find("-----END CERTIFICATE-----");
    ASSERT_TRUE(begin != std::string::npos && end != std::string::npos) << r.out << r.err;
    std::string presented = work_file("presented.pem");
    write_file(presented, r.out.substr(begin, end + 25 - begin) + "\n");
    EXPECT_EQ(public_key_of_certificate(presented), server_public);
  }

  // Every file with a private key, in the set-up and among the tests' own files.
  std::vector<fs::path> with_key;
  for (const fs::path& root : {setup.dir, work_dir()}) {
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (contains(text, "PRIVATE KEY-----")) with_key.push_back(entry.path());
    }
  }
  bool admin_key_seen = false;
  for (const fs::path& file : with_key) {
    bool ours = file.string().rfind(work_dir().string(), 0) == 0;
    bool admin_key = file == setup.dir / "admin-key.pem";
    admin_key_seen = admin_key_seen || admin_key;
    EXPECT_TRUE(ours || admin_key) << file << " in the set-up holds a private key";
    ProcessResult pub = run_process({"openssl", "pkey", "-in", file.string(), "-pubout"});
    if (!pub.ok()) continue;  // an OpenSSH key: not the server's kind
    EXPECT_NE(pub.out, server_public) << file << " holds the server's private key";
  }
  EXPECT_TRUE(admin_key_seen) << "the scan found no admin-key.pem: it does not look at the right place";
}

}  // namespace
}  // namespace keyhold::testing
