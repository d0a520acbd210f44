#pragma once
// Files the CLI writes: complete or not at all.

#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "keyhold/core/pending_file.hpp"

namespace keyhold::cli {

// Complete-or-nothing files are core's (keyhold/core/pending_file.hpp).
using keyhold::PendingFile;
using keyhold::write_file_atomically;

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
