// Errors raised by the pure core. Each carries the SQLSTATE the PostgreSQL layer
// reports, so the mapping lives in one place and the proxy can rely on it.
#pragma once
#include "core/no_postgres.hpp"

#include <stdexcept>
#include <string>

namespace attendance::core {

namespace sqlstate {
inline constexpr const char* kInvalidAuthorization = "28000";  // rejected signature/token
inline constexpr const char* kInvalidText = "22P02";           // malformed JSON
inline constexpr const char* kInvalidParameter = "22023";      // well-formed, not a webhook
inline constexpr const char* kUntranslatable = "22P05";        // \u0000 cannot be stored
inline constexpr const char* kProgramLimit = "54000";          // body too large / too deep
inline constexpr const char* kInternal = "XX000";
}  // namespace sqlstate

class Error : public std::runtime_error {
  public:
    Error(const char* sqlstate, const std::string& message)
        : std::runtime_error(message), sqlstate_(sqlstate) {}
    const char* sqlstate() const noexcept { return sqlstate_; }

  private:
    const char* sqlstate_;
};

inline Error auth_error(const std::string& why) {
    return Error(sqlstate::kInvalidAuthorization, "webhook rejected: " + why);
}

}  // namespace attendance::core
