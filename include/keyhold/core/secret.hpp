#pragma once
// Buffers for secrets (PINs, data keys, plaintext): wiped when they die, never
// printed. Move-only so that a secret is not copied around by accident.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace keyhold {

// Overwrites memory in a way the optimiser may not remove.
void secure_wipe(void* data, std::size_t size) noexcept;

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::size_t size) : bytes_(size) {}
  SecretBytes(const std::uint8_t* data, std::size_t size) : bytes_(data, data + size) {}
  ~SecretBytes() { wipe(); }
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      wipe();
      bytes_ = std::move(other.bytes_);
      other.bytes_.clear();
    }
    return *this;
  }
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  std::uint8_t* data() noexcept { return bytes_.data(); }
  const std::uint8_t* data() const noexcept { return bytes_.data(); }
  std::size_t size() const noexcept { return bytes_.size(); }
  bool empty() const noexcept { return bytes_.empty(); }
  std::span<const std::uint8_t> view() const noexcept { return bytes_; }
  std::string_view as_string() const noexcept {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }
  // Shrinks without reallocating, so no unwiped copy is left behind.
  void truncate(std::size_t size) noexcept {
    if (size < bytes_.size()) {
      secure_wipe(bytes_.data() + size, bytes_.size() - size);
      bytes_.resize(size);
    }
  }
  void wipe() noexcept {
    secure_wipe(bytes_.data(), bytes_.size());
    bytes_.clear();
  }

 private:
  std::vector<std::uint8_t> bytes_;
};

}  // namespace keyhold
