// Logging behind one small header: spdlog lives only in log.cpp. Everything goes to stderr so
// stdout carries only results. Level from set_level (CLI -v/-q) or CALQ_LOG_LEVEL
// (debug|info|warn|error|off).
#pragma once

#include <string>

#include <fmt/format.h>

namespace calq::log {

enum class Level { Debug, Info, Warn, Error, Off };

void set_level(Level level);
Level level();
void write(Level level, const std::string& message);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::Debug) write(Level::Debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::Info) write(Level::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::Warn) write(Level::Warn, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace calq::log
