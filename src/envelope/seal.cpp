#include "keyhold/envelope/seal.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <streambuf>
#include <string>
#include <string_view>

#include "keyhold/core/c_ptr.hpp"
#include "keyhold/core/error.hpp"

namespace keyhold::envelope {
namespace {

using CipherPtr = CPtr<EVP_CIPHER, &EVP_CIPHER_free>;
using CipherCtxPtr = CPtr<EVP_CIPHER_CTX, &EVP_CIPHER_CTX_free>;  // EVP_CIPHER_CTX_free wipes the key schedule

// Segment indexes are 32 bits in the nonce: a file has at most 2^32 segments.
constexpr std::uint64_t kMaxSegmentIndex = std::numeric_limits<std::uint32_t>::max();

[[noreturn]] void throw_openssl(std::string_view what) {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  std::string detail = "unknown OpenSSL error";
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    detail = buf;
  }
  throw Error(ErrorCode::Internal, std::string(what) + ": " + detail);
}

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 24));
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

std::uint32_t get_u32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | std::uint32_t{p[3]};
}

std::streambuf& buffer_of(std::ios& stream, const char* what) {
  std::streambuf* buf = stream.rdbuf();
  if (buf == nullptr || stream.fail()) {
    throw Error(ErrorCode::Unavailable, std::string("the ") + what + " stream is not usable");
  }
  return *buf;
}

// Reads until `size` bytes or end of stream; returns the count. A short count means end of stream.
std::size_t read_full(std::streambuf& in, std::uint8_t* data, std::size_t size, const char* what) {
  std::size_t got = 0;
  try {
    while (got < size) {
      std::streamsize n = in.sgetn(reinterpret_cast<char*>(data + got), static_cast<std::streamsize>(size - got));
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::Unavailable, std::string("reading the ") + what + " failed: " + e.what());
  }
  return got;
}

void write_all(std::streambuf& out, const std::uint8_t* data, std::size_t size, const char* what) {
  if (size == 0) return;
  bool ok = false;
  try {
    ok = out.sputn(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size)) ==
         static_cast<std::streamsize>(size);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::Unavailable, std::string("writing the ") + what + " failed: " + e.what());
  }
  if (!ok) throw Error(ErrorCode::Unavailable, std::string("writing the ") + what + " failed");
}

void flush(std::streambuf& out, const char* what) {
  int rc = -1;
  try {
    rc = out.pubsync();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::Unavailable, std::string("writing the ") + what + " failed: " + e.what());
  }
  if (rc == -1) throw Error(ErrorCode::Unavailable, std::string("writing the ") + what + " failed");
}

void check_version(std::uint8_t version) {
  if (version != kSealFormatVersion) {
    throw Error(ErrorCode::InvalidArgument,
                "unsupported sealed file format version " + std::to_string(version) + " (this keyhold reads version " +
                    std::to_string(kSealFormatVersion) + ")");
  }
}

// Parses the fixed part of the header (kSealFixedHeaderBytes); returns the wrapped key length.
std::uint32_t parse_fixed_header(const std::uint8_t* p, SealHeader& header) {
  if (!std::equal(kSealMagic.begin(), kSealMagic.end(), p)) {
    throw Error(ErrorCode::InvalidArgument, "not a keyhold sealed file (unknown magic bytes)");
  }
  check_version(p[7]);
  header.segment_size = get_u32(p + 8);
  if (header.segment_size < kMinSegmentPlaintextBytes || header.segment_size > kMaxSegmentPlaintextBytes) {
    throw Error(ErrorCode::InvalidArgument, "sealed file header is damaged: segment size " +
                                                std::to_string(header.segment_size) + " is outside " +
                                                std::to_string(kMinSegmentPlaintextBytes) + ".." +
                                                std::to_string(kMaxSegmentPlaintextBytes));
  }
  std::copy(p + 12, p + 19, header.nonce_prefix.begin());
  std::uint32_t key_length = get_u32(p + 19);
  if (key_length < 1 || key_length > kMaxWrappedKeyBytes) {
    throw Error(ErrorCode::InvalidArgument, "sealed file header is damaged: wrapped key length " +
                                                std::to_string(key_length) + " is outside 1.." +
                                                std::to_string(kMaxWrappedKeyBytes));
  }
  return key_length;
}

