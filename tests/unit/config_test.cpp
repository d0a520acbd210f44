// keyhold.toml: finding it, reading it, and refusing what it must not say.
#include "keyhold/app/config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "keyhold/core/error.hpp"
#include "keyhold/pki/profile.hpp"
#include "keyhold/ssh/profile.hpp"

namespace keyhold::app {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "keyhold-config-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    // Canonical so that it compares equal to what getcwd() reports after a chdir.
    path_ = fs::canonical(pattern);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// The message of the keyhold::Error that f throws, which must be InvalidArgument.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no keyhold::Error was thrown";
  return "<no error>";
}

constexpr const char* kToken =
    "[token]\n"
    "module = \"softhsm2\"\n"
    "uri = \"pkcs11:token=keyhold-dev\"\n";  // lines 1 to 3

class ConfigParse : public ::testing::Test {
 protected:
  Config parse(const std::string& text) { return parse_config(text, file_); }
  std::string error(const std::string& text) {
    return error_of([&] { parse_config(text, file_); });
  }
  // "FILE:LINE: "
  std::string at(int line) const { return file_.string() + ":" + std::to_string(line) + ": "; }

  TempDir dir_;
  fs::path file_ = dir_.path() / "keyhold.toml";
};

TEST_F(ConfigParse, ReadsTheDocumentedExample) {
  Config config = parse(
      "[token]\n"
      "module = \"softhsm2\"                    # p11-kit registered module name\n"
      "uri = \"pkcs11:token=keyhold-dev\"       # RFC 7512\n"
      "pin_file = \"pin\"\n"
      "max_sessions = 16\n"
      "\n"
      "[token.env]\n"
      "SOFTHSM2_CONF = \"/abs/path/softhsm2.conf\"\n"
      "\n"
      "[store]\n"
      "path = \"keyhold.db\"\n");

  EXPECT_EQ(config.file, dir_.path() / "keyhold.toml");
  EXPECT_EQ(config.directory, dir_.path());
  EXPECT_EQ(config.token.module, "softhsm2");
  EXPECT_EQ(config.token.uri, "pkcs11:token=keyhold-dev");
  EXPECT_EQ(config.token.pin_file, dir_.path() / "pin");
  EXPECT_EQ(config.token.max_sessions, 16u);
  using Variables = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(config.token.environment, (Variables{{"SOFTHSM2_CONF", "/abs/path/softhsm2.conf"}}));
  EXPECT_EQ(config.store.path, dir_.path() / "keyhold.db");
}

TEST_F(ConfigParse, AppliesDefaultsWhenOptionalKeysAreAbsent) {
  Config config = parse(kToken);
  EXPECT_EQ(config.token.pin_file, std::nullopt);
  EXPECT_EQ(config.token.max_sessions, 0u);
  EXPECT_TRUE(config.token.environment.empty());
  EXPECT_EQ(config.store.path, dir_.path() / "keyhold.db");
}

TEST_F(ConfigParse, KeepsEnvironmentInFileOrderAndValuesLiteral) {
  Config config = parse(std::string(kToken) +
                        "[token.env]\n"
                        "ZETA = \"1\"\n"
                        "ALPHA = \"$HOME/x\"\n"
                        "_m1 = \"~/relative/path\"\n");
  using Variables = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(config.token.environment,
            (Variables{{"ZETA", "1"}, {"ALPHA", "$HOME/x"}, {"_m1", "~/relative/path"}}));
}

TEST_F(ConfigParse, ResolvesRelativePathsAgainstTheConfigDirectory) {
  Config config = parse(
      "[token]\n"
      "module = \"./lib/libmodule.so\"\n"
      "uri = \"pkcs11:token=keyhold-dev\"\n"
      "pin_file = \"secrets/pin\"\n"
      "[store]\n"
      "path = \"../data/./keyhold.db\"\n");
  EXPECT_EQ(config.token.module, (dir_.path() / "lib" / "libmodule.so").string());
  EXPECT_EQ(config.token.pin_file, dir_.path() / "secrets" / "pin");
  EXPECT_EQ(config.store.path, dir_.path().parent_path() / "data" / "keyhold.db");
}

TEST_F(ConfigParse, KeepsAbsolutePathsAndModuleNames) {
  Config config = parse(
      "[token]\n"
      "module = \"/usr/lib/softhsm/libsofthsm2.so\"\n"
      "uri = \"pkcs11:token=keyhold-dev\"\n"
      "pin_file = \"/run/keyhold/pin\"\n"
      "[store]\n"
      "path = \"/var/lib/keyhold/keyhold.db\"\n");
  EXPECT_EQ(config.token.module, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(config.token.pin_file, fs::path("/run/keyhold/pin"));
  EXPECT_EQ(config.store.path, fs::path("/var/lib/keyhold/keyhold.db"));

  EXPECT_EQ(parse(kToken).token.module, "softhsm2");
}

TEST_F(ConfigParse, MakesARelativeConfigPathAbsolute) {
  Config config = parse_config(std::string(kToken) + "pin_file = \"pin\"\n", "conf/keyhold.toml");
  EXPECT_EQ(config.file, fs::current_path() / "conf" / "keyhold.toml");
  EXPECT_EQ(config.directory, fs::current_path() / "conf");
  EXPECT_EQ(config.token.pin_file, fs::current_path() / "conf" / "pin");
}

TEST_F(ConfigParse, AcceptsInlineTables) {
  Config config = parse(
      "token = { module = \"softhsm2\", uri = \"pkcs11:token=t\", env = { B = \"2\", A = \"1\" } }\n"
      "store = { path = \"s.db\" }\n");
  EXPECT_EQ(config.token.uri, "pkcs11:token=t");
  using Variables = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(config.token.environment, (Variables{{"B", "2"}, {"A", "1"}}));
  EXPECT_EQ(config.store.path, dir_.path() / "s.db");
}

TEST_F(ConfigParse, ReportsSyntaxErrorsWithLineAndColumn) {
  std::string message = error(
      "[token]\n"
      "module = \"softhsm2\"\n"
      "uri = pkcs11:token=x\n");
  EXPECT_THAT(message, StartsWith(file_.string() + ":3:7: "));
  EXPECT_THAT(message, HasSubstr("could not determine value type"));

  message = error("[token\n");
  EXPECT_THAT(message, StartsWith(file_.string() + ":1:7: "));
  EXPECT_THAT(message, HasSubstr("expected ']'"));
  EXPECT_THAT(message, Not(HasSubstr("\n")));

  message = error(std::string(kToken) + "module = \"again\"\n");
  EXPECT_THAT(message, StartsWith(file_.string() + ":4:"));
}

TEST_F(ConfigParse, RejectsUnknownKeysWithTheirLine) {
  EXPECT_EQ(error(std::string(kToken) + "pin_fle = \"pin\"\n"),
            at(4) + "unknown key 'token.pin_fle' (did you mean 'token.pin_file'?)");
  EXPECT_EQ(error(std::string(kToken) + "colour = \"blue\"\n"),
            at(4) + "unknown key 'token.colour' (known keys in [token]: module, uri, pin_file, max_sessions, env)");
  EXPECT_EQ(error("verbose = true\n" + std::string(kToken)),
            at(1) + "unknown key 'verbose' (known keys: token, store, pki, profiles, ssh_profiles, server)");
  EXPECT_EQ(error(std::string(kToken) + "\n[store]\npth = \"x.db\"\n"),
            at(6) + "unknown key 'store.pth' (did you mean 'store.path'?)");
}

TEST_F(ConfigParse, RejectsUnknownTables) {
  EXPECT_EQ(error(std::string(kToken) + "\n[http]\nlisten = \"0.0.0.0:8443\"\n"),
            at(5) + "unknown key 'http' (known keys: token, store, pki, profiles, ssh_profiles, server)");
  EXPECT_EQ(error(std::string(kToken) + "\n[serve]\nlisten = \"0.0.0.0:8443\"\n"),
            at(5) + "unknown key 'serve' (did you mean 'server'?)");
  EXPECT_EQ(error(std::string(kToken) + "[token.extra]\nx = 1\n"),
            at(4) + "unknown key 'token.extra' (known keys in [token]: module, uri, pin_file, max_sessions, env)");
  EXPECT_EQ(error(std::string(kToken) + "[store.nested]\n"),
            at(4) + "unknown key 'store.nested' (known keys in [store]: path)");
}

TEST_F(ConfigParse, ReportsTheFirstProblemInFileOrder) {
  // toml++ sorts keys by name; the report must follow the file.
  EXPECT_EQ(error(std::string(kToken) + "zz_first = 1\naa_second = 2\n"),
            at(4) + "unknown key 'token.zz_first' (known keys in [token]: module, uri, pin_file, max_sessions, env)");
}

TEST_F(ConfigParse, RejectsWrongTypesNamingBoth) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {std::string(kToken) + "max_sessions = \"16\"\n",
       at(4) + "'token.max_sessions' must be an integer, not a string"},
      {std::string(kToken) + "max_sessions = 1.5\n", at(4) + "'token.max_sessions' must be an integer, not a float"},
      {"[token]\nmodule = 7\nuri = \"pkcs11:token=t\"\n", at(2) + "'token.module' must be a string, not an integer"},
      {"[token]\nmodule = \"m\"\nuri = [\"pkcs11:token=t\"]\n", at(3) + "'token.uri' must be a string, not an array"},
      {std::string(kToken) + "pin_file = true\n", at(4) + "'token.pin_file' must be a string, not a boolean"},
      {std::string(kToken) + "env = \"A=1\"\n", at(4) + "'token.env' must be a table, not a string"},
      {std::string(kToken) + "[token.env]\nA = 1\n", at(5) + "'token.env.A' must be a string, not an integer"},
      {"[[token]]\nmodule = \"m\"\n", at(1) + "'token' must be a table, not an array"},
      {"store = \"x.db\"\n" + std::string(kToken), at(1) + "'store' must be a table, not a string"},
      {std::string(kToken) + "[store]\npath = 1979-05-27\n", at(5) + "'store.path' must be a string, not a date"},
  };
  for (const Case& c : cases) EXPECT_EQ(error(c.text), c.message) << c.text;
}

TEST_F(ConfigParse, RejectsMaxSessionsOutOfRange) {
  for (const char* value : {"4097", "-1", "1000000000000"}) {
    EXPECT_EQ(error(std::string(kToken) + "max_sessions = " + value + "\n"),
              at(4) + "'token.max_sessions' must be between 1 and 4096 (or 0 for the token's own limit), not " + value);
  }
  for (std::size_t value : {0u, 1u, 4096u}) {
    EXPECT_EQ(parse(std::string(kToken) + "max_sessions = " + std::to_string(value) + "\n").token.max_sessions, value);
  }
}

TEST_F(ConfigParse, RejectsMissingRequiredKeys) {
  EXPECT_EQ(error("[token]\nuri = \"pkcs11:token=t\"\n"), at(1) + "missing required key 'token.module'");
  EXPECT_EQ(error("# keyhold\n\n[token]\nmodule = \"softhsm2\"\n"), at(3) + "missing required key 'token.uri'");
  // [token.env] alone makes [token] exist, empty.
  EXPECT_EQ(error("\n[token.env]\nA = \"1\"\n"), at(2) + "missing required key 'token.module'");
  EXPECT_EQ(error("[store]\npath = \"x.db\"\n"), file_.string() + ": missing required table [token]");
  EXPECT_EQ(error(""), file_.string() + ": missing required table [token]");
}

TEST_F(ConfigParse, RejectsEmptyStrings) {
  EXPECT_EQ(error("[token]\nmodule = \"\"\nuri = \"pkcs11:token=t\"\n"), at(2) + "'token.module' must not be empty");
  EXPECT_EQ(error(std::string(kToken) + "pin_file = \"\"\n"), at(4) + "'token.pin_file' must not be empty");
  EXPECT_EQ(error(std::string(kToken) + "[store]\npath = \"\"\n"), at(5) + "'store.path' must not be empty");
}

