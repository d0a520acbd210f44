#pragma once
// Files the CLI writes: complete or not at all.

#include <filesystem>
#include <string>
#include <string_view>

namespace keyhold::cli {

// Writes content to a temporary file in the same directory, fsyncs it and
// renames it over path, so a reader never sees half a file.
void write_file_atomically(const std::filesystem::path& path, std::string_view content, unsigned mode = 0644);
// Reads a whole input file, refusing one larger than max_bytes.
std::string read_input_file(const std::filesystem::path& path, std::size_t max_bytes, std::string_view what);

}  // namespace keyhold::cli
