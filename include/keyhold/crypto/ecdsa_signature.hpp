#pragma once
// ECDSA signature encodings: PKCS#11 gives r || s (v2.40 section 2.3.1);
// X.509, TLS and OpenSSL use DER Ecdsa-Sig-Value (RFC 5480 section 2.2).

#include <cstdint>
#include <span>
#include <vector>

namespace keyhold::crypto {

// r || s (two equal halves of at most 66 bytes) as DER SEQUENCE { INTEGER r, INTEGER s }.
// Throws Internal for an empty or odd-sized input.
std::vector<std::uint8_t> ecdsa_raw_to_der(std::span<const std::uint8_t> raw);

}  // namespace keyhold::crypto