TEST_F(ConfigParse, RejectsNulCharacters) {
  EXPECT_EQ(error(std::string(kToken) + "pin_file = \"pin\\u0000x\"\n"),
            at(4) + "'token.pin_file' must not contain a NUL character");
}

constexpr const char* kPin = "s3cr3t-4711";

TEST_F(ConfigParse, RefusesAPinInTheTokenSection) {
  const std::string refused =
      "a PIN in keyhold.toml is refused (anyone who can read the file has it); put the PIN in a file with mode 0600 "
      "and set pin_file, or use KEYHOLD_PIN for development";
  for (const char* key : {"pin", "pin_value", "user_pin", "so_pin", "PIN", "user-pin"}) {
    std::string message = error(std::string(kToken) + key + " = \"" + kPin + "\"\n");
    EXPECT_EQ(message, at(4) + refused) << key;
    EXPECT_THAT(message, Not(HasSubstr(kPin)));
  }
  // Refused for being a PIN, whatever its type.
  EXPECT_EQ(error(std::string(kToken) + "pin = 4711\n"), at(4) + refused);
}

TEST_F(ConfigParse, RefusesAPinValueInTheTokenUri) {
  const std::string refused =
      "a PIN in keyhold.toml is refused (anyone who can read the file has it); drop pin-value from 'token.uri' and "
      "put the PIN in a file with mode 0600, named by pin-source=file:PATH in the URI or by pin_file";
  for (std::string uri : {std::string("pkcs11:token=keyhold-dev?pin-value=") + kPin,
                          std::string("pkcs11:token=keyhold-dev;pin-value=") + kPin,
                          // Malformed: p11-kit's own complaint would quote the PIN.
                          std::string("pkcs11:token=keyhold-dev?pin-value=") + kPin + "%zz",
                          std::string("pkcs11:token=keyhold-dev?PIN-VALUE=") + kPin}) {
    std::string message = error("[token]\nmodule = \"softhsm2\"\n\nuri = \"" + uri + "\"\n");
    EXPECT_EQ(message, at(4) + refused) << uri;
    EXPECT_THAT(message, Not(HasSubstr(kPin)));
  }
}

TEST_F(ConfigParse, AcceptsAPinSourceInTheTokenUri) {
  Config config = parse("[token]\nmodule = \"softhsm2\"\nuri = \"pkcs11:token=t?pin-source=file:/run/keyhold/pin\"\n");
  EXPECT_EQ(config.token.uri, "pkcs11:token=t?pin-source=file:/run/keyhold/pin");
}

TEST_F(ConfigParse, ReportsAMalformedUriWithItsLine) {
  std::string message = error("[token]\nmodule = \"softhsm2\"\nuri = \"token=keyhold-dev\"\n");
  EXPECT_THAT(message, StartsWith(at(3) + "malformed PKCS#11 URI"));
  EXPECT_THAT(message, HasSubstr("token=keyhold-dev"));
}

TEST_F(ConfigParse, RefusesKeyholdPinInTheModuleEnvironment) {
  std::string message = error(std::string(kToken) + "[token.env]\nKEYHOLD_PIN = \"" + kPin + "\"\n");
  EXPECT_EQ(message, at(5) +
                         "a PIN in keyhold.toml is refused (anyone who can read the file has it); drop KEYHOLD_PIN "
                         "from [token.env]: put the PIN in a file with mode 0600 and set pin_file, or, for "
                         "development, set KEYHOLD_PIN in keyhold's own environment");
  EXPECT_THAT(message, Not(HasSubstr(kPin)));
}

TEST_F(ConfigParse, RejectsInvalidEnvironmentNames) {
  const std::string rule =
      "' is not a valid environment variable name (letters, digits and '_', not starting with a digit)";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1ABC", "token.env.1ABC"},
      {"A-B", "token.env.A-B"},
      {"\"A B\"", "token.env.\"A B\""},
      {"\"\"", "token.env.\"\""},
      {"\"A=B\"", "token.env.\"A=B\""},
  };
  for (const auto& [key, shown] : cases) {
    std::string text = std::string(kToken) + "\n[token.env]\nOK = \"1\"\n" + key + " = \"x\"\n";
    EXPECT_EQ(error(text), at(7) + "'" + shown + rule) << key;
  }
}

TEST_F(ConfigParse, KeepsMessagesOnOneLine) {
  std::string message = error("\"a\\nb\" = 1\n" + std::string(kToken));
  EXPECT_EQ(message, at(1) + "unknown key '\"a\\nb\"' (known keys: token, store, pki, profiles, ssh_profiles, server)");
  EXPECT_THAT(message, Not(HasSubstr("\n")));
}

// ---- [pki] and [profiles.NAME] ----------------------------------------------

// The example of docs/configuration.md, after kToken: [pki] on line 5, [profiles.server] on line 8.
const std::string kServerProfile = std::string(kToken) +
                                   "\n"
                                   "[pki]\n"
                                   "crl_next_update = \"12h\"\n"
                                   "\n"
                                   "[profiles.server]\n"
                                   "key_types = [\"ec-p256\", \"rsa\"]\n"
                                   "min_rsa_bits = 3072\n"
                                   "default_days = 30\n"
                                   "max_days = 200\n"
                                   "key_usage = [\"digitalSignature\", \"keyEncipherment\"]\n"
                                   "extended_key_usage = [\"serverAuth\", \"clientAuth\"]\n"
                                   "dns = [\"*.example.com\", \".example.org\"]\n"
                                   "ip = [\"10.0.0.0/8\", \"fd00::/8\"]\n"
                                   "uri = [\"spiffe://example.org/*\"]\n"
                                   "email = [\"example.org\"]\n"
                                   "require_san = false\n"
                                   "subject_fields = [\"CN\", \"O\"]\n"
                                   "crl_distribution_points = [\"http://pki.example.org/crl/issuing.crl\"]\n"
                                   "ocsp_urls = [\"http://ocsp.example.org\"]\n"
                                   "ca_issuers_urls = [\"http://pki.example.org/issuing.cer\"]\n"
                                   "development_only = false\n";

// A profile on lines 4 and 5 (after kToken) holding `line`.
std::string profile_with(const std::string& line) { return std::string(kToken) + "[profiles.server]\n" + line + "\n"; }

TEST_F(ConfigParse, PkiDefaultsWhenAbsent) {
  Config config = parse(kToken);
  EXPECT_EQ(config.pki.crl_next_update, std::chrono::hours(7 * 24));
  EXPECT_TRUE(config.pki.profiles.empty());

  config = parse(std::string(kToken) + "[pki]\n");
  EXPECT_EQ(config.pki.crl_next_update, std::chrono::hours(7 * 24));
}

TEST_F(ConfigParse, ReadsAFullProfile) {
  Config config = parse(kServerProfile);
  EXPECT_EQ(config.pki.crl_next_update, std::chrono::hours(12));
  ASSERT_EQ(config.pki.profiles.size(), 1u);
  const pki::Profile& profile = config.pki.profiles.at("server");
  EXPECT_EQ(profile.name, "server");
  EXPECT_THAT(profile.key_types, ElementsAre("ec-p256", "rsa"));
  EXPECT_EQ(profile.min_rsa_bits, 3072);
  EXPECT_EQ(profile.default_days, 30);
  EXPECT_EQ(profile.max_days, 200);
  EXPECT_THAT(profile.key_usage, ElementsAre("digitalSignature", "keyEncipherment"));
  EXPECT_THAT(profile.extended_key_usage, ElementsAre("serverAuth", "clientAuth"));
  EXPECT_THAT(profile.dns, ElementsAre("*.example.com", ".example.org"));
  EXPECT_THAT(profile.ip, ElementsAre("10.0.0.0/8", "fd00::/8"));
  EXPECT_THAT(profile.uri, ElementsAre("spiffe://example.org/*"));
  EXPECT_THAT(profile.email, ElementsAre("example.org"));
  EXPECT_FALSE(profile.require_san);
  EXPECT_THAT(profile.subject_fields, ElementsAre("CN", "O"));
  EXPECT_THAT(profile.crl_distribution_points, ElementsAre("http://pki.example.org/crl/issuing.crl"));
  EXPECT_THAT(profile.ocsp_urls, ElementsAre("http://ocsp.example.org"));
  EXPECT_THAT(profile.ca_issuers_urls, ElementsAre("http://pki.example.org/issuing.cer"));
  EXPECT_FALSE(profile.development_only);
}

TEST_F(ConfigParse, GivesAnEmptyProfileTheDefaults) {
  Config config = parse(std::string(kToken) + "[profiles.minimal]\n");
  const pki::Profile& profile = config.pki.profiles.at("minimal");
  pki::Profile defaults;
  EXPECT_EQ(profile.name, "minimal");
  EXPECT_EQ(profile.key_types, defaults.key_types);
  EXPECT_EQ(profile.min_rsa_bits, 2048);
  EXPECT_EQ(profile.default_days, 90);
  EXPECT_EQ(profile.max_days, 397);
  EXPECT_EQ(profile.key_usage, defaults.key_usage);
  EXPECT_EQ(profile.extended_key_usage, defaults.extended_key_usage);
  EXPECT_TRUE(profile.dns.empty());
  EXPECT_TRUE(profile.ip.empty());
  EXPECT_TRUE(profile.uri.empty());
  EXPECT_TRUE(profile.email.empty());
  EXPECT_TRUE(profile.require_san);
  EXPECT_EQ(profile.subject_fields, defaults.subject_fields);
  EXPECT_TRUE(profile.crl_distribution_points.empty());
  EXPECT_TRUE(profile.ocsp_urls.empty());
  EXPECT_TRUE(profile.ca_issuers_urls.empty());
  EXPECT_FALSE(profile.development_only);
}

TEST_F(ConfigParse, ReadsSeveralProfilesInAnyTableForm) {
  Config config = parse(std::string(kToken) +
                        "[profiles.web]\n"
                        "dns = [\".example.com\"]\n"
                        "[profiles.\"mtls.client-1\"]\n"
                        "extended_key_usage = [\"clientAuth\"]\n"
                        "[profiles]\n"
                        "inline = { uri = [\"spiffe://example.org/*\"], max_days = 7 }\n"
                        "dotted.email = [\".example.org\"]\n");
  ASSERT_EQ(config.pki.profiles.size(), 4u);
  EXPECT_THAT(config.pki.profiles.at("web").dns, ElementsAre(".example.com"));
  EXPECT_THAT(config.pki.profiles.at("mtls.client-1").extended_key_usage, ElementsAre("clientAuth"));
  EXPECT_EQ(config.pki.profiles.at("mtls.client-1").name, "mtls.client-1");
  EXPECT_EQ(config.pki.profiles.at("inline").max_days, 7);
  EXPECT_THAT(config.pki.profiles.at("dotted").email, ElementsAre(".example.org"));
}

TEST_F(ConfigParse, LowersTheDefaultValidityWithAMaximumBelowIt) {
  Config config = parse(profile_with("max_days = 30"));
  EXPECT_EQ(config.pki.profiles.at("server").max_days, 30);
  EXPECT_EQ(config.pki.profiles.at("server").default_days, 30);
  config = parse(profile_with("max_days = 30\ndefault_days = 7"));
  EXPECT_EQ(config.pki.profiles.at("server").default_days, 7);
}

TEST_F(ConfigParse, ReadsDurations) {
  const std::vector<std::pair<std::string, std::chrono::seconds>> cases = {
      {"1h", std::chrono::hours(1)},         {"60m", std::chrono::minutes(60)},  {"90m", std::chrono::minutes(90)},
      {"12h", std::chrono::hours(12)},       {"7d", std::chrono::hours(7 * 24)}, {"2w", std::chrono::hours(14 * 24)},
      {"366d", std::chrono::hours(366 * 24)}, {"52w", std::chrono::hours(52 * 7 * 24)}, {"3600s", std::chrono::hours(1)},
  };
  for (const auto& [text, seconds] : cases) {
    EXPECT_EQ(parse(std::string(kToken) + "[pki]\ncrl_next_update = \"" + text + "\"\n").pki.crl_next_update, seconds)
        << text;
  }
}

