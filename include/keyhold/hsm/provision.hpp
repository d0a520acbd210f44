#pragma once
// Setting up a new token: for `keyhold init --dev` and for the throwaway
// tokens of the tests. Production tokens are set up with the HSM's own tools.

#include <string>

#include "keyhold/core/secret.hpp"
#include "keyhold/hsm/module.hpp"

namespace keyhold::hsm {

// Initialises the first uninitialised token of the module with label, sets
// the security officer PIN and the user PIN. Returns the token's URI.
// Throws Unavailable when the module has no free slot, AlreadyExists when a
// token with that label exists already.
std::string initialize_token(Module& module, const std::string& label, const SecretBytes& so_pin,
                             const SecretBytes& user_pin);

}  // namespace keyhold::hsm
