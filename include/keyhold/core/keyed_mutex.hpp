#pragma once
// One mutex per key (a CA version, an SSH CA), made on first use and kept for
// the life of the object: "one signer of this CA's next CRL at a time" without
// holding up the other CAs.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

namespace keyhold {

class KeyedMutex {
 public:
  // Blocks until this key's mutex is free; the lock holds it.
  std::unique_lock<std::mutex> lock(std::int64_t key) {
    std::mutex* mutex = nullptr;
    {
      std::lock_guard guard(map_mutex_);
      std::unique_ptr<std::mutex>& slot = mutexes_[key];
      if (!slot) slot = std::make_unique<std::mutex>();
      mutex = slot.get();  // never removed: the pointer stays valid
    }
    return std::unique_lock<std::mutex>(*mutex);
  }

 private:
  std::mutex map_mutex_;
  std::map<std::int64_t, std::unique_ptr<std::mutex>> mutexes_;
};

}  // namespace keyhold
