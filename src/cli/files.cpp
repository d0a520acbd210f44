#include "files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "keyhold/core/error.hpp"

namespace keyhold::cli {

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

void PendingFile::commit(std::string_view content) {
  bool ok = fd_ >= 0;
  std::size_t written = 0;
  while (ok && written < content.size()) {
    ssize_t n = ::write(fd_, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) written += static_cast<std::size_t>(n);
  }
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

std::string read_input_file(const std::filesystem::path& path, std::size_t max_bytes, std::string_view what) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(ErrorCode::InvalidArgument, "cannot read " + std::string(what) + " " + path.string() + ": " + ec.message());
  if (size > max_bytes) {
    throw Error(ErrorCode::InvalidArgument, std::string(what) + " " + path.string() + " is larger than " +
                                                std::to_string(max_bytes / 1024) + " KiB");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  if (!in && !in.eof()) throw Error(ErrorCode::InvalidArgument, "cannot read " + std::string(what) + " " + path.string());
  return content.str();
}

}  // namespace keyhold::cli
