#include "keyhold/core/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>

namespace keyhold::log {
namespace {

Level level_from_environment() noexcept {
  const char* value = std::getenv("KEYHOLD_LOG");
  if (value == nullptr) return Level::Warn;
  std::string_view v(value);
  if (v == "error") return Level::Error;
  if (v == "info") return Level::Info;
  if (v == "debug") return Level::Debug;
  if (v == "trace") return Level::Trace;
  return Level::Warn;
}

const Level kLevel = level_from_environment();

constexpr std::string_view kNames[] = {"error", "warning", "info", "debug", "trace"};

}  // namespace

bool enabled(Level level) noexcept { return level <= kLevel; }

void write(Level level, std::string_view message) noexcept {
  if (!enabled(level)) return;
  // One fprintf per line so that lines from several threads do not interleave.
  std::fprintf(stderr, "keyhold: %.*s: %.*s\n", static_cast<int>(kNames[static_cast<int>(level)].size()),
               kNames[static_cast<int>(level)].data(), static_cast<int>(message.size()), message.data());
}

void warn_once(std::string_view message) noexcept {
  // Bounded: past this many distinct texts, every warning is written again.
  constexpr std::size_t kRemembered = 1024;
  static std::mutex mutex;
  static std::set<std::string, std::less<>> said;
  try {
    std::lock_guard lock(mutex);
    if (said.find(message) != said.end()) return;
    if (said.size() < kRemembered) said.emplace(message);
  } catch (...) {
    // Out of memory remembering: say it anyway.
  }
  write(Level::Warn, message);
}

}  // namespace keyhold::log
