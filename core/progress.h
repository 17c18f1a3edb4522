// One progress line on stderr for long work (perplexity windows, layers, sweep runs). On a TTY
// it redraws in place with rate and ETA; elsewhere (CI logs, pipes) it prints about every 10 %
// so logs stay short. Silent when the log level is above info.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace calq {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void step(int64_t n = 1);
  void finish();  ///< final line with the elapsed time; called by the destructor if needed

 private:
  void draw(bool final_line);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  int64_t last_decile_ = -1;
  bool tty_ = false;
  bool enabled_ = true;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace calq
