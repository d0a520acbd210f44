#pragma once
// Files written complete or not at all: a temporary file in the target's
// directory, fsynced and renamed over the target, so that a reader (or a
// crash) never sees half a file.

#include <filesystem>
#include <string>
#include <string_view>

namespace keyhold {

// Writes content to a temporary file in the same directory, fsyncs it and
// renames it over path. Throws Error naming path when it cannot.
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

// write(2) until all of content is written (EINTR retried); false on error (errno says why).
bool write_fully(int fd, std::string_view content);

}  // namespace keyhold
