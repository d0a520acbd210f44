#include "keyhold/http/metrics.hpp"

#include <cstdio>

namespace keyhold::http {
namespace {

std::string number(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

void single(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            std::uint64_t value) {
  header(out, name, type, help);
  sample(out, name, "", value);
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void append_histogram(std::string& out, std::string_view name, std::string_view labels,
                      const LatencyHistogram::Snapshot& snapshot) {
  std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
    cumulative += snapshot.counts[i];
    std::string le = i < LatencyHistogram::kBounds.size() ? number(LatencyHistogram::kBounds[i]) : "+Inf";
    sample(out, std::string(name) + "_bucket", prefix + "le=\"" + le + "\"", cumulative);
  }
  out += std::string(name) + "_sum" + (labels.empty() ? "" : "{" + std::string(labels) + "}") + " " +
         number(snapshot.sum_seconds) + "\n";
  sample(out, std::string(name) + "_count", labels, cumulative);
}

void Metrics::set_sources(Sources sources) {
  std::lock_guard lock(mutex_);
  sources_ = std::move(sources);
}

void Metrics::observe_request(std::string_view operation, std::string_view outcome, std::chrono::nanoseconds latency) {
  std::shared_ptr<LatencyHistogram> histogram;
  {
    std::lock_guard lock(mutex_);
    auto it = operations_.find(operation);
    if (it == operations_.end()) it = operations_.emplace(std::string(operation), Operation{}).first;
    auto count = it->second.outcomes.find(outcome);
    if (count == it->second.outcomes.end()) count = it->second.outcomes.emplace(std::string(outcome), 0).first;
    ++count->second;
    histogram = it->second.latency;
  }
  histogram->observe(latency);
}

void Metrics::count_rate_limited() {
  std::lock_guard lock(mutex_);
  ++rate_limited_;
}

std::string Metrics::render() const {
  std::string out;
  Sources sources;
  std::map<std::string, std::map<std::string, std::uint64_t, std::less<>>, std::less<>> counts;
  std::map<std::string, LatencyHistogram::Snapshot, std::less<>> latencies;
  std::uint64_t rate_limited = 0;
  {
    std::lock_guard lock(mutex_);
    sources = sources_;
    for (const auto& [name, op] : operations_) {
      counts[name] = op.outcomes;
      latencies[name] = op.latency->snapshot();
    }
    rate_limited = rate_limited_;
  }

  header(out, "keyhold_requests_total", "counter", "Requests answered by the API, by operation and outcome.");
  for (const auto& [operation, outcomes] : counts) {
    for (const auto& [outcome, value] : outcomes) {
      sample(out, "keyhold_requests_total",
             "operation=\"" + escape_label_value(operation) + "\",outcome=\"" + escape_label_value(outcome) + "\"",
             value);
    }
  }
  header(out, "keyhold_request_duration_seconds", "histogram",
         "Time from a request's arrival at the API to its durable audit record, by operation.");
  for (const auto& [operation, snapshot] : latencies) {
    append_histogram(out, "keyhold_request_duration_seconds", "operation=\"" + escape_label_value(operation) + "\"",
                     snapshot);
  }
  single(out, "keyhold_rate_limited_total", "counter", "Requests refused with 429 by the per-identity rate limit.",
         rate_limited);

  if (sources.server) {
    ServerStats s = sources.server();
    single(out, "keyhold_connections_open", "gauge", "Open connections, both listeners.", s.connections_open);
    single(out, "keyhold_connections_accepted_total", "counter", "Connections accepted.", s.connections_accepted);
    single(out, "keyhold_connections_refused_total", "counter", "Connections closed at once: connection limit.",
           s.connections_refused);
    single(out, "keyhold_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed (no or an invalid client certificate, ...).", s.handshake_failures);
    single(out, "keyhold_connection_timeouts_total", "counter",
           "Connections closed for a handshake, request head or body that took too long.", s.timeouts);
    single(out, "keyhold_http_responses_total", "counter", "Responses of the HTTP layer, including its own errors.",
           s.requests);
    single(out, "keyhold_reloads_total", "counter", "Successful reloads on SIGHUP (profiles, policy, server certificate, client CAs and CRLs).", s.reloads);
  }
  if (sources.audit) {
    audit::LogStats a = sources.audit();
    single(out, "keyhold_audit_records", "gauge", "Sequence number of the last durable audit record.", a.records);
    single(out, "keyhold_audit_queue_depth", "gauge", "Audit records accepted and not yet durable.", a.queued);
    single(out, "keyhold_audit_syncs_total", "counter", "fdatasync calls of the audit log (group commits).", a.syncs);
    single(out, "keyhold_audit_checkpoints_total", "counter", "Signed checkpoints written.", a.checkpoints);
    single(out, "keyhold_audit_checkpoint_failures_total", "counter", "Checkpoints the audit key failed to sign.",
           a.checkpoint_failures);
    single(out, "keyhold_audit_unsigned_records", "gauge", "Records after the last checkpoint.", a.unsigned_records);
    single(out, "keyhold_audit_broken", "gauge", "1 when the audit log cannot be written (operations get 503).",
           a.broken ? 1 : 0);
  }
  if (sources.token) {
    TokenActivity t = sources.token();
    header(out, "keyhold_token_operation_duration_seconds", "histogram",
           "PKCS#11 calls to the token, including the wait for a session.");
    append_histogram(out, "keyhold_token_operation_duration_seconds", "", t.operations);
    single(out, "keyhold_token_operation_failures_total", "counter", "PKCS#11 calls that failed.", t.failures);
    single(out, "keyhold_token_sessions_idle", "gauge", "Idle sessions in the pool.", t.sessions_idle);
    single(out, "keyhold_token_sessions_leased", "gauge", "Sessions in use.", t.sessions_leased);
    single(out, "keyhold_token_sessions_limit", "gauge", "Most sessions the pool opens (0: no limit known).",
           t.sessions_limit);
  }
  if (sources.maintenance) {
    MaintenanceActivity m = sources.maintenance();
    header(out, "keyhold_maintenance_runs_total", "counter",
           "Runs of the service's maintenance: ok, failed (an item failed), skipped (keyhold maintain held the lock).");
    sample(out, "keyhold_maintenance_runs_total", "outcome=\"ok\"", m.runs_ok);
    sample(out, "keyhold_maintenance_runs_total", "outcome=\"failed\"", m.runs_failed);
    sample(out, "keyhold_maintenance_runs_total", "outcome=\"skipped\"", m.runs_skipped);
    single(out, "keyhold_maintenance_changes_total", "counter",
           "CRLs and KRLs published, KEKs rotated and certificates marked expired by the service's maintenance.",
           m.changes);
    single(out, "keyhold_maintenance_last_run_timestamp_seconds", "gauge",
           "Unix time the last maintenance run ended (0: none yet).", static_cast<std::uint64_t>(m.last_run_unix));
    single(out, "keyhold_maintenance_last_success_timestamp_seconds", "gauge",
           "Unix time the last maintenance run in which nothing failed ended (0: none yet).",
           static_cast<std::uint64_t>(m.last_success_unix));
    single(out, "keyhold_maintenance_certificate_notices", "gauge",
           "Certificates of keyhold's CAs expiring soon or expired, as the last maintenance run found.", m.notices);
  }
  return out;
}

}  // namespace keyhold::http