TEST_F(ConfigParse, RejectsBadDurations) {
  for (const char* text : {"7", "7 d", "7days", "d", "", "1.5d", "-1d", "7D", "1d12h", "99999999999d", "0d", "0h"}) {
    EXPECT_EQ(error(std::string(kToken) + "[pki]\ncrl_next_update = \"" + text + "\"\n"),
              at(5) + "'pki.crl_next_update' must be a duration such as '90m', '12h', '7d' or '2w', not '" + text +
                  "'")
        << text;
  }
  for (const char* text : {"30m", "59m", "3599s", "367d", "53w", "9999999w"}) {
    EXPECT_EQ(error(std::string(kToken) + "[pki]\ncrl_next_update = \"" + text + "\"\n"),
              at(5) + "'pki.crl_next_update' must be between 1h and 366d, not '" + text + "'")
        << text;
  }
  EXPECT_EQ(error(std::string(kToken) + "[pki]\ncrl_next_update = 7\n"),
            at(5) + "'pki.crl_next_update' must be a string, not an integer");
}

TEST_F(ConfigParse, RejectsUnknownKeysInPkiAndProfiles) {
  EXPECT_EQ(error(std::string(kToken) + "[pki]\ncrl_next_updates = \"7d\"\n"),
            at(5) + "unknown key 'pki.crl_next_updates' (did you mean 'pki.crl_next_update'?)");
  EXPECT_EQ(error(std::string(kToken) + "[pki]\ncrl_distribution_base = \"http://x\"\n"),
            at(5) + "unknown key 'pki.crl_distribution_base' (known keys in [pki]: crl_next_update)");
  EXPECT_EQ(error(profile_with("dsn = [\"*.example.com\"]")),
            at(5) + "unknown key 'profiles.server.dsn' (did you mean 'profiles.server.dns'?)");
  EXPECT_EQ(error(profile_with("colour = \"blue\"")),
            at(5) + "unknown key 'profiles.server.colour' (known keys in [profiles.server]: key_types, min_rsa_bits, "
                    "default_days, max_days, key_usage, extended_key_usage, dns, ip, uri, email, require_san, "
                    "subject_fields, crl_distribution_points, ocsp_urls, ca_issuers_urls, development_only)");
  EXPECT_THAT(error(profile_with("name = \"other\"")),
              StartsWith(at(5) + "unknown key 'profiles.server.name' (known keys in [profiles.server]: key_types,"));
  EXPECT_EQ(error(std::string(kToken) + "[profile.server]\n"), at(4) + "unknown key 'profile' (did you mean 'profiles'?)");
}

TEST_F(ConfigParse, RejectsWrongTypesInProfiles) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {profile_with("dns = \"*.example.com\""), at(5) + "'profiles.server.dns' must be an array, not a string"},
      {profile_with("require_san = \"yes\""), at(5) + "'profiles.server.require_san' must be a boolean, not a string"},
      {profile_with("max_days = \"397\""), at(5) + "'profiles.server.max_days' must be an integer, not a string"},
      {profile_with("min_rsa_bits = 2048.0"), at(5) + "'profiles.server.min_rsa_bits' must be an integer, not a float"},
      {profile_with("development_only = 1"),
       at(5) + "'profiles.server.development_only' must be a boolean, not an integer"},
      {profile_with("dns = [\"a.example.com\", 7]"), at(5) + "'profiles.server.dns[1]' must be a string, not an integer"},
      {profile_with("ip = [[\"10.0.0.0/8\"]]"), at(5) + "'profiles.server.ip[0]' must be a string, not an array"},
      {profile_with("uri = [\"urn:a\\u0000b\"]"), at(5) + "'profiles.server.uri[0]' must not contain a NUL character"},
      {std::string(kToken) + "[profiles]\nserver = \"x\"\n", at(5) + "'profiles.server' must be a table, not a string"},
      {std::string(kToken) + "[[profiles.server]]\n", at(4) + "'profiles.server' must be a table, not an array"},
      {"profiles = [\"server\"]\n" + std::string(kToken), at(1) + "'profiles' must be a table, not an array"},
      {"pki = \"7d\"\n" + std::string(kToken), at(1) + "'pki' must be a table, not a string"},
  };
  for (const Case& c : cases) EXPECT_EQ(error(c.text), c.message) << c.text;
}

