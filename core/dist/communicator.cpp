// The only translation unit that sees c10d (its Gloo header pulls in Gloo's): the rest of calq
// sees core/dist/communicator.h. How torch.distributed forms a Gloo group from the same
// variables: torch/distributed/rendezvous.py (_env_rendezvous_handler) and
// distributed_c10d.py (_new_process_group_helper); torchrun's agent store:
// torch/distributed/elastic/agent/server/api.py (TORCHELASTIC_USE_AGENT_STORE).
#include "core/dist/communicator.h"

// c10d's Gloo header declares ProcessGroupGloo only under this macro (set by torch's own build);
// LibTorch's wheel holds the Gloo implementation, Debian's libgloo-dev the headers it includes.
#define USE_C10D_GLOO 1

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <atomic>
#include <thread>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include "core/error.h"

namespace calq::dist {
namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, int fallback, int low, int high) {
  const std::optional<std::string> text = env(name);
  if (!text) return fallback;
  size_t used = 0;
  long value = 0;
  try {
    value = std::stol(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  CALQ_CHECK(used == text->size() && value >= low && value <= high,
             "environment {}=\"{}\": expected an integer in [{}, {}]", name, *text, low, high);
  return static_cast<int>(value);
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string text_of(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

}  // namespace

std::optional<LaunchEnv> LaunchEnv::from_environment() {
  if (!env("WORLD_SIZE")) return std::nullopt;
  LaunchEnv e;
  e.world = env_int("WORLD_SIZE", 1, 1, 1 << 16);
  CALQ_CHECK(env("RANK").has_value() || e.world == 1,
             "environment RANK: missing while WORLD_SIZE={}; expected the launcher (torchrun, "
             "srun, mpirun, calq run --nproc) to set both", e.world);
  e.rank = env_int("RANK", 0, 0, e.world - 1);
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, 1 << 16);
  if (auto a = env("MASTER_ADDR")) e.master_addr = *a;
  e.master_port = env_int("MASTER_PORT", e.master_port, 1, 65535);
  e.agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
  return e;
}

Share share_of(int64_t items, int64_t unit, int rank, int world) {
  CALQ_ASSERT(world >= 1 && rank >= 0 && rank < world && unit >= 1, "share_of({}, {}, {}, {})",
              items, unit, rank, world);
  const int64_t units = (items + unit - 1) / unit;
  // Boundaries ceil(units · r / world): the earlier ranks take the extra units.
  const int64_t first = (units * rank + world - 1) / world;
  const int64_t last = (units * (rank + 1) + world - 1) / world;
  return {std::min(items, first * unit), std::min(items, last * unit)};
}

struct Communicator::Group {
  c10::intrusive_ptr<c10d::Store> store;  // the plain TCP store: progress posts
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  uint64_t seq = 0;
  // A heartbeat on its own store connection: a rank that is stopped or dead stops beating,
  // which tells a survivor whom to name when a collective times out with every rank inside it.
  c10::intrusive_ptr<c10d::Store> beat_store;
  std::thread beat;
  std::atomic<bool> stop{false};

  ~Group() {
    stop = true;
    if (beat.joinable()) beat.join();
  }
};

Communicator::Communicator() = default;
Communicator::~Communicator() = default;

Communicator& Communicator::world() {
  static Communicator instance;
  return instance;
}

namespace {

std::string progress_key(int rank) { return fmt::format("calq/progress/{}", rank); }
std::string failure_key(int rank) { return fmt::format("calq/failed/{}", rank); }
std::string beat_key(int rank) { return fmt::format("calq/alive/{}", rank); }
constexpr auto kBeat = std::chrono::milliseconds(250);

}  // namespace

void Communicator::init(const LaunchEnv& e, std::chrono::milliseconds timeout) {
  Communicator& c = world();
  CALQ_ASSERT(c.group_ == nullptr, "the distributed group is already formed");
  c.rank_ = e.rank;
  c.size_ = e.world;
  c.timeout_ = timeout;
  if (e.world == 1) return;
  auto group = std::make_unique<Group>();
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(e.master_port);
    o.isServer = e.rank == 0 && !e.agent_store;
    o.numWorkers = e.world;
    o.waitWorkers = false;
    o.timeout = timeout;
    group->store = c10::make_intrusive<c10d::TCPStore>(e.master_addr, o);
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = timeout;
    options->threads = 1;  // calq's collectives are few and large; compute keeps the cores
    if (const auto iface = env("GLOO_SOCKET_IFNAME")) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(*iface));
    } else if (e.master_addr == "127.0.0.1" || e.master_addr == "localhost") {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("calq/gloo", group->store);
    group->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, e.rank, e.world, options);
    c10d::TCPStoreOptions client = o;
    client.isServer = false;
    group->beat_store = c10::make_intrusive<c10d::TCPStore>(e.master_addr, client);
    group->beat = std::thread([g = group.get(), rank = e.rank] {
      for (uint64_t n = 1; !g->stop; ++n) {
        try {
          g->beat_store->set(beat_key(rank), bytes_of(std::to_string(n)));
        } catch (const std::exception&) {
          return;  // the store's host is gone; collectives will say so
        }
        std::this_thread::sleep_for(kBeat);
      }
    });
  } catch (const std::exception& ex) {
    fail("distributed: rank {} of {} could not join the group at {}:{} within {} s: {}", e.rank,
         e.world, e.master_addr, e.master_port, timeout.count() / 1000.0, ex.what());
  }
  c.group_ = std::move(group);
}

