#include "keyhold/crypto/key_type.hpp"

#include <array>

namespace keyhold::crypto {
namespace {

struct KeyTypeInfo {
  KeyType type;
  std::string_view name;
  std::string_view size;
};

constexpr std::array<KeyTypeInfo, 7> kKeyTypes{{
    {KeyType::Rsa2048, "rsa-2048", "2048 bits"},
    {KeyType::Rsa3072, "rsa-3072", "3072 bits"},
    {KeyType::Rsa4096, "rsa-4096", "4096 bits"},
    {KeyType::EcP256, "ec-p256", "P-256"},
    {KeyType::EcP384, "ec-p384", "P-384"},
    {KeyType::Ed25519, "ed25519", "Ed25519"},
    {KeyType::Aes256, "aes-256", "256 bits"},
}};

constexpr std::array<KeyType, 7> kAll{KeyType::Rsa2048, KeyType::Rsa3072, KeyType::Rsa4096, KeyType::EcP256,
                                      KeyType::EcP384,  KeyType::Ed25519, KeyType::Aes256};

const KeyTypeInfo& info(KeyType type) noexcept {
  for (const KeyTypeInfo& i : kKeyTypes) {
    if (i.type == type) return i;
  }
  return kKeyTypes[0];
}

}  // namespace

std::string_view to_string(KeyType type) noexcept { return info(type).name; }

std::string_view to_string(KeyPurpose purpose) noexcept {
  return purpose == KeyPurpose::Sign ? "sign" : "encrypt";
}

std::optional<KeyType> parse_key_type(std::string_view text) noexcept {
  for (const KeyTypeInfo& i : kKeyTypes) {
    if (i.name == text) return i.type;
  }
  return std::nullopt;
}

std::optional<KeyPurpose> parse_key_purpose(std::string_view text) noexcept {
  if (text == "sign") return KeyPurpose::Sign;
  if (text == "encrypt") return KeyPurpose::Encrypt;
  return std::nullopt;
}

std::span<const KeyType> all_key_types() noexcept { return kAll; }

std::string key_type_list() {
  std::string out;
  for (const KeyTypeInfo& i : kKeyTypes) {
    if (!out.empty()) out += ", ";
    out += i.name;
  }
  return out;
}

KeyPurpose purpose_of(KeyType type) noexcept {
  return type == KeyType::Aes256 ? KeyPurpose::Encrypt : KeyPurpose::Sign;
}

bool is_key_pair(KeyType type) noexcept { return type != KeyType::Aes256; }

std::string_view size_or_curve(KeyType type) noexcept { return info(type).size; }

}  // namespace keyhold::crypto
