#pragma once
// A directory of its own under the system temp directory, removed when the
// object dies (whatever the test left in it).

#include <filesystem>
#include <string>

#include "support/token_fixture.hpp"

namespace keyhold::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "keyhold-test") : path_(make_temp_directory(prefix)) {}
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace keyhold::testing
