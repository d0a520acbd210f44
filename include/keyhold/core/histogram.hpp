#pragma once
// A lock-free latency histogram for metrics: fixed buckets (Prometheus-style
// upper bounds in seconds), a count and a sum. observe() may be called from
// any number of threads; snapshot() reads each value atomically (not all of
// them at one instant).

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace keyhold {

class LatencyHistogram {
 public:
  // Upper bounds of the buckets, in seconds; a last bucket (+Inf) follows.
  static constexpr std::array<double, 14> kBounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                  0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   5.0};
  static constexpr std::size_t kBuckets = kBounds.size() + 1;

  struct Snapshot {
    std::array<std::uint64_t, kBuckets> counts{};  // per bucket, not cumulative; the last is +Inf
    std::uint64_t count = 0;
    double sum_seconds = 0;
  };

  void observe(std::chrono::nanoseconds duration) noexcept;
  Snapshot snapshot() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, kBuckets> buckets_{};
  std::atomic<std::uint64_t> sum_nanoseconds_{0};
};

}  // namespace keyhold
