#include "support/token_fixture.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>

#include "keyhold/hsm/module.hpp"
#include "keyhold/hsm/provision.hpp"
#include "keyhold/hsm/token.hpp"

#ifndef KEYHOLD_SOFTHSM_MODULE
#error "KEYHOLD_SOFTHSM_MODULE must name the SoftHSM2 module"
#endif

namespace keyhold::testing {
namespace {

ThrowawayToken* g_token = nullptr;

SecretBytes random_pin(std::size_t length) {
  static constexpr char kAlphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  std::random_device rd;
  SecretBytes pin(length);
  for (std::size_t i = 0; i < length; ++i) pin.data()[i] = static_cast<std::uint8_t>(kAlphabet[rd() % (sizeof kAlphabet - 1)]);
  return pin;
}

}  // namespace

std::filesystem::path make_temp_directory(const std::string& prefix) {
  std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
  return pattern;
}

std::string ThrowawayToken::module_path() { return KEYHOLD_SOFTHSM_MODULE; }

ThrowawayToken& ThrowawayToken::get() {
  if (g_token == nullptr) g_token = new ThrowawayToken();
  return *g_token;
}

void ThrowawayToken::tear_down() noexcept {
  if (g_token == nullptr) return;
  std::filesystem::path dir = g_token->directory_;
  // Finalise the module before static destruction: SoftHSM can crash in a
  // late C_Finalize once OpenSSL has cleaned up (SoftHSMv2 #780).
  if (g_token->module_) g_token->module_->finalize();
  delete g_token;
  g_token = nullptr;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

ThrowawayToken::ThrowawayToken() {
  if (!std::filesystem::exists(module_path())) {
    throw std::runtime_error("SoftHSM2 is not installed (" + module_path() +
                             " is missing): run scripts/install-deps.sh; tests never skip for this");
  }
  directory_ = make_temp_directory("keyhold-token");
  std::filesystem::create_directory(directory_ / "tokens");
  {
    std::ofstream conf(softhsm_conf());
    conf << "directories.tokendir = " << (directory_ / "tokens").string() << "\n"
         << "objectstore.backend = file\n"
         << "log.level = ERROR\n"
         << "slots.removable = false\n"
         << "slots.mechanisms = ALL\n"
         // A forked child gets a fresh SoftHSM: misuse of the parent's sessions fails loudly.
         << "library.reset_on_fork = true\n";
  }
  ::setenv("SOFTHSM2_CONF", softhsm_conf().c_str(), 1);
  label_ = "keyhold-test-" + std::to_string(::getpid());
  pin_ = random_pin(16);
  so_pin_ = random_pin(16);
  {
    std::ofstream out(pin_file());
    out << pin_.as_string() << "\n";
  }
  ::chmod(pin_file().c_str(), 0600);
  module_ = hsm::Module::load(module_path());
  hsm::initialize_token(*module_, label_, so_pin_, pin_);
}

std::shared_ptr<hsm::Token> ThrowawayToken::open() const {
  return hsm::Token::open(module_, hsm::Uri::parse(uri()), hsm::pin_from_memory(pin_));
}

}  // namespace keyhold::testing
