#pragma once
// Running programs for keyhold renew: ssh-keygen (new SSH keys) and deploy
// hooks. No shell unless the argv asks for one; standard input is /dev/null.

#include <string>
#include <utility>
#include <vector>

namespace keyhold::renew {

struct SpawnResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string err;     // its standard error, when captured
};

// Runs argv[0] (searched in PATH) with the environment plus `extra` (which
// overrides). capture_err: its stderr is returned (and its stdout dropped);
// else both are inherited. Throws Error(FailedPrecondition) when it cannot start.
SpawnResult spawn(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& extra,
                  bool capture_err);

// "exit 3", "killed by signal 9".
std::string describe(const SpawnResult& result);

}  // namespace keyhold::renew