SealHeader parse_header_bytes(std::span<const std::uint8_t> bytes) {
  SealHeader header;
  if (bytes.size() < kSealFixedHeaderBytes) {
    throw Error(ErrorCode::InvalidArgument, "sealed file header is truncated");
  }
  std::uint32_t key_length = parse_fixed_header(bytes.data(), header);
  if (bytes.size() != kSealFixedHeaderBytes + key_length) {
    throw Error(ErrorCode::InvalidArgument, "sealed file header has the wrong length");
  }
  header.wrapped_key.assign(bytes.begin() + kSealFixedHeaderBytes, bytes.end());
  header.bytes.assign(bytes.begin(), bytes.end());
  return header;
}

void check_data_key(const SecretBytes& data_key) {
  if (data_key.size() != kSealDataKeyBytes) {
    throw Error(ErrorCode::InvalidArgument, "a sealing data key must be " + std::to_string(kSealDataKeyBytes) +
                                                " bytes, not " + std::to_string(data_key.size()));
  }
}

// AES-256-GCM with one key, one nonce prefix and the header as AAD, segment after segment.
class SegmentCipher {
 public:
  SegmentCipher(bool encrypt, const SecretBytes& key, const std::array<std::uint8_t, 7>& prefix,
                std::span<const std::uint8_t> aad)
      : encrypt_(encrypt), aad_(aad) {
    std::copy(prefix.begin(), prefix.end(), nonce_.begin());
    cipher_.reset(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
    if (!cipher_) throw_openssl("fetching AES-256-GCM");
    ctx_.reset(EVP_CIPHER_CTX_new());
    if (!ctx_) throw_openssl("creating a cipher context");
    if (EVP_CipherInit_ex2(ctx_.get(), cipher_.get(), key.data(), nullptr, encrypt_ ? 1 : 0, nullptr) != 1) {
      throw_openssl("setting the data key");
    }
  }

  // out receives size ciphertext bytes followed by the tag.
  void seal(std::uint32_t index, bool last, const std::uint8_t* in, std::size_t size, std::uint8_t* out) {
    start(index, last);
    int length = 0;
    if (size > 0 && EVP_EncryptUpdate(ctx_.get(), out, &length, in, static_cast<int>(size)) != 1) {
      throw_openssl("encrypting a segment");
    }
    int final_length = 0;
    if (EVP_EncryptFinal_ex(ctx_.get(), out + length, &final_length) != 1 ||
        static_cast<std::size_t>(length + final_length) != size) {
      throw_openssl("encrypting a segment");
    }
    if (EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kSealTagBytes), out + size) != 1) {
      throw_openssl("reading a segment tag");
    }
  }

  // in holds size ciphertext bytes followed by the tag; out receives size bytes, which are
  // meaningful (and may be used) only when this returns true.
  bool open(std::uint32_t index, bool last, const std::uint8_t* in, std::size_t size, std::uint8_t* out) {
    start(index, last);
    int length = 0;
    if (size > 0 && EVP_DecryptUpdate(ctx_.get(), out, &length, in, static_cast<int>(size)) != 1) {
      throw_openssl("decrypting a segment");
    }
    std::array<std::uint8_t, kSealTagBytes> tag{};
    std::copy(in + size, in + size + kSealTagBytes, tag.begin());
    if (EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag.size()), tag.data()) != 1) {
      throw_openssl("setting a segment tag");
    }
    int final_length = 0;
    if (EVP_DecryptFinal_ex(ctx_.get(), out + length, &final_length) != 1) {
      ERR_clear_error();
      return false;
    }
    return static_cast<std::size_t>(length + final_length) == size;
  }

 private:
  // nonce = prefix (7) || index (u32 BE) || last flag; then the header as AAD.
  void start(std::uint32_t index, bool last) {
    nonce_[7] = static_cast<std::uint8_t>(index >> 24);
    nonce_[8] = static_cast<std::uint8_t>(index >> 16);
    nonce_[9] = static_cast<std::uint8_t>(index >> 8);
    nonce_[10] = static_cast<std::uint8_t>(index);
    nonce_[11] = last ? 1 : 0;
    if (EVP_CipherInit_ex2(ctx_.get(), nullptr, nullptr, nonce_.data(), encrypt_ ? 1 : 0, nullptr) != 1) {
      throw_openssl("setting a segment nonce");
    }
    int ignored = 0;
    if (EVP_CipherUpdate(ctx_.get(), nullptr, &ignored, aad_.data(), static_cast<int>(aad_.size())) != 1) {
      throw_openssl("authenticating the header");
    }
  }

  bool encrypt_;
  std::span<const std::uint8_t> aad_;
  std::array<std::uint8_t, 12> nonce_{};
  CipherPtr cipher_;
  CipherCtxPtr ctx_;
};

}  // namespace