TEST_F(ConfigParse, RejectsInvalidProfileNames) {
  EXPECT_EQ(error(std::string(kToken) + "\n[profiles.\"web server\"]\n"),
            at(5) + "invalid profile name 'web server': use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                    "letter or digit");
  EXPECT_THAT(error(std::string(kToken) + "[profiles._hidden]\n"), StartsWith(at(4) + "invalid profile name '_hidden'"));
  EXPECT_THAT(error(std::string(kToken) + "[profiles." + std::string(65, 'p') + "]\n"),
              StartsWith(at(4) + "invalid profile name"));
}

TEST_F(ConfigParse, RejectsInvalidProfileValuesNamingLineAndValue) {
  struct Case {
    std::string line;
    std::string message;  // after "FILE:5: "
  };
  const std::vector<Case> cases = {
      {"ip = [\"10.0.0.0/33\"]",
       "'profiles.server.ip': IP range '10.0.0.0/33' is not a CIDR such as '10.0.0.0/8' or 'fd00::/8': the prefix "
       "length of an IPv4 range is a number from 0 to 32"},
      {"ip = [\"10.0.0.1/8\"]",
       "'profiles.server.ip': IP range '10.0.0.1/8' is not a CIDR such as '10.0.0.0/8' or 'fd00::/8': host bits are "
       "set after the prefix (did you mean '10.0.0.0/8'?)"},
      {"extended_key_usage = [\"serverAuth\", \"webAuth\"]",
       "'profiles.server.extended_key_usage': unknown extended key usage 'webAuth' (known: serverAuth, clientAuth, "
       "codeSigning, emailProtection, timeStamping, ocspSigning)"},
      {"extended_key_usage = [\"anyExtendedKeyUsage\"]",
       "'profiles.server.extended_key_usage': extended key usage 'anyExtendedKeyUsage' is refused: name the usages "
       "that certificates of the profile are for"},
      {"key_usage = [\"keyCertSign\"]",
       "'profiles.server.key_usage': key usage 'keyCertSign' is for CA certificates; a profile is for leaf "
       "certificates"},
      {"key_usage = [\"digitalSignatur\"]",
       "'profiles.server.key_usage': unknown key usage 'digitalSignatur' (known: digitalSignature, contentCommitment, "
       "keyEncipherment, dataEncipherment, keyAgreement)"},
      {"key_types = [\"rsa-2048\"]",
       "'profiles.server.key_types': unknown key type 'rsa-2048' (known: rsa, ec-p256, ec-p384, ed25519; the smallest "
       "RSA size is min_rsa_bits)"},
      {"dns = [\"*.example.com.\"]",
       "'profiles.server.dns': DNS pattern '*.example.com.' is not valid: it ends with a dot (write it without the "
       "trailing dot) (patterns: '*', '*.example.com', '.example.com', 'example.com')"},
      {"dns = [\"a.*.example.com\"]",
       "'profiles.server.dns': DNS pattern 'a.*.example.com' is not valid: a wildcard may only be the whole first "
       "label, as in '*.example.com' (patterns: '*', '*.example.com', '.example.com', 'example.com')"},
      {"email = [\"alice@example.org\"]",
       "'profiles.server.email': email pattern 'alice@example.org' is not valid: it names a domain, not an address "
       "(patterns: '*', 'example.org', '.example.org')"},
      {"uri = [\"\"]", "'profiles.server.uri': URI pattern '' is empty (use '*' for any URI)"},
      {"subject_fields = [\"CN\", \"emailAddress\"]",
       "'profiles.server.subject_fields': unknown subject field 'emailAddress' (known: CN, O, OU, L, ST, C, "
       "serialNumber)"},
      {"crl_distribution_points = [\"ldap://pki.example.org/cn=CA\"]",
       "'profiles.server.crl_distribution_points': URL 'ldap://pki.example.org/cn=CA' must start with http:// or "
       "https://"},
      {"ocsp_urls = [\"http://\"]", "'profiles.server.ocsp_urls': URL 'http://' has no host"},
      {"ca_issuers_urls = [\"https://pki.example.org/a b.cer\"]",
       "'profiles.server.ca_issuers_urls': URL 'https://pki.example.org/a b.cer' holds a space, a control character "
       "or a non-ASCII character (percent-encode them)"},
      {"min_rsa_bits = 1024", "'profiles.server.min_rsa_bits' must be between 2048 and 16384, not 1024"},
      {"max_days = 0", "'profiles.server.max_days' must be between 1 and 36500, not 0"},
      {"default_days = 36501", "'profiles.server.default_days' must be between 1 and 36500, not 36501"},
      {"default_days = 500", "'profiles.server.default_days' (500) must not be more than max_days (397, the default)"},
      {"key_types = []", "'profiles.server.key_types' must not be empty"},
      {"key_usage = []", "'profiles.server.key_usage' must not be empty"},
      {"extended_key_usage = []", "'profiles.server.extended_key_usage' must not be empty"},
  };
  for (const Case& c : cases) EXPECT_EQ(error(profile_with(c.line)), at(5) + c.message) << c.line;
}

TEST_F(ConfigParse, NamesTheLineOfTheOffendingArrayElement) {
  EXPECT_EQ(error(std::string(kToken) +
                  "[profiles.server]\n"
                  "ip = [\n"
                  "  \"10.0.0.0/8\",\n"
                  "  \"192.168.0.0/33\",\n"
                  "]\n"),
            at(7) + "'profiles.server.ip': IP range '192.168.0.0/33' is not a CIDR such as '10.0.0.0/8' or "
                    "'fd00::/8': the prefix length of an IPv4 range is a number from 0 to 32");
}

TEST_F(ConfigParse, RejectsADefaultValidityAboveTheMaximumOnItsLine) {
  EXPECT_EQ(error(std::string(kToken) +
                  "[profiles.server]\n"
                  "default_days = 400\n"
                  "dns = [\"*\"]\n"
                  "max_days = 397\n"),
            at(5) + "'profiles.server.default_days' (400) must not be more than max_days (397)");
  // The first problem in file order wins.
  EXPECT_EQ(error(std::string(kToken) +
                  "[profiles.a]\n"
                  "default_days = 400\n"
                  "max_days = 397\n"
                  "[profiles.b]\n"
                  "ip = [\"bad\"]\n"),
            at(5) + "'profiles.a.default_days' (400) must not be more than max_days (397)");
}

TEST_F(ConfigParse, RejectsChecksAcrossKeysAtTheProfileHeader) {
  EXPECT_EQ(error(std::string(kToken) +
                  "\n"
                  "[profiles.agreement]\n"
                  "key_types = [\"rsa\"]\n"
                  "key_usage = [\"keyAgreement\"]\n"),
            at(5) + "profile 'agreement': key_usage (keyAgreement) leaves nothing for rsa keys, which can have "
                    "digitalSignature, contentCommitment, keyEncipherment, dataEncipherment");
  EXPECT_EQ(error(std::string(kToken) +
                  "[profiles.nobody]\n"
                  "require_san = false\n"
                  "subject_fields = []\n"),
            at(4) + "profile 'nobody': require_san = false needs subject_fields: a certificate must name its subject in "
                    "a subjectAltName or in the subject");
}

TEST_F(ConfigParse, ReadsTheDevelopmentProfiles) {
  const std::string text = std::string(kToken) + "\n" + dev_profiles_toml();
  Config config = parse(text);
  EXPECT_EQ(config.pki.crl_next_update, std::chrono::hours(7 * 24));
  ASSERT_EQ(config.pki.profiles.size(), 2u);

  const pki::Profile& server = config.pki.profiles.at("server");
  EXPECT_TRUE(server.development_only);
  EXPECT_THAT(server.extended_key_usage, ElementsAre("serverAuth"));
  EXPECT_THAT(server.key_usage, ElementsAre("digitalSignature", "keyEncipherment"));
  EXPECT_THAT(server.dns, ElementsAre("*"));
  EXPECT_THAT(server.ip, ElementsAre("0.0.0.0/0", "::/0"));
  EXPECT_THAT(server.uri, ElementsAre("*"));
  EXPECT_THAT(server.email, ElementsAre("*"));
  EXPECT_THAT(server.key_types, ElementsAre("rsa", "ec-p256", "ec-p384", "ed25519"));

  const pki::Profile& client = config.pki.profiles.at("client");
  EXPECT_TRUE(client.development_only);
  EXPECT_THAT(client.extended_key_usage, ElementsAre("clientAuth"));
  EXPECT_THAT(client.key_usage, ElementsAre("digitalSignature"));
  EXPECT_THAT(client.dns, ElementsAre("*"));
  EXPECT_THAT(client.ip, ElementsAre("0.0.0.0/0", "::/0"));
  EXPECT_THAT(client.uri, ElementsAre("*"));
  EXPECT_THAT(client.email, ElementsAre("*"));

  // Permissive indeed: any well-formed name, with a warning.
  for (const pki::Profile* profile : {&server, &client}) {
    pki::IssuanceRequest request;
    request.key = {"ec", 256, "P-256"};
    request.sans = {{"anything.test", "*.wild.example"}, {"192.0.2.1", "2001:db8::1", "::ffff:10.0.0.1"},
                    {"spiffe://example.org/x"}, {"alice@example.com"}};
    request.subject = {{"CN", "anything.test"}, {"O", "Acme"}, {"C", "DE"}};
    pki::ProfileDecision decision = pki::check_request(*profile, request);
    EXPECT_EQ(decision.days, 90);
    EXPECT_EQ(decision.subject.size(), 3u);
    ASSERT_EQ(decision.warnings.size(), 1u);
    EXPECT_THAT(decision.warnings[0], HasSubstr("development only"));
  }

  ASSERT_EQ(config.ssh.profiles.size(), 2u);
  const ssh::Profile& user = config.ssh.profiles.at("user");
  EXPECT_EQ(user.name, "user");
  EXPECT_EQ(user.kind, ssh::CertificateKind::User);
  EXPECT_TRUE(user.development_only);
  EXPECT_THAT(user.principals, ElementsAre("*"));
  EXPECT_THAT(user.key_types, ElementsAre("ed25519", "ecdsa", "rsa"));
  EXPECT_EQ(user.min_rsa_bits, 2048);
  EXPECT_EQ(user.default_validity, std::chrono::hours(8));
  EXPECT_EQ(user.max_validity, std::chrono::hours(24));
  EXPECT_THAT(user.extensions, ElementsAre("permit-X11-forwarding", "permit-agent-forwarding",
                                           "permit-port-forwarding", "permit-pty", "permit-user-rc"));
  EXPECT_EQ(user.default_extensions, user.extensions);
  EXPECT_THAT(user.critical_options, ElementsAre("force-command", "source-address", "verify-required"));

  const ssh::Profile& host = config.ssh.profiles.at("host");
  EXPECT_EQ(host.kind, ssh::CertificateKind::Host);
  EXPECT_TRUE(host.development_only);
  EXPECT_THAT(host.principals, ElementsAre("*"));
  EXPECT_THAT(host.key_types, ElementsAre("ed25519", "ecdsa", "rsa"));
  EXPECT_EQ(host.default_validity, std::chrono::hours(30 * 24));
  EXPECT_EQ(host.max_validity, std::chrono::hours(365 * 24));
  EXPECT_THAT(host.extensions, IsEmpty());
  EXPECT_THAT(host.default_extensions, IsEmpty());
  EXPECT_THAT(host.critical_options, IsEmpty());

  // Permissive indeed: any principal, with a warning.
  constexpr std::uint64_t kNow = 1'800'000'000;
  ssh::SignRequest request;
  request.kind = ssh::CertificateKind::User;
  request.subject_key_type = "ecdsa-sha2-nistp384";
  request.key_id = "anybody";
  request.principals = {"root", "deploy", "alice@EXAMPLE.COM"};
  request.options = {{"source-address", "127.0.0.1"}};
  ssh::SignDecision decision = ssh::check_sign_request(user, request, kNow);
  EXPECT_EQ(decision.valid_before, kNow + 8 * 3600);
  EXPECT_EQ(decision.extensions, user.extensions);
  ASSERT_EQ(decision.warnings.size(), 1u);
  EXPECT_THAT(decision.warnings[0], HasSubstr("development only"));

  request.kind = ssh::CertificateKind::Host;
  request.subject_key_type = "ssh-rsa";
  request.subject_rsa_bits = 3072;
  request.principals = {"anything.test", "*.wild.example", "192.0.2.1", "::1", "localhost"};
  request.options.clear();
  decision = ssh::check_sign_request(host, request, kNow);
  EXPECT_EQ(decision.valid_before, kNow + 30 * 24 * 3600);
  EXPECT_THAT(decision.extensions, IsEmpty());
  ASSERT_EQ(decision.warnings.size(), 1u);
  EXPECT_THAT(decision.warnings[0], HasSubstr("development only"));
}

TEST_F(ConfigParse, DevelopmentProfilesFollowTheDevelopmentConfiguration) {
  // As keyhold init --dev writes it: token, token.env, store, then the profiles.
  Config config = parse(
      "[token]\nmodule = \"softhsm2\"\nuri = \"pkcs11:token=keyhold-dev\"\npin_file = \"pin\"\n\n"
      "[token.env]\nSOFTHSM2_CONF = \"/tmp/softhsm2.conf\"\n\n[store]\npath = \"keyhold.db\"\n\n" +
      dev_profiles_toml());
  EXPECT_EQ(config.token.environment.size(), 1u);
  EXPECT_EQ(config.pki.profiles.size(), 2u);
  EXPECT_EQ(config.ssh.profiles.size(), 2u);
}

// ---- [ssh_profiles.NAME] ------------------------------------------------------

// The example of docs/configuration.md, after kToken: [ssh_profiles.user] on
// line 5, [ssh_profiles.hosts] on line 17.
const std::string kSshProfiles = std::string(kToken) +
                                 "\n"
                                 "[ssh_profiles.user]\n"
                                 "kind = \"user\"\n"
                                 "principals = [\"deploy-*\", \"alice\"]\n"
                                 "key_types = [\"ed25519\", \"ecdsa\"]\n"
                                 "min_rsa_bits = 3072\n"
                                 "default_validity = \"1h\"\n"
                                 "max_validity = \"12h\"\n"
                                 "extensions = [\"permit-pty\", \"permit-agent-forwarding\", \"login@github.com\"]\n"
                                 "default_extensions = [\"permit-pty\"]\n"
                                 "critical_options = [\"force-command\", \"source-address\"]\n"
                                 "development_only = false\n"
                                 "\n"
                                 "[ssh_profiles.hosts]\n"
                                 "kind = \"host\"\n"
                                 "principals = [\"*.example.org\", \"10.0.0.*\"]\n"
                                 "default_validity = \"30d\"\n"
                                 "max_validity = \"365d\"\n";

// An SSH profile of this kind on lines 4 (header) and 5 (kind), then `line` on line 6.
std::string ssh_profile_with(const std::string& kind, const std::string& line) {
  return std::string(kToken) + "[ssh_profiles.p]\nkind = \"" + kind + "\"\n" + line + "\n";
}

TEST_F(ConfigParse, SshProfilesAreEmptyWhenAbsent) {
  EXPECT_TRUE(parse(kToken).ssh.profiles.empty());
  EXPECT_TRUE(parse(std::string(kToken) + "[ssh_profiles]\n").ssh.profiles.empty());
}

TEST_F(ConfigParse, ReadsFullSshProfiles) {
  Config config = parse(kSshProfiles);
  ASSERT_EQ(config.ssh.profiles.size(), 2u);
  const ssh::Profile& user = config.ssh.profiles.at("user");
  EXPECT_EQ(user.name, "user");
  EXPECT_EQ(user.kind, ssh::CertificateKind::User);
  EXPECT_THAT(user.principals, ElementsAre("deploy-*", "alice"));
  EXPECT_THAT(user.key_types, ElementsAre("ed25519", "ecdsa"));
  EXPECT_EQ(user.min_rsa_bits, 3072);
  EXPECT_EQ(user.default_validity, std::chrono::hours(1));
  EXPECT_EQ(user.max_validity, std::chrono::hours(12));
  EXPECT_THAT(user.extensions, ElementsAre("permit-pty", "permit-agent-forwarding", "login@github.com"));
  EXPECT_THAT(user.default_extensions, ElementsAre("permit-pty"));
  EXPECT_THAT(user.critical_options, ElementsAre("force-command", "source-address"));
  EXPECT_FALSE(user.development_only);

  const ssh::Profile& hosts = config.ssh.profiles.at("hosts");
  EXPECT_EQ(hosts.name, "hosts");
  EXPECT_EQ(hosts.kind, ssh::CertificateKind::Host);
  EXPECT_THAT(hosts.principals, ElementsAre("*.example.org", "10.0.0.*"));
  EXPECT_THAT(hosts.key_types, ElementsAre("ed25519", "ecdsa", "rsa"));
  EXPECT_EQ(hosts.default_validity, std::chrono::hours(30 * 24));
  EXPECT_EQ(hosts.max_validity, std::chrono::hours(365 * 24));
  EXPECT_THAT(hosts.extensions, IsEmpty());
  EXPECT_THAT(hosts.default_extensions, IsEmpty());
  EXPECT_THAT(hosts.critical_options, IsEmpty());
  EXPECT_FALSE(hosts.development_only);
}

TEST_F(ConfigParse, GivesAnSshProfileTheDefaultsOfItsKind) {
  Config config = parse(std::string(kToken) + "[ssh_profiles.u]\nkind = \"user\"\n[ssh_profiles.h]\nkind = \"host\"\n");
  for (auto kind : {ssh::CertificateKind::User, ssh::CertificateKind::Host}) {
    std::string name = kind == ssh::CertificateKind::User ? "u" : "h";
    const ssh::Profile& profile = config.ssh.profiles.at(name);
    ssh::Profile defaults = ssh::make_profile(name, kind);
    EXPECT_EQ(profile.name, name);
    EXPECT_EQ(profile.kind, kind);
    EXPECT_EQ(profile.principals, defaults.principals);
    EXPECT_EQ(profile.key_types, defaults.key_types);
    EXPECT_EQ(profile.min_rsa_bits, 2048);
    EXPECT_EQ(profile.default_validity, std::chrono::hours(8));
    EXPECT_EQ(profile.max_validity, std::chrono::hours(24));
    EXPECT_EQ(profile.extensions, defaults.extensions);
    EXPECT_EQ(profile.default_extensions, defaults.default_extensions);
    EXPECT_EQ(profile.critical_options, defaults.critical_options);
    EXPECT_FALSE(profile.development_only);
  }
  EXPECT_EQ(config.ssh.profiles.at("u").extensions.size(), 5u);
  EXPECT_TRUE(config.ssh.profiles.at("h").extensions.empty());
}

TEST_F(ConfigParse, ReadsSshProfilesInAnyTableForm) {
  Config config = parse(std::string(kToken) +
                        "[ssh_profiles.\"ops.ro-1\"]\n"
                        "kind = \"user\"\n"
                        "[ssh_profiles]\n"
                        "inline = { kind = \"host\", principals = [\"*.example.org\"], max_validity = \"7d\" }\n"
                        "dotted.kind = \"user\"\n"
                        "dotted.principals = [\"alice\"]\n");
  ASSERT_EQ(config.ssh.profiles.size(), 3u);
  EXPECT_EQ(config.ssh.profiles.at("ops.ro-1").name, "ops.ro-1");
  EXPECT_EQ(config.ssh.profiles.at("inline").kind, ssh::CertificateKind::Host);
  EXPECT_EQ(config.ssh.profiles.at("inline").max_validity, std::chrono::hours(7 * 24));
  EXPECT_THAT(config.ssh.profiles.at("dotted").principals, ElementsAre("alice"));
  // The X.509 and SSH profiles are separate namespaces.
  config = parse(std::string(kToken) + "[profiles.user]\ndns = [\"*\"]\n[ssh_profiles.user]\nkind = \"user\"\n");
  EXPECT_EQ(config.pki.profiles.size(), 1u);
  EXPECT_EQ(config.ssh.profiles.size(), 1u);
}

TEST_F(ConfigParse, RequiresTheKindOfAnSshProfile) {
  EXPECT_EQ(error(std::string(kToken) + "[ssh_profiles.p]\nprincipals = [\"*\"]\n"),
            at(4) + "missing required key 'ssh_profiles.p.kind'");
  EXPECT_EQ(error(std::string(kToken) + "[ssh_profiles.p]\nkind = \"users\"\n"),
            at(5) + "'ssh_profiles.p.kind' must be \"user\" or \"host\", not 'users'");
  EXPECT_EQ(error(std::string(kToken) + "[ssh_profiles.p]\nkind = \"Host\"\n"),
            at(5) + "'ssh_profiles.p.kind' must be \"user\" or \"host\", not 'Host'");
}

TEST_F(ConfigParse, LowersTheDefaultSshValidityWithAMaximumBelowIt) {
  Config config = parse(ssh_profile_with("user", "max_validity = \"1h\""));
  EXPECT_EQ(config.ssh.profiles.at("p").max_validity, std::chrono::hours(1));
  EXPECT_EQ(config.ssh.profiles.at("p").default_validity, std::chrono::hours(1));
  config = parse(ssh_profile_with("user", "max_validity = \"1h\"\ndefault_validity = \"15m\""));
  EXPECT_EQ(config.ssh.profiles.at("p").default_validity, std::chrono::minutes(15));
  EXPECT_EQ(error(ssh_profile_with("user", "default_validity = \"48h\"")),
            at(6) + "'ssh_profiles.p.default_validity' (48h) must not be more than max_validity (24h, the default)");
  EXPECT_EQ(error(ssh_profile_with("user", "default_validity = \"2d\"\nmax_validity = \"36h\"")),
            at(6) + "'ssh_profiles.p.default_validity' (2d) must not be more than max_validity (36h)");
}

TEST_F(ConfigParse, NarrowsTheDefaultExtensionsToTheAllowedOnes) {
  Config config = parse(ssh_profile_with("user", "extensions = [\"permit-pty\", \"no-touch-required\"]"));
  EXPECT_THAT(config.ssh.profiles.at("p").extensions, ElementsAre("permit-pty", "no-touch-required"));
  EXPECT_THAT(config.ssh.profiles.at("p").default_extensions, ElementsAre("permit-pty"));
  config = parse(ssh_profile_with("user", "extensions = []"));
  EXPECT_THAT(config.ssh.profiles.at("p").default_extensions, IsEmpty());
  config = parse(ssh_profile_with("user", "default_extensions = []\ncritical_options = []"));
  EXPECT_EQ(config.ssh.profiles.at("p").extensions.size(), 5u);
  EXPECT_THAT(config.ssh.profiles.at("p").default_extensions, IsEmpty());
  EXPECT_THAT(config.ssh.profiles.at("p").critical_options, IsEmpty());
}

TEST_F(ConfigParse, RefusesDefaultExtensionsOutsideTheExtensionsOnTheirLine) {
  EXPECT_EQ(error(std::string(kToken) +
                  "[ssh_profiles.p]\n"
                  "kind = \"user\"\n"
                  "extensions = [\"permit-pty\", \"permit-user-rc\"]\n"
                  "default_extensions = [\n"
                  "  \"permit-pty\",\n"
                  "  \"permit-agent-forwarding\",\n"
                  "]\n"),
            at(9) + "'ssh_profiles.p.default_extensions': extension 'permit-agent-forwarding' is not in extensions "
                    "(permit-pty, permit-user-rc)");
  EXPECT_EQ(error(ssh_profile_with("user", "default_extensions = [\"no-touch-required\"]")),
            at(6) + "'ssh_profiles.p.default_extensions': extension 'no-touch-required' is not in extensions "
                    "(permit-X11-forwarding, permit-agent-forwarding, permit-port-forwarding, permit-pty, "
                    "permit-user-rc, the default)");
  EXPECT_EQ(error(ssh_profile_with("user", "extensions = []\ndefault_extensions = [\"permit-pty\"]")),
            at(7) + "'ssh_profiles.p.default_extensions': extension 'permit-pty' is not in extensions (it is empty)");
}

TEST_F(ConfigParse, RefusesExtensionsAndOptionsInHostSshProfiles) {
  EXPECT_EQ(error(ssh_profile_with("host", "extensions = [\"permit-pty\"]")),
            at(6) + "'ssh_profiles.p.extensions' must be empty in a profile with kind = \"host\": host certificates "
                    "carry no extensions");
  EXPECT_EQ(error(ssh_profile_with("host", "default_extensions = [\"permit-pty\"]")),
            at(6) + "'ssh_profiles.p.default_extensions' must be empty in a profile with kind = \"host\": host "
                    "certificates carry no extensions");
  EXPECT_EQ(error(ssh_profile_with("host", "critical_options = [\"source-address\"]")),
            at(6) + "'ssh_profiles.p.critical_options' must be empty in a profile with kind = \"host\": host "
                    "certificates carry no critical options (ssh refuses a host certificate that has any)");
  // Reported on their own line, wherever the kind is.
  EXPECT_EQ(error(std::string(kToken) + "[ssh_profiles.p]\nextensions = [\"permit-pty\"]\nkind = \"host\"\n"),
            at(5) + "'ssh_profiles.p.extensions' must be empty in a profile with kind = \"host\": host certificates "
                    "carry no extensions");
  Config config = parse(std::string(kToken) +
                        "[ssh_profiles.p]\nextensions = []\ndefault_extensions = []\ncritical_options = []\n"
                        "kind = \"host\"\n");
  EXPECT_THAT(config.ssh.profiles.at("p").extensions, IsEmpty());
}

TEST_F(ConfigParse, ChecksHostPrincipalPatternsOnTheirLine) {
  EXPECT_EQ(error(std::string(kToken) +
                  "[ssh_profiles.p]\n"
                  "principals = [\n"
                  "  \"*.example.org\",\n"
                  "  \"Web01\",\n"
                  "]\n"
                  "kind = \"host\"\n"),
            at(7) + "'ssh_profiles.p.principals': principal pattern 'Web01' contains upper-case letters: ssh "
                    "lower-cases the host name before it matches host principals (write 'web01')");
  EXPECT_EQ(error(ssh_profile_with("host", "principals = [\"deploy@example.org\"]")),
            at(6) + "'ssh_profiles.p.principals': principal pattern 'deploy@example.org' holds '@', which cannot be "
                    "in a host name or an IP address");
  // The same patterns are fine for users.
  EXPECT_NO_THROW(parse(ssh_profile_with("user", "principals = [\"Web01\", \"deploy@example.org\"]")));
}

TEST_F(ConfigParse, RejectsInvalidSshProfileValuesNamingLineAndValue) {
  struct Case {
    std::string line;
    std::string message;  // after "FILE:6: "
  };
  const std::string known_extensions =
      "no-touch-required, permit-X11-forwarding, permit-agent-forwarding, permit-port-forwarding, permit-pty, "
      "permit-user-rc";
  const std::vector<Case> cases = {
      {"principals = [\"ops team\"]", "'ssh_profiles.p.principals': principal pattern 'ops team' contains a space"},
      {"principals = [\"a,b\"]",
       "'ssh_profiles.p.principals': principal pattern 'a,b' contains a comma (OpenSSH separates principals with "
       "commas)"},
      {"principals = [\"web?\"]",
       "'ssh_profiles.p.principals': principal pattern 'web?' contains '?', which is not a wildcard here: only '*' "
       "is"},
      {"principals = [\"\"]", "'ssh_profiles.p.principals': principal pattern '' is empty (use '*' for any principal)"},
      {"principals = [\"a\\tb\"]",
       "'ssh_profiles.p.principals': principal pattern 'a\\x09b' contains a control character"},
      {"principals = []", "'ssh_profiles.p.principals' must not be empty"},
      {"principals = [\"alice\", \"alice\"]", "'ssh_profiles.p.principals': 'alice' is listed twice"},
      {"key_types = [\"dsa\"]",
       "'ssh_profiles.p.key_types': DSA keys are refused (OpenSSH has disabled them since 7.0)"},
      {"key_types = [\"ec-p256\"]",
       "'ssh_profiles.p.key_types': unknown key type 'ec-p256' (did you mean 'ecdsa'? it allows P-256, P-384 and "
       "P-521)"},
      {"key_types = [\"ssh-ed25519\"]",
       "'ssh_profiles.p.key_types': unknown key type 'ssh-ed25519' (did you mean 'ed25519'?)"},
      {"key_types = []", "'ssh_profiles.p.key_types' must not be empty"},
      {"key_types = [\"rsa\", \"rsa\"]", "'ssh_profiles.p.key_types': 'rsa' is listed twice"},
      {"min_rsa_bits = 1024", "'ssh_profiles.p.min_rsa_bits' must be between 2048 and 16384, not 1024"},
      {"min_rsa_bits = 16385", "'ssh_profiles.p.min_rsa_bits' must be between 2048 and 16384, not 16385"},
      {"default_validity = \"8 hours\"",
       "'ssh_profiles.p.default_validity' must be a duration such as '90m', '12h', '7d' or '2w', not '8 hours'"},
      {"default_validity = \"30s\"", "'ssh_profiles.p.default_validity' must be between 1m and 3650d, not '30s'"},
      {"max_validity = \"3651d\"", "'ssh_profiles.p.max_validity' must be between 1m and 3650d, not '3651d'"},
      {"max_validity = \"0h\"",
       "'ssh_profiles.p.max_validity' must be a duration such as '90m', '12h', '7d' or '2w', not '0h'"},
      {"extensions = [\"permit-everything\"]",
       "'ssh_profiles.p.extensions': unknown extension 'permit-everything' (known: " + known_extensions +
           "; a vendor extension is name@domain)"},
      {"extensions = [\"permit-x11-forwarding\"]",
       "'ssh_profiles.p.extensions': unknown extension 'permit-x11-forwarding' (did you mean "
       "'permit-X11-forwarding'?)"},
      {"extensions = [\"x@exa_mple.org\"]",
       "'ssh_profiles.p.extensions': extension name 'x@exa_mple.org' is not valid: its domain is not a host name: it "
       "holds '_', which is not a letter, digit or '-'"},
      {"extensions = [\"permit-pty\", \"permit-pty\"]", "'ssh_profiles.p.extensions': 'permit-pty' is listed twice"},
      {"default_extensions = [\"permit-everything\"]",
       "'ssh_profiles.p.default_extensions': unknown extension 'permit-everything' (known: " + known_extensions +
           "; a vendor extension is name@domain)"},
      {"critical_options = [\"no-pty\"]",
       "'ssh_profiles.p.critical_options': unknown critical option 'no-pty' (known: force-command, source-address, "
       "verify-required; a vendor critical option is name@domain)"},
      {"critical_options = [\"@example.org\"]",
       "'ssh_profiles.p.critical_options': critical option name '@example.org' is not valid: it has nothing before "
       "the '@'"},
  };
  for (const Case& c : cases) EXPECT_EQ(error(ssh_profile_with("user", c.line)), at(6) + c.message) << c.line;
}

TEST_F(ConfigParse, RejectsWrongTypesInSshProfiles) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {std::string(kToken) + "[ssh_profiles.p]\nkind = 1\n",
       at(5) + "'ssh_profiles.p.kind' must be a string, not an integer"},
      {ssh_profile_with("user", "principals = \"*\""),
       at(6) + "'ssh_profiles.p.principals' must be an array, not a string"},
      {ssh_profile_with("user", "principals = [\"a\", 1]"),
       at(6) + "'ssh_profiles.p.principals[1]' must be a string, not an integer"},
      {ssh_profile_with("user", "min_rsa_bits = \"2048\""),
       at(6) + "'ssh_profiles.p.min_rsa_bits' must be an integer, not a string"},
      {ssh_profile_with("user", "default_validity = 8"),
       at(6) + "'ssh_profiles.p.default_validity' must be a string, not an integer"},
      {ssh_profile_with("user", "max_validity = 1979-05-27"),
       at(6) + "'ssh_profiles.p.max_validity' must be a string, not a date"},
      {ssh_profile_with("user", "development_only = \"yes\""),
       at(6) + "'ssh_profiles.p.development_only' must be a boolean, not a string"},
      {ssh_profile_with("user", "extensions = [\"permit-pty\\u0000\"]"),
       at(6) + "'ssh_profiles.p.extensions[0]' must not contain a NUL character"},
      {std::string(kToken) + "[ssh_profiles]\np = \"user\"\n",
       at(5) + "'ssh_profiles.p' must be a table, not a string"},
      {std::string(kToken) + "[[ssh_profiles.p]]\n", at(4) + "'ssh_profiles.p' must be a table, not an array"},
      {"ssh_profiles = [\"user\"]\n" + std::string(kToken), at(1) + "'ssh_profiles' must be a table, not an array"},
  };
  for (const Case& c : cases) EXPECT_EQ(error(c.text), c.message) << c.text;
}

