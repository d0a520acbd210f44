#include "keyhold/hsm/attributes.hpp"

#include <cstring>

namespace keyhold::hsm {

AttributeTemplate& AttributeTemplate::add(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t size) {
  const auto* bytes = static_cast<const std::uint8_t*>(value);
  std::vector<std::uint8_t>& stored = storage_.emplace_back(bytes, bytes + size);
  attributes_.push_back(CK_ATTRIBUTE{type, stored.empty() ? nullptr : stored.data(), static_cast<CK_ULONG>(size)});
  return *this;
}

AttributeTemplate& AttributeTemplate::set_bool(CK_ATTRIBUTE_TYPE type, bool value) {
  CK_BBOOL b = value ? CK_TRUE : CK_FALSE;
  return add(type, &b, sizeof b);
}

AttributeTemplate& AttributeTemplate::set_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  return add(type, &value, sizeof value);
}

AttributeTemplate& AttributeTemplate::set_bytes(CK_ATTRIBUTE_TYPE type, std::span<const std::uint8_t> value) {
  return add(type, value.data(), value.size());
}

AttributeTemplate& AttributeTemplate::set_string(CK_ATTRIBUTE_TYPE type, std::string_view value) {
  return add(type, value.data(), value.size());
}

std::optional<bool> AttributeValues::boolean(CK_ATTRIBUTE_TYPE type) const {
  auto it = values_.find(type);
  if (it == values_.end() || it->second.size() != sizeof(CK_BBOOL)) return std::nullopt;
  return it->second[0] != CK_FALSE;
}

std::optional<CK_ULONG> AttributeValues::ulong(CK_ATTRIBUTE_TYPE type) const {
  auto it = values_.find(type);
  if (it == values_.end() || it->second.size() != sizeof(CK_ULONG)) return std::nullopt;
  CK_ULONG value = 0;
  std::memcpy(&value, it->second.data(), sizeof value);
  return value;
}

std::optional<std::vector<std::uint8_t>> AttributeValues::bytes(CK_ATTRIBUTE_TYPE type) const {
  auto it = values_.find(type);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> AttributeValues::string(CK_ATTRIBUTE_TYPE type) const {
  auto it = values_.find(type);
  if (it == values_.end()) return std::nullopt;
  return std::string(it->second.begin(), it->second.end());
}

}  // namespace keyhold::hsm
