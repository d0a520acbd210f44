#include "files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "keyhold/core/error.hpp"

namespace keyhold::cli {

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



// A stream buffer over the PendingOutput's destination: 64 KiB at a time.
class PendingOutput::Buffer : public std::streambuf {
 public:
  explicit Buffer(std::function<void(std::string_view)> sink) : sink_(std::move(sink)) { setp(data_, data_ + sizeof data_); }
  int sync() override {
    flush();
    return 0;
  }

 protected:
  int_type overflow(int_type c) override {
    flush();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }

 private:
  void flush() {
    std::ptrdiff_t n = pptr() - pbase();
    if (n > 0) sink_(std::string_view(pbase(), static_cast<std::size_t>(n)));
    setp(data_, data_ + sizeof data_);
  }
  std::function<void(std::string_view)> sink_;
  char data_[64 * 1024];
};

PendingOutput::PendingOutput(const std::optional<std::string>& path, unsigned mode) {
  if (path && *path != "-") {
    file_ = std::make_unique<PendingFile>(*path, mode);
    buffer_ = std::make_unique<Buffer>([this](std::string_view bytes) { file_->write(bytes); });
  } else {
    std::string directory = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
    spool_fd_ = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (spool_fd_ < 0) {
      throw Error(ErrorCode::FailedPrecondition, "cannot make a temporary file in " + directory + ": " + std::strerror(errno));
    }
    buffer_ = std::make_unique<Buffer>([this](std::string_view bytes) {
      if (!write_fully(spool_fd_, bytes)) {
        throw Error(ErrorCode::FailedPrecondition, std::string("cannot write the temporary file: ") + std::strerror(errno));
      }
    });
  }
  stream_ = std::make_unique<std::ostream>(buffer_.get());
  // A failed write throws out of the stream instead of setting badbit quietly.
  stream_->exceptions(std::ios::badbit);
}

PendingOutput::~PendingOutput() {
  if (spool_fd_ >= 0) ::close(spool_fd_);
}

std::ostream& PendingOutput::stream() { return *stream_; }

std::string PendingOutput::name() const { return file_ ? file_->path().string() : "standard output"; }

void PendingOutput::commit() {
  stream_->flush();
  if (file_) {
    file_->commit();
    return;
  }
  if (::lseek(spool_fd_, 0, SEEK_SET) != 0) {
    throw Error(ErrorCode::FailedPrecondition, std::string("cannot read the temporary file: ") + std::strerror(errno));
  }
  std::cout.flush();
  char chunk[64 * 1024];
  for (;;) {
    ssize_t n = ::read(spool_fd_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(ErrorCode::FailedPrecondition, std::string("cannot read the temporary file: ") + std::strerror(errno));
    if (n == 0) break;
    if (!write_fully(STDOUT_FILENO, std::string_view(chunk, static_cast<std::size_t>(n)))) {
      throw Error(ErrorCode::FailedPrecondition, std::string("cannot write to standard output: ") + std::strerror(errno));
    }
  }
}

std::string read_input(const std::optional<std::string>& path, std::size_t max_bytes, std::string_view what) {
  if (path && *path != "-") return read_input_file(*path, max_bytes, what);
  std::string content;
  char chunk[16 * 1024];
  while (std::cin.read(chunk, sizeof chunk) || std::cin.gcount() > 0) {
    content.append(chunk, static_cast<std::size_t>(std::cin.gcount()));
    if (content.size() > max_bytes) {
      throw Error(ErrorCode::InvalidArgument, std::string(what) + " on standard input is larger than " +
                                                  std::to_string(max_bytes) + " bytes");
    }
  }
  return content;
}
}  // namespace keyhold::cli