TEST_F(ConfigParse, RejectsUnknownKeysInSshProfiles) {
  EXPECT_EQ(error(ssh_profile_with("user", "principal = [\"*\"]")),
            at(6) + "unknown key 'ssh_profiles.p.principal' (did you mean 'ssh_profiles.p.principals'?)");
  EXPECT_EQ(error(ssh_profile_with("user", "colour = \"blue\"")),
            at(6) + "unknown key 'ssh_profiles.p.colour' (known keys in [ssh_profiles.p]: kind, principals, key_types, "
                    "min_rsa_bits, default_validity, max_validity, extensions, default_extensions, critical_options, "
                    "development_only)");
  EXPECT_EQ(error(std::string(kToken) + "[ssh_profile.user]\nkind = \"user\"\n"),
            at(4) + "unknown key 'ssh_profile' (did you mean 'ssh_profiles'?)");
  // Keys of the other kind of profile say where they belong.
  EXPECT_EQ(error(ssh_profile_with("user", "max_days = 1")),
            at(6) + "'max_days' is a key of X.509 certificate profiles, which are [profiles.NAME] tables; "
                    "[ssh_profiles.NAME] is an SSH certificate profile");
  EXPECT_EQ(error(ssh_profile_with("host", "dns = [\"*.example.org\"]")),
            at(6) + "'dns' is a key of X.509 certificate profiles, which are [profiles.NAME] tables; "
                    "[ssh_profiles.NAME] is an SSH certificate profile");
  EXPECT_EQ(error(profile_with("principals = [\"alice\"]")),
            at(5) + "'principals' is a key of SSH profiles, which are [ssh_profiles.NAME] tables; [profiles.NAME] is "
                    "an X.509 certificate profile");
  EXPECT_EQ(error(profile_with("kind = \"user\"")),
            at(5) + "'kind' is a key of SSH profiles, which are [ssh_profiles.NAME] tables; [profiles.NAME] is an "
                    "X.509 certificate profile");
}

