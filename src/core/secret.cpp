#include "keyhold/core/secret.hpp"

#include <cstring>

namespace keyhold {

void secure_wipe(void* data, std::size_t size) noexcept {
  if (data != nullptr && size > 0) explicit_bzero(data, size);
}

}  // namespace keyhold
