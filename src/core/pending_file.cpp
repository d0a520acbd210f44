#include "keyhold/core/pending_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "keyhold/core/error.hpp"

namespace keyhold {

void write_file_atomically(const std::filesystem::path& path, std::string_view content, unsigned mode) {
  PendingFile file(path, mode);
  file.commit(content);
}

PendingFile::PendingFile(std::filesystem::path path, unsigned mode) : path_(std::move(path)) {
  std::error_code ec;
  if (std::filesystem::is_directory(path_, ec)) {
    throw Error(ErrorCode::InvalidArgument, "cannot write " + path_.string() + ": it is a directory");
  }
  std::filesystem::path directory = path_.has_parent_path() ? path_.parent_path() : ".";
  temp_ = (directory / ("." + path_.filename().string() + ".XXXXXX")).string();
  fd_ = ::mkstemp(temp_.data());
  if (fd_ < 0 || ::fchmod(fd_, mode) != 0) {
    int saved = errno;
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(temp_.c_str());
      fd_ = -1;
    }
    throw Error(ErrorCode::InvalidArgument, "cannot write " + path_.string() + ": " + std::strerror(saved));
  }
}

PendingFile::~PendingFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temp_.c_str());
  }
}

bool write_fully(int fd, std::string_view content) {
  std::size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    written += static_cast<std::size_t>(n);
  }
  return true;
}

void PendingFile::write(std::string_view content) {
  if (fd_ < 0 || !write_fully(fd_, content)) {
    int saved = errno;
    throw Error(ErrorCode::FailedPrecondition, "cannot write " + path_.string() + ": " + std::strerror(saved));
  }
}

void PendingFile::commit(std::string_view content) {
  write(content);
  commit();
}

void PendingFile::commit() {
  bool ok = fd_ >= 0;
  ok = ok && ::fsync(fd_) == 0;
  int saved = errno;
  ::close(fd_);
  fd_ = -1;
  if (!ok || ::rename(temp_.c_str(), path_.c_str()) != 0) {
    if (ok) saved = errno;
    ::unlink(temp_.c_str());
    throw Error(ErrorCode::FailedPrecondition, "cannot write " + path_.string() + ": " + std::strerror(saved));
  }
}

}  // namespace keyhold
