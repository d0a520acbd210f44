#pragma once
// Per-caller rate limit of keyhold serve: one token bucket per identity (or,
// on the plain listener, per client address), so that no caller can starve
// the token. A bucket holds at most `burst` tokens, gains `per_second` tokens
// a second, and each request takes one; a request that finds the bucket
// empty is refused (429). Thread-safe.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace keyhold::http {

class RateLimiter {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // per_second 0: no limit (allow() is always true). burst at least 1.
  RateLimiter(std::uint64_t per_second, std::uint64_t burst, Clock now = {});

  // Takes a token from key's bucket; false when there is none.
  bool allow(std::string_view key);

  // Buckets kept now (full ones are forgotten once there are many).
  std::size_t buckets() const;

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last;
  };
  double rate_;
  double burst_;
  Clock now_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace keyhold::http
