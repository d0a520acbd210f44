#pragma once
// Public keys in OpenSSH's formats: the wire blob (RFC 4253 section 6.6,
// RFC 5656 section 3.1, RFC 8709 section 4) and the authorized_keys line
// (sshd(8) "AUTHORIZED_KEYS FILE FORMAT", without the options prefix).

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/crypto/public_key.hpp"
#include "keyhold/ssh/wire.hpp"

namespace keyhold::ssh {

// "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
// "ecdsa-sha2-nistp521", "ssh-rsa".
// Throws InvalidArgument for a key OpenSSH has no name for.
std::string key_type_name(const crypto::PublicKey& key);
std::vector<std::uint8_t> public_key_blob(const crypto::PublicKey& key);
// "ssh-ed25519 AAAA... comment" (no comment when empty).
std::string authorized_keys_line(const crypto::PublicKey& key, std::string_view comment);
// "SHA256:..." as ssh-keygen -l prints it.
std::string fingerprint_sha256(const crypto::PublicKey& key);
// The same over a key blob (the unpadded base64 of SHA-256 of the blob).
std::string fingerprint_sha256(std::span<const std::uint8_t> blob);

// An empty crypto::PublicKey (an EVP_PKEY holding no key): what a
// default-constructed OpenSshPublicKey holds until a parser fills it. It has
// no type, equals no key, verifies nothing and cannot be encoded.
crypto::PublicKey empty_public_key();

// A plain (not certificate) public key as OpenSSH writes it.
struct OpenSshPublicKey {
  std::string type;                // "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"
  std::vector<std::uint8_t> blob;  // the wire blob
  std::string comment;
  crypto::PublicKey key = empty_public_key();  // the same key as an OpenSSL public key
};

// The limit on a public key file (and on one line): far above any key keyhold
// accepts (RSA-16384 is about 2.8 KiB of text), low enough to refuse junk early.
inline constexpr std::size_t kMaxPublicKeyFileSize = 16 * 1024;

// One authorized_keys-style line "TYPE BASE64 [comment]" (no options prefix;
// fields separated by spaces or tabs; no line terminator). Refuses, with
// InvalidArgument naming the reason: malformed base64 or wire data, a type in
// the line that differs from the blob's, unknown types, ssh-dss / DSA, RSA
// below 2048 bits (or above OpenSSH's 16384), any *-cert-v01@openssh.com key,
// sk-* (security key) types, an ECDSA point off its curve, trailing data in
// the blob, control characters (other than separating tabs), a line over
// kMaxPublicKeyFileSize and a comment (everything after the base64) that is
// not UTF-8 or holds C1 control characters.
OpenSshPublicKey parse_public_key_line(std::string_view line);
// The file form: at most kMaxPublicKeyFileSize bytes, exactly one non-empty
// line that is not a '#' comment (LF or CRLF line ends).
OpenSshPublicKey parse_public_key_file(std::string_view content);
// A key blob alone, with the same refusals; comment empty.
OpenSshPublicKey parse_public_key_blob(std::span<const std::uint8_t> blob);

// Throws InvalidArgument unless type is one of the plain key types above,
// naming why (DSA, certificate, security key, unknown).
void check_public_key_type(std::string_view type);
// Reads the key fields that follow the type name (in a key blob, or after the
// nonce in a certificate: PROTOCOL.certkeys) and returns the key with its
// plain blob rebuilt from them. Same refusals as parse_public_key_blob, but
// bytes after the fields are left to the caller.
OpenSshPublicKey read_public_key_fields(std::string_view type, WireReader& reader);

// A line "TYPE BASE64 [comment]" taken apart, as authorized_keys and
// *-cert.pub files hold it: the type and comment checked for control
// characters, the base64 decoded strictly. The blob is not interpreted.
struct OpenSshLine {
  std::string type;
  std::vector<std::uint8_t> blob;
  std::string comment;
};
OpenSshLine split_openssh_line(std::string_view line, std::string_view what = "public key");

// Strict base64 (RFC 4648 section 4): padded, no whitespace, no non-zero
// trailing bits. Throws InvalidArgument when malformed.
std::vector<std::uint8_t> decode_base64(std::string_view text);

}  // namespace keyhold::ssh
