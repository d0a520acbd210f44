#pragma once
// The keyhold command line: shared pieces of the command files.

#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "keyhold/app/application.hpp"
#include "keyhold/core/error.hpp"

namespace keyhold::cli {

// Exit statuses (docs/cli.md).
enum ExitStatus : int {
  kExitOk = 0,
  kExitFailed = 1,         // the operation failed
  kExitUsage = 2,          // usage or configuration error
  kExitToken = 3,          // token unavailable or login failed
  kExitNotFound = 4,       // no such key, CA, ...
  kExitRefused = 5,        // permission or policy refusal
};

int exit_status_for(ErrorCode code) noexcept;

struct GlobalOptions {
  std::optional<std::string> config;
  bool json = false;
};

// What a command gets: its own arguments (after the command words), the
// global options, and the application, built on first use.
class Context {
 public:
  Context(GlobalOptions options, std::vector<std::string> args, std::ostream& out)
      : options_(std::move(options)), args_(std::move(args)), out_(out) {}
  ~Context();

  const std::vector<std::string>& args() const noexcept { return args_; }
  bool json() const noexcept { return options_.json; }
  std::ostream& out() noexcept { return out_; }
  app::Application& app();
  void shutdown() noexcept;

 private:
  GlobalOptions options_;
  std::vector<std::string> args_;
  std::ostream& out_;
  std::unique_ptr<app::Application> app_;
};

struct Command {
  std::vector<std::string> words;  // {"key", "create"}
  std::string synopsis;            // "key create NAME --type T [--purpose P]"
  std::string summary;
  std::function<int(Context&)> run;
};

// Each command file contributes its commands.
std::vector<Command> key_commands();
std::vector<Command> token_commands();
std::vector<Command> init_commands();
std::vector<Command> ca_commands();
std::vector<Command> ssh_commands();
std::vector<Command> envelope_commands();
std::vector<Command> audit_commands();
std::vector<Command> serve_commands();
std::vector<Command> renew_commands();
std::vector<Command> maintain_commands();

// Prints JSON (pretty) to the context's output.
void print_json(Context& context, const nlohmann::json& value);

}  // namespace keyhold::cli
