// The keyhold command end to end: a dev set-up made by `keyhold init --dev`
// (its own throwaway SoftHSM token), real peers (openssl, ssh-keygen,
// pkcs11-tool, sqlite3) checking what keyhold prints, and every bad input
// of the foundation issue with its exit status.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

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
  for (const char* file : {"keyhold.toml", "keyhold.db", "pin", "softhsm2.conf"}) {
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

}  // namespace
}  // namespace keyhold