TEST_F(ConfigParse, RejectsInvalidSshProfileNames) {
  EXPECT_EQ(error(std::string(kToken) + "\n[ssh_profiles.\"ops team\"]\nkind = \"user\"\n"),
            at(5) + "invalid SSH profile name 'ops team': use 1 to 64 letters, digits, '.', '_' or '-', starting with "
                    "a letter or digit");
  EXPECT_THAT(error(std::string(kToken) + "[ssh_profiles._hidden]\n"),
              StartsWith(at(4) + "invalid SSH profile name '_hidden'"));
}

TEST_F(ConfigParse, ReportsTheFirstSshProfileProblemInFileOrder) {
  EXPECT_EQ(error(std::string(kToken) +
                  "[ssh_profiles.b]\n"
                  "kind = \"user\"\n"
                  "max_validity = \"1w\"\n"
                  "default_validity = \"8d\"\n"
                  "[ssh_profiles.a]\n"
                  "kind = \"nobody\"\n"),
            at(7) + "'ssh_profiles.b.default_validity' (8d) must not be more than max_validity (1w)");
}

// ---- [server] ------------------------------------------------------------------

// The keys [server] requires, one per line: lines 4 to 10 after kToken.
const std::vector<std::pair<std::string, std::string>> kServerLines = {
    {"", "[server]"},
    {"certificate_file", "certificate_file = \"server.pem\""},
    {"key", "key = \"server-tls\""},
    {"client_ca_files", "client_ca_files = [\"ca.pem\"]"},
    {"policy_file", "policy_file = \"policy.toml\""},
    {"audit_log", "audit_log = \"audit.log\""},
    {"audit_key", "audit_key = \"audit\""},
};

// kToken and a minimal [server], with the line of `key` replaced (or left
// out when replacement is nullopt), then extra from line 11 on.
std::string server_config(const std::string& key = "", const std::optional<std::string>& replacement = std::nullopt,
                          const std::string& extra = "") {
  std::string text = kToken;
  for (const auto& [name, line] : kServerLines) {
    if (!key.empty() && name == key) {
      if (replacement) text += *replacement + "\n";
    } else {
      text += line + "\n";
    }
  }
  return text + extra;
}

TEST_F(ConfigParse, HasNoServerSettingsWithoutAServerSection) {
  EXPECT_EQ(parse(kToken).server, std::nullopt);
  EXPECT_EQ(parse(std::string(kToken) + "\n" + dev_profiles_toml()).server, std::nullopt);
}

TEST_F(ConfigParse, ReadsTheServerSectionWithItsDefaults) {
  Config config = parse(server_config());
  ASSERT_TRUE(config.server.has_value());
  const ServiceSettings& server = *config.server;
  EXPECT_EQ(server.listen, "127.0.0.1:8443");
  EXPECT_EQ(server.plain_listen, std::nullopt);
  EXPECT_FALSE(server.tls12);
  EXPECT_EQ(server.ca, std::nullopt);
  EXPECT_EQ(server.certificate_file, dir_.path() / "server.pem");
  EXPECT_EQ(server.key, "server-tls");
  EXPECT_THAT(server.client_ca_files, ElementsAre(dir_.path() / "ca.pem"));
  EXPECT_THAT(server.crl_files, IsEmpty());
  EXPECT_EQ(server.policy_file, dir_.path() / "policy.toml");
  EXPECT_EQ(server.audit_log, dir_.path() / "audit.log");
  EXPECT_EQ(server.audit_key, "audit");
  EXPECT_EQ(server.audit_checkpoint_records, 1000u);
  EXPECT_EQ(server.audit_checkpoint_seconds, std::chrono::seconds(60));
  EXPECT_EQ(server.body_limit, 65536u);
  EXPECT_EQ(server.header_timeout, std::chrono::seconds(10));
  EXPECT_EQ(server.idle_timeout, std::chrono::seconds(60));
  EXPECT_EQ(server.max_connections, 1024u);
  EXPECT_EQ(server.threads, 0u);
  EXPECT_EQ(server.rate_limit_per_second, 500u);
  EXPECT_EQ(server.rate_limit_burst, 1000u);
  EXPECT_EQ(server.maintain_every, std::chrono::hours(1));
  EXPECT_EQ(server.maintain_publish_dir, std::nullopt);
  EXPECT_EQ(server.maintain_expiring_within, std::chrono::days(30));
}

TEST_F(ConfigParse, ReadsEveryServerKey) {
  Config config = parse(std::string(kToken) +
                        "[server]\n"
                        "listen = \"[::1]:9443\"\n"
                        "plain_listen = \"0.0.0.0:8080\"\n"
                        "tls12 = true\n"
                        "ca = \"issuing\"\n"
                        "certificate_file = \"tls/server.pem\"\n"
                        "key = \"web-tls.v2\"\n"
                        "client_ca_files = [\"clients/a.pem\", \"/etc/keyhold/b.pem\"]\n"
                        "crl_files = [\"../crl/a.crl\", \"/var/lib/keyhold/b.crl\"]\n"
                        "policy_file = \"/etc/keyhold/policy.toml\"\n"
                        "audit_log = \"../log/./audit.log\"\n"
                        "audit_key = \"audit-2030\"\n"
                        "audit_checkpoint_records = 0\n"
                        "audit_checkpoint_seconds = 5\n"
                        "body_limit = 1024\n"
                        "header_timeout = \"30s\"\n"
                        "idle_timeout = \"2m\"\n"
                        "max_connections = 10\n"
                        "threads = 4\n"
                        "rate_limit_per_second = 0\n"
                        "rate_limit_burst = 1\n"
                        "maintain_every = \"15m\"\n"
                        "maintain_publish_dir = \"../public\"\n"
                        "maintain_expiring_within = \"2w\"\n");
  ASSERT_TRUE(config.server.has_value());
  const ServiceSettings& server = *config.server;
  EXPECT_EQ(server.listen, "[::1]:9443");
  EXPECT_EQ(server.plain_listen, "0.0.0.0:8080");
  EXPECT_TRUE(server.tls12);
  EXPECT_EQ(server.ca, "issuing");
  EXPECT_EQ(server.certificate_file, dir_.path() / "tls" / "server.pem");
  EXPECT_EQ(server.key, "web-tls.v2");
  EXPECT_THAT(server.client_ca_files, ElementsAre(dir_.path() / "clients" / "a.pem", fs::path("/etc/keyhold/b.pem")));
  EXPECT_THAT(server.crl_files,
              ElementsAre(dir_.path().parent_path() / "crl" / "a.crl", fs::path("/var/lib/keyhold/b.crl")));
  EXPECT_EQ(server.policy_file, fs::path("/etc/keyhold/policy.toml"));
  EXPECT_EQ(server.audit_log, dir_.path().parent_path() / "log" / "audit.log");
  EXPECT_EQ(server.audit_key, "audit-2030");
  EXPECT_EQ(server.audit_checkpoint_records, 0u);
  EXPECT_EQ(server.audit_checkpoint_seconds, std::chrono::seconds(5));
  EXPECT_EQ(server.body_limit, 1024u);
  EXPECT_EQ(server.header_timeout, std::chrono::seconds(30));
  EXPECT_EQ(server.idle_timeout, std::chrono::seconds(120));
  EXPECT_EQ(server.max_connections, 10u);
  EXPECT_EQ(server.threads, 4u);
  EXPECT_EQ(server.rate_limit_per_second, 0u);
  EXPECT_EQ(server.rate_limit_burst, 1u);
  EXPECT_EQ(server.maintain_every, std::chrono::minutes(15));
  EXPECT_EQ(server.maintain_publish_dir, dir_.path().parent_path() / "public");
  EXPECT_EQ(server.maintain_expiring_within, std::chrono::days(14));

  // The service's maintenance switched off, and the extremes of its durations.
  config = parse(server_config("", std::nullopt, "maintain_every = \"off\"\nmaintain_expiring_within = \"1h\"\n"));
  EXPECT_EQ(config.server->maintain_every, std::nullopt);
  EXPECT_EQ(config.server->maintain_expiring_within, std::chrono::hours(1));
  config = parse(server_config("", std::nullopt, "maintain_every = \"1s\"\nmaintain_expiring_within = \"3650d\"\n"));
  EXPECT_EQ(config.server->maintain_every, std::chrono::seconds(1));
  EXPECT_EQ(config.server->maintain_expiring_within, std::chrono::days(3650));
  EXPECT_EQ(parse(server_config("", std::nullopt, "maintain_every = \"1d\"\n")).server->maintain_every,
            std::chrono::days(1));

  // Inline, and the other extremes.
  config = parse(std::string("server = { certificate_file = \"s.pem\", key = \"k\", client_ca_files = [\"c.pem\"], "
                 "policy_file = \"p.toml\", audit_log = \"a.log\", audit_key = \"a\", audit_checkpoint_records = "
                 "1000000, audit_checkpoint_seconds = 0, body_limit = 67108864, header_timeout = \"10m\", "
                 "idle_timeout = \"1h\", max_connections = 1000000, threads = 1024, rate_limit_per_second = "
                 "1000000, rate_limit_burst = 10000000, listen = \"keyhold.example.org:0\", plain_listen = "
                 "\"keyhold.example.org:0\" }\n") +
                 kToken);
  ASSERT_TRUE(config.server.has_value());
  EXPECT_EQ(config.server->audit_checkpoint_records, 1000000u);
  EXPECT_EQ(config.server->audit_checkpoint_seconds, std::chrono::seconds(0));
  EXPECT_EQ(config.server->body_limit, 64u * 1024 * 1024);
  EXPECT_EQ(config.server->header_timeout, std::chrono::minutes(10));
  EXPECT_EQ(config.server->idle_timeout, std::chrono::hours(1));
  EXPECT_EQ(config.server->listen, "keyhold.example.org:0");
}

