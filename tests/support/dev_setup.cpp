#include "support/dev_setup.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "support/token_fixture.hpp"

namespace keyhold::testing {
namespace {

namespace fs = std::filesystem;

class RemoveDevSetup : public ::testing::Environment {
 public:
  explicit RemoveDevSetup(fs::path dir) : dir_(std::move(dir)) {}
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

 private:
  fs::path dir_;
};

}  // namespace

DevSetup& DevSetup::get() {
  static DevSetup* setup = [] {
    auto* s = new DevSetup;
    fs::path parent = make_temp_directory("keyhold-cli");
    ::testing::AddGlobalTestEnvironment(new RemoveDevSetup(parent));
    s->dir = parent / "dev";
    ProcessResult r = run_process({keyhold_binary(), "init", "--dev", "--dir", s->dir.string()});
    if (!r.ok()) throw std::runtime_error("keyhold init --dev failed: " + r.err);
    s->config = s->dir / "keyhold.toml";
    s->pin = read_file((s->dir / "pin").string());
    while (!s->pin.empty() && s->pin.back() == '\n') s->pin.pop_back();
    return s;
  }();
  return *setup;
}

ProcessResult keyhold(std::vector<std::string> args, ProcessOptions options) {
  args.insert(args.begin(), keyhold_binary());
  options.env.emplace("KEYHOLD_CONFIG", DevSetup::get().config.string());
  options.env.emplace("KEYHOLD_PIN", std::nullopt);
  options.env.emplace("KEYHOLD_LOG", std::nullopt);
  return run_process(args, options);
}

nlohmann::json keyhold_json(std::vector<std::string> args) {
  args.insert(args.begin(), "--json");
  ProcessResult r = keyhold(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out.empty() ? "null" : r.out);
}

std::vector<std::string> pkcs11_tool(std::vector<std::string> args) {
  std::vector<std::string> argv = {"pkcs11-tool", "--module", ThrowawayToken::module_path(), "--token-label",
                                   "keyhold-dev", "--login", "--pin", DevSetup::get().pin};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

ProcessOptions with_softhsm_conf() {
  ProcessOptions o;
  o.env["SOFTHSM2_CONF"] = (DevSetup::get().dir / "softhsm2.conf").string();
  return o;
}

void expect_one_error_line(const ProcessResult& r) {
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("keyhold: error: ", 0), 0u) << r.err;
}

fs::path config_variant(const std::string& name, const std::string& from, const std::string& to) {
  std::string text = read_file(DevSetup::get().config.string());
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  fs::path path = DevSetup::get().dir / (name + ".toml");
  write_file(path.string(), text);
  return path;
}

std::string path_in_setup(const std::string& name) { return (DevSetup::get().dir / name).string(); }

ProcessResult must_keyhold(const std::vector<std::string>& args) {
  ProcessResult r = keyhold(args);
  if (!r.ok()) {
    std::string command = "keyhold";
    for (const std::string& a : args) command += " " + a;
    throw std::runtime_error(command + " failed (exit " + std::to_string(r.exit_code) + "): " + r.err);
  }
  return r;
}

}  // namespace keyhold::testing
