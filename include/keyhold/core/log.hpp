#pragma once
// Diagnostic log on stderr. The level comes from KEYHOLD_LOG (error, warn,
// info, debug, trace; default warn). Callers never pass secrets: the log has
// no way to tell a PIN from any other string.

#include <string_view>

namespace keyhold::log {

enum class Level { Error = 0, Warn = 1, Info = 2, Debug = 3, Trace = 4 };

bool enabled(Level level) noexcept;
void write(Level level, std::string_view message) noexcept;

inline void error(std::string_view m) noexcept { write(Level::Error, m); }
inline void warn(std::string_view m) noexcept { write(Level::Warn, m); }
inline void info(std::string_view m) noexcept { write(Level::Info, m); }
inline void debug(std::string_view m) noexcept { write(Level::Debug, m); }

// A warning about a standing condition (a development-only profile, a
// validity cut to the CA's end), written the first time this process meets
// that exact text: a long-running service issuing under it all day says it
// once, not once per request. The caller still gets the warning with its
// result every time.
void warn_once(std::string_view message) noexcept;

}  // namespace keyhold::log
