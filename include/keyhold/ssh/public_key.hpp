#pragma once
// Public keys in OpenSSH's formats: the wire blob (RFC 4253 section 6.6,
// RFC 5656 section 3.1, RFC 8709 section 4) and the authorized_keys line.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/crypto/public_key.hpp"

namespace keyhold::ssh {

// "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa".
// Throws InvalidArgument for a key OpenSSH has no name for.
std::string key_type_name(const crypto::PublicKey& key);
std::vector<std::uint8_t> public_key_blob(const crypto::PublicKey& key);
// "ssh-ed25519 AAAA... comment" (no comment when empty).
std::string authorized_keys_line(const crypto::PublicKey& key, std::string_view comment);
// "SHA256:..." as ssh-keygen -l prints it.
std::string fingerprint_sha256(const crypto::PublicKey& key);

}  // namespace keyhold::ssh