TEST_F(ConfigParse, ServerRequiresItsFilesAndKeys) {
  for (const auto& [key, line] : kServerLines) {
    if (key.empty()) continue;
    EXPECT_EQ(error(server_config(key)), at(4) + "missing required key 'server." + key + "'") << key;
  }
  EXPECT_EQ(error(std::string(kToken) + "[server]\n"), at(4) + "missing required key 'server.certificate_file'");
}

TEST_F(ConfigParse, ReadsTheDevelopmentServerSection) {
  Config config = parse(std::string(kToken) + "\n" + dev_profiles_toml() + dev_server_toml());
  ASSERT_TRUE(config.server.has_value());
  const ServiceSettings& server = *config.server;
  EXPECT_EQ(server.listen, "127.0.0.1:8443");
  EXPECT_EQ(server.ca, "dev");
  EXPECT_EQ(server.certificate_file, dir_.path() / "server.pem");
  EXPECT_EQ(server.key, "server-tls");
  EXPECT_THAT(server.client_ca_files, ElementsAre(dir_.path() / "ca.pem"));
  EXPECT_THAT(server.crl_files, IsEmpty());
  EXPECT_EQ(server.policy_file, dir_.path() / "policy.toml");
  EXPECT_EQ(server.audit_log, dir_.path() / "audit.log");
  EXPECT_EQ(server.audit_key, "audit");
  EXPECT_EQ(server.audit_checkpoint_records, 1000u);
  EXPECT_EQ(server.audit_checkpoint_seconds, std::chrono::seconds(60));
  EXPECT_EQ(config.pki.profiles.size(), 2u);
}

TEST(ListenAddress, TakesIpAddressesHostNamesAndPortZero) {
  struct Case {
    std::string text, host;
    std::uint16_t port;
  };
  for (const Case& c : std::vector<Case>{{"127.0.0.1:8443", "127.0.0.1", 8443},
                                         {"0.0.0.0:65535", "0.0.0.0", 65535},
                                         {"[::1]:0", "::1", 0},
                                         {"[::]:8443", "::", 8443},
                                         {"[fd00::1:2]:443", "fd00::1:2", 443},
                                         {"localhost:80", "localhost", 80},
                                         {"keyhold.example.org:443", "keyhold.example.org", 443}}) {
    ListenAddress address = parse_listen_address(c.text);
    EXPECT_EQ(address.host, c.host) << c.text;
    EXPECT_EQ(address.port, c.port) << c.text;
  }
  EXPECT_EQ(error_of([] { parse_listen_address("localhost"); }),
            "listen address 'localhost' is not HOST:PORT or [IPv6]:PORT: no port");
}

TEST_F(ConfigParse, RefusesListenAddressesThatAreNotHostAndPort) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "it is empty"},
      {"127.0.0.1", "no port"},
      {"8443", "no port"},
      {"localhost:", "no port"},
      {":8443", "no host (0.0.0.0 or [::] listens on every interface)"},
      {"::1:8443", "an IPv6 address needs brackets, as in [::1]:8443"},
      {"[::1]8443", "no ':PORT' after ']'"},
      {"[::1:8443", "no ']' after the IPv6 address"},
      {"[fe80::zz]:1", "'fe80::zz' is not an IPv6 address"},
      {"[127.0.0.1]:1", "'127.0.0.1' is not an IPv6 address"},
      {"256.1.1.1:80", "'256.1.1.1' is not an IPv4 address"},
      {"10.1:80", "'10.1' is not an IPv4 address"},
      {"local host:80", "'local host' is neither an IP address nor a host name"},
      {"-bad.example:80", "'-bad.example' is neither an IP address nor a host name"},
      {"a..example:80", "'a..example' is neither an IP address nor a host name"},
      {"*:80", "'*' is neither an IP address nor a host name"},
      {"localhost:http", "the port 'http' is not a number from 0 to 65535"},
      {"localhost:-1", "the port '-1' is not a number from 0 to 65535"},
      {"localhost:123456", "the port '123456' is not a number from 0 to 65535"},
      {"localhost:65536", "the port 65536 is over 65535"},
  };
  for (const auto& [value, why] : cases) {
    EXPECT_EQ(error(server_config("", std::nullopt, "listen = \"" + value + "\"\n")),
              at(11) + "'server.listen': listen address '" + value + "' is not HOST:PORT or [IPv6]:PORT: " + why)
        << value;
  }
  EXPECT_EQ(error(server_config("", std::nullopt, "plain_listen = \"8080\"\n")),
            at(11) + "'server.plain_listen': listen address '8080' is not HOST:PORT or [IPv6]:PORT: no port");
  EXPECT_EQ(error(server_config("", std::nullopt, "listen = 8443\n")),
            at(11) + "'server.listen' must be a string, not an integer");
}

TEST_F(ConfigParse, RefusesAPlainListenerOnTheTlsAddress) {
  const std::string message =
      "'server.plain_listen' (127.0.0.1:8443) is the address of listen: give the plain-HTTP listener its own port";
  EXPECT_EQ(error(server_config("", std::nullopt, "plain_listen = \"127.0.0.1:8443\"\n")), at(11) + message);
  EXPECT_EQ(error(server_config("", std::nullopt,
                                "listen = \"127.0.0.1:8443\"\n"
                                "tls12 = false\n"
                                "plain_listen = \"127.0.0.1:8443\"\n")),
            at(13) + message);
  EXPECT_THAT(error(server_config("", std::nullopt, "listen = \"LocalHost:80\"\nplain_listen = \"localhost:80\"\n")),
              StartsWith(at(12) + "'server.plain_listen' (localhost:80) is the address of listen"));
  // Port 0 picks a free port for each: no clash.
  Config config = parse(server_config("", std::nullopt, "listen = \"127.0.0.1:0\"\nplain_listen = \"127.0.0.1:0\"\n"));
  EXPECT_EQ(config.server->plain_listen, "127.0.0.1:0");
  config = parse(server_config("", std::nullopt, "plain_listen = \"127.0.0.1:8080\"\n"));
  EXPECT_EQ(config.server->plain_listen, "127.0.0.1:8080");
}

TEST_F(ConfigParse, RefusesBadServerNamesAndFiles) {
  const std::string name_rule = "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit";
  struct Case {
    std::string key, line;
    int at;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"key", "key = \"bad name\"", 6, "'server.key': invalid key name 'bad name': " + name_rule},
      {"key", "key = \"\"", 6, "'server.key': invalid key name '': " + name_rule},
      {"key", "key = [\"a\"]", 6, "'server.key' must be a string, not an array"},
      {"audit_key", "audit_key = \".hidden\"", 10, "'server.audit_key': invalid key name '.hidden': " + name_rule},
      {"certificate_file", "certificate_file = \"\"", 5, "'server.certificate_file' must not be empty"},
      {"policy_file", "policy_file = 1", 8, "'server.policy_file' must be a string, not an integer"},
      {"audit_log", "audit_log = \"\"", 9, "'server.audit_log' must not be empty"},
      {"client_ca_files", "client_ca_files = []", 7,
       "'server.client_ca_files' must not be empty: name at least one CA certificate file (PEM)"},
      {"client_ca_files", "client_ca_files = \"ca.pem\"", 7, "'server.client_ca_files' must be an array, not a string"},
      {"client_ca_files", "client_ca_files = [\"a.pem\", 3]", 7,
       "'server.client_ca_files[1]' must be a string, not an integer"},
      {"client_ca_files", "client_ca_files = [\"\"]", 7, "'server.client_ca_files' must not hold an empty file name"},
      {"client_ca_files", "client_ca_files = [\"a.pem\", \"./a.pem\"]", 7,
       "'server.client_ca_files': './a.pem' is listed twice"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(error(server_config(c.key, c.line)), at(c.at) + c.message) << c.line;
  }
  EXPECT_EQ(error(server_config("", std::nullopt, "ca = \"my ca\"\n")),
            at(11) + "'server.ca': invalid CA name 'my ca': " + name_rule);
  EXPECT_EQ(error(server_config("", std::nullopt, "crl_files = [\"c.crl\", \"x/../c.crl\"]\n")),
            at(11) + "'server.crl_files': 'x/../c.crl' is listed twice");
  EXPECT_EQ(error(server_config("", std::nullopt, "crl_files = [\n  \"a.crl\",\n  \"\",\n]\n")),
            at(13) + "'server.crl_files' must not hold an empty file name");
  EXPECT_EQ(error(server_config("", std::nullopt, "tls12 = \"yes\"\n")),
            at(11) + "'server.tls12' must be a boolean, not a string");
}

TEST_F(ConfigParse, RefusesServerNumbersAndDurationsOutOfRange) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"audit_checkpoint_records = -1",
       "'server.audit_checkpoint_records' must be between 0 and 1000000 (0: no checkpoint by count), not -1"},
      {"audit_checkpoint_records = 1000001",
       "'server.audit_checkpoint_records' must be between 0 and 1000000 (0: no checkpoint by count), not 1000001"},
      {"audit_checkpoint_seconds = 86401",
       "'server.audit_checkpoint_seconds' must be between 0 and 86400 (0: no checkpoint by time), not 86401"},
      {"audit_checkpoint_seconds = \"60s\"", "'server.audit_checkpoint_seconds' must be an integer, not a string"},
      {"body_limit = 1023", "'server.body_limit' must be between 1024 and 67108864, not 1023"},
      {"body_limit = 67108865", "'server.body_limit' must be between 1024 and 67108864, not 67108865"},
      {"header_timeout = \"10 s\"",
       "'server.header_timeout' must be a duration such as '90m', '12h', '7d' or '2w', not '10 s'"},
      {"header_timeout = \"0s\"",
       "'server.header_timeout' must be a duration such as '90m', '12h', '7d' or '2w', not '0s'"},
      {"header_timeout = \"11m\"", "'server.header_timeout' must be between 1s and 10m, not '11m'"},
      {"header_timeout = 10", "'server.header_timeout' must be a string, not an integer"},
      {"idle_timeout = \"2h\"", "'server.idle_timeout' must be between 1s and 1h, not '2h'"},
      {"max_connections = 0", "'server.max_connections' must be between 1 and 1000000, not 0"},
      {"threads = -1", "'server.threads' must be between 0 and 1024 (0: one per CPU core), not -1"},
      {"threads = 1025", "'server.threads' must be between 0 and 1024 (0: one per CPU core), not 1025"},
      {"rate_limit_per_second = -5",
       "'server.rate_limit_per_second' must be between 0 and 1000000 (0: no limit), not -5"},
      {"rate_limit_per_second = 1.5", "'server.rate_limit_per_second' must be an integer, not a float"},
      {"rate_limit_burst = 0", "'server.rate_limit_burst' must be between 1 and 10000000, not 0"},
      {"maintain_every = \"0s\"",
       "'server.maintain_every' must be a duration such as '15m', '1h' or '1d', or 'off', not '0s'"},
      {"maintain_every = \"2d\"", "'server.maintain_every' must be between 1s and 1d (or 'off'), not '2d'"},
      {"maintain_every = \"never\"",
       "'server.maintain_every' must be a duration such as '15m', '1h' or '1d', or 'off', not 'never'"},
      {"maintain_every = false", "'server.maintain_every' must be a string, not a boolean"},
      {"maintain_publish_dir = \"\"", "'server.maintain_publish_dir' must not be empty"},
      {"maintain_expiring_within = \"30m\"",
       "'server.maintain_expiring_within' must be between 1h and 3650d, not '30m'"},
  };
  for (const auto& [line, message] : cases) {
    EXPECT_EQ(error(server_config("", std::nullopt, line + "\n")), at(11) + message) << line;
  }
}

