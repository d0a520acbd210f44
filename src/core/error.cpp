#include "keyhold/core/error.hpp"

namespace keyhold {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::InvalidArgument: return "invalid_argument";
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::AlreadyExists: return "already_exists";
    case ErrorCode::PermissionDenied: return "permission_denied";
    case ErrorCode::Unauthenticated: return "unauthenticated";
    case ErrorCode::FailedPrecondition: return "failed_precondition";
    case ErrorCode::Unavailable: return "unavailable";
    case ErrorCode::Internal: return "internal";
    case ErrorCode::Unimplemented: return "unimplemented";
    case ErrorCode::ResourceExhausted: return "resource_exhausted";
  }
  return "internal";
}

Error::Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}

Error::Error(ErrorCode code, const std::string& message, unsigned long ck_rv, std::string_view rv_name)
    : std::runtime_error(message + " (" + std::string(rv_name) + ")"),
      code_(code),
      ck_rv_(ck_rv),
      ck_rv_name_(rv_name) {}

}  // namespace keyhold
