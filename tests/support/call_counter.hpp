#pragma once
// Counts calls into a PKCS#11 module by function name, through
// hsm::Module::set_observer, for tests that must prove what reached the token
// (no C_Sign after a refusal, one C_Login, no C_FindObjects per operation).

#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "keyhold/hsm/module.hpp"

namespace keyhold::testing {

class CallCounter {
 public:
  explicit CallCounter(hsm::Module& module) : module_(module) {
    observer_ = [this](std::string_view function, CK_RV) {
      std::lock_guard lock(mutex_);
      ++counts_[std::string(function)];
    };
    module_.set_observer(&observer_);
  }
  ~CallCounter() { module_.set_observer(nullptr); }
  CallCounter(const CallCounter&) = delete;
  CallCounter& operator=(const CallCounter&) = delete;

  int operator[](const std::string& function) {
    std::lock_guard lock(mutex_);
    return counts_[function];
  }

 private:
  hsm::Module& module_;
  hsm::CallObserver observer_;
  std::mutex mutex_;
  std::map<std::string, int> counts_;
};

}  // namespace keyhold::testing
