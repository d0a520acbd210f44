#pragma once
// For tests of the keyhold command: one development set-up per test binary,
// made by `keyhold init --dev` itself (so its own throwaway SoftHSM token),
// and helpers to run keyhold against it. Removed at the end of the binary.

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/process.hpp"

namespace keyhold::testing {

struct DevSetup {
  std::filesystem::path dir;
  std::filesystem::path config;
  std::string pin;

  static DevSetup& get();
};

// keyhold with KEYHOLD_CONFIG pointing at the set-up, and no KEYHOLD_PIN or KEYHOLD_LOG from outside.
ProcessResult keyhold(std::vector<std::string> args, ProcessOptions options = {});
// keyhold ARGS for a set-up step that must succeed (must_run's rule: throws when it fails).
ProcessResult must_keyhold(const std::vector<std::string>& args);
// keyhold --json ARGS, expected to succeed; its output parsed.
nlohmann::json keyhold_json(std::vector<std::string> args);
// pkcs11-tool on the set-up's token, logged in (a throwaway PIN: fine on a test command line).
std::vector<std::string> pkcs11_tool(std::vector<std::string> args);
ProcessOptions with_softhsm_conf();
// Exactly one line on stderr, starting "keyhold: error: ".
void expect_one_error_line(const ProcessResult& r);
// A copy of the set-up's keyhold.toml with one piece of text replaced.
std::filesystem::path config_variant(const std::string& name, const std::string& from, const std::string& to);
// A file in the set-up's directory.
std::string path_in_setup(const std::string& name);

}  // namespace keyhold::testing
