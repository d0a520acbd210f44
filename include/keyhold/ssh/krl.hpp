#pragma once
// OpenSSH Key Revocation Lists, the format of OpenSSH's PROTOCOL.krl, as
// sshd's RevokedKeys and `ssh-keygen -Q` read them.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace keyhold::ssh {

struct KrlContent {
  std::uint64_t version = 0;         // the KRL version number (increases with each KRL)
  std::uint64_t generated_date = 0;  // seconds since the epoch
  std::string comment;
  std::vector<std::uint8_t> ca_key_blob;  // the CA whose certificates are revoked (empty: key ids of any CA)
  std::vector<std::uint64_t> serials;     // revoked certificate serials of that CA
  std::vector<std::string> key_ids;       // revoked key ids of that CA
  std::vector<std::vector<std::uint8_t>> revoked_keys;  // explicitly revoked plain public key blobs (certificates with that key are revoked too by sshd)
};

// An unsigned KRL (PROTOCOL.krl section 1): one certificate section
// (section 2) for ca_key_blob with a serial list (2.1) and a key id list
// (2.4), then one explicit key section (section 3) with the revoked key
// blobs. Serials, key ids and keys are written sorted and without duplicates,
// so the same content always gives the same bytes. Empty lists are left out.
// Throws InvalidArgument for: serial 0 (OpenSSH treats it as "no serial" and
// refuses to load a KRL revoking it), serials without a CA key, a CA key or
// revoked key that parse_public_key_blob refuses (certificates included),
// key ids or a comment with control characters.
std::vector<std::uint8_t> encode_krl(const KrlContent& krl);

// parse_krl lists serial ranges and bitmaps one serial at a time, up to this many.
inline constexpr std::size_t kMaxKrlSerials = 1 << 20;

// Reads the KRLs encode_krl writes and what `ssh-keygen -k` writes for one
// CA: certificate sections for a single CA key (serial lists, ranges and
// bitmaps are all expanded into `serials`; at most kMaxKrlSerials of them),
// key id sections and explicit key sections. Throws InvalidArgument for
// anything else: bad magic or format version, flags, fingerprint sections,
// signature sections, certificate sections of more than one CA, serial 0,
// malformed or trailing data. Results are sorted and without duplicates.
KrlContent parse_krl(std::span<const std::uint8_t> krl);

}  // namespace keyhold::ssh
