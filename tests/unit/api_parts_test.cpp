// The parts of the API that need no token: the per-identity rate limit (a
// token bucket on an injected clock), the Prometheus text of the metrics,
// the strict base64 decoder in core, and the HTTP status of each error code.

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "keyhold/core/encoding.hpp"
#include "keyhold/core/error.hpp"
#include "keyhold/http/metrics.hpp"
#include "keyhold/http/rate_limiter.hpp"
#include "keyhold/http/server.hpp"

namespace keyhold {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

TEST(RateLimiter, ABurstIsAllowedThenRefusedUntilTokensAccrue) {
  SteadyClock::time_point now{};
  http::RateLimiter limiter(10, 3, [&] { return now; });
  EXPECT_TRUE(limiter.allow("a"));
  EXPECT_TRUE(limiter.allow("a"));
  EXPECT_TRUE(limiter.allow("a"));
  EXPECT_FALSE(limiter.allow("a"));  // the burst of 3 is used up
  now += 50ms;                       // half a token at 10/s
  EXPECT_FALSE(limiter.allow("a"));
  now += 60ms;  // now over one token
  EXPECT_TRUE(limiter.allow("a"));
  EXPECT_FALSE(limiter.allow("a"));
  now += 10s;  // refills to the burst, not beyond it
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.allow("a")) << i;
  EXPECT_FALSE(limiter.allow("a"));
}

TEST(RateLimiter, EachIdentityHasItsOwnBucket) {
  SteadyClock::time_point now{};
  http::RateLimiter limiter(1, 1, [&] { return now; });
  EXPECT_TRUE(limiter.allow("identity:alice"));
  EXPECT_FALSE(limiter.allow("identity:alice"));
  EXPECT_TRUE(limiter.allow("identity:bob"));  // alice's refusal does not touch bob
  EXPECT_EQ(limiter.buckets(), 2u);
}

TEST(RateLimiter, ZeroPerSecondMeansNoLimit) {
  http::RateLimiter limiter(0, 1);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(limiter.allow("a"));
}

TEST(RateLimiter, ManyIdleCallersAreForgottenOnceTheirBucketsAreFull) {
  SteadyClock::time_point now{};
  http::RateLimiter limiter(100, 1, [&] { return now; });
  for (int i = 0; i < 10001; ++i) limiter.allow("caller-" + std::to_string(i));
  EXPECT_EQ(limiter.buckets(), 10001u);
  now += 1s;  // every bucket is full again
  limiter.allow("one-more");
  EXPECT_LE(limiter.buckets(), 2u);
}

std::string line_with(const std::string& text, const std::string& start) {
  std::size_t at = text.find("\n" + start);
  if (at == std::string::npos) return {};
  return text.substr(at + 1, text.find('\n', at + 1) - at - 1);
}

TEST(Metrics, RequestsAreCountedByOperationAndOutcomeWithCumulativeBuckets) {
  http::Metrics metrics;
  metrics.observe_request("kek.decrypt", "allowed", 200us);
  metrics.observe_request("kek.decrypt", "allowed", 3ms);
  metrics.observe_request("kek.decrypt", "denied", 50us);
  metrics.count_rate_limited();
  std::string text = "\n" + metrics.render();
  EXPECT_EQ(line_with(text, "keyhold_requests_total{operation=\"kek.decrypt\",outcome=\"allowed\"}"),
            "keyhold_requests_total{operation=\"kek.decrypt\",outcome=\"allowed\"} 2");
  EXPECT_EQ(line_with(text, "keyhold_requests_total{operation=\"kek.decrypt\",outcome=\"denied\"}"),
            "keyhold_requests_total{operation=\"kek.decrypt\",outcome=\"denied\"} 1");
  // Buckets are cumulative: 50us and 200us are <= 0.00025; 3ms only from 0.005 on.
  EXPECT_EQ(line_with(text, "keyhold_request_duration_seconds_bucket{operation=\"kek.decrypt\",le=\"0.00025\"}"),
            "keyhold_request_duration_seconds_bucket{operation=\"kek.decrypt\",le=\"0.00025\"} 2");
  EXPECT_EQ(line_with(text, "keyhold_request_duration_seconds_bucket{operation=\"kek.decrypt\",le=\"0.0025\"}"),
            "keyhold_request_duration_seconds_bucket{operation=\"kek.decrypt\",le=\"0.0025\"} 2");
  EXPECT_EQ(line_with(text, "keyhold_request_duration_seconds_bucket{operation=\"kek.decrypt\",le=\"0.005\"}"),
            "keyhold_request_duration_seconds_bucket{operation=\"kek.decrypt\",le=\"0.005\"} 3");
  EXPECT_EQ(line_with(text, "keyhold_request_duration_seconds_bucket{operation=\"kek.decrypt\",le=\"+Inf\"}"),
            "keyhold_request_duration_seconds_bucket{operation=\"kek.decrypt\",le=\"+Inf\"} 3");
  EXPECT_EQ(line_with(text, "keyhold_request_duration_seconds_count{operation=\"kek.decrypt\"}"),
            "keyhold_request_duration_seconds_count{operation=\"kek.decrypt\"} 3");
  EXPECT_EQ(line_with(text, "keyhold_rate_limited_total "), "keyhold_rate_limited_total 1");
  EXPECT_NE(text.find("# TYPE keyhold_request_duration_seconds histogram\n"), std::string::npos);
}

