#pragma once
// A throwaway SoftHSM token for one test binary: its own directory with a
// softhsm2.conf and token store, SOFTHSM2_CONF set before the module loads,
// random SO and user PINs. Created on first use; removed at the end of main.
// A missing SoftHSM is a failure, never a skip.

#include <filesystem>
#include <memory>
#include <string>

#include "keyhold/core/secret.hpp"

namespace keyhold::hsm {
class Module;
class Token;
}  // namespace keyhold::hsm

namespace keyhold::testing {

class ThrowawayToken {
 public:
  static ThrowawayToken& get();
  static void tear_down() noexcept;  // called by the shared test main

  const std::filesystem::path& directory() const { return directory_; }
  const std::string& label() const { return label_; }
  std::string uri() const { return "pkcs11:token=" + label_; }
  const SecretBytes& pin() const { return pin_; }
  const SecretBytes& so_pin() const { return so_pin_; }
  std::string pin_text() const { return std::string(pin_.as_string()); }
  std::filesystem::path pin_file() const { return directory_ / "pin"; }
  std::filesystem::path softhsm_conf() const { return directory_ / "softhsm2.conf"; }
  static std::string module_path();

  std::shared_ptr<hsm::Module> module() const { return module_; }
  // A new Token object (own session pool, own login) on the throwaway token.
  std::shared_ptr<hsm::Token> open() const;

 private:
  ThrowawayToken();
  std::filesystem::path directory_;
  std::string label_;
  SecretBytes pin_;
  SecretBytes so_pin_;
  std::shared_ptr<hsm::Module> module_;
};

// A fresh unique directory under the system temp dir (removed by the caller).
std::filesystem::path make_temp_directory(const std::string& prefix);

}  // namespace keyhold::testing
