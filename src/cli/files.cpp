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
  std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : ".";
  std::string temp = (directory / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = ::mkstemp(temp.data());
  if (fd < 0) {
    throw Error(ErrorCode::InvalidArgument, "cannot write " + path.string() + ": " + std::strerror(errno));
  }
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t written = 0;
  while (ok && written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) written += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    if (ok) saved = errno;
    ::unlink(temp.c_str());
    throw Error(ErrorCode::InvalidArgument, "cannot write " + path.string() + ": " + std::strerror(saved));
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
