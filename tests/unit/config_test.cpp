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

namespace keyhold::app {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
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
            at(1) + "unknown key 'verbose' (known keys: token, store)");
  EXPECT_EQ(error(std::string(kToken) + "\n[store]\npth = \"x.db\"\n"),
            at(6) + "unknown key 'store.pth' (did you mean 'store.path'?)");
}

TEST_F(ConfigParse, RejectsUnknownTables) {
  EXPECT_EQ(error(std::string(kToken) + "\n[server]\nlisten = \"0.0.0.0:8443\"\n"),
            at(5) + "unknown key 'server' (known keys: token, store)");
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
  EXPECT_EQ(message, at(1) + "unknown key '\"a\\nb\"' (known keys: token, store)");
  EXPECT_THAT(message, Not(HasSubstr("\n")));
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