TEST(Metrics, SourcesAreReadAtEachRender) {
  http::Metrics metrics;
  std::uint64_t depth = 7;
  metrics.set_sources({{}, [&] {
                         audit::LogStats s;
                         s.queued = depth;
                         s.broken = true;
                         return s;
                       },
                       [] {
                         TokenActivity t;
                         t.sessions_leased = 3;
                         return t;
                       },
                       {}});
  std::string text = "\n" + metrics.render();
  EXPECT_EQ(line_with(text, "keyhold_audit_queue_depth "), "keyhold_audit_queue_depth 7");
  EXPECT_EQ(line_with(text, "keyhold_audit_broken "), "keyhold_audit_broken 1");
  EXPECT_EQ(line_with(text, "keyhold_token_sessions_leased "), "keyhold_token_sessions_leased 3");
  EXPECT_EQ(text.find("keyhold_connections_open"), std::string::npos);  // no server source given
  depth = 9;
  EXPECT_EQ(line_with("\n" + metrics.render(), "keyhold_audit_queue_depth "), "keyhold_audit_queue_depth 9");
}

TEST(Metrics, MaintenanceRunsAreRendered) {
  http::Metrics metrics;
  EXPECT_EQ(metrics.render().find("keyhold_maintenance"), std::string::npos);  // no source: maintenance is off
  http::Metrics::Sources sources;
  sources.maintenance = [] {
    MaintenanceActivity m;
    m.runs_ok = 4;
    m.runs_failed = 1;
    m.runs_skipped = 2;
    m.changes = 5;
    m.last_run_unix = 1795000000;
    m.last_success_unix = 1794990000;
    m.notices = 3;
    return m;
  };
  metrics.set_sources(std::move(sources));
  std::string text = "\n" + metrics.render();
  EXPECT_EQ(line_with(text, "keyhold_maintenance_runs_total{outcome=\"ok\"}"), "keyhold_maintenance_runs_total{outcome=\"ok\"} 4");
  EXPECT_EQ(line_with(text, "keyhold_maintenance_runs_total{outcome=\"failed\"}"),
            "keyhold_maintenance_runs_total{outcome=\"failed\"} 1");
  EXPECT_EQ(line_with(text, "keyhold_maintenance_runs_total{outcome=\"skipped\"}"),
            "keyhold_maintenance_runs_total{outcome=\"skipped\"} 2");
  EXPECT_EQ(line_with(text, "keyhold_maintenance_changes_total "), "keyhold_maintenance_changes_total 5");
  EXPECT_EQ(line_with(text, "keyhold_maintenance_last_run_timestamp_seconds "),
            "keyhold_maintenance_last_run_timestamp_seconds 1795000000");
  EXPECT_EQ(line_with(text, "keyhold_maintenance_last_success_timestamp_seconds "),
            "keyhold_maintenance_last_success_timestamp_seconds 1794990000");
  EXPECT_EQ(line_with(text, "keyhold_maintenance_certificate_notices "), "keyhold_maintenance_certificate_notices 3");
  EXPECT_NE(text.find("# TYPE keyhold_maintenance_runs_total counter\n"), std::string::npos);
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(http::escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Base64, OnlyTheCanonicalPaddedSpellingDecodes) {
  EXPECT_EQ(from_base64("aGVsbG8="), (std::vector<std::uint8_t>{'h', 'e', 'l', 'l', 'o'}));
  EXPECT_EQ(from_base64("AAAA"), (std::vector<std::uint8_t>{0, 0, 0}));
  EXPECT_FALSE(from_base64(""));
  EXPECT_FALSE(from_base64("aGVsbG8"));     // no padding
  EXPECT_FALSE(from_base64("aGVsbG9="));    // non-zero padding bits
  EXPECT_FALSE(from_base64("aGVs bG8="));   // whitespace
  EXPECT_FALSE(from_base64("aGVsbG8-"));    // base64url alphabet
  EXPECT_FALSE(from_base64("a=VsbG8="));    // padding in the middle
  EXPECT_FALSE(from_base64("aGVsbA=="+std::string("AAAA")));  // data after padding
}

TEST(HttpStatus, EachErrorCodeHasItsStatus) {
  EXPECT_EQ(http::status_for(ErrorCode::InvalidArgument), 400);
  EXPECT_EQ(http::status_for(ErrorCode::Unauthenticated), 401);
  EXPECT_EQ(http::status_for(ErrorCode::PermissionDenied), 403);
  EXPECT_EQ(http::status_for(ErrorCode::NotFound), 404);
  EXPECT_EQ(http::status_for(ErrorCode::AlreadyExists), 409);
  EXPECT_EQ(http::status_for(ErrorCode::FailedPrecondition), 409);
  EXPECT_EQ(http::status_for(ErrorCode::ResourceExhausted), 429);
  EXPECT_EQ(http::status_for(ErrorCode::Internal), 500);
  EXPECT_EQ(http::status_for(ErrorCode::Unimplemented), 501);
  EXPECT_EQ(http::status_for(ErrorCode::Unavailable), 503);
  EXPECT_EQ(to_string(ErrorCode::ResourceExhausted), "resource_exhausted");
}

}  // namespace
}  // namespace keyhold