void Communicator::shutdown() {
  Communicator& c = world();
  c.group_.reset();
  c.rank_ = 0;
  c.size_ = 1;
}

namespace {

/// Posts `step` as this rank's latest collective, runs it, and turns a transport failure into
/// one line naming the rank that is missing or behind.
template <typename F>
void guarded(c10d::Store& store, uint64_t& seq, int rank, int world,
             std::chrono::milliseconds timeout, std::string_view step, F&& collective) {
  ++seq;
  const std::string here(step);
  try {
    store.set(progress_key(rank), bytes_of(fmt::format("{} {}", seq, here)));
  } catch (const std::exception&) {
    throw PeerFailure(fmt::format("distributed: rank {} of {}: the rendezvous store (hosted by "
                                  "rank 0 or the launcher) is gone before '{}'; rank 0 or the "
                                  "launcher exited", rank, world, here));
  }
  try {
    collective();
  } catch (const std::exception& ex) {
    // Who is behind: every other rank's latest post (a rank that never posted is still
    // joining). A store that no longer answers means its host died.
    std::string culprit;
    const std::string what = ex.what();
    const bool closed = what.find("Connection closed") != std::string::npos ||
                        what.find("Connection reset") != std::string::npos;
    try {
      for (int r = 0; r < world && culprit.empty(); ++r) {
        if (r != rank && store.check({failure_key(r)}))
          culprit = fmt::format("rank {} of {} failed: {}", r, world, text_of(store.get(failure_key(r))));
      }
      store.setTimeout(std::chrono::seconds(5));  // a stopped store host must not hang this
      // Whose heartbeat stopped: read every peer's, wait several beats, read again.
      std::vector<std::string> before(static_cast<size_t>(world));
      for (int r = 0; r < world; ++r)
        if (r != rank && store.check({beat_key(r)})) before[static_cast<size_t>(r)] = text_of(store.get(beat_key(r)));
      std::this_thread::sleep_for(8 * kBeat);
      for (int r = 0; r < world && culprit.empty(); ++r) {
        if (r == rank || !store.check({beat_key(r)})) continue;
        if (text_of(store.get(beat_key(r))) == before[static_cast<size_t>(r)]) {
          culprit = fmt::format("rank {} of {} {} during '{}'", r, world,
                                closed ? "exited" : "stopped answering (no heartbeat)", here);
        }
      }
      for (int r = 0; r < world && culprit.empty(); ++r) {
        if (r == rank) continue;
        const std::string key = progress_key(r);
        if (!store.check({key})) {
          culprit = fmt::format("rank {} of {} did not reach '{}' within {} s (it never entered "
                                "a collective)", r, world, here, timeout.count() / 1000.0);
          continue;
        }
        const std::string post = text_of(store.get(key));
        const uint64_t their = std::strtoull(post.c_str(), nullptr, 10);
        const std::string their_step = post.substr(std::min(post.size(), post.find(' ') + 1));
        if (their < seq) {
          culprit = closed ? fmt::format("rank {} of {} exited before '{}' (last seen at '{}')", r,
                                         world, here, their_step)
                           : fmt::format("rank {} of {} did not reach '{}' within {} s (last seen "
                                         "at '{}')", r, world, here, timeout.count() / 1000.0,
                                         their_step);
        }
      }
    } catch (const std::exception&) {
      culprit = fmt::format("rank 0 of {} (which hosts the rendezvous store) stopped answering "
                            "during '{}'", world, here);
    }
    if (culprit.empty()) {
      culprit = fmt::format("a peer of rank {} of {} stopped answering during '{}'", rank, world,
                            here);
    }
    // The transport's own words, without its advice paragraph.
    std::string cause = ex.what();
    cause = cause.substr(0, std::min(cause.find(". This is"), cause.find('\n')));
    throw PeerFailure(fmt::format("distributed: {} ({}); rank {} exits", culprit, cause, rank));
  }
}

}  // namespace

