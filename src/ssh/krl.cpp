#include "keyhold/ssh/krl.hpp"

#include <algorithm>
#include <optional>

#include "keyhold/core/error.hpp"
#include "keyhold/ssh/public_key.hpp"
#include "keyhold/ssh/wire.hpp"

namespace keyhold::ssh {
namespace {

// PROTOCOL.krl section 1: KRL_MAGIC "SSHKRL\n\0" and KRL_FORMAT_VERSION.
constexpr std::uint8_t kMagic[8] = {'S', 'S', 'H', 'K', 'R', 'L', '\n', '\0'};
constexpr std::uint32_t kFormatVersion = 1;

// Section types (section 1) and certificate subsection types (section 2).
constexpr std::uint8_t kSectionCertificates = 1;
constexpr std::uint8_t kSectionExplicitKey = 2;
constexpr std::uint8_t kSectionFingerprintSha1 = 3;
constexpr std::uint8_t kSectionSignature = 4;
constexpr std::uint8_t kSectionFingerprintSha256 = 5;
constexpr std::uint8_t kCertSerialList = 0x20;
constexpr std::uint8_t kCertSerialRange = 0x21;
constexpr std::uint8_t kCertSerialBitmap = 0x22;
constexpr std::uint8_t kCertKeyId = 0x23;

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

template <class T>
void sort_unique(std::vector<T>& values) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
}

void check_plain_key(std::span<const std::uint8_t> blob, std::string_view what) {
  try {
    parse_public_key_blob(blob);
  } catch (const Error& e) {
    invalid("the KRL's " + std::string(what) + " is refused: " + e.what());
  }
}

void add_serial(KrlContent& krl, std::uint64_t serial) {
  // krl.c refuses serial 0 (ssh_krl_revoke_cert_by_serial_range): it means "no serial".
  if (serial == 0) invalid("the KRL revokes serial 0, which OpenSSH refuses");
  if (krl.serials.size() >= kMaxKrlSerials) invalid("the KRL revokes more serials than keyhold lists");
  krl.serials.push_back(serial);
}

void parse_certificate_section(WireReader& section, KrlContent& krl, std::optional<std::vector<std::uint8_t>>& ca) {
  std::span<const std::uint8_t> ca_key = section.string();
  section.string();  // reserved
  std::vector<std::uint8_t> ca_blob(ca_key.begin(), ca_key.end());
  if (ca && *ca != ca_blob) invalid("the KRL revokes certificates of more than one CA");
  if (!ca_blob.empty()) check_plain_key(ca_blob, "CA key");
  ca = std::move(ca_blob);
  while (!section.at_end()) {
    std::uint8_t type = section.byte();
    WireReader data(section.string(), "KRL certificate subsection");
    switch (type) {
      case kCertSerialList:  // section 2.1
        while (!data.at_end()) add_serial(krl, data.uint64());
        break;
      case kCertSerialRange: {  // section 2.2
        std::uint64_t low = data.uint64();
        std::uint64_t high = data.uint64();
        if (low > high) invalid("the KRL has a serial range that ends before it starts");
        if (high - low >= kMaxKrlSerials) invalid("the KRL revokes more serials than keyhold lists");
        for (std::uint64_t s = low;; ++s) {
          add_serial(krl, s);
          if (s == high) break;
        }
        break;
      }
      case kCertSerialBitmap: {  // section 2.3: bit N set revokes serial offset + N
        std::uint64_t offset = data.uint64();
        std::span<const std::uint8_t> bitmap = data.mpint();
        for (std::size_t bit = 0; bit < bitmap.size() * 8; ++bit) {
          if ((bitmap[bitmap.size() - 1 - bit / 8] >> (bit % 8) & 1) == 0) continue;
          if (bit > 0 && offset + bit < offset) invalid("the KRL has a serial bitmap past 2^64");
          add_serial(krl, offset + bit);
        }
        break;
      }
      case kCertKeyId: {  // section 2.4: at least one key id
        if (data.at_end()) invalid("the KRL has an empty key id section");
        while (!data.at_end()) {
          std::string key_id = data.text();
          if (has_control_character(key_id)) invalid("the KRL has a key id with a control character");
          krl.key_ids.push_back(std::move(key_id));
        }
        break;
      }
      default:
        invalid("the KRL has an unknown certificate subsection type " + std::to_string(type));
    }
    data.expect_end();
  }
}

}  // namespace