std::uint64_t seal(std::istream& plaintext, std::ostream& sealed, const SecretBytes& data_key,
                   std::span<const std::uint8_t> wrapped_key) {
  check_data_key(data_key);
  if (wrapped_key.empty() || wrapped_key.size() > kMaxWrappedKeyBytes) {
    throw Error(ErrorCode::InvalidArgument, "a wrapped data key must be 1.." + std::to_string(kMaxWrappedKeyBytes) +
                                                " bytes, not " + std::to_string(wrapped_key.size()));
  }
  std::streambuf& in = buffer_of(plaintext, "plaintext");
  std::streambuf& out = buffer_of(sealed, "sealed output");

  std::array<std::uint8_t, 7> prefix{};
  if (RAND_bytes(prefix.data(), static_cast<int>(prefix.size())) != 1) throw_openssl("drawing a nonce prefix");

  std::vector<std::uint8_t> header;
  header.reserve(kSealFixedHeaderBytes + wrapped_key.size());
  header.insert(header.end(), kSealMagic.begin(), kSealMagic.end());
  header.push_back(kSealFormatVersion);
  put_u32(header, kSegmentPlaintextBytes);
  header.insert(header.end(), prefix.begin(), prefix.end());
  put_u32(header, static_cast<std::uint32_t>(wrapped_key.size()));
  header.insert(header.end(), wrapped_key.begin(), wrapped_key.end());

  SegmentCipher cipher(true, data_key, prefix, header);
  write_all(out, header.data(), header.size(), "sealed output");

  SecretBytes chunk(kSegmentPlaintextBytes);
  std::vector<std::uint8_t> segment(kSegmentPlaintextBytes + kSealTagBytes);
  std::uint64_t total = 0;
  for (std::uint64_t index = 0;; ++index) {
    if (index > kMaxSegmentIndex) {
      throw Error(ErrorCode::InvalidArgument, "the plaintext is too large to seal (2^32 segments, 256 TiB, at most)");
    }
    std::size_t size = read_full(in, chunk.data(), chunk.size(), "plaintext");
    // A short (possibly empty) chunk means end of input: it is the last segment.
    bool last = size < chunk.size();
    cipher.seal(static_cast<std::uint32_t>(index), last, chunk.data(), size, segment.data());
    write_all(out, segment.data(), size + kSealTagBytes, "sealed output");
    total += size;
    if (last) break;
  }
  flush(out, "sealed output");
  return total;
}

