#pragma once
// Runs a program (keyhold itself or a peer such as openssl) and captures its
// output, for integration tests. No shell: arguments are passed as they are.

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace keyhold::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
  bool ok() const { return exit_code == 0; }
};

struct ProcessOptions {
  std::map<std::string, std::optional<std::string>> env;  // set (value) or unset (nullopt) over the inherited environment
  std::string input;                                        // written to stdin
  std::optional<std::string> cwd;
};

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});
// For set-up steps that must succeed: run_process, throwing std::runtime_error
// with the command line, exit status and output when it fails.
ProcessResult must_run(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// Path of the keyhold executable built with the tests.
std::string keyhold_binary();

// Reads a whole file; throws when it cannot.
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);

}  // namespace keyhold::testing
