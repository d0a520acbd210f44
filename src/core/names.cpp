#include "keyhold/core/names.hpp"

#include <string>

#include "keyhold/core/error.hpp"

namespace keyhold {

bool is_valid_name(std::string_view name) noexcept {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  };
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '_' || name[0] == '-') return false;
  for (char c : name) {
    if (!allowed(c)) return false;
  }
  return true;
}

void validate_name(std::string_view what, std::string_view name) {
  if (is_valid_name(name)) return;
  std::string shown;
  for (char c : name.substr(0, 64)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
  throw Error(ErrorCode::InvalidArgument, "invalid " + std::string(what) + " name '" + shown +
                                              "': use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                                              "letter or digit");
}

}  // namespace keyhold
