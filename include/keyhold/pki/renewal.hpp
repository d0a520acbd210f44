#pragma once
// What a certificate renewing itself must keep (keyhold serve's POST
// /v1/pki/{ca}/renew): the new certificate names exactly what the current
// one names. Only the key may change.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace keyhold::pki {

// The serial of a DER certificate as the store writes it (lower-case hex, no
// leading zeros). InvalidArgument when der is not a certificate.
std::string serial_of(std::span<const std::uint8_t> der);

// Throws InvalidArgument unless the CSR (PEM or DER text) asks for exactly
// the subject (DER-equal) and subjectAltName extension (DER-equal, or absent
// in both) of the current certificate (DER), and its self-signature verifies.
void check_renewal_request(std::string_view csr, std::span<const std::uint8_t> current_der);

}  // namespace keyhold::pki
