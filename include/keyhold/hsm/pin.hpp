#pragma once
// Where the user PIN comes from. A PIN is read when the token logs in (once,
// and again only when the login was lost), lives in a SecretBytes that is
// wiped right after C_Login, and is never logged or put in an error message.
// keyhold never takes a PIN on its command line (visible in /proc/PID/cmdline)
// nor as pin-value in a configuration file.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "keyhold/core/secret.hpp"

namespace keyhold::hsm {

class PinSource {
 public:
  virtual ~PinSource() = default;
  // Throws InvalidArgument when the source is unusable (missing file, empty PIN, loose permissions).
  virtual SecretBytes read() = 0;
  // For messages: "file /etc/keyhold/pin", "environment variable KEYHOLD_PIN", "terminal prompt".
  virtual std::string describe() const = 0;
};

// A file holding the PIN (trailing newline ignored). Refused when group or
// others may read it, as OpenSSH refuses loose private key files.
std::unique_ptr<PinSource> pin_from_file(std::filesystem::path path);
// KEYHOLD_PIN: meant for development and tests only (the environment of a
// process is readable by its user and inherited by its children).
std::unique_ptr<PinSource> pin_from_environment();
// Asks on the controlling terminal with echo off.
std::unique_ptr<PinSource> pin_from_prompt(std::string token_label);
// A PIN already in memory (token set-up, tests).
std::unique_ptr<PinSource> pin_from_memory(const SecretBytes& pin);

inline constexpr const char* kPinEnvironmentVariable = "KEYHOLD_PIN";

// The rule, in order: pin-source in the token URI, the pin_file setting,
// KEYHOLD_PIN, a prompt when stdin is a terminal. Throws InvalidArgument,
// saying how to give a PIN, when there is none.
std::unique_ptr<PinSource> choose_pin_source(const std::optional<std::string>& uri_pin_source,
                                             const std::optional<std::filesystem::path>& pin_file,
                                             const std::filesystem::path& relative_to, std::string token_label);

}  // namespace keyhold::hsm
