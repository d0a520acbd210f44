#pragma once
// A loaded PKCS#11 module. One instance per module file per process: loading
// the same module twice returns the same object, so C_Initialize runs once.
// After fork() the child re-initialises the module on its first call
// (PKCS#11 v2.40 section 6.7.7.1); Tokens notice through generation() and
// abandon the parent's sessions. Thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "keyhold/core/log.hpp"
#include "keyhold/hsm/pkcs11.hpp"

namespace keyhold::hsm {

struct ModuleInfo {
  std::string path;
  std::string name;  // p11-kit registered name, or empty when loaded by path
  std::string library_description;
  std::string manufacturer;
  std::string library_version;
  std::string cryptoki_version;
};

// Sees every call into the function list after it returns: function name and
// result. For tracing and for tests that count calls (e.g. C_Login).
using CallObserver = std::function<void(std::string_view function, CK_RV rv)>;

class Module {
 public:
  // name_or_path: a p11-kit registered module name such as "softhsm2", or a
  // path to a module library. Throws Unavailable when it cannot be loaded.
  static std::shared_ptr<Module> load(std::string_view name_or_path);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  ~Module();

  const ModuleInfo& info() const noexcept { return info_; }

  // The one wrapper for every call into the function list: re-initialises
  // after fork, traces (KEYHOLD_LOG=trace: function name and result, never
  // arguments) and reports to the observer. Returns the CK_RV unchanged.
  template <auto Function, class... Args>
  CK_RV call(const char* name, Args... args) const {
    ensure_initialized_in_this_process();
    CK_RV rv = (functions_->*Function)(args...);
    if (log::enabled(log::Level::Trace) || observer_.load(std::memory_order_acquire) != nullptr) {
      report(name, rv);
    }
    return rv;
  }

  // Changes each time the module was (re)initialised in a new process; a
  // Token whose sessions were opened under another generation drops them.
  std::uint64_t generation() const noexcept;

  // Slots that hold a token.
  std::vector<CK_SLOT_ID> slots_with_token() const;

  // The observer must outlive its registration; pass nullptr to remove it.
  void set_observer(const CallObserver* observer) noexcept { observer_.store(observer, std::memory_order_release); }

  // Finalises now rather than at process exit: SoftHSM can crash in a late
  // C_Finalize when OpenSSL 3 has already cleaned up (SoftHSMv2 #780, #635).
  void finalize() noexcept;

  // The raw function list, for tests that act on the token behind keyhold's
  // back (closing sessions underneath, logging out). Product code uses call().
  CK_FUNCTION_LIST* functions_for_tests() const noexcept { return functions_; }

 private:
  Module(CK_FUNCTION_LIST* functions, ModuleInfo info);
  void initialize();
  void ensure_initialized_in_this_process() const;
  void report(const char* name, CK_RV rv) const;

  CK_FUNCTION_LIST* functions_;
  ModuleInfo info_;
  mutable std::mutex init_mutex_;
  mutable std::atomic<std::uint64_t> initialized_in_fork_generation_{0};
  mutable std::atomic<std::uint64_t> generation_{0};
  bool we_initialized_ = false;
  bool finalized_ = false;
  std::atomic<const CallObserver*> observer_{nullptr};
};

// Calls a PKCS#11 function through Module::call with its name for tracing:
// KH_P11(module, C_Sign, session, data, ...).
#define KH_P11(module, function, ...) (module).template call<&CK_FUNCTION_LIST::function>(#function, __VA_ARGS__)

}  // namespace keyhold::hsm
