#pragma once
// An exclusive, non-blocking flock(2) on a file: what keeps two runs of a
// periodic job (keyhold renew, keyhold maintain, the service's maintenance)
// apart. The kernel drops the lock when the process dies, so a crashed run
// never leaves a stale lock behind.

#include <filesystem>
#include <optional>

namespace keyhold {

class FileLock {
 public:
  // The lock, or nullopt when another open file description holds it (another
  // process, or another FileLock of this one). Creates the file (mode 0600)
  // if needed and never follows a symbolic link. Throws
  // Error(FailedPrecondition) when the file cannot be opened or locked.
  static std::optional<FileLock> try_acquire(const std::filesystem::path& path);

  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();  // releases the lock

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace keyhold
