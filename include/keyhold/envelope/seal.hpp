#pragma once
// Client-side file sealing (envelope encryption of a whole file or stream).
//
// A fresh 32-byte data key per file encrypts the file locally with AES-256-GCM
// in fixed-size segments; the data key itself travels wrapped (encrypted by a
// KEK in the token, made by another module) in the file's header. Pure local
// code: no token, no store. Memory use is bounded by one segment whatever the
// file size, and the streams are read and written strictly in order, so pipes
// (stdin/stdout) work.
//
// Byte layout (docs/ciphertext-format.md, "Sealed files"; integers big-endian):
//
//   header   magic "KHSEAL\0" (7) | version 0x01 (1) | segment_size u32 (4)
//            | nonce_prefix (7) | wrapped_key_length u32 (4) | wrapped_key (n)
//   segment  AES-256-GCM(data key, nonce, aad = all header bytes, plaintext)
//            = ciphertext (same length as the plaintext) | tag (16)
//   nonce    nonce_prefix (7) | segment index u32 (4) | last flag (1: 0x00 or 0x01)
//
// Every segment but the last holds exactly segment_size plaintext bytes; the
// last one holds fewer (0 .. segment_size - 1) and is the only one sealed with
// the last flag set. So a file whose size is a multiple of segment_size (the
// empty file included) ends with an empty last segment of just a tag, and a
// reader knows from a segment's length alone whether it must be the last one:
// no lookahead in either direction. Truncation (anywhere, segment boundaries
// included), reordering, dropping, duplicating, appending and a changed header
// all end in a failed tag or a missing last segment.
//
// The streams are used through their stream buffers (rdbuf()), so a stream's
// exception mask does not matter and its state flags are left alone.

#include <array>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <vector>

#include "keyhold/core/secret.hpp"

namespace keyhold::envelope {

// Plaintext bytes per segment written by seal().
inline constexpr std::uint32_t kSegmentPlaintextBytes = 64 * 1024;
// Segment sizes read_seal_header() accepts (memory stays bounded by the maximum).
inline constexpr std::uint32_t kMinSegmentPlaintextBytes = 4 * 1024;
inline constexpr std::uint32_t kMaxSegmentPlaintextBytes = 1024 * 1024;
// Bounds of the wrapped data key in the header.
inline constexpr std::uint32_t kMaxWrappedKeyBytes = 4096;
// "KHSEAL\0" followed by the format version byte.
inline constexpr std::array<std::uint8_t, 7> kSealMagic{'K', 'H', 'S', 'E', 'A', 'L', 0};
inline constexpr std::uint8_t kSealFormatVersion = 1;
// Size of the AES-256-GCM tag that ends every segment; size of the data key.
inline constexpr std::size_t kSealTagBytes = 16;
inline constexpr std::size_t kSealDataKeyBytes = 32;
// Header bytes before the wrapped key: magic + version + segment size + nonce prefix + key length.
inline constexpr std::size_t kSealFixedHeaderBytes = 7 + 1 + 4 + 7 + 4;

struct SealHeader {
  std::vector<std::uint8_t> wrapped_key;        // opaque: the data key encrypted by the KEK (another module makes it)
  std::uint32_t segment_size = kSegmentPlaintextBytes;
  std::array<std::uint8_t, 7> nonce_prefix{};   // random per file
  std::vector<std::uint8_t> bytes;              // the exact header bytes as written/read (authenticated with every segment)
};

// Writes header + segments. data_key must be 32 bytes. Reads `plaintext` to EOF in segment-size chunks (constant memory).
// Returns the number of plaintext bytes sealed. Throws Error(InvalidArgument) for a bad key size, a wrapped key that is
// empty or longer than kMaxWrappedKeyBytes, or a plaintext of 2^32 segments or more (256 TiB); Error(Unavailable) when
// reading or writing a stream fails; Error(Internal) when OpenSSL fails. Nothing is written before the arguments are
// checked; after an error the output holds a useless prefix (the caller writes to a temporary file and renames).
std::uint64_t seal(std::istream& plaintext, std::ostream& sealed, const SecretBytes& data_key,
                   std::span<const std::uint8_t> wrapped_key);

// Reads and checks the header only (magic, format version, sizes); leaves `sealed` positioned at the first segment.
// Throws Error(InvalidArgument) for a file that is not a sealed file, another format version, a segment size outside
// kMinSegmentPlaintextBytes..kMaxSegmentPlaintextBytes, a wrapped key length outside 1..kMaxWrappedKeyBytes or a
// truncated header. The header is authenticated only by unseal() (every segment's tag covers it).
SealHeader read_seal_header(std::istream& sealed);

// Decrypts every segment after the header; writes each segment's plaintext only after its tag verified.
// Throws Error(InvalidArgument, one line, no plaintext in the message) on: a failed tag (tampered, reordered, wrong key),
// truncation (EOF before a segment flagged last — including truncation exactly at a segment boundary), data after the
// last segment; also for a data key that is not 32 bytes or a header whose fields disagree with its bytes.
// Throws Error(Unavailable) when reading or writing a stream fails. After any error the output holds the plaintext of
// the segments before the bad one (all verified), which the caller must discard.
// Returns the number of plaintext bytes written.
std::uint64_t unseal(const SealHeader& header, std::istream& sealed, std::ostream& plaintext,
                     const SecretBytes& data_key);

}  // namespace keyhold::envelope
