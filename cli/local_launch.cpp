#include "cli/local_launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "core/log.h"

namespace calq::cli {
namespace {

std::chrono::milliseconds& timeout_setting() {
  static std::chrono::milliseconds timeout{1800 * 1000};
  return timeout;
}

std::vector<std::string>& command_line() {
  static std::vector<std::string> args;
  return args;
}

/// A TCP port nothing listens on now (the kernel's pick); rank 0's store binds it next.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  CALQ_CHECK(fd >= 0, "--nproc: cannot open a socket ({})", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  CALQ_CHECK(ok, "--nproc: no free TCP port on 127.0.0.1 ({})", std::strerror(errno));
  return ntohs(addr.sin_port);
}

/// argv without "--nproc N" / "--nproc=N".
std::vector<std::string> without_nproc(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

void set_rank_timeout(std::chrono::milliseconds timeout) { timeout_setting() = timeout; }
std::chrono::milliseconds rank_timeout() { return timeout_setting(); }

void set_command_line(int argc, char** argv) {
  command_line().assign(argv, argv + argc);
}

int launch_local_ranks(int n) {
  const std::chrono::milliseconds timeout = rank_timeout();
  CALQ_ASSERT(!command_line().empty(), "set_command_line was not called");
  const std::vector<std::string> args = without_nproc(command_line());
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < n; ++rank) {
    const pid_t pid = ::fork();
    CALQ_CHECK(pid >= 0, "--nproc {}: cannot start rank {} ({})", n, rank, std::strerror(errno));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(n).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(n).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "calq: error: --nproc: cannot start rank %d (%s)\n", rank,
                   std::strerror(errno));
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  log::debug("--nproc {}: ranks started, store on 127.0.0.1:{}", n, port);
  int first_failure = 0;
  size_t running = pids.size();
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        // The survivors did not notice within the timeout: stop them.
        for (size_t r = 0; r < pids.size(); ++r) {
          if (pids[r] > 0) {
            std::fprintf(stderr, "calq: error: --nproc: rank %zu did not exit within %.0f s of "
                         "the failure; killed\n", r, timeout.count() / 1000.0 + 30);
            ::kill(pids[r], SIGKILL);
          }
        }
        deadline = std::chrono::steady_clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (done < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (size_t r = 0; r < pids.size(); ++r) {
      if (pids[r] != done) continue;
      pids[r] = 0;
      --running;
      const int code = exit_code(status);
      if (code != 0 && first_failure == 0) {
        first_failure = code;
        if (WIFSIGNALED(status))
          std::fprintf(stderr, "calq: error: --nproc: rank %zu of %d was killed by signal %d\n", r,
                       n, WTERMSIG(status));
        deadline = std::chrono::steady_clock::now() + timeout + std::chrono::seconds(30);
      }
    }
  }
  return first_failure;
}

std::optional<int> launch_if_asked(int n) {
  if (n <= 1) return std::nullopt;
  CALQ_CHECK(std::getenv("WORLD_SIZE") == nullptr,
             "--nproc {}: WORLD_SIZE is already set (started by a launcher); expected either "
             "--nproc or a launcher", n);
  return launch_local_ranks(n);
}

}  // namespace calq::cli
