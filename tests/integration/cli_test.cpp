// The keyhold command end to end: a dev set-up made by `keyhold init --dev`
// (its own throwaway SoftHSM token), real peers (openssl, ssh-keygen,
// pkcs11-tool, sqlite3) checking what keyhold prints, and every bad input
// of the foundation issue with its exit status. The audit tests also open
// the set-up's token in this process, as keyhold does, to write an audit log
// signed by its audit key.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>
#include <tuple>

#include "keyhold/app/config.hpp"
#include "keyhold/audit/log.hpp"
#include "keyhold/authz/policy.hpp"
#include "keyhold/crypto/token_key_ring.hpp"
#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/pin.hpp"
#include "keyhold/hsm/token.hpp"
#include "keyhold/hsm/uri.hpp"
#include "support/dev_setup.hpp"
#include "support/process.hpp"
#include "support/token_fixture.hpp"

namespace keyhold {
namespace {

namespace fs = std::filesystem;
using testing::ProcessResult;
using testing::read_file;
using testing::run_process;
using testing::write_file;

using testing::config_variant;
using testing::DevSetup;
using testing::expect_one_error_line;
using testing::keyhold;
using testing::keyhold_json;
using testing::pkcs11_tool;
using testing::with_softhsm_conf;

int count_keys() {
  nlohmann::json list = keyhold_json({"key", "list", "--all"});
  return static_cast<int>(list["keys"].size() + list["drift"]["unmanaged_in_token"].size());
}

TEST(InitDev, MakesATokenConfigStoreAndAPrivatePinFile) {
  DevSetup& s = DevSetup::get();
  for (const char* file : {"keyhold.toml", "keyhold.db", "pin", "softhsm2.conf", "ca.pem", "server.pem", "admin.pem",
                           "admin-key.pem", "policy.toml", "audit.log"}) {
    ASSERT_TRUE(fs::exists(s.dir / file)) << file;
  }
  struct stat st {};
  ASSERT_EQ(::stat((s.dir / "pin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_GE(s.pin.size(), 16u);
  // The configuration names the PIN file, never the PIN.
  EXPECT_EQ(read_file(s.config.string()).find(s.pin), std::string::npos);

  nlohmann::json info = keyhold_json({"token", "info"});
  EXPECT_EQ(info["label"], "keyhold-dev");
  EXPECT_EQ(info["manufacturer"], "SoftHSM project");
  EXPECT_TRUE(info["unsupported_key_types"].empty());
}

TEST(InitDev, RefusesADirectoryThatAlreadyHoldsASetUpAndChangesNothing) {
  std::string before = read_file(DevSetup::get().config.string());
  ProcessResult r = run_process({testing::keyhold_binary(), "init", "--dev", "--dir", DevSetup::get().dir.string()});
  EXPECT_EQ(r.exit_code, 1);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("already holds a keyhold set-up"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(DevSetup::get().config.string()), before);
  EXPECT_EQ(keyhold({"key", "list"}).exit_code, 0);
}

TEST(InitDev, WithoutDevSaysWhy) {
  ProcessResult r = run_process({testing::keyhold_binary(), "init"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("--dev"), std::string::npos);
}

class KeyOfType : public ::testing::TestWithParam<std::string> {};

TEST_P(KeyOfType, IsCreatedListedShownAndItsPublicKeyReadByOpensslAndSshKeygen) {
  std::string type = GetParam();
  std::string name = "cli-" + type;
  ProcessResult created = keyhold({"key", "create", name, "--type", type});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_EQ(created.signal, 0);

  nlohmann::json shown = keyhold_json({"key", "show", name});
  EXPECT_EQ(shown["name"], name);
  EXPECT_EQ(shown["type"], type);
  EXPECT_EQ(shown["state"], "active");
  EXPECT_EQ(shown["in_token"], true);
  EXPECT_EQ(shown["attributes"]["sensitive"], true);
  EXPECT_EQ(shown["attributes"]["extractable"], false);
  EXPECT_EQ(shown["attributes"]["always_sensitive"], true);
  EXPECT_EQ(shown["attributes"]["never_extractable"], true);
  EXPECT_EQ(shown["attributes"]["local"], true);
  EXPECT_EQ(shown["attributes"]["private"], true);
  EXPECT_EQ(shown["attributes"]["modifiable"], false);
  EXPECT_EQ(shown["id"].get<std::string>().size(), 32u);
  std::string uri = shown["uri"];
  EXPECT_EQ(uri.rfind("pkcs11:", 0), 0u);
  EXPECT_NE(uri.find("object=" + name), std::string::npos) << uri;
  EXPECT_NE(uri.find("token=keyhold-dev"), std::string::npos) << uri;

  // The text form carries the same facts.
  ProcessResult text = keyhold({"key", "show", name});
  EXPECT_TRUE(std::regex_search(text.out, std::regex("never-extractable: +yes"))) << text.out;
  EXPECT_NE(text.out.find(uri), std::string::npos);

  bool listed = false;
  nlohmann::json list = keyhold_json({"key", "list"});
  for (const auto& k : list["keys"]) listed = listed || k["name"] == name;
  EXPECT_TRUE(listed);

  fs::path dir = DevSetup::get().dir;
  if (type == "aes-256") {
    EXPECT_EQ(shown["usage"], nlohmann::json({"encrypt", "decrypt"}));
    ProcessResult pub = keyhold({"key", "public", name});
    EXPECT_EQ(pub.exit_code, 2);
    expect_one_error_line(pub);
    EXPECT_NE(pub.err.find("no public half"), std::string::npos);
    return;
  }
  EXPECT_EQ(shown["usage"], nlohmann::json({"sign"}));
  EXPECT_EQ(shown["has_public_object"], true);

  // Other PKCS#11 tools see a pair: a private and a public object with one CKA_ID and label.
  ProcessResult objects = run_process(pkcs11_tool({"--list-objects", "--id", shown["id"]}), with_softhsm_conf());
  ASSERT_EQ(objects.exit_code, 0) << objects.err;
  EXPECT_NE(objects.out.find("Private Key Object"), std::string::npos) << objects.out;
  EXPECT_NE(objects.out.find("Public Key Object"), std::string::npos) << objects.out;
  std::regex label("label: +" + name + "\n");
  EXPECT_EQ(std::distance(std::sregex_iterator(objects.out.begin(), objects.out.end(), label), std::sregex_iterator()), 2)
      << objects.out;

  ProcessResult pem = keyhold({"key", "public", name});
  ASSERT_EQ(pem.exit_code, 0) << pem.err;
  std::string pem_file = (dir / (name + ".pem")).string();
  write_file(pem_file, pem.out);
  ProcessResult parsed = run_process({"openssl", "pkey", "-pubin", "-in", pem_file, "-text", "-noout"});
  ASSERT_EQ(parsed.exit_code, 0) << parsed.err;
  if (type.rfind("rsa-", 0) == 0) {
    EXPECT_NE(parsed.out.find("Public-Key: (" + type.substr(4) + " bit)"), std::string::npos) << parsed.out;
  } else if (type == "ec-p256") {
    EXPECT_NE(parsed.out.find("NIST CURVE: P-256"), std::string::npos) << parsed.out;
  } else if (type == "ec-p384") {
    EXPECT_NE(parsed.out.find("NIST CURVE: P-384"), std::string::npos) << parsed.out;
  } else {
    EXPECT_NE(parsed.out.find("ED25519 Public-Key"), std::string::npos) << parsed.out;
  }

  ProcessResult ssh = keyhold({"key", "public", name, "--format", "openssh"});
  ASSERT_EQ(ssh.exit_code, 0) << ssh.err;
  std::string ssh_file = (dir / (name + ".pub")).string();
  write_file(ssh_file, ssh.out);
  ProcessResult fingerprint = run_process({"ssh-keygen", "-l", "-f", ssh_file});
  ASSERT_EQ(fingerprint.exit_code, 0) << fingerprint.err;
  std::string expected_kind = type == "ed25519" ? "(ED25519)" : type.rfind("ec-", 0) == 0 ? "(ECDSA)" : "(RSA)";
  EXPECT_NE(fingerprint.out.find(expected_kind), std::string::npos) << fingerprint.out;
  EXPECT_NE(fingerprint.out.find(name), std::string::npos) << "the comment is the key name";
  if (type != "ed25519") {
    // Round trip through OpenSSH's own converter gives back the same SubjectPublicKeyInfo.
    ProcessResult converted = run_process({"ssh-keygen", "-e", "-m", "PKCS8", "-f", ssh_file});
    ASSERT_EQ(converted.exit_code, 0) << converted.err;
    EXPECT_EQ(converted.out, pem.out);
  }
}

INSTANTIATE_TEST_SUITE_P(EveryType, KeyOfType,
                         ::testing::Values("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ed25519",
                                           "aes-256"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(KeyCreate, BadInputGetsOneLineTheDocumentedStatusAndChangesNothing) {
  ASSERT_EQ(keyhold({"key", "create", "taken", "--type", "ec-p256"}).exit_code, 0);
  int before = count_keys();
  struct Case {
    std::vector<std::string> args;
    int status;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"key", "create", "k1", "--type", "rsa-1024"}, 2, "unknown key type 'rsa-1024'"},
      {{"key", "create", "k1", "--type", "ec-p521"}, 2, "unknown key type"},
      {{"key", "create", "k1"}, 2, "--type"},
      {{"key", "create", "bad name", "--type", "ec-p256"}, 2, "invalid key name"},
      {{"key", "create", "../etc", "--type", "ec-p256"}, 2, "invalid key name"},
      {{"key", "create", std::string(65, 'a'), "--type", "ec-p256"}, 2, "invalid key name"},
      {{"key", "create", "k1", "--type", "ec-p256", "--purpose", "encrypt"}, 2, "for signing"},
      {{"key", "create", "k1", "--type", "aes-256", "--purpose", "sign"}, 2, "for encryption"},
      {{"key", "create", "k1", "--type", "ec-p256", "--purpose", "wrap"}, 2, "unknown purpose"},
      {{"key", "create", "k1", "--type", "ec-p256", "--colour", "red"}, 2, "colour"},
      {{"key", "create", "taken", "--type", "ed25519"}, 1, "exists already"},
      {{"key", "create", "kek.payments.v2", "--type", "aes-256"}, 2, "kept for the keys keyhold makes"},
      {{"key", "create", "ca.issuing.v3", "--type", "ec-p256"}, 2, "'ca.'"},
      {{"key", "create", "ssh.deploy.v2", "--type", "ec-p256"}, 2, "'ssh.'"},
  };
  for (const Case& c : cases) {
    ProcessResult r = keyhold(c.args);
    EXPECT_EQ(r.exit_code, c.status) << c.args[2] << ": " << r.err;
    expect_one_error_line(r);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }
  EXPECT_EQ(count_keys(), before) << "a refused create left a store row or a token object behind";
}

TEST(KeyCommands, NotFoundAndMissingConfirmationAreRefused) {
  ProcessResult r = keyhold({"key", "show", "no-such-key"});
  EXPECT_EQ(r.exit_code, 4);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("no key named 'no-such-key'"), std::string::npos);
  EXPECT_EQ(keyhold({"key", "public", "no-such-key"}).exit_code, 4);
  EXPECT_EQ(keyhold({"key", "destroy", "no-such-key", "--yes"}).exit_code, 4);

  ASSERT_EQ(keyhold({"key", "create", "keep-me", "--type", "ec-p256"}).exit_code, 0);
  r = keyhold({"key", "destroy", "keep-me"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--yes"), std::string::npos);
  EXPECT_EQ(keyhold_json({"key", "show", "keep-me"})["in_token"], true);

  r = keyhold({"key", "public", "keep-me", "--format", "der"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown format"), std::string::npos);
  r = keyhold({"key", "frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command"), std::string::npos);
  EXPECT_NE(r.err.find("'key' takes: create, list, show, public, destroy"), std::string::npos) << r.err;
  r = keyhold({"key", "show"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("missing NAME (usage: keyhold key show NAME)"), std::string::npos) << r.err;
}

TEST(Cli, HelpPerCommandAndGlobalOptionsAfterTheCommand) {
  ProcessResult r = keyhold({"key", "create", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("usage: keyhold key create NAME --type T"), std::string::npos) << r.out;
  r = keyhold({"key", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(nlohmann::json::parse(r.out).contains("keys"));
  r = keyhold({"token", "info", "--config", DevSetup::get().config.string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["label"], "keyhold-dev");
  r = run_process({testing::keyhold_binary()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("usage: keyhold"), std::string::npos);
}

TEST(InitDev, TakesARelativeModulePathAndWritesItAbsolute) {
  fs::path dir = DevSetup::get().dir.parent_path() / "relative-module";
  fs::path module = fs::relative(testing::ThrowawayToken::module_path(), fs::current_path());
  ProcessResult r = run_process({testing::keyhold_binary(), "init", "--dev", "--dir", dir.string(), "--module", module.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(read_file((dir / "keyhold.toml").string()).find("module = \"" + fs::weakly_canonical(testing::ThrowawayToken::module_path()).string()),
            std::string::npos);
  testing::ProcessOptions options;
  options.env["KEYHOLD_CONFIG"] = (dir / "keyhold.toml").string();
  EXPECT_EQ(run_process({testing::keyhold_binary(), "key", "list"}, options).exit_code, 0);
}

TEST(KeyDestroy, RemovesTheTokenObjectsAndKeepsTheRecord) {
  ASSERT_EQ(keyhold({"key", "create", "short-lived", "--type", "ed25519"}).exit_code, 0);
  std::string id = keyhold_json({"key", "show", "short-lived"})["id"];
  ProcessResult r = keyhold({"key", "destroy", "short-lived", "--yes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(keyhold({"key", "show", "short-lived"}).exit_code, 4);

  // The token no longer has either half (pkcs11-tool is the independent witness).
  ProcessResult objects = run_process(pkcs11_tool({"--list-objects"}), with_softhsm_conf());
  ASSERT_EQ(objects.exit_code, 0) << objects.err;
  EXPECT_EQ(objects.out.find("short-lived"), std::string::npos) << objects.out;

  bool kept = false;
  nlohmann::json all = keyhold_json({"key", "list", "--all"});
  for (const auto& k : all["keys"]) {
    if (k["name"] == "short-lived") kept = k["state"] == "destroyed" && k["id"] == id && !k["destroyed_at"].is_null();
  }
  EXPECT_TRUE(kept) << "the store keeps the destroyed key record: " << keyhold({"--json", "key", "list", "--all"}).out;
  // The name is free again.
  EXPECT_EQ(keyhold({"key", "create", "short-lived", "--type", "ed25519"}).exit_code, 0);
}

TEST(KeyList, ReportsDriftAndIsNotBrokenByObjectsOfOtherTools) {
  ASSERT_EQ(keyhold({"key", "create", "drift-gone", "--type", "ec-p256"}).exit_code, 0);
  std::string id = keyhold_json({"key", "show", "drift-gone"})["id"];
  testing::ProcessOptions conf = with_softhsm_conf();
  for (const char* type : {"privkey", "pubkey"}) {
    ProcessResult r = run_process(pkcs11_tool({"--delete-object", "--type", type, "--id", id}), conf);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Another tool's extractable key, a certificate and a data object.
  ASSERT_EQ(run_process(pkcs11_tool({"--keypairgen", "--key-type", "EC:prime256v1", "--label", "foreign-key", "--id",
                                     "beef01", "--extractable"}),
                        conf)
                .exit_code,
            0);
  fs::path dir = DevSetup::get().dir;
  std::string key = (dir / "cert-key.pem").string(), cert = (dir / "cert.der").string();
  ASSERT_EQ(run_process({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                         "-keyout", key, "-subj", "/CN=other tool", "-days", "1", "-outform", "DER", "-out", cert})
                .exit_code,
            0);
  ASSERT_EQ(run_process(pkcs11_tool({"--write-object", cert, "--type", "cert", "--label", "other-cert", "--id", "beef02"}),
                        conf)
                .exit_code,
            0);
  write_file((dir / "blob").string(), "some opaque data");
  ASSERT_EQ(run_process(pkcs11_tool({"--write-object", (dir / "blob").string(), "--type", "data", "--label",
                                     "other-data"}),
                        conf)
                .exit_code,
            0);

  ProcessResult text = keyhold({"key", "list"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("in the store but missing from the token"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("drift-gone"), std::string::npos);
  EXPECT_NE(text.out.find("keys in the token that keyhold does not manage"), std::string::npos);
  EXPECT_NE(text.out.find("foreign-key"), std::string::npos);
  EXPECT_NE(text.out.find("UNSAFE: "), std::string::npos);
  EXPECT_EQ(text.out.find("other-cert"), std::string::npos) << "certificates are not keys";

  nlohmann::json list = keyhold_json({"key", "list"});
  EXPECT_NE(std::find(list["drift"]["missing_from_token"].begin(), list["drift"]["missing_from_token"].end(),
                      "drift-gone"),
            list["drift"]["missing_from_token"].end());
  bool foreign = false;
  for (const auto& k : list["drift"]["unmanaged_in_token"]) {
    if (k["label"] == "foreign-key") {
      foreign = true;
      EXPECT_EQ(k["attributes"]["extractable"], true);
      EXPECT_FALSE(k["exposure"].empty());
    }
  }
  EXPECT_TRUE(foreign);
  ProcessResult show = keyhold({"key", "show", "drift-gone"});
  EXPECT_EQ(show.exit_code, 0);
  EXPECT_NE(show.out.find("MISSING"), std::string::npos) << show.out;
}

TEST(Pin, FromAPinSourceFileInTheTokenUri) {
  std::string pin_file = (DevSetup::get().dir / "pin").string();
  fs::path config = config_variant("pin-source", "uri = \"pkcs11:token=keyhold-dev\"\npin_file = \"pin\"",
                                   "uri = \"pkcs11:token=keyhold-dev?pin-source=file:" + pin_file + "\"");
  ProcessResult r = keyhold({"--config", config.string(), "key", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // The URI's pin-source wins over pin_file: a wrong one there is what fails.
  fs::path wrong = config_variant("pin-source-wrong", "uri = \"pkcs11:token=keyhold-dev\"",
                                  "uri = \"pkcs11:token=keyhold-dev?pin-source=file:/nonexistent/pin\"");
  r = keyhold({"--config", wrong.string(), "key", "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("/nonexistent/pin"), std::string::npos) << r.err;
}

TEST(TokenSelection, TheUriMayNameTheModuleByPathOrName) {
  fs::path by_path = config_variant("module-path", "module = \"softhsm2\"\nuri = \"pkcs11:token=keyhold-dev\"",
                                    "module = \"/nonexistent/ignored.so\"\nuri = \"pkcs11:token=keyhold-dev?module-path=" +
                                        testing::ThrowawayToken::module_path() + "\"");
  ProcessResult r = keyhold({"--config", by_path.string(), "--json", "token", "info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["label"], "keyhold-dev");
  fs::path by_name = config_variant("module-name", "module = \"softhsm2\"\nuri = \"pkcs11:token=keyhold-dev\"",
                                    "module = \"/nonexistent/ignored.so\"\nuri = \"pkcs11:token=keyhold-dev?module-name=softhsm2\"");
  r = keyhold({"--config", by_name.string(), "key", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // By serial, as production configurations should (never by slot id).
  std::string serial = keyhold_json({"token", "info"})["serial"];
  fs::path by_serial = config_variant("serial", "uri = \"pkcs11:token=keyhold-dev\"",
                                      "uri = \"pkcs11:serial=" + serial + "\"");
  EXPECT_EQ(keyhold({"--config", by_serial.string(), "key", "list"}).exit_code, 0);
}

TEST(Pin, OnTheCommandLineIsRefusedWithoutRepeatingIt) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"--pin", "4711secret", "key", "list"},
           {"key", "list", "--pin=4711secret"},
           {"key", "create", "x", "--type", "ec-p256", "--so-pin", "4711secret"},
           {"--config", "pkcs11:token=x;pin-value=4711secret", "key", "list"}}) {
    ProcessResult r = keyhold(args);
    EXPECT_EQ(r.exit_code, 2);
    expect_one_error_line(r);
    EXPECT_NE(r.err.find("refused"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("pin_file"), std::string::npos) << "says how to do it instead: " << r.err;
    EXPECT_EQ(r.err.find("4711secret"), std::string::npos) << r.err;
  }
}

TEST(Pin, InTheConfigurationFileIsRefused) {
  fs::path bad = config_variant("pin-value", "uri = \"pkcs11:token=keyhold-dev\"",
                                "uri = \"pkcs11:token=keyhold-dev?pin-value=4711secret\"");
  ProcessResult r = keyhold({"--config", bad.string(), "key", "list"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_error_line(r);
  EXPECT_EQ(r.err.find("4711secret"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pin-source=file:"), std::string::npos) << r.err;
}

TEST(Pin, WrongPinFailsOnceWithExitThreeAndIsNotRetried) {
  fs::path dir = DevSetup::get().dir;
  std::string wrong = (dir / "wrong-pin").string();
  write_file(wrong, "wrong-4711\n");
  ::chmod(wrong.c_str(), 0600);
  fs::path bad = config_variant("wrong-pin", "pin_file = \"pin\"", "pin_file = \"wrong-pin\"");
  testing::ProcessOptions trace;
  trace.env["KEYHOLD_LOG"] = "trace";
  ProcessResult r = keyhold({"--config", bad.string(), "key", "list"}, trace);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("keyhold: error: logging in to token 'keyhold-dev'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CKR_PIN_INCORRECT"), std::string::npos);
  EXPECT_EQ(r.err.find("wrong-4711"), std::string::npos);
  std::regex login("pkcs11 C_Login ");
  auto logins = std::distance(std::sregex_iterator(r.err.begin(), r.err.end(), login), std::sregex_iterator());
  EXPECT_EQ(logins, 1) << r.err;

  // Without tracing: one line. And the right PIN still works (the token did not lock).
  r = keyhold({"--config", bad.string(), "key", "list"});
  EXPECT_EQ(r.exit_code, 3);
  expect_one_error_line(r);
  EXPECT_EQ(keyhold({"key", "list"}).exit_code, 0);
}

TEST(Pin, FileReadableByOthersIsRefused) {
  fs::path dir = DevSetup::get().dir;
  std::string loose = (dir / "loose-pin").string();
  write_file(loose, DevSetup::get().pin + "\n");
  ::chmod(loose.c_str(), 0644);
  fs::path bad = config_variant("loose-pin", "pin_file = \"pin\"", "pin_file = \"loose-pin\"");
  ProcessResult r = keyhold({"--config", bad.string(), "key", "list"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << r.err;
}

TEST(Pin, FromTheEnvironmentWorksForDevelopment) {
  fs::path no_pin_file = config_variant("env-pin", "pin_file = \"pin\"\n", "");
  testing::ProcessOptions env;
  env.env["KEYHOLD_PIN"] = DevSetup::get().pin;
  EXPECT_EQ(keyhold({"--config", no_pin_file.string(), "key", "list"}, env).exit_code, 0);
  // Without any PIN source and no terminal: a usage error saying what to do.
  ProcessResult r = keyhold({"--config", no_pin_file.string(), "key", "list"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("set pin_file"), std::string::npos) << r.err;
}

TEST(Pin, IsAskedOnATerminalWithoutEcho) {
  fs::path no_pin_file = config_variant("prompt", "pin_file = \"pin\"\n", "");
  int master = -1;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::unsetenv("KEYHOLD_PIN");
    ::unsetenv("KEYHOLD_LOG");
    std::string bin = testing::keyhold_binary(), cfg = no_pin_file.string();
    ::execl(bin.c_str(), bin.c_str(), "--config", cfg.c_str(), "key", "list", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string transcript;
  bool answered = false;
  for (;;) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 20000) <= 0) break;
    char buf[4096];
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;
    transcript.append(buf, static_cast<std::size_t>(n));
    if (!answered && transcript.find("PIN for token 'keyhold-dev': ") != std::string::npos) {
      std::string line = DevSetup::get().pin + "\n";
      ASSERT_EQ(::write(master, line.data(), line.size()), static_cast<ssize_t>(line.size()));
      answered = true;
    }
  }
  ::close(master);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(answered) << transcript;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << transcript;
  EXPECT_NE(transcript.find("NAME"), std::string::npos) << "the listing came after the prompt: " << transcript;
  EXPECT_EQ(transcript.find(DevSetup::get().pin), std::string::npos) << "the PIN was echoed";
}

TEST(TokenErrors, MissingModuleMissingTokenAndMalformedUriAreClear) {
  struct Case {
    std::string from, to;
    int status;
    std::string says;
  };
  std::vector<Case> cases = {
      {"module = \"softhsm2\"", "module = \"/nonexistent/libnothing.so\"", 3, "does not exist"},
      {"module = \"softhsm2\"", "module = \"no-such-module\"", 3, "no PKCS#11 module named 'no-such-module'"},
      {"uri = \"pkcs11:token=keyhold-dev\"", "uri = \"pkcs11:token=no-such-token\"", 3, "no token matches"},
      {"uri = \"pkcs11:token=keyhold-dev\"", "uri = \"pkcs11:token=%zz\"", 2, "malformed PKCS#11 URI"},
      {"uri = \"pkcs11:token=keyhold-dev\"", "uri = \"https://example.org/\"", 2, "pkcs11:"},
      {"[store]", "[store]\ncolour = \"red\"", 2, "unknown key 'store.colour'"},
  };
  int i = 0;
  for (const Case& c : cases) {
    fs::path config = config_variant("token-error-" + std::to_string(i++), c.from, c.to);
    for (const char* command : {"key", "token"}) {
      std::vector<std::string> args = {"--config", config.string(), command,
                                       std::string(command) == "key" ? "list" : "info"};
      ProcessResult r = keyhold(args);
      EXPECT_EQ(r.exit_code, c.status) << c.to << ": " << r.err;
      expect_one_error_line(r);
      EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
      EXPECT_EQ(r.signal, 0);
    }
  }
}

TEST(Exit, TheCliExitsCleanlyAfterUsingTheToken) {
  // SoftHSM can crash in a late C_Finalize when OpenSSL is loaded (SoftHSMv2 #780):
  // every run must end with status 0 and no signal.
  for (int i = 0; i < 5; ++i) {
    ProcessResult r = keyhold({"key", "list"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.signal, 0);
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
  ProcessResult r = keyhold({"key", "create", "exit-check", "--type", "rsa-2048"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0);
}

TEST(Concurrency, ManyKeyholdProcessesAtOnceAllFindTheToken) {
  // SoftHSM rewrites the token's files at login; without keyhold's lock
  // around module loading and login, about a third of 20 simultaneous runs
  // found no token at all (status 3).
  keyhold({"key", "create", "concurrency-check", "--type", "ec-p256"});
  std::vector<std::thread> runs;
  std::vector<ProcessResult> results(20);
  for (std::size_t i = 0; i < results.size(); ++i) {
    runs.emplace_back([&, i] {
      results[i] = keyhold(i % 2 == 0 ? std::vector<std::string>{"key", "list"}
                                      : std::vector<std::string>{"key", "show", "concurrency-check"});
    });
  }
  for (auto& t : runs) t.join();
  for (const ProcessResult& r : results) EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Secrets, NoPinInLogsOutputOrTheStore) {
  testing::ProcessOptions trace;
  trace.env["KEYHOLD_LOG"] = "trace";
  std::string everything;
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"key", "create", "secret-check", "--type", "aes-256"},
           {"key", "list", "--all"},
           {"--json", "key", "show", "secret-check"},
           {"token", "info"},
           {"key", "destroy", "secret-check", "--yes"}}) {
    ProcessResult r = keyhold(args, trace);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    everything += r.out + r.err;
  }
  EXPECT_NE(everything.find("pkcs11 C_Login -> CKR_OK"), std::string::npos) << "tracing was on";
  EXPECT_EQ(everything.find(DevSetup::get().pin), std::string::npos);
  for (const char* file : {"keyhold.db", "keyhold.db-wal", "keyhold.toml"}) {
    fs::path path = DevSetup::get().dir / file;
    if (fs::exists(path)) {
      EXPECT_EQ(read_file(path.string()).find(DevSetup::get().pin), std::string::npos) << file;
    }
  }
  // The store holds metadata only: its tables and columns say so.
  ProcessResult schema = run_process({"sqlite3", (DevSetup::get().dir / "keyhold.db").string(), ".schema"});
  ASSERT_EQ(schema.exit_code, 0) << schema.err;
  EXPECT_NE(schema.out.find("CREATE TABLE keys"), std::string::npos) << schema.out;
  EXPECT_EQ(schema.out.find("value"), std::string::npos) << schema.out;
}

// ---- init --dev: what keyhold serve needs ---------------------------------------

// Lines of a text, without their "\n".
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string joined_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

unsigned mode_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(InitDev, MakesWhatTheServiceNeedsAndKeepsEveryServiceKeyInTheToken) {
  // A set-up of its own: other tests add keys and files to the shared one.
  fs::path dir = DevSetup::get().dir.parent_path() / "service";
  ProcessResult init = run_process({testing::keyhold_binary(), "--json", "init", "--dev", "--dir", dir.string()});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_EQ(init.err, "");  // no development-profile warnings: init issues under exact profiles
  nlohmann::json made = nlohmann::json::parse(init.out);
  const std::string ca = (dir / "ca.pem").string(), server = (dir / "server.pem").string(),
                    admin = (dir / "admin.pem").string(), admin_key = (dir / "admin-key.pem").string();
  EXPECT_EQ(made["ca"], "dev");
  EXPECT_EQ(made["ca_certificate"], ca);
  EXPECT_EQ(made["server_certificate"], server);
  EXPECT_EQ(made["server_key"], "server-tls");
  EXPECT_EQ(made["admin_certificate"], admin);
  EXPECT_EQ(made["admin_key_file"], admin_key);
  EXPECT_EQ(made["policy_file"], (dir / "policy.toml").string());
  EXPECT_EQ(made["audit_log"], (dir / "audit.log").string());
  EXPECT_EQ(made["audit_key"], "audit");

  // ca.pem verifies both certificates, each for its own purpose only.
  for (const auto& [file, purpose, other] :
       {std::tuple{server, "sslserver", "sslclient"}, std::tuple{admin, "sslclient", "sslserver"}}) {
    ProcessResult ok = run_process({"openssl", "verify", "-x509_strict", "-CAfile", ca, "-purpose", purpose, file});
    EXPECT_EQ(ok.exit_code, 0) << file << ": " << ok.out << ok.err;
    EXPECT_EQ(ok.out, file + ": OK\n");
    EXPECT_NE(run_process({"openssl", "verify", "-CAfile", ca, "-purpose", other, file}).exit_code, 0) << file;
  }
  // The chains: leaf, then the dev CA.
  const std::string ca_pem = read_file(ca);
  for (const std::string& file : {server, admin}) {
    std::string pem = read_file(file);
    EXPECT_TRUE(pem.size() > ca_pem.size() && pem.ends_with(ca_pem)) << file << " does not end with ca.pem";
    std::string::size_type certificates = 0;
    for (std::size_t at = pem.find("-----BEGIN CERTIFICATE-----"); at != std::string::npos;
         at = pem.find("-----BEGIN CERTIFICATE-----", at + 1)) {
      ++certificates;
    }
    EXPECT_EQ(certificates, 2u) << file;
  }
  ProcessResult ca_text = run_process({"openssl", "x509", "-in", ca, "-noout", "-subject", "-ext", "basicConstraints"});
  EXPECT_NE(ca_text.out.find("CA:TRUE"), std::string::npos) << ca_text.out;

  ProcessResult names = run_process({"openssl", "x509", "-in", server, "-noout", "-subject", "-ext", "subjectAltName"});
  ASSERT_EQ(names.exit_code, 0) << names.err;
  EXPECT_NE(names.out.find("subject=CN = localhost"), std::string::npos) << names.out;
  EXPECT_NE(names.out.find("DNS:localhost, IP Address:127.0.0.1\n"), std::string::npos) << names.out;
  // The admin's identity is its CN: no URI SAN, which would take its place.
  names = run_process({"openssl", "x509", "-in", admin, "-noout", "-subject", "-ext", "subjectAltName"});
  ASSERT_EQ(names.exit_code, 0) << names.err;
  EXPECT_NE(names.out.find("subject=CN = admin\n"), std::string::npos) << names.out;
  EXPECT_EQ(names.out.find("URI:"), std::string::npos) << names.out;

  // The admin key: a file, mode 0600, the key of admin.pem.
  EXPECT_EQ(mode_of(admin_key), 0600u);
  ProcessResult certificate_key = run_process({"openssl", "x509", "-in", admin, "-noout", "-pubkey"});
  ProcessResult file_key = run_process({"openssl", "pkey", "-in", admin_key, "-pubout"});
  ASSERT_EQ(file_key.exit_code, 0) << file_key.err;
  EXPECT_EQ(certificate_key.out, file_key.out);
  EXPECT_NE(certificate_key.out.find("-----BEGIN PUBLIC KEY-----"), std::string::npos);

  // The server's key and the audit key are in the token, in use; the server
  // certificate names the token key.
  testing::ProcessOptions in_dir;
  in_dir.env["KEYHOLD_CONFIG"] = (dir / "keyhold.toml").string();
  in_dir.env["KEYHOLD_PIN"] = std::nullopt;
  ProcessResult token_key = run_process({testing::keyhold_binary(), "key", "public", "server-tls"}, in_dir);
  ASSERT_EQ(token_key.exit_code, 0) << token_key.err;
  EXPECT_EQ(token_key.out, run_process({"openssl", "x509", "-in", server, "-noout", "-pubkey"}).out);
  ProcessResult list = run_process({testing::keyhold_binary(), "--json", "key", "list", "--all"}, in_dir);
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::map<std::string, std::string> used_by;
  const nlohmann::json keys = nlohmann::json::parse(list.out);
  for (const auto& key : keys["keys"]) {
    used_by[key["name"]] = key["used_by"].is_null() ? "" : std::string(key["used_by"]);
    EXPECT_EQ(key["type"], "ec-p256") << key.dump();
  }
  EXPECT_EQ(used_by.size(), 3u) << list.out;
  EXPECT_EQ(used_by["audit"], "audit-log");
  EXPECT_EQ(used_by["ca.dev.v1"], "ca:dev:v1");
  EXPECT_EQ(used_by["server-tls"].rfind("certificate:", 0), 0u) << used_by["server-tls"];
  ProcessResult destroy = run_process({testing::keyhold_binary(), "key", "destroy", "server-tls", "--yes"}, in_dir);
  EXPECT_EQ(destroy.exit_code, 5) << destroy.err;

  // No private key in a file but the admin's (development only, by design).
  std::vector<std::string> private_keys;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    if (read_file(entry.path().string()).find("PRIVATE KEY-----") != std::string::npos) {
      private_keys.push_back(entry.path().filename().string());
    }
  }
  EXPECT_EQ(private_keys, std::vector<std::string>{"admin-key.pem"});

  // The dev policy, as authz makes it: admin may do everything, nobody else anything.
  EXPECT_EQ(read_file((dir / "policy.toml").string()), authz::dev_policy_toml());
  authz::Policy policy = authz::Policy::load(dir / "policy.toml");
  authz::Request request;
  request.identity = "admin";
  request.operation = "kek.decrypt";
  request.resource = "kek:payments";
  EXPECT_TRUE(policy.check(request).allowed);
  request.identity = "someone-else";
  EXPECT_FALSE(policy.check(request).allowed);

  // An empty audit log, private.
  EXPECT_EQ(fs::file_size(dir / "audit.log"), 0u);
  EXPECT_EQ(mode_of(dir / "audit.log"), 0600u);

  // keyhold.toml's [server] names all of it.
  app::Config config = app::load_config(dir / "keyhold.toml");
  ASSERT_TRUE(config.server.has_value());
  EXPECT_EQ(config.server->listen, "127.0.0.1:8443");
  EXPECT_EQ(config.server->ca, "dev");
  EXPECT_EQ(config.server->certificate_file, dir / "server.pem");
  EXPECT_EQ(config.server->key, "server-tls");
  EXPECT_EQ(config.server->client_ca_files, std::vector<fs::path>{dir / "ca.pem"});
  EXPECT_EQ(config.server->policy_file, dir / "policy.toml");
  EXPECT_EQ(config.server->audit_log, dir / "audit.log");
  EXPECT_EQ(config.server->audit_key, "audit");

  ProcessResult verify = run_process({testing::keyhold_binary(), "audit", "verify"}, in_dir);
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_EQ(verify.out, "audit log " + (dir / "audit.log").string() + ": 0 records, 0 checkpoints, ok\n");
}

TEST(InitDev, AFailureLeavesAnEmptyDirectoryEmpty) {
  // The module cannot be loaded: init fails after its first files are
  // written, and removes them from the directory it did not make.
  fs::path dir = DevSetup::get().dir.parent_path() / "failing";
  fs::create_directories(dir);
  ProcessResult r = run_process({testing::keyhold_binary(), "init", "--dev", "--dir", dir.string(), "--module",
                                 (dir / "no-such-module.so").string()});
  EXPECT_NE(r.exit_code, 0);
  expect_one_error_line(r);
  EXPECT_TRUE(fs::is_empty(dir)) << "left behind: " << fs::directory_iterator(dir)->path();
}

// ---- audit verify ------------------------------------------------------------

// Writes `events` records to the set-up's audit log, with a checkpoint after
// every third, signed by the set-up's token key "audit" (opened in this
// process as keyhold opens it); returns the log's stats.
audit::LogStats write_audit_log(const fs::path& path, int events) {
  DevSetup& s = DevSetup::get();
  std::shared_ptr<hsm::Module> module;
  std::shared_ptr<hsm::Token> token;
  {
    // As keyhold does: load and log in while holding the set-up's lock.
    int lock = ::open((s.dir / ".keyhold-token.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    EXPECT_GE(lock, 0);
    ::flock(lock, LOCK_EX);
    // SoftHSM reads its configuration when the module is initialised; the
    // keyhold processes of the other tests must not inherit it.
    const char* before = std::getenv("SOFTHSM2_CONF");
    std::optional<std::string> saved = before != nullptr ? std::optional<std::string>(before) : std::nullopt;
    ::setenv("SOFTHSM2_CONF", (s.dir / "softhsm2.conf").c_str(), 1);
    module = hsm::Module::load(testing::ThrowawayToken::module_path());
    if (saved) {
      ::setenv("SOFTHSM2_CONF", saved->c_str(), 1);
    } else {
      ::unsetenv("SOFTHSM2_CONF");
    }
    token = hsm::Token::open(module, hsm::Uri::parse("pkcs11:token=keyhold-dev"), hsm::pin_from_file(s.dir / "pin"));
    ::close(lock);
  }
  audit::LogStats stats;
  {
    std::unique_ptr<crypto::KeyRing> ring = crypto::make_token_key_ring(token);
    std::vector<crypto::TokenKey> keys = ring->find_by_label("audit");
    EXPECT_EQ(keys.size(), 1u);
    if (keys.size() == 1) {
      audit::LogSettings settings;
      settings.path = path;
      settings.checkpoint_every_records = 3;
      settings.checkpoint_every = std::chrono::seconds(0);
      audit::Log log(settings, ring->signer(keys[0].id));
      for (int i = 1; i <= events; ++i) {
        audit::Event event;
        event.request_id = "r" + std::to_string(i);
        event.identity = "admin";
        event.client_address = "127.0.0.1:5000" + std::to_string(i % 10);
        event.operation = "kek.encrypt";
        event.resource = "kek:payments";
        event.outcome = i % 4 == 0 ? "denied" : "allowed";
        event.error_code = i % 4 == 0 ? "PermissionDenied" : "";
        event.latency = std::chrono::microseconds(100 * i);
        event.context = {{"app", "billing-" + std::to_string(i)}};
        log.append(event);
      }
      stats = log.stats();
    }
  }
  token.reset();
  module->finalize();
  return stats;
}

TEST(AuditVerify, ChecksTheChainAndTheCheckpointsAndNamesTheFirstBadLine) {
  const fs::path log = DevSetup::get().dir / "audit.log";  // the configured one
  audit::LogStats stats = write_audit_log(log, 10);
  // e e e C e e e C e e e C e: 13 records, the last one after the last checkpoint.
  ASSERT_EQ(stats.records, 13u);
  ASSERT_EQ(stats.checkpoints, 3u);
  ASSERT_EQ(stats.unsigned_records, 1u);

  ProcessResult ok = keyhold({"audit", "verify"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "audit log " + log.string() +
                        ": 13 records, 3 checkpoints, ok (1 record after the last checkpoint is protected by the "
                        "chain only)\n");
  EXPECT_EQ(ok.err, "");
  nlohmann::json result = keyhold_json({"audit", "verify", "--log", log.string()});
  EXPECT_EQ(result, nlohmann::json::parse(R"({"log": ")" + log.string() + R"(", "key": "audit", "ok": true,
      "records": 13, "checkpoints": 3, "last_checkpoint_seq": 12, "unsigned_tail": 1, "first_bad_line": null,
      "problem": null})"));

  const std::vector<std::string> lines = lines_of(read_file(log.string()));
  ASSERT_EQ(lines.size(), 13u);
  ASSERT_NE(lines[3].find("\"type\":\"checkpoint\""), std::string::npos) << lines[3];
  struct Tampering {
    std::string name;
    std::vector<std::string> lines;
    int bad_line;
    std::string problem;  // a part of it
  };
  std::vector<Tampering> cases;
  {
    std::vector<std::string> changed = lines;  // one byte of line 6 (seq 6, an event)
    std::size_t at = changed[5].find("billing-5");
    EXPECT_NE(at, std::string::npos) << changed[5];
    changed[5][at] = 'B';
    cases.push_back({"modified", changed, 6, ""});
  }
  {
    std::vector<std::string> removed = lines;
    removed.erase(removed.begin() + 5);
    cases.push_back({"removed", removed, 6, "seq jumps from 5 to 7"});
  }
  {
    std::vector<std::string> inserted = lines;  // line 3 again, as line 6
    inserted.insert(inserted.begin() + 5, lines[2]);
    cases.push_back({"inserted", inserted, 6, "seq 3 after seq 5"});
  }
  {
    std::vector<std::string> reordered = lines;
    std::swap(reordered[5], reordered[6]);
    cases.push_back({"reordered", reordered, 6, "seq jumps from 5 to 7"});
  }
  {
    std::vector<std::string> checkpoint_removed = lines;  // a signed checkpoint taken out
    checkpoint_removed.erase(checkpoint_removed.begin() + 7);
    cases.push_back({"checkpoint removed", checkpoint_removed, 8, "seq jumps from 7 to 9"});
  }
  {
    std::vector<std::string> cut = lines;  // half of the last line, without its newline
    cut.back().resize(cut.back().size() / 2);
    cases.push_back({"cut", cut, 13, "incomplete last line"});
  }
  for (const Tampering& c : cases) {
    fs::path copy = DevSetup::get().dir / ("audit-" + std::to_string(&c - cases.data()) + ".log");
    std::string text = joined_lines(c.lines);
    if (c.name == "cut") text.pop_back();  // no newline at the end
    write_file(copy.string(), text);
    ProcessResult r = keyhold({"audit", "verify", "--log", copy.string()});
    EXPECT_EQ(r.exit_code, 1) << c.name << ": " << r.out << r.err;
    EXPECT_EQ(r.out, "") << c.name;
    expect_one_error_line(r);
    EXPECT_NE(r.err.find("audit log " + copy.string() + ": line " + std::to_string(c.bad_line) + ": "),
              std::string::npos)
        << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.problem), std::string::npos) << c.name << ": " << r.err;

    // --json: the VerifyResult on stdout, the same one line on stderr, status 1.
    ProcessResult json = keyhold({"--json", "audit", "verify", "--log", copy.string()});
    EXPECT_EQ(json.exit_code, 1) << c.name;
    EXPECT_EQ(json.err, r.err) << c.name;
    nlohmann::json bad = nlohmann::json::parse(json.out);
    EXPECT_EQ(bad["ok"], false) << c.name;
    EXPECT_EQ(bad["first_bad_line"], c.bad_line) << c.name;
    EXPECT_TRUE(bad["problem"].is_string()) << c.name;
  }

  // Checkpoints signed by another key do not verify: the first one is named.
  ProcessResult other_key = keyhold({"audit", "verify", "--key", "ca.dev.v1"});
  EXPECT_EQ(other_key.exit_code, 1) << other_key.err;
  expect_one_error_line(other_key);
  EXPECT_NE(other_key.err.find(": line 4: "), std::string::npos) << other_key.err;

  // A missing file: status 4, before the token is opened (no PIN needed).
  testing::ProcessOptions no_pin;
  no_pin.env["KEYHOLD_CONFIG"] = testing::config_variant("no-pin", "pin_file = \"pin\"", "").string();
  ProcessResult missing = keyhold({"audit", "verify", "--log", testing::path_in_setup("no-such-audit.log")}, no_pin);
  EXPECT_EQ(missing.exit_code, 4) << missing.err;
  expect_one_error_line(missing);
  EXPECT_NE(missing.err.find("no-such-audit.log does not exist"), std::string::npos) << missing.err;
  // An unknown audit key: status 4 too.
  ProcessResult unknown = keyhold({"audit", "verify", "--key", "no-such-key"});
  EXPECT_EQ(unknown.exit_code, 4) << unknown.err;
  expect_one_error_line(unknown);
}

TEST(AuditVerify, WithoutAServerSectionNeedsLogAndKey) {
  fs::path config = testing::config_variant("no-server", "[server]", "[server_gone]");
  std::string text = read_file(config.string());
  // Drop the whole section: it is the last one of the file.
  text = text.substr(0, text.find("[server_gone]"));
  write_file(config.string(), text);
  testing::ProcessOptions options;
  options.env["KEYHOLD_CONFIG"] = config.string();
  ProcessResult r = keyhold({"audit", "verify"}, options);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("has no [server] section naming audit_log and audit_key; give --log FILE and --key NAME"),
            std::string::npos)
      << r.err;
  r = keyhold({"audit", "verify", "--log", testing::path_in_setup("audit.log"), "--key", "audit"}, options);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace keyhold
