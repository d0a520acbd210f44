#pragma once
// The envelope ciphertext, format version 1 ("kh1"): what encryption under a
// KEK hands out and decryption takes back. Pure data and parsing, no token.
// The full specification is docs/ciphertext-format.md.
//
// Binary form (integers big-endian):
//   offset  size    field
//   0       1       format version, 1
//   1       16      KEK id: the KEK's random id, not its name (names can be
//                   reused after a KEK is destroyed; an id never is, and it
//                   tells a reader nothing about the data)
//   17      4       KEK version, >= 1 (picks the key version to decrypt with)
//   21      12      IV, the 96-bit GCM nonce (NIST SP 800-38D section 8.2.2)
//   33      n + 16  AES-256-GCM ciphertext of n plaintext bytes, then the tag
//
// Text form: "kh1:" + base64url (RFC 4648 section 5) of the binary form,
// without padding: one token that survives shells, URLs, JSON and file
// names, and that says what it is.
//
// Associated data (AAD) of the GCM operation: the whole header (bytes 0..32:
// format version, KEK id, KEK version, IV) followed by the canonical
// encryption context. So decrypting under another context, or after any
// header byte was changed, fails authentication instead of misreading: the
// version byte cannot be swapped to make a future format reinterpret v1
// bytes, nor the KEK id/version to point at another key. (GCM authenticates
// the IV by itself too; having it in the AAD costs nothing, and the AAD is
// then simply "everything before `sealed`". The IV is drawn before the AAD
// is built: crypto::Kek::encrypt_with_iv_in_aad.)
//
// Errors: everything here throws keyhold::Error(InvalidArgument) with a
// one-line message that never contains plaintext, ciphertext or a context
// value (context keys are named, shortened and escaped). All functions are
// pure and thread-safe.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keyhold::envelope {

// Encryption context: key -> value, authenticated with the ciphertext but not
// stored in it; decryption must present the same pairs.
using Context = std::map<std::string, std::string>;

inline constexpr std::uint8_t kFormatVersion = 1;
inline constexpr std::size_t kKekIdBytes = 16, kIvBytes = 12, kTagBytes = 16;
inline constexpr std::size_t kMaxPlaintextBytes = 4096;  // for encrypt (data keys are 16 or 32)

// Sizes derived from the layout above.
inline constexpr std::size_t kHeaderBytes = 1 + kKekIdBytes + 4 + kIvBytes;  // 33: the bytes before `sealed`
inline constexpr std::size_t kMinSealedBytes = kTagBytes;                       // empty plaintext
inline constexpr std::size_t kMaxSealedBytes = kMaxPlaintextBytes + kTagBytes;
inline constexpr std::size_t kMinEncodedBytes = kHeaderBytes + kMinSealedBytes;  // 49
inline constexpr std::size_t kMaxEncodedBytes = kHeaderBytes + kMaxSealedBytes;  // 4145

// Limits of an encryption context (canonical_context refuses more).
inline constexpr std::size_t kMaxContextPairs = 64;
inline constexpr std::size_t kMaxContextKeyBytes = 128;
inline constexpr std::size_t kMaxContextValueBytes = 1024;

inline constexpr std::string_view kTextPrefix = "kh1:";

struct Ciphertext {
  std::array<std::uint8_t, kKekIdBytes> kek_id{};  // the KEK's random 16-byte id (not its name)
  std::uint32_t kek_version = 0;                   // >= 1
  std::array<std::uint8_t, kIvBytes> iv{};
  std::vector<std::uint8_t> sealed;                // ciphertext followed by the 16-byte GCM tag

  friend bool operator==(const Ciphertext&, const Ciphertext&) = default;
};

// The binary form. Refuses (InvalidArgument) what decode would refuse: KEK
// version 0, `sealed` shorter than the tag or longer than kMaxSealedBytes.
std::vector<std::uint8_t> encode(const Ciphertext& ciphertext);

// Parses the binary form. Refuses empty input, a format version other than 1
// (the message names it), input shorter than header + tag, KEK version 0 and
// more than kMaxEncodedBytes. Does not authenticate anything: that is the
// Kek's decryption with associated_data().
Ciphertext decode(std::span<const std::uint8_t> bytes);

// "kh1:" + base64url of encode(ciphertext), no padding.
std::string to_text(const Ciphertext& ciphertext);

// Parses the text form after trimming surrounding ASCII whitespace (the
// newline a file or pipe adds). Refuses another prefix ("kh2:" is an unknown
// format version 2), characters outside the base64url alphabet (whitespace
// inside included), '=' padding, impossible lengths, non-zero unused bits in
// the last character (so each ciphertext has exactly one text form), and
// whatever decode refuses.
Ciphertext from_text(std::string_view text);

// Text form when the input, after leading ASCII whitespace, starts with "kh",
// one or more digits and ':'; binary form otherwise. A binary ciphertext
// starts with its version byte (0x01), never with 'k' or whitespace.
Ciphertext parse_any(std::span<const std::uint8_t> input);

// The kHeaderBytes bytes before `sealed` in the binary form.
std::vector<std::uint8_t> header_bytes(const Ciphertext& ciphertext);

// The context as bytes, identical for equal maps whatever their history:
// uint32 number of pairs, then for each pair in bytewise order of keys,
// uint32 key length, key bytes, uint32 value length, value bytes (big-endian;
// the lengths make the encoding unambiguous, so no two contexts share it).
// Validates: keys non-empty, at most kMaxContextKeyBytes, without '=' (so
// every context can be given on the command line as key=value); values at
// most kMaxContextValueBytes; keys and values valid UTF-8 (RFC 3629) without
// control characters (C0, DEL, C1); at most kMaxContextPairs pairs. An empty
// context is allowed: 00 00 00 00.
std::vector<std::uint8_t> canonical_context(const Context& context);

// The GCM associated data: header_bytes(header_fields) followed by
// canonical_context(context). `sealed` is not read, so the AAD can be built
// once the KEK id, KEK version and IV are known, before encryption. Refuses
// KEK version 0 and invalid contexts.
std::vector<std::uint8_t> associated_data(const Ciphertext& header_fields, const Context& context);

// Command-line context items "key=value", split at the first '=' (a value may
// hold '=', may be empty). Refuses an item without '=', an empty key, a key
// given twice, and whatever canonical_context refuses. Malformed items are
// named by position (1-based), never echoed.
Context parse_context_arguments(const std::vector<std::string>& args);

}  // namespace keyhold::envelope
