// calq's ranks (issue 23; docs/distributed.md): one process group of LibTorch's c10d — Gloo on
// the CPU — joined the way torchrun, SLURM scripts and mpirun wrappers start processes (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Every collective calq needs goes through
// this class, so a single process (no launcher) runs the same code with every call a no-op.
//
// Determinism: sums are formed on every rank from the ranks' partial tensors in rank order
// (all-gather, then add 0, 1, 2, ...), never in the order a ring algorithm picks, so every rank
// holds the same bits and the figure does not depend on the transport.
//
// Faults: each rank posts the collective it is entering to the rendezvous store; when a
// collective fails (a peer closed its connection, or nothing arrived within the timeout) the
// survivor reads the others' posts and throws one calq::Error naming the rank that is missing
// or behind and the step, e.g. "distributed: rank 1 of 3 did not reach 'layer 2 step 0:
// statistics' within 30 s (last seen at 'layer 1 step 3: statistics')".
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/error.h"

namespace calq::dist {

/// Another rank failed, exited or stopped answering: not this run's inputs' fault, so a run
/// keeps its resume state for `calq run --resume` (as after a kill), unlike other errors.
class PeerFailure : public Error {
 public:
  using Error::Error;
};

/// What a launcher put in the environment.
struct LaunchEnv {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE=True): every rank connects.
  bool agent_store = false;

  /// nullopt when WORLD_SIZE is unset (a plain single process); throws calq::Error naming the
  /// variable when one is set but malformed or inconsistent.
  static std::optional<LaunchEnv> from_environment();
};

/// Rows [begin, end) of `items` that a rank owns: contiguous, in rank order, cut at multiples
/// of `unit` (a batch of windows) so each unit is computed whole by one rank whatever the world
/// size; with fewer units than ranks the last ranks own nothing.
struct Share {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
Share share_of(int64_t items, int64_t unit, int rank, int world);

class Communicator {
 public:
  /// The process's communicator: one rank of one until init() joins a group.
  static Communicator& world();

  /// Joins the group the environment describes (Gloo over TCP; rank 0 or torchrun's agent
  /// hosts the store). `timeout` bounds every collective and the rendezvous. Throws calq::Error
  /// when the group cannot be formed within it.
  static void init(const LaunchEnv& env, std::chrono::milliseconds timeout);
  /// Leaves the group (destructs the process group; safe to call when none).
  static void shutdown();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// t = Σ_r t_r, added in rank order on every rank (float64 tensors stay float64; the
  /// caller picks the accumulation dtype). Every rank passes the same shape and dtype.
  void sum_in_rank_order(at::Tensor& t, std::string_view step);
  /// t = max_r t_r elementwise.
  void max(at::Tensor& t, std::string_view step);
  /// t = t on `root`; every rank passes the same shape and dtype.
  void broadcast(at::Tensor& t, int root, std::string_view step);
  /// Every rank's `local` rows (dim 0; counts may differ, the other dims may not) concatenated
  /// in rank order, on every rank.
  at::Tensor gather_rows(const at::Tensor& local, std::string_view step);
  /// The same on `root` only (the others get an undefined tensor): what one rank writes need
  /// not travel to every rank.
  at::Tensor gather_rows_to(int root, const at::Tensor& local, std::string_view step);
  int64_t sum(int64_t value, std::string_view step);
  void barrier(std::string_view step);
  /// Tells the other ranks why this one stops: their next failing collective names it and the
  /// message instead of a timeout. Never throws (called while an error unwinds).
  void post_failure(const std::string& message) noexcept;

  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator();

 private:
  Communicator();
  /// Every rank's row count (allgathered into `counts`) and `local` padded to the largest.
  at::Tensor padded_rows(const at::Tensor& local, std::string_view step,
                         std::vector<int64_t>& counts);
  struct Group;  // the c10d process group and store (communicator.cpp)
  std::unique_ptr<Group> group_;
  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_{0};
};

}  // namespace calq::dist