std::vector<std::uint8_t> encode_krl(const KrlContent& krl) {
  if (has_control_character(krl.comment)) invalid("the KRL comment has a control character");
  std::vector<std::uint64_t> serials = krl.serials;
  sort_unique(serials);
  if (!serials.empty() && serials.front() == 0) {
    invalid("serial 0 cannot be revoked: OpenSSH treats it as \"no serial\" and refuses such a KRL");
  }
  if (!serials.empty() && krl.ca_key_blob.empty()) invalid("revoking serials needs the CA key");
  std::vector<std::string> key_ids = krl.key_ids;
  sort_unique(key_ids);
  for (const std::string& id : key_ids) {
    if (has_control_character(id)) invalid("key id '" + printable_prefix(id) + "' has a control character");
  }
  if (!krl.ca_key_blob.empty()) check_plain_key(krl.ca_key_blob, "CA key");
  std::vector<std::vector<std::uint8_t>> keys = krl.revoked_keys;
  sort_unique(keys);
  for (const auto& key : keys) check_plain_key(key, "revoked key");

  // Section 1: the header.
  WireWriter w;
  w.raw(kMagic)
      .uint32(kFormatVersion)
      .uint64(krl.version)
      .uint64(krl.generated_date)
      .uint64(0)                   // flags: none defined
      .string(std::string_view())  // reserved
      .string(krl.comment);

  // Section 2: one certificate section for the CA, a serial list (2.1) and a
  // key id list (2.4). keyhold's serials are random 64-bit numbers, so
  // ranges (2.2) and bitmaps (2.3) would not make the KRL smaller.
  if (!serials.empty() || !key_ids.empty()) {
    WireWriter section;
    section.string(krl.ca_key_blob).string(std::string_view());  // CA key, reserved
    if (!serials.empty()) {
      WireWriter list;
      for (std::uint64_t s : serials) list.uint64(s);
      section.byte(kCertSerialList).string(list.bytes());
    }
    if (!key_ids.empty()) {
      WireWriter list;
      for (const std::string& id : key_ids) list.string(id);
      section.byte(kCertKeyId).string(list.bytes());
    }
    w.byte(kSectionCertificates).string(section.bytes());
  }

  // Section 3: explicit keys, rather than SHA-256 fingerprints (section 4):
  // OpenSSH has honoured them since KRLs began (6.2) and fingerprint
  // sections only since 7.9; both are checked by ssh_krl_check_key, which
  // sshd (RevokedKeys) and ssh-keygen -Q share; and the keys stay readable.
  if (!keys.empty()) {
    WireWriter section;
    for (const auto& key : keys) section.string(key);
    w.byte(kSectionExplicitKey).string(section.bytes());
  }
  return w.bytes();
}

KrlContent parse_krl(std::span<const std::uint8_t> bytes) {
  WireReader reader(bytes, "KRL");
  std::span<const std::uint8_t> magic = reader.raw(sizeof kMagic);
  if (!std::equal(magic.begin(), magic.end(), std::begin(kMagic))) invalid("not an OpenSSH KRL (bad magic)");
  std::uint32_t format = reader.uint32();
  if (format != kFormatVersion) invalid("unsupported KRL format version " + std::to_string(format));
  KrlContent krl;
  krl.version = reader.uint64();
  krl.generated_date = reader.uint64();
  if (reader.uint64() != 0) invalid("the KRL has flags set, none are defined");
  reader.string();  // reserved
  krl.comment = reader.text();

  std::optional<std::vector<std::uint8_t>> ca;
  while (!reader.at_end()) {
    std::uint8_t type = reader.byte();
    switch (type) {
      case kSectionCertificates: {
        WireReader section(reader.string(), "KRL certificate section");
        parse_certificate_section(section, krl, ca);
        break;
      }
      case kSectionExplicitKey: {
        WireReader section(reader.string(), "KRL explicit key section");
        if (section.at_end()) invalid("the KRL has an empty explicit key section");
        while (!section.at_end()) {
          std::span<const std::uint8_t> key = section.string();
          check_plain_key(key, "revoked key");
          krl.revoked_keys.emplace_back(key.begin(), key.end());
        }
        break;
      }
      case kSectionFingerprintSha1:
      case kSectionFingerprintSha256:
        invalid("the KRL revokes keys by fingerprint, which keyhold does not read");
      case kSectionSignature:
        invalid("the KRL is signed, which keyhold does not read");
      default:
        invalid("the KRL has an unknown section type " + std::to_string(type));
    }
  }
  if (ca) krl.ca_key_blob = std::move(*ca);
  sort_unique(krl.serials);
  sort_unique(krl.key_ids);
  sort_unique(krl.revoked_keys);
  return krl;
}

}  // namespace keyhold::ssh
