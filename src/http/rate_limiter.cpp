#include "keyhold/http/rate_limiter.hpp"

#include <algorithm>

namespace keyhold::http {
namespace {
// Beyond this many buckets, full ones (callers idle long enough to be back at
// burst) are dropped: they would be recreated full anyway.
constexpr std::size_t kPruneAbove = 10000;
}  // namespace

RateLimiter::RateLimiter(std::uint64_t per_second, std::uint64_t burst, Clock now)
    : rate_(static_cast<double>(per_second)),
      burst_(static_cast<double>(std::max<std::uint64_t>(burst, 1))),
      now_(now ? std::move(now) : Clock([] { return std::chrono::steady_clock::now(); })) {}

bool RateLimiter::allow(std::string_view key) {
  if (rate_ <= 0) return true;
  auto now = now_();
  std::lock_guard lock(mutex_);
  if (buckets_.size() > kPruneAbove) {
    std::erase_if(buckets_, [&](const auto& entry) {
      const Bucket& b = entry.second;
      return b.tokens + std::chrono::duration<double>(now - b.last).count() * rate_ >= burst_;
    });
  }
  auto [it, fresh] = buckets_.try_emplace(std::string(key));
  Bucket& bucket = it->second;
  if (fresh) {
    bucket.tokens = burst_;
  } else {
    double gained = std::chrono::duration<double>(now - bucket.last).count() * rate_;
    bucket.tokens = std::min(burst_, bucket.tokens + std::max(0.0, gained));
  }
  bucket.last = now;
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

std::size_t RateLimiter::buckets() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

}  // namespace keyhold::http