void Communicator::sum_in_rank_order(at::Tensor& t, std::string_view step) {
  if (!distributed()) return;
  at::Tensor local = t.contiguous();
  std::vector<std::vector<at::Tensor>> parts(1);
  for (int r = 0; r < size_; ++r) parts[0].push_back(at::empty_like(local));
  std::vector<at::Tensor> in{local};
  guarded(*group_->store, group_->seq, rank_, size_, timeout_, step,
          [&] { group_->pg->allgather(parts, in)->wait(); });
  at::Tensor total = parts[0][0].clone();
  for (int r = 1; r < size_; ++r) total.add_(parts[0][static_cast<size_t>(r)]);
  t.copy_(total);
}

void Communicator::max(at::Tensor& t, std::string_view step) {
  if (!distributed()) return;
  std::vector<at::Tensor> io{t.contiguous()};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  guarded(*group_->store, group_->seq, rank_, size_, timeout_, step,
          [&] { group_->pg->allreduce(io, o)->wait(); });
  if (!io[0].is_same(t)) t.copy_(io[0]);
}

void Communicator::broadcast(at::Tensor& t, int root, std::string_view step) {
  if (!distributed()) return;
  std::vector<at::Tensor> io{t.contiguous()};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  guarded(*group_->store, group_->seq, rank_, size_, timeout_, step,
          [&] { group_->pg->broadcast(io, o)->wait(); });
  if (!io[0].is_same(t)) t.copy_(io[0]);
}

at::Tensor Communicator::padded_rows(const at::Tensor& local, std::string_view step,
                                     std::vector<int64_t>& counts) {
  at::Tensor rows = at::full({1}, local.size(0), at::kLong);
  std::vector<std::vector<at::Tensor>> all(1);
  for (int r = 0; r < size_; ++r) all[0].push_back(at::empty_like(rows));
  std::vector<at::Tensor> in{rows};
  guarded(*group_->store, group_->seq, rank_, size_, timeout_, step,
          [&] { group_->pg->allgather(all, in)->wait(); });
  counts.clear();
  int64_t most = 0;
  for (const at::Tensor& c : all[0]) {
    counts.push_back(c.item<int64_t>());
    most = std::max(most, counts.back());
  }
  std::vector<int64_t> shape = local.sizes().vec();
  shape[0] = most;
  at::Tensor padded = at::zeros(shape, local.options());
  if (local.size(0) > 0) padded.narrow(0, 0, local.size(0)).copy_(local);
  return padded;
}

namespace {

/// Each rank's rows out of its padded part, in rank order.
at::Tensor unpad(const std::vector<at::Tensor>& parts, const std::vector<int64_t>& counts) {
  std::vector<at::Tensor> pieces;
  for (size_t r = 0; r < parts.size(); ++r) pieces.push_back(parts[r].narrow(0, 0, counts[r]));
  return at::cat(pieces, 0);
}

}  // namespace

at::Tensor Communicator::gather_rows(const at::Tensor& local, std::string_view step) {
  if (!distributed()) return local;
  std::vector<int64_t> counts;
  at::Tensor padded = padded_rows(local, step, counts);
  std::vector<std::vector<at::Tensor>> parts(1);
  for (int r = 0; r < size_; ++r) parts[0].push_back(at::empty_like(padded));
  std::vector<at::Tensor> send{padded};
  guarded(*group_->store, group_->seq, rank_, size_, timeout_, step,
          [&] { group_->pg->allgather(parts, send)->wait(); });
  return unpad(parts[0], counts);
}

at::Tensor Communicator::gather_rows_to(int root, const at::Tensor& local, std::string_view step) {
  if (!distributed()) return local;
  std::vector<int64_t> counts;
  at::Tensor padded = padded_rows(local, step, counts);
  std::vector<std::vector<at::Tensor>> parts;
  if (rank_ == root) {
    parts.emplace_back();
    for (int r = 0; r < size_; ++r) parts[0].push_back(at::empty_like(padded));
  }
  std::vector<at::Tensor> send{padded};
  c10d::GatherOptions o;
  o.rootRank = root;
  guarded(*group_->store, group_->seq, rank_, size_, timeout_, step,
          [&] { group_->pg->gather(parts, send, o)->wait(); });
  return rank_ == root ? unpad(parts[0], counts) : at::Tensor();
}

int64_t Communicator::sum(int64_t value, std::string_view step) {
  if (!distributed()) return value;
  at::Tensor t = at::full({1}, value, at::kLong);
  sum_in_rank_order(t, step);
  return t.item<int64_t>();
}

void Communicator::post_failure(const std::string& message) noexcept {
  if (!distributed()) return;
  try {
    group_->store->set(failure_key(rank_), bytes_of(message));
  } catch (...) {  // the store's host is gone: the others learn of it on their own
  }
}

void Communicator::barrier(std::string_view step) {
  if (!distributed()) return;
  guarded(*group_->store, group_->seq, rank_, size_, timeout_, step,
          [&] { group_->pg->barrier()->wait(); });
}

}  // namespace calq::dist
