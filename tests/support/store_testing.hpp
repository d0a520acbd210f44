#pragma once
// What the store tests share: the database file seen through the SQLite C
// API directly (an independent observer), and checks of keyhold::Error.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "keyhold/core/error.hpp"

namespace keyhold::testing {

// The file opened with the SQLite C API directly, as an independent observer.
class RawDb {
 public:
  explicit RawDb(const std::filesystem::path& path) {
    int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) throw std::runtime_error("sqlite3_open_v2 failed: " + std::to_string(rc));
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 5000);
  }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  ~RawDb() { sqlite3_close_v2(db_); }

  // Every row, its columns as text joined by '|' ("NULL" for NULL), rows joined by '\n'.
  std::string rows(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("prepare failed: ") + sqlite3_errmsg(db_));
    }
    std::string out;
    int rc = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      if (!out.empty()) out += '\n';
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        if (i > 0) out += '|';
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
        out += p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt, i))) : "NULL";
      }
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) throw std::runtime_error(std::string("step failed: ") + sqlite3_errmsg(db_));
    return out;
  }
  // The first column of the first row, as text.
  std::string text(const std::string& sql) {
    std::string all = rows(sql);
    return all.substr(0, std::min(all.find('\n'), all.find('|')));
  }
  long long integer(const std::string& sql) { return std::stoll(text(sql)); }
  // The extended result code of running sql.
  int exec(const std::string& sql) { return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr); }

 private:
  sqlite3* db_ = nullptr;
};

// Runs f, which must throw keyhold::Error with that code; returns its message.
template <class F>
std::string expect_error(F&& f, keyhold::ErrorCode code) {
  try {
    f();
  } catch (const keyhold::Error& e) {
    EXPECT_EQ(keyhold::to_string(e.code()), keyhold::to_string(code)) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected keyhold::Error, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected keyhold::Error " << keyhold::to_string(code) << ", nothing was thrown";
  return {};
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace keyhold::testing
