#include "keyhold/hsm/uri.hpp"

#include <p11-kit/uri.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace keyhold::hsm {
namespace {

std::string describe_parse_error(int result) {
  switch (result) {
    case P11_KIT_URI_BAD_SCHEME: return "it does not start with 'pkcs11:'";
    case P11_KIT_URI_BAD_ENCODING: return "it has a bad percent-encoding";
    case P11_KIT_URI_BAD_SYNTAX: return "its syntax is invalid";
    case P11_KIT_URI_BAD_VERSION: return "it has a bad library-version";
    default: return "p11-kit could not parse it";
  }
}

// p11-kit stores "not given" as all spaces in its CK_TOKEN_INFO fields.
std::optional<std::string> padded_field(const unsigned char* field, std::size_t size) {
  std::string value = trim_padded(field, size);
  if (value.empty()) return std::nullopt;
  return value;
}

std::string format(p11_kit_uri* uri, P11KitUriType type) {
  char* text = nullptr;
  if (p11_kit_uri_format(uri, type, &text) != P11_KIT_URI_OK || text == nullptr) {
    throw Error(ErrorCode::Internal, "p11-kit could not format a PKCS#11 URI");
  }
  std::string out(text);
  std::free(text);
  return out;
}

struct UriDeleter {
  void operator()(p11_kit_uri* u) const noexcept { p11_kit_uri_free(u); }
};
using UriPtr = std::unique_ptr<p11_kit_uri, UriDeleter>;

UriPtr uri_for_token(const CK_TOKEN_INFO& token) {
  UriPtr uri(p11_kit_uri_new());
  CK_TOKEN_INFO* info = p11_kit_uri_get_token_info(uri.get());
  std::memcpy(info->label, token.label, sizeof token.label);
  std::memcpy(info->manufacturerID, token.manufacturerID, sizeof token.manufacturerID);
  std::memcpy(info->model, token.model, sizeof token.model);
  std::memcpy(info->serialNumber, token.serialNumber, sizeof token.serialNumber);
  return uri;
}

}  // namespace

std::string trim_padded(const unsigned char* field, std::size_t size) {
  std::size_t length = size;
  while (length > 0 && (field[length - 1] == ' ' || field[length - 1] == '\0')) --length;
  return std::string(reinterpret_cast<const char*>(field), length);
}

Uri Uri::parse(std::string_view text) {
  std::string copy(text);
  p11_kit_uri* uri = p11_kit_uri_new();
  int result = p11_kit_uri_parse(copy.c_str(), P11_KIT_URI_FOR_ANY, uri);
  if (result != P11_KIT_URI_OK) {
    p11_kit_uri_free(uri);
    throw Error(ErrorCode::InvalidArgument, "malformed PKCS#11 URI '" + copy + "': " + describe_parse_error(result));
  }
  if (p11_kit_uri_any_unrecognized(uri)) {
    p11_kit_uri_free(uri);
    throw Error(ErrorCode::InvalidArgument,
                "PKCS#11 URI '" + copy + "' has an attribute keyhold does not understand (RFC 7512 names only)");
  }
  return Uri(uri, std::move(copy));
}

Uri::Uri(p11_kit_uri* uri, std::string text) : uri_(uri), text_(std::move(text)) {}
Uri::Uri(Uri&& other) noexcept : uri_(other.uri_), text_(std::move(other.text_)) { other.uri_ = nullptr; }
Uri& Uri::operator=(Uri&& other) noexcept {
  if (this != &other) {
    if (uri_ != nullptr) p11_kit_uri_free(uri_);
    uri_ = other.uri_;
    text_ = std::move(other.text_);
    other.uri_ = nullptr;
  }
  return *this;
}
Uri::~Uri() {
  if (uri_ != nullptr) p11_kit_uri_free(uri_);
}

bool Uri::matches_token(const CK_TOKEN_INFO& token) const {
  return p11_kit_uri_match_token_info(uri_, &token) == 1;
}

bool Uri::matches_slot(CK_SLOT_ID id, const CK_SLOT_INFO& slot) const {
  CK_SLOT_ID wanted = p11_kit_uri_get_slot_id(uri_);
  if (wanted != static_cast<CK_SLOT_ID>(-1) && wanted != id) return false;
  return p11_kit_uri_match_slot_info(uri_, &slot) == 1;
}

namespace {
std::optional<std::string> optional_string(const char* value) {
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}
}  // namespace

std::optional<std::string> Uri::module_name() const { return optional_string(p11_kit_uri_get_module_name(uri_)); }
std::optional<std::string> Uri::module_path() const { return optional_string(p11_kit_uri_get_module_path(uri_)); }
std::optional<std::string> Uri::pin_source() const { return optional_string(p11_kit_uri_get_pin_source(uri_)); }
bool Uri::has_pin_value() const { return p11_kit_uri_get_pin_value(uri_) != nullptr; }

std::optional<std::string> Uri::object_label() const {
  CK_ATTRIBUTE* label = p11_kit_uri_get_attribute(uri_, CKA_LABEL);
  if (label == nullptr) return std::nullopt;
  return std::string(static_cast<const char*>(label->pValue), label->ulValueLen);
}

std::optional<std::vector<std::uint8_t>> Uri::object_id() const {
  CK_ATTRIBUTE* id = p11_kit_uri_get_attribute(uri_, CKA_ID);
  if (id == nullptr) return std::nullopt;
  const auto* bytes = static_cast<const std::uint8_t*>(id->pValue);
  return std::vector<std::uint8_t>(bytes, bytes + id->ulValueLen);
}

std::optional<CK_OBJECT_CLASS> Uri::object_class() const {
  CK_ATTRIBUTE* cls = p11_kit_uri_get_attribute(uri_, CKA_CLASS);
  if (cls == nullptr || cls->ulValueLen != sizeof(CK_OBJECT_CLASS)) return std::nullopt;
  CK_OBJECT_CLASS value;
  std::memcpy(&value, cls->pValue, sizeof value);
  return value;
}

std::optional<std::string> Uri::token_label() const {
  CK_TOKEN_INFO* info = p11_kit_uri_get_token_info(uri_);
  return padded_field(info->label, sizeof info->label);
}

std::string Uri::to_string() const { return format(uri_, P11_KIT_URI_FOR_ANY); }

std::string Uri::for_token(const CK_TOKEN_INFO& token) {
  UriPtr uri = uri_for_token(token);
  return format(uri.get(), P11_KIT_URI_FOR_TOKEN);
}

std::string Uri::for_object(const CK_TOKEN_INFO& token, std::string_view label, std::span<const std::uint8_t> id,
                            CK_OBJECT_CLASS object_class) {
  UriPtr uri = uri_for_token(token);
  std::string label_copy(label);
  std::vector<std::uint8_t> id_copy(id.begin(), id.end());
  CK_OBJECT_CLASS class_copy = object_class;
  CK_ATTRIBUTE attributes[] = {
      {CKA_LABEL, label_copy.data(), label_copy.size()},
      {CKA_ID, id_copy.data(), id_copy.size()},
      {CKA_CLASS, &class_copy, sizeof class_copy},
  };
  for (CK_ATTRIBUTE& a : attributes) p11_kit_uri_set_attribute(uri.get(), &a);
  return format(uri.get(), P11_KIT_URI_FOR_OBJECT_ON_TOKEN);
}

}  // namespace keyhold::hsm
