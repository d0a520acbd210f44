#pragma once
// Levenshtein distance, for "did you mean ...?" in configuration and policy
// messages (keyhold.toml, the policy file, the renewal file).

#include <cstddef>
#include <string_view>

namespace keyhold {

// Insertions, deletions and substitutions (each costs 1) that turn a into b.
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace keyhold
