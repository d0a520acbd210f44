#pragma once
// keyhold's one error type. Thrown anywhere, caught once at the edge (CLI,
// HTTP); the edge turns the code into an exit status or an HTTP status.
// Messages are for users and never contain a PIN, key material or plaintext.

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace keyhold {

enum class ErrorCode {
  InvalidArgument,     // bad input or configuration
  NotFound,
  AlreadyExists,
  PermissionDenied,    // a policy or safety rule refused the operation
  Unauthenticated,     // login failed (wrong or locked PIN)
  FailedPrecondition,  // the system is not in a state that allows the operation
  Unavailable,         // token, module or store unreachable
  Internal,
  Unimplemented,
  ResourceExhausted,   // a limit was reached (a caller's rate limit): try again later
};

std::string_view to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  // An error whose cause is a PKCS#11 return value; rv_name is e.g. "CKR_PIN_INCORRECT".
  Error(ErrorCode code, const std::string& message, unsigned long ck_rv, std::string_view rv_name);

  ErrorCode code() const noexcept { return code_; }
  // The CK_RV behind the error, when PKCS#11 caused it.
  std::optional<unsigned long> ck_rv() const noexcept { return ck_rv_; }
  // "CKR_..." or empty.
  const std::string& ck_rv_name() const noexcept { return ck_rv_name_; }

 private:
  ErrorCode code_;
  std::optional<unsigned long> ck_rv_;
  std::string ck_rv_name_;
};

}  // namespace keyhold
