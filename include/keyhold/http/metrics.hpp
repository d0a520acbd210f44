#pragma once
// The service's metrics in the Prometheus text exposition format (version
// 0.0.4), for GET /metrics: requests by operation and outcome with latency
// histograms, rate-limit refusals, and what the sources report at each
// scrape (connections, the audit log, the token and its session pool).
// Thread-safe: observe from any number of handler threads while rendering.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "keyhold/audit/log.hpp"
#include "keyhold/core/activity.hpp"
#include "keyhold/core/histogram.hpp"
#include "keyhold/http/server.hpp"

namespace keyhold::http {

class Metrics {
 public:
  // Read at each render(); any may be left empty (its metrics are left out).
  struct Sources {
    std::function<ServerStats()> server;
    std::function<audit::LogStats()> audit;
    std::function<TokenActivity()> token;
    std::function<MaintenanceActivity()> maintenance;
  };

  Metrics() = default;
  void set_sources(Sources sources);

  // One answered request: operation as routed ("kek.decrypt", "health",
  // "unknown"), outcome "allowed", "denied" or "failed".
  void observe_request(std::string_view operation, std::string_view outcome, std::chrono::nanoseconds latency);
  void count_rate_limited();

  std::string render() const;

 private:
  struct Operation {
    std::map<std::string, std::uint64_t, std::less<>> outcomes;
    std::shared_ptr<LatencyHistogram> latency = std::make_shared<LatencyHistogram>();
  };
  mutable std::mutex mutex_;
  std::map<std::string, Operation, std::less<>> operations_;
  std::uint64_t rate_limited_ = 0;
  Sources sources_;
};

// Prometheus text helpers (exposed for tests): a histogram's lines with
// cumulative buckets, _sum and _count; labels like `operation="kek.decrypt"`
// (already escaped) or empty.
void append_histogram(std::string& out, std::string_view name, std::string_view labels,
                      const LatencyHistogram::Snapshot& snapshot);
// A label value escaped as the format asks (\\, \", \n).
std::string escape_label_value(std::string_view value);

}  // namespace keyhold::http
