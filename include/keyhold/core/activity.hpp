#pragma once
// What a token has been doing, for metrics (GET /metrics of keyhold serve).
// Made by hsm::Token, passed up through crypto::KeyRing; free of PKCS#11 types.

#include <cstddef>
#include <cstdint>

#include "keyhold/core/histogram.hpp"

namespace keyhold {

struct TokenActivity {
  // Every token call (sign, encrypt, decrypt, random, lookups, key
  // generation), with its latency including the wait for a session.
  LatencyHistogram::Snapshot operations;
  std::uint64_t failures = 0;  // calls that threw
  std::size_t sessions_idle = 0;
  std::size_t sessions_leased = 0;
  std::size_t sessions_limit = 0;  // 0: no limit known
};

}  // namespace keyhold
