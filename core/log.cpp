#include "core/log.h"

#include <cstdlib>
#include <mutex>
#include <string_view>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace calq::log {
namespace {

Level level_from_env() {
  const char* env = std::getenv("CALQ_LOG_LEVEL");
  if (env == nullptr) return Level::Info;
  std::string_view v(env);
  if (v == "debug") return Level::Debug;
  if (v == "warn" || v == "warning") return Level::Warn;
  if (v == "error") return Level::Error;
  if (v == "off") return Level::Off;
  return Level::Info;
}

Level& current() {
  static Level level = level_from_env();
  return level;
}

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("calq");
    l->set_pattern("%^[%l]%$ %v");
    l->set_level(spdlog::level::trace);
    return l;
  }();
  return *instance;
}

}  // namespace

void set_level(Level level) { current() = level; }
Level level() { return current(); }

void write(Level level, const std::string& message) {
  switch (level) {
    case Level::Debug: logger().debug(message); break;
    case Level::Info: logger().info(message); break;
    case Level::Warn: logger().warn(message); break;
    case Level::Error: logger().error(message); break;
    case Level::Off: break;
  }
}

}  // namespace calq::log
