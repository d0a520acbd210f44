#pragma once
// Small text encodings shared by every module.

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keyhold {

std::string to_hex(std::span<const std::uint8_t> bytes);
// Lower- or upper-case hex, optional ':' separators; nullopt when malformed.
std::optional<std::vector<std::uint8_t>> from_hex(std::string_view text);

std::string to_base64(std::span<const std::uint8_t> bytes);
// Standard base64 (RFC 4648 section 4) with padding, in its one canonical
// spelling (no whitespace, zero padding bits); nullopt otherwise or when empty.
std::optional<std::vector<std::uint8_t>> from_base64(std::string_view text);
// PEM (RFC 7468): "-----BEGIN <label>-----", base64 in 64-character lines, "-----END <label>-----".
std::string to_pem(std::string_view label, std::span<const std::uint8_t> der);

// RFC 3339 UTC timestamp with seconds, e.g. "2026-11-28T15:47:59Z".
std::string format_utc(std::chrono::system_clock::time_point t);
std::string now_utc();
// Reads what format_utc writes ("2026-11-28T15:47:59Z", nothing else); nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view text);

}  // namespace keyhold
