#pragma once
// Names of things keyhold manages (keys, CAs, profiles): 1 to 64 of
// [A-Za-z0-9._-], starting with a letter or digit. They become CKA_LABELs,
// file names and URL path segments, so nothing else is allowed.

#include <string_view>

namespace keyhold {

bool is_valid_name(std::string_view name) noexcept;
// Throws InvalidArgument "invalid <what> name '...': use 1 to 64 letters, ...".
void validate_name(std::string_view what, std::string_view name);

}  // namespace keyhold
