#pragma once
// Durations as people write them: "90s", "30m", "12h", "7d", "2w".

#include <chrono>
#include <optional>
#include <string_view>

namespace keyhold {

// nullopt unless the text is a positive whole number followed by s, m, h, d or w.
std::optional<std::chrono::seconds> parse_duration(std::string_view text) noexcept;

}  // namespace keyhold
