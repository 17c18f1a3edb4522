// core/dist: shares of windows, the launcher's variables, and a real 2-rank Gloo group over
// loopback (the second rank is a forked child) for every collective calq uses.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "core/dist/communicator.h"
#include "core/error.h"

namespace {

using calq::dist::Communicator;
using calq::dist::LaunchEnv;
using calq::dist::share_of;

/// Sets environment variables for one scope and restores the previous values.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::optional<std::string>>& values) {
    for (const auto& [name, value] : values) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      if (value) ::setenv(name.c_str(), value->c_str(), 1);
      else ::unsetenv(name.c_str());
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) ::setenv(name.c_str(), value->c_str(), 1);
      else ::unsetenv(name.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// What both ranks compute; true when every result is what rank order says.
bool collectives_hold(int rank) {
  Communicator& c = Communicator::world();
  // Rank order: rank 0's 1e16 then rank 1's 1.0 and 1.0 on top; every rank the same bits.
  at::Tensor t = at::tensor({rank == 0 ? 1e16 : 1.0, rank == 0 ? 2.0 : 3.0}, at::kDouble);
  c.sum_in_rank_order(t, "test: sum");
  const bool sum_ok = t[0].item<double>() == 1e16 + 1.0 && t[1].item<double>() == 5.0;
  at::Tensor m = at::tensor({rank == 0 ? 1.0f : 4.0f, rank == 0 ? 7.0f : 2.0f});
  c.max(m, "test: max");
  const bool max_ok = m[0].item<float>() == 4.0f && m[1].item<float>() == 7.0f;
  // Unequal rows: rank 0 has 1 row, rank 1 has 3; rank order is kept.
  const at::Tensor local = at::arange(rank == 0 ? 1 : 3, at::kFloat).add(10.0 * rank).unsqueeze(1);
  const at::Tensor all = c.gather_rows(local, "test: gather");
  const bool gather_ok = all.size(0) == 4 && all[0][0].item<float>() == 0.0f &&
                         all[1][0].item<float>() == 10.0f && all[3][0].item<float>() == 12.0f;
  // To rank 1 alone: the same rows there, nothing on rank 0.
  const at::Tensor to_one = c.gather_rows_to(1, local, "test: gather to 1");
  const bool gather_to_ok = rank == 1 ? to_one.equal(all) : !to_one.defined();
  at::Tensor b = at::full({3}, rank == 1 ? 9.0 : 0.0);
  c.broadcast(b, 1, "test: broadcast");
  const bool broadcast_ok = b.sum().item<double>() == 27.0;
  const bool count_ok = c.sum(rank + 1, "test: count") == 3;
  c.barrier("test: barrier");
  return sum_ok && max_ok && gather_ok && gather_to_ok && broadcast_ok && count_ok;
}

}  // namespace

TEST_CASE("share_of cuts whole units, contiguous, in rank order", "[dist]") {
  // 10 windows in batches of 4: 3 batches over 3 ranks.
  CHECK(share_of(10, 4, 0, 3).begin == 0);
  CHECK(share_of(10, 4, 0, 3).end == 4);
  CHECK(share_of(10, 4, 1, 3).begin == 4);
  CHECK(share_of(10, 4, 2, 3).end == 10);
  // More ranks than batches: the later ranks own nothing, and the union is still everything.
  for (int world : {1, 2, 3, 5, 8}) {
    int64_t next = 0;
    for (int r = 0; r < world; ++r) {
      const auto s = share_of(13, 4, r, world);
      CHECK(s.begin == next);
      CHECK((s.size() == 0 || s.begin % 4 == 0));
      CHECK(s.size() >= 0);
      next = s.end;
    }
    CHECK(next == 13);
  }
  CHECK(share_of(2, 8, 0, 2).size() == 2);
  CHECK(share_of(2, 8, 1, 2).size() == 0);
}

TEST_CASE("LaunchEnv reads the launcher's variables and names a bad one", "[dist]") {
  {
    ScopedEnv env({{"WORLD_SIZE", std::nullopt}, {"RANK", std::nullopt}});
    CHECK_FALSE(LaunchEnv::from_environment().has_value());
  }
  {
    ScopedEnv env({{"WORLD_SIZE", "3"}, {"RANK", "2"}, {"LOCAL_RANK", "0"},
                   {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "1234"},
                   {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
    const auto e = LaunchEnv::from_environment();
    REQUIRE(e.has_value());
    CHECK(e->world == 3);
    CHECK(e->rank == 2);
    CHECK(e->local_rank == 0);
    CHECK(e->master_addr == "10.0.0.7");
    CHECK(e->master_port == 1234);
    CHECK(e->agent_store);
  }
  const auto message_of = [](const std::map<std::string, std::optional<std::string>>& vars) {
    ScopedEnv env(vars);
    try {
      (void)LaunchEnv::from_environment();
    } catch (const calq::Error& e) {
      return e.message();
    }
    return std::string();
  };
  CHECK(message_of({{"WORLD_SIZE", "2"}, {"RANK", "2"}}).find("RANK=\"2\"") != std::string::npos);
  CHECK(message_of({{"WORLD_SIZE", "two"}, {"RANK", "0"}}).find("WORLD_SIZE") != std::string::npos);
  CHECK(message_of({{"WORLD_SIZE", "2"}, {"RANK", std::nullopt}}).find("RANK: missing") != std::string::npos);
  CHECK(message_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "70000"}})
            .find("MASTER_PORT") != std::string::npos);
}

TEST_CASE("one rank: every collective leaves its input as it is", "[dist]") {
  Communicator& c = Communicator::world();
  REQUIRE_FALSE(c.distributed());
  at::Tensor t = at::tensor({1.5, 2.5}, at::kDouble);
  c.sum_in_rank_order(t, "x");
  CHECK(t[1].item<double>() == 2.5);
  CHECK(c.gather_rows(at::ones({2, 3}), "x").size(0) == 2);
  CHECK(c.sum(7, "x") == 7);
}

TEST_CASE("two ranks over loopback Gloo: sum in rank order, max, gather, broadcast", "[dist]") {
  const int port = free_port();
  LaunchEnv env;
  env.world = 2;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  const auto timeout = std::chrono::milliseconds(20000);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // rank 1: reports through its exit status only
    int code = 3;
    try {
      env.rank = 1;
      Communicator::init(env, timeout);
      code = collectives_hold(1) ? 0 : 1;
      Communicator::shutdown();
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  env.rank = 0;
  Communicator::init(env, timeout);
  const bool ok = collectives_hold(0);
  Communicator::shutdown();
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(ok);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_FALSE(Communicator::world().distributed());
}
