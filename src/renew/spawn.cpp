#include "spawn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "keyhold/core/error.hpp"

extern char** environ;

namespace keyhold::renew {

SpawnResult spawn(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& extra,
                  bool capture_err) {
  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    bool overridden = false;
    for (const auto& [name, value] : extra) overridden = overridden || entry.rfind(name + "=", 0) == 0;
    if (!overridden) environment.push_back(entry);
  }
  for (const auto& [name, value] : extra) environment.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (std::string& s : environment) envp.push_back(s.data());
  envp.push_back(nullptr);

  int err[2] = {-1, -1};
  if (capture_err && ::pipe2(err, O_CLOEXEC) != 0) {
    throw Error(ErrorCode::FailedPrecondition, std::string("cannot make a pipe: ") + std::strerror(errno));
  }
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  pid_t pid = ::fork();
  if (pid < 0) {
    int error = errno;
    if (capture_err) {
      ::close(err[0]);
      ::close(err[1]);
    }
    if (null_fd >= 0) ::close(null_fd);
    throw Error(ErrorCode::FailedPrecondition, "cannot start " + argv[0] + ": " + std::strerror(error));
  }
  if (pid == 0) {
    if (null_fd >= 0) ::dup2(null_fd, 0);
    if (capture_err) {
      if (null_fd >= 0) ::dup2(null_fd, 1);
      ::dup2(err[1], 2);
    }
    ::execvpe(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  if (null_fd >= 0) ::close(null_fd);
  SpawnResult result;
  if (capture_err) {
    ::close(err[1]);
    char buffer[4096];
    while (true) {
      ssize_t n = ::read(err[0], buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (result.err.size() < 64 * 1024) result.err.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(err[0]);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

std::string describe(const SpawnResult& result) {
  if (result.signal != 0) return "killed by signal " + std::to_string(result.signal);
  return "exit " + std::to_string(result.exit_code);
}

}  // namespace keyhold::renew
