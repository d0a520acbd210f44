#pragma once
// KeyRing, Signer and Kek over a PKCS#11 token (keyhold::hsm). Only app/
// constructs this; everything else sees crypto::KeyRing.

#include <memory>

#include "keyhold/crypto/key_ring.hpp"

namespace keyhold::hsm {
class Token;
}

namespace keyhold::crypto {

std::unique_ptr<KeyRing> make_token_key_ring(std::shared_ptr<hsm::Token> token);

}  // namespace keyhold::crypto
