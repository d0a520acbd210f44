#pragma once
// RFC 7512 PKCS#11 URIs, parsed and printed by p11-kit (the reference parser).

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/hsm/pkcs11.hpp"

struct p11_kit_uri;

namespace keyhold::hsm {

class Uri {
 public:
  // Throws InvalidArgument naming what is wrong ("not a pkcs11: URI", ...).
  static Uri parse(std::string_view text);

  Uri(Uri&&) noexcept;
  Uri& operator=(Uri&&) noexcept;
  ~Uri();

  // token, manufacturer, serial, model: every attribute the URI gives must match.
  bool matches_token(const CK_TOKEN_INFO& token) const;
  // slot-id, slot-description, slot-manufacturer when the URI gives them.
  bool matches_slot(CK_SLOT_ID id, const CK_SLOT_INFO& slot) const;

  std::optional<std::string> module_name() const;
  std::optional<std::string> module_path() const;
  std::optional<std::string> pin_source() const;
  bool has_pin_value() const;
  std::optional<std::string> object_label() const;
  std::optional<std::vector<std::uint8_t>> object_id() const;
  std::optional<CK_OBJECT_CLASS> object_class() const;
  std::optional<std::string> token_label() const;

  // The URI as given, normalised by p11-kit.
  std::string to_string() const;

  // pkcs11:model=...;manufacturer=...;serial=...;token=...
  static std::string for_token(const CK_TOKEN_INFO& token);
  // The token URI plus object=LABEL;id=%..;type=private|public|secret-key.
  static std::string for_object(const CK_TOKEN_INFO& token, std::string_view label,
                                std::span<const std::uint8_t> id, CK_OBJECT_CLASS object_class);

 private:
  explicit Uri(p11_kit_uri* uri, std::string text);
  p11_kit_uri* uri_;
  std::string text_;
};

// Trims the space padding of a fixed-size CK_UTF8CHAR field.
std::string trim_padded(const unsigned char* field, std::size_t size);

}  // namespace keyhold::hsm
