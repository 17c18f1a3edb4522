// `calq run --nproc N` / `calq sweep --nproc N` (issue 23): the command line again as ranks
// 0..N-1 of one group on this machine, with the variables torchrun sets (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR 127.0.0.1, MASTER_PORT a free port), so a rank
// started here and one started by torchrun run the same code (core/dist/communicator.h).
#pragma once

#include <chrono>
#include <optional>

namespace calq::cli {

/// --dist-timeout: how long a rank waits in a collective (and the launcher for the others once
/// one failed). Set once by main.
void set_rank_timeout(std::chrono::milliseconds timeout);
std::chrono::milliseconds rank_timeout();

/// Remembers main's arguments: the launcher starts /proc/self/exe with them, --nproc removed.
void set_command_line(int argc, char** argv);

/// Starts the N ranks and waits for them. When one fails, the others get `timeout` (plus a
/// grace period) to notice and exit on their own before they are killed. Returns 0 when every
/// rank succeeded, else the first failing rank's exit code (128 + signal when killed).
int launch_local_ranks(int n);

/// `--nproc n`: nullopt when n is 1 (run here); else refuses when a launcher already set
/// WORLD_SIZE, and otherwise launches the ranks and returns launch_local_ranks' exit code.
std::optional<int> launch_if_asked(int n);

}  // namespace calq::cli
