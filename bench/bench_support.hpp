#pragma once
// What the benchmarks share: a reporter that keeps every round's figures for
// the printed summary, number formatting, and a PKCS#11 result check.

#include <benchmark/benchmark.h>
#include <p11-kit/pkcs11.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cstdint>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace keyhold::bench {

// RFC 8017 section 9.2, note 1: DigestInfo prefix for SHA-256.
inline constexpr std::uint8_t kDigestInfoSha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                                     0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};

inline void check_rv(CK_RV rv, const char* what) {
  if (rv == CKR_OK) return;
  char hex[24];
  std::snprintf(hex, sizeof hex, "0x%lx", rv);
  throw std::runtime_error(std::string(what) + " failed: CK_RV " + hex);
}

// The console table as usual; keeps every run's figures by family and threads.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  using ConsoleReporter::ConsoleReporter;

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;
      if (run.error_occurred) {  // the table shows it too
        errors_.push_back(run.benchmark_name() + ": " + run.error_message);
        continue;
      }
      for (const auto& [name, counter] : run.counters) {
        figures_[key(run.run_name.function_name, run.threads, name)].push_back(counter.value);
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // Every round's value of a counter ("items_per_second", "raw/s", ...).
  std::vector<double> values(const std::string& family, int threads, const std::string& counter) const {
    auto it = figures_.find(key(family, threads, counter));
    return it == figures_.end() ? std::vector<double>{} : it->second;
  }
  // The best round, or 0 when the case did not run (filtered out or failed).
  double best(const std::string& family, int threads, const std::string& counter) const {
    std::vector<double> v = values(family, threads, counter);
    return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  static std::string key(const std::string& family, std::int64_t threads, const std::string& counter) {
    return family + "#" + std::to_string(threads) + "#" + counter;
  }
  std::map<std::string, std::vector<double>> figures_;
  std::vector<std::string> errors_;
};

inline std::string with_commas(double value) {
  std::string digits = std::to_string(static_cast<long long>(value + 0.5));
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// The loops of a comparison with raw PKCS#11, shared by the CA benchmarks.
// raw() does one raw operation and says whether it worked; ours() does one
// keyhold operation and throws when it fails.
using RawOperation = std::function<bool()>;
using OurOperation = std::function<void()>;

inline void run_raw(benchmark::State& state, const RawOperation& raw, const char* failure) {
  for (auto _ : state) {
    if (!raw()) {
      state.SkipWithError(failure);
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

inline void run_ours(benchmark::State& state, const OurOperation& ours) {
  for (auto _ : state) {
    try {
      ours();
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// Alternates one of ours and one raw operation (swapping which goes first)
// and times each; reports the rate of each side ("keyhold/s", "raw/s") as if
// it had the thread alone. Counters are summed over threads.
inline void run_paired(benchmark::State& state, const RawOperation& raw, const char* failure, const OurOperation& ours) {
  using Clock = std::chrono::steady_clock;
  Clock::duration raw_time{};
  Clock::duration our_time{};
  bool raw_first = true;
  for (auto _ : state) {
    std::string error;
    for (int i = 0; i < 2 && error.empty(); ++i) {
      bool is_raw = (i == 0) == raw_first;
      Clock::time_point start = Clock::now();
      if (is_raw) {
        if (!raw()) error = failure;
      } else {
        try {
          ours();
        } catch (const std::exception& e) {
          error = e.what();
        }
      }
      (is_raw ? raw_time : our_time) += Clock::now() - start;
    }
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    raw_first = !raw_first;
  }
  auto n = static_cast<double>(state.iterations());
  if (n > 0) {
    state.counters["raw/s"] = n / std::chrono::duration<double>(raw_time).count();
    state.counters["keyhold/s"] = n / std::chrono::duration<double>(our_time).count();
  }
}

using Body = std::function<void(benchmark::State&)>;

inline void add_case(const std::string& name, const Body& body, int threads, double min_time) {
  benchmark::RegisterBenchmark(name.c_str(), body)->MinTime(min_time)->UseRealTime()->Threads(threads);
}

inline std::string thread_text(int threads) { return threads == 1 ? "1 thread" : std::to_string(threads) + " threads"; }

}  // namespace keyhold::bench
