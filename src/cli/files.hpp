#pragma once
// Files the CLI writes: complete or not at all.

#include <filesystem>
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
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  std::string temp_;
  int fd_ = -1;
};
// Reads a whole input file, refusing one larger than max_bytes.
std::string read_input_file(const std::filesystem::path& path, std::size_t max_bytes, std::string_view what);

}  // namespace keyhold::cli
