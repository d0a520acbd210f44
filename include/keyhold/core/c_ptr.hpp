#pragma once
// RAII for C handles: CPtr<EVP_PKEY, &EVP_PKEY_free>, CPtr<sqlite3_stmt, &sqlite3_finalize>, ...

#include <memory>

namespace keyhold {

template <auto F>
struct Free {
  void operator()(auto* p) const noexcept { F(p); }
};

template <class T, auto F>
using CPtr = std::unique_ptr<T, Free<F>>;

}  // namespace keyhold
