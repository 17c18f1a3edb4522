#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "core/log.h"

namespace calq {
namespace {

std::string format_duration(double seconds) {
  if (seconds < 0) seconds = 0;
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      tty_(isatty(STDERR_FILENO) != 0),
      enabled_(enabled && log::level() <= log::Level::Info && total > 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::step(int64_t n) {
  done_ += n;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    // Redrawing more than ~10 times a second costs more than it tells.
    if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
    last_draw_ = now;
    draw(false);
    return;
  }
  const int64_t decile = done_ * 10 / total_;
  if (decile != last_decile_ && done_ < total_) {
    last_decile_ = decile;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void Progress::draw(bool final_line) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string line;
  if (final_line) {
    line = fmt::format("{}: {}/{} done in {}", label_, done_, total_, format_duration(elapsed));
  } else {
    const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0.0;
    line = fmt::format("{}: {}/{} ({:.0f}%) {:.1f}/s ETA {}", label_, done_, total_,
                       100.0 * static_cast<double>(done_) / static_cast<double>(total_), rate,
                       format_duration(eta));
  }
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace calq