TEST_F(ConfigParse, RefusesAnAuditLogThatWouldNeverBeSigned) {
  const std::string message =
      "'server.audit_checkpoint_records' and 'server.audit_checkpoint_seconds' are both 0: the audit log would "
      "never be signed; set at least one";
  EXPECT_EQ(error(server_config("", std::nullopt, "audit_checkpoint_records = 0\naudit_checkpoint_seconds = 0\n")),
            at(12) + message);
  EXPECT_EQ(error(server_config("", std::nullopt, "audit_checkpoint_seconds = 0\naudit_checkpoint_records = 0\n")),
            at(11) + message);
  EXPECT_NO_THROW(parse(server_config("", std::nullopt, "audit_checkpoint_records = 0\n")));
  EXPECT_NO_THROW(parse(server_config("", std::nullopt, "audit_checkpoint_seconds = 0\n")));
}

TEST_F(ConfigParse, RefusesUnknownServerKeysAndAKeyFile) {
  EXPECT_EQ(error(server_config("", std::nullopt, "lisen = \"127.0.0.1:1\"\n")),
            at(11) + "unknown key 'server.lisen' (did you mean 'server.listen'?)");
  EXPECT_EQ(error(server_config("", std::nullopt, "colour = 1\n")),
            at(11) + "unknown key 'server.colour' (known keys in [server]: listen, plain_listen, tls12, ca, "
                     "certificate_file, key, client_ca_files, crl_files, policy_file, audit_log, audit_key, "
                     "audit_checkpoint_records, audit_checkpoint_seconds, body_limit, header_timeout, idle_timeout, "
                     "max_connections, threads, rate_limit_per_second, rate_limit_burst, maintain_every, maintain_publish_dir, "
                       "maintain_expiring_within)");
  for (const char* key : {"key_file", "private_key", "TLS-Key"}) {
    EXPECT_EQ(error(server_config("", std::nullopt, std::string(key) + " = \"server-key.pem\"\n")),
              at(11) + "the server's private key stays in the token: name the token key with 'key' (a keyhold key "
                       "name), not a key file")
        << key;
  }
  EXPECT_THAT(error(server_config("", std::nullopt, "[server.extra]\nx = 1\n")),
              StartsWith(at(11) + "unknown key 'server.extra' (known keys in [server]: listen,"));
}

// The ```toml blocks of docs/configuration.md, in order.
std::vector<std::string> documented_examples() {
  fs::path doc = fs::path(__FILE__).parent_path() / ".." / ".." / "docs" / "configuration.md";
  std::ifstream in(doc);
  EXPECT_TRUE(in.good()) << doc;
  std::vector<std::string> blocks;
  std::string line;
  std::optional<std::string> block;
  while (std::getline(in, line)) {
    if (!block && line == "```toml") {
      block.emplace();
    } else if (block && line == "```") {
      blocks.push_back(*block);
      block.reset();
    } else if (block) {
      *block += line + "\n";
    }
  }
  return blocks;
}

TEST_F(ConfigParse, DocumentedExamplesLoad) {
  std::vector<std::string> blocks = documented_examples();
  EXPECT_GE(blocks.size(), 5u);
  bool dev_profiles_documented = false;
  bool dev_server_documented = false;
  for (const std::string& block : blocks) {
    std::string text = block.find("[token]") == std::string::npos ? std::string(kToken) + "\n" + block : block;
    EXPECT_NO_THROW(parse(text)) << text;
    if (block == dev_profiles_toml()) dev_profiles_documented = true;
    if ("\n" + block == dev_server_toml()) dev_server_documented = true;
  }
  EXPECT_TRUE(dev_profiles_documented) << "docs/configuration.md must show dev_profiles_toml() as it is";
  EXPECT_TRUE(dev_server_documented) << "docs/configuration.md must show dev_server_toml() as it is";
}

class LoadConfig : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(LoadConfig, ReadsTheFileAndResolvesPathsBesideIt) {
  fs::path file = dir_.path() / "etc" / "keyhold.toml";
  write_file(file, std::string(kToken) + "pin_file = \"pin\"\n[store]\npath = \"db/keyhold.db\"\n");
  Config config = load_config(file);
  EXPECT_EQ(config.file, file);
  EXPECT_EQ(config.directory, dir_.path() / "etc");
  EXPECT_EQ(config.token.pin_file, dir_.path() / "etc" / "pin");
  EXPECT_EQ(config.store.path, dir_.path() / "etc" / "db" / "keyhold.db");
}

TEST_F(LoadConfig, ReadsProfiles) {
  fs::path file = dir_.path() / "keyhold.toml";
  write_file(file, kServerProfile);
  Config config = load_config(file);
  EXPECT_THAT(config.pki.profiles.at("server").dns, ElementsAre("*.example.com", ".example.org"));
  write_file(file, std::string(kToken) + "[profiles.server]\nip = [\"10.0.0.0/40\"]\n");
  EXPECT_THAT(error_of([&] { load_config(file); }), StartsWith(file.string() + ":5: 'profiles.server.ip': "));
}

TEST_F(LoadConfig, ReadsSshProfiles) {
  fs::path file = dir_.path() / "keyhold.toml";
  write_file(file, kSshProfiles);
  Config config = load_config(file);
  EXPECT_THAT(config.ssh.profiles.at("user").principals, ElementsAre("deploy-*", "alice"));
  write_file(file, std::string(kToken) + "[ssh_profiles.user]\nkind = \"user\"\nprincipals = [\"a b\"]\n");
  EXPECT_THAT(error_of([&] { load_config(file); }),
              StartsWith(file.string() + ":6: 'ssh_profiles.user.principals': "));
}

TEST_F(LoadConfig, NamesTheFileInEveryMessage) {
  fs::path file = dir_.path() / "keyhold.toml";
  write_file(file, std::string(kToken) + "max_sessions = \"many\"\n");
  EXPECT_EQ(error_of([&] { load_config(file); }),
            file.string() + ":4: 'token.max_sessions' must be an integer, not a string");
}

TEST_F(LoadConfig, ReportsAMissingFileOrADirectory) {
  fs::path missing = dir_.path() / "nowhere" / "keyhold.toml";
  EXPECT_EQ(error_of([&] { load_config(missing); }), missing.string() + ": does not exist");
  EXPECT_EQ(error_of([&] { load_config(dir_.path()); }),
            dir_.path().string() + ": is a directory, not a configuration file");
}

// Restores KEYHOLD_CONFIG and the working directory, whatever a test did to them.
class ProcessStateGuard {
 public:
  ProcessStateGuard() : cwd_(fs::current_path()) {
    if (const char* value = getenv(kConfigEnvironmentVariable)) saved_ = value;
  }
  ~ProcessStateGuard() {
    if (saved_) {
      setenv(kConfigEnvironmentVariable, saved_->c_str(), 1);
    } else {
      unsetenv(kConfigEnvironmentVariable);
    }
    std::error_code ec;
    fs::current_path(cwd_, ec);
  }
  ProcessStateGuard(const ProcessStateGuard&) = delete;
  ProcessStateGuard& operator=(const ProcessStateGuard&) = delete;

 private:
  fs::path cwd_;
  std::optional<std::string> saved_;
};

class FindConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv(kConfigEnvironmentVariable);
    fs::create_directories(work_);
    fs::current_path(work_);
    write_file(flag_file_, kToken);
    write_file(env_file_, kToken);
    write_file(system_file_, kToken);
  }

  TempDir dir_;
  fs::path work_ = dir_.path() / "work";
  fs::path flag_file_ = dir_.path() / "flag" / "keyhold.toml";
  fs::path env_file_ = dir_.path() / "env" / "keyhold.toml";
  fs::path system_file_ = dir_.path() / "etc" / "keyhold" / "keyhold.toml";
  // Last, so it is destroyed first: the cwd leaves dir_ before dir_ is removed.
  ProcessStateGuard guard_;
};

TEST_F(FindConfig, FlagComesFirst) {
  setenv(kConfigEnvironmentVariable, env_file_.c_str(), 1);
  write_file(work_ / "keyhold.toml", kToken);
  EXPECT_EQ(find_config(flag_file_, system_file_), flag_file_);
}

TEST_F(FindConfig, RelativeFlagIsMadeAbsolute) {
  write_file(work_ / "conf" / "k.toml", kToken);
  EXPECT_EQ(find_config(fs::path("conf/../conf/k.toml"), system_file_), work_ / "conf" / "k.toml");
}

TEST_F(FindConfig, FlagNamingAMissingFileIsAnErrorEvenWhenOthersExist) {
  setenv(kConfigEnvironmentVariable, env_file_.c_str(), 1);
  write_file(work_ / "keyhold.toml", kToken);
  fs::path missing = dir_.path() / "x" / "keyhold.toml";
  EXPECT_EQ(error_of([&] { find_config(missing, system_file_); }),
            "--config names " + missing.string() + ", which does not exist");
  EXPECT_EQ(error_of([&] { find_config(dir_.path(), system_file_); }),
            "--config names " + dir_.path().string() + ", which is a directory, not a configuration file");
}

TEST_F(FindConfig, EnvironmentComesBeforeTheWorkingDirectory) {
  setenv(kConfigEnvironmentVariable, env_file_.c_str(), 1);
  write_file(work_ / "keyhold.toml", kToken);
  EXPECT_EQ(find_config(std::nullopt, system_file_), env_file_);
}

TEST_F(FindConfig, EnvironmentNamingAMissingFileIsAnError) {
  fs::path missing = dir_.path() / "x" / "keyhold.toml";
  setenv(kConfigEnvironmentVariable, missing.c_str(), 1);
  write_file(work_ / "keyhold.toml", kToken);
  EXPECT_EQ(error_of([&] { find_config(std::nullopt, system_file_); }),
            "KEYHOLD_CONFIG names " + missing.string() + ", which does not exist");
}

TEST_F(FindConfig, EmptyEnvironmentVariableCountsAsUnset) {
  setenv(kConfigEnvironmentVariable, "", 1);
  EXPECT_EQ(find_config(std::nullopt, system_file_), system_file_);
}

TEST_F(FindConfig, WorkingDirectoryComesBeforeTheSystemFile) {
  write_file(work_ / "keyhold.toml", kToken);
  EXPECT_EQ(find_config(std::nullopt, system_file_), work_ / "keyhold.toml");
}

TEST_F(FindConfig, FallsBackToTheSystemFile) {
  EXPECT_EQ(find_config(std::nullopt, system_file_), system_file_);
}

TEST_F(FindConfig, SaysHowToCreateOneWhenNothingIsFound) {
  fs::remove(system_file_);
  EXPECT_EQ(error_of([&] { find_config(std::nullopt, system_file_); }),
            "no configuration file: no --config given, KEYHOLD_CONFIG not set, and neither " +
                (work_ / "keyhold.toml").string() + " nor " + system_file_.string() +
                " exists; run keyhold init --dev, or pass --config FILE");
}

TEST_F(FindConfig, FoundFileLoads) {
  setenv(kConfigEnvironmentVariable, env_file_.c_str(), 1);
  Config config = load_config(find_config(std::nullopt, system_file_));
  EXPECT_EQ(config.directory, env_file_.parent_path());
}

}  // namespace
}  // namespace keyhold::app
