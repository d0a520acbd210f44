#pragma once
// What a token, and the service's maintenance, have been doing, for metrics
// (GET /metrics of keyhold serve). TokenActivity is made by hsm::Token and
// passed up through crypto::KeyRing; free of PKCS#11 types.

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

// The runs of keyhold serve's own maintenance (app::run_maintenance).
struct MaintenanceActivity {
  std::uint64_t runs_ok = 0;       // runs in which no item failed
  std::uint64_t runs_failed = 0;   // runs in which at least one item failed
  std::uint64_t runs_skipped = 0;  // another run (keyhold maintain) held the lock
  std::uint64_t changes = 0;       // CRLs/KRLs published, KEKs rotated, certificates marked expired
  std::int64_t last_run_unix = 0;      // end of the last run that was not skipped (0: none yet)
  std::int64_t last_success_unix = 0;  // end of the last run in which no item failed (0: none yet)
  std::uint64_t notices = 0;  // certificates expiring soon or expired, as the last run found
};

}  // namespace keyhold
