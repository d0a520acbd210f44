#pragma once
// The kinds of keys keyhold creates and manages, and what each is for.

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace keyhold::crypto {

enum class KeyType { Rsa2048, Rsa3072, Rsa4096, EcP256, EcP384, Ed25519, Aes256 };
enum class KeyPurpose { Sign, Encrypt };

std::string_view to_string(KeyType type) noexcept;     // "rsa-2048", "ec-p256", ...
std::string_view to_string(KeyPurpose purpose) noexcept;  // "sign", "encrypt"
std::optional<KeyType> parse_key_type(std::string_view text) noexcept;
std::optional<KeyPurpose> parse_key_purpose(std::string_view text) noexcept;

std::span<const KeyType> all_key_types() noexcept;
// "rsa-2048, rsa-3072, ..." for error messages.
std::string key_type_list();

// The one purpose a key of this type serves (asymmetric: sign; AES: encrypt).
KeyPurpose purpose_of(KeyType type) noexcept;
bool is_key_pair(KeyType type) noexcept;
// "2048 bits", "P-256", "Ed25519", "256 bits".
std::string_view size_or_curve(KeyType type) noexcept;

}  // namespace keyhold::crypto
