#include "keyhold/core/duration.hpp"

#include <cstdint>

namespace keyhold {

std::optional<std::chrono::seconds> parse_duration(std::string_view text) noexcept {
  if (text.size() < 2) return std::nullopt;
  std::int64_t unit = 0;
  switch (text.back()) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    case 'w': unit = 7 * 86400; break;
    default: return std::nullopt;
  }
  std::int64_t value = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
    if (value > 100LL * 365 * 86400) return std::nullopt;  // a century is plenty
  }
  if (value == 0) return std::nullopt;
  return std::chrono::seconds(value * unit);
}

}  // namespace keyhold
