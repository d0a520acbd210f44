#pragma once
// Files the CLI writes: complete or not at all.

#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

namespace keyhold::cli {

// Writes content to a temporary file in the same directory, fsyncs it and
// renames it over path, so a reader never sees half a file.
void write_file_atomically(const std::filesystem::path& path, std::string_view content, unsigned mode = 0644);

// An output file made ready before the work that fills it (e.g. issuing a
// certificate), so that an unwritable path fails before anything is signed:
// the temporary file exists from construction; commit() writes, fsyncs and
// renames it over path; otherwise the destructor removes it.
class PendingFile {
 public:
  explicit PendingFile(std::filesystem::path path, unsigned mode = 0644);
  ~PendingFile();
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  void commit(std::string_view content);
  // For content written through write() in pieces: fsyncs and renames.
  void write(std::string_view content);
  void commit();
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  std::string temp_;
  int fd_ = -1;
};
// Streamed output that appears complete or not at all: a file (a
// PendingFile), or stdout, spooled to an anonymous temporary file (mode
// 0600, already unlinked) and copied to stdout on commit. Without commit(),
// nothing reaches the destination.
class PendingOutput {
 public:
  // path: nullopt or "-" for stdout.
  PendingOutput(const std::optional<std::string>& path, unsigned mode);
  ~PendingOutput();
  PendingOutput(const PendingOutput&) = delete;
  PendingOutput& operator=(const PendingOutput&) = delete;
  std::ostream& stream();
  void commit();
  std::string name() const;

 private:
  class Buffer;
  std::unique_ptr<PendingFile> file_;
  int spool_fd_ = -1;
  std::unique_ptr<Buffer> buffer_;
  std::unique_ptr<std::ostream> stream_;
};

// Reads all of stdin (path nullopt or "-") or a file, refusing more than max_bytes.
std::string read_input(const std::optional<std::string>& path, std::size_t max_bytes, std::string_view what);

// Reads a whole input file, refusing one larger than max_bytes.
std::string read_input_file(const std::filesystem::path& path, std::size_t max_bytes, std::string_view what);

}  // namespace keyhold::cli
