#pragma once
// Building attribute templates and reading attributes back.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/hsm/pkcs11.hpp"

namespace keyhold::hsm {

// Owns the values a CK_ATTRIBUTE array points to.
class AttributeTemplate {
 public:
  AttributeTemplate() = default;
  AttributeTemplate(const AttributeTemplate&) = delete;
  AttributeTemplate& operator=(const AttributeTemplate&) = delete;

  AttributeTemplate& set_bool(CK_ATTRIBUTE_TYPE type, bool value);
  AttributeTemplate& set_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value);
  AttributeTemplate& set_bytes(CK_ATTRIBUTE_TYPE type, std::span<const std::uint8_t> value);
  AttributeTemplate& set_string(CK_ATTRIBUTE_TYPE type, std::string_view value);

  CK_ATTRIBUTE* data() noexcept { return attributes_.data(); }
  CK_ULONG size() const noexcept { return static_cast<CK_ULONG>(attributes_.size()); }

 private:
  AttributeTemplate& add(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t size);
  std::deque<std::vector<std::uint8_t>> storage_;  // deque: pointers into it stay valid
  std::vector<CK_ATTRIBUTE> attributes_;
};

// Values read with C_GetAttributeValue. An attribute the object does not have
// or will not reveal (sensitive) is absent.
class AttributeValues {
 public:
  void put(CK_ATTRIBUTE_TYPE type, std::vector<std::uint8_t> value) { values_[type] = std::move(value); }
  bool has(CK_ATTRIBUTE_TYPE type) const { return values_.count(type) != 0; }
  std::optional<bool> boolean(CK_ATTRIBUTE_TYPE type) const;
  std::optional<CK_ULONG> ulong(CK_ATTRIBUTE_TYPE type) const;
  std::optional<std::vector<std::uint8_t>> bytes(CK_ATTRIBUTE_TYPE type) const;
  std::optional<std::string> string(CK_ATTRIBUTE_TYPE type) const;

 private:
  std::map<CK_ATTRIBUTE_TYPE, std::vector<std::uint8_t>> values_;
};

}  // namespace keyhold::hsm