SealHeader read_seal_header(std::istream& sealed) {
  std::streambuf& in = buffer_of(sealed, "sealed input");
  std::array<std::uint8_t, kSealFixedHeaderBytes> fixed{};
  std::size_t got = read_full(in, fixed.data(), fixed.size(), "sealed input");
  // Name a file of another kind or version as such, even when it is shorter than a header.
  std::size_t magic_seen = std::min(got, kSealMagic.size());
  if (!std::equal(fixed.begin(), fixed.begin() + static_cast<std::ptrdiff_t>(magic_seen), kSealMagic.begin())) {
    throw Error(ErrorCode::InvalidArgument, "not a keyhold sealed file (unknown magic bytes)");
  }
  if (got > kSealMagic.size()) check_version(fixed[kSealMagic.size()]);
  if (got < fixed.size()) {
    throw Error(ErrorCode::InvalidArgument, "sealed file header is truncated (" + std::to_string(got) + " bytes)");
  }
  SealHeader header;
  std::uint32_t key_length = parse_fixed_header(fixed.data(), header);
  header.wrapped_key.resize(key_length);
  if (read_full(in, header.wrapped_key.data(), key_length, "sealed input") != key_length) {
    throw Error(ErrorCode::InvalidArgument, "sealed file header is truncated");
  }
  header.bytes.reserve(fixed.size() + key_length);
  header.bytes.assign(fixed.begin(), fixed.end());
  header.bytes.insert(header.bytes.end(), header.wrapped_key.begin(), header.wrapped_key.end());
  return header;
}

std::uint64_t unseal(const SealHeader& header, std::istream& sealed, std::ostream& plaintext,
                     const SecretBytes& data_key) {
  check_data_key(data_key);
  // The header's bytes are what every tag authenticates; its fields must say the same.
  SealHeader parsed = parse_header_bytes(header.bytes);
  if (parsed.segment_size != header.segment_size || parsed.nonce_prefix != header.nonce_prefix ||
      parsed.wrapped_key != header.wrapped_key) {
    throw Error(ErrorCode::InvalidArgument, "sealed file header fields disagree with its bytes");
  }
  std::streambuf& in = buffer_of(sealed, "sealed input");
  std::streambuf& out = buffer_of(plaintext, "plaintext output");

  SegmentCipher cipher(false, data_key, parsed.nonce_prefix, header.bytes);
  const std::size_t full = std::size_t{parsed.segment_size} + kSealTagBytes;
  std::vector<std::uint8_t> segment(full);
  SecretBytes chunk(parsed.segment_size);
  std::uint64_t total = 0;
  for (std::uint64_t index = 0;; ++index) {
    if (index > kMaxSegmentIndex) {
      throw Error(ErrorCode::InvalidArgument, "sealed file has more than 2^32 segments");
    }
    std::size_t got = read_full(in, segment.data(), full, "sealed input");
    if (got == 0) {
      throw Error(ErrorCode::InvalidArgument, "sealed file is truncated: it ends after " + std::to_string(index) +
                                                  " segments, before its final segment");
    }
    if (got < kSealTagBytes) {
      throw Error(ErrorCode::InvalidArgument,
                  "sealed file is truncated: it ends inside segment " + std::to_string(index));
    }
    // A full-length segment is never the last one; a short one (the input ended) must be.
    bool last = got < full;
    std::size_t size = got - kSealTagBytes;
    if (!cipher.open(static_cast<std::uint32_t>(index), last, segment.data(), size, chunk.data())) {
      throw Error(ErrorCode::InvalidArgument,
                  "sealed file failed authentication at segment " + std::to_string(index) +
                      ": it was changed, truncated, reordered or extended, or this is not its data key");
    }
    if (last) {
      // The read stopped short, so the input is at its end; make sure nothing follows.
      if (read_full(in, segment.data(), 1, "sealed input") != 0) {
        throw Error(ErrorCode::InvalidArgument, "sealed file has data after its final segment");
      }
    }
    write_all(out, chunk.data(), size, "plaintext output");
    total += size;
    if (last) break;
  }
  flush(out, "plaintext output");
  return total;
}

}  // namespace keyhold::envelope
