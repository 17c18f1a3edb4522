// calq's command line: global flags, subcommand dispatch, and the exit-code contract —
// 0 success; 1 a user error (one line "calq: error: ..."); 2 an internal error.
#include <c10/util/Exception.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <exception>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/bounds.h"
#include "cli/commands.h"
#include "cli/error_line.h"
#include "cli/local_launch.h"
#include "cli/thread_count.h"
#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_wait_policy.h"
#include "core/version.h"

namespace {

std::string first_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

/// "calq: <kind>: <message>" on stderr, the message escaped and capped (error_line.h).
void print_error(const char* kind, std::string_view message) {
  // One of several ranks: says which, and tells the others why it stops.
  calq::dist::Communicator& ranks = calq::dist::Communicator::world();
  std::string text(message);
  if (ranks.distributed()) {
    ranks.post_failure(std::string(kind) + ": " + text);
    text = fmt::format("rank {} of {}: {}", ranks.rank(), ranks.size(), text);
  }
  const std::string line =
      std::string("calq: ") + kind + ": " + calq::cli::terminal_line(text) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

int run(int argc, char** argv) {
  CLI::App app{"calq: calibration-driven post-training quantization of LLMs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("calq ") + calq::core::calq_version());
  int verbosity = 0;
  bool quiet = false;
  int threads = 0;
  app.add_flag("-v,--verbose", verbosity, "More log output (debug)");
  app.add_flag("-q,--quiet", quiet, "Only warnings and errors on stderr");
  app.add_option("--threads", threads,
                 "CPU threads for LibTorch and OpenBLAS (0 = all cores, shared among the ranks "
                 "on this machine; capped at the cores)")
      ->check(calq::cli::at_least(0));
  double dist_timeout_s = 1800;
  if (const char* t = std::getenv("CALQ_DIST_TIMEOUT"); t != nullptr && *t != '\0') {
    char* end = nullptr;
    dist_timeout_s = std::strtod(t, &end);
    CALQ_CHECK(*end == '\0' && dist_timeout_s > 0 && dist_timeout_s < 1e7,
               "environment CALQ_DIST_TIMEOUT=\"{}\": expected seconds, a positive number", t);
  }
  app.add_option("--dist-timeout", dist_timeout_s,
                 "Seconds a rank waits for the others in a collective before it exits naming "
                 "the rank that did not answer (env CALQ_DIST_TIMEOUT)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  std::map<const CLI::App*, calq::cli::CommandRunner> runners;
  auto add = [&](auto adder) {
    const size_t before = app.get_subcommands({}).size();
    calq::cli::CommandRunner runner = adder(app);
    runners[app.get_subcommands({}).at(before)] = std::move(runner);
  };
  add(calq::cli::add_run_command);
  add(calq::cli::add_eval_command);
  add(calq::cli::add_generate_command);
  add(calq::cli::add_inspect_command);
  add(calq::cli::add_bench_command);
  add(calq::cli::add_outliers_command);
  add(calq::cli::add_sweep_command);
  add(calq::cli::add_synth_command);
  add(calq::cli::add_verify_command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version (exit code 0) print as CLI11 does; every usage error is a user
    // error like any other: one line, exit 1 (not CLI11's 105, 109...).
    if (e.get_exit_code() == 0)
      return app.exit(e);
    print_error("error", first_line(e.what()) + " (see calq --help)");
    return 1;
  }
  if (verbosity > 0) calq::log::set_level(calq::log::Level::Debug);
  if (quiet) calq::log::set_level(calq::log::Level::Warn);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(dist_timeout_s * 1000));
  calq::cli::set_rank_timeout(timeout);
  // Started by a launcher (torchrun, srun, mpirun, calq ... --nproc): join the group first.
  const std::optional<calq::dist::LaunchEnv> launch = calq::dist::LaunchEnv::from_environment();
  int local_ranks = 1;
  if (launch && launch->world > 1) {
    calq::dist::Communicator::init(*launch, timeout);
    if (const char* l = std::getenv("LOCAL_WORLD_SIZE"); l != nullptr) local_ranks = std::atoi(l);
    // One rank speaks: the others log warnings and errors only (-v keeps every rank's log).
    if (launch->rank != 0 && verbosity == 0) calq::log::set_level(calq::log::Level::Warn);
  }
  calq::cli::set_run_threads(calq::cli::resolve_thread_count(threads, local_ranks));

  for (const auto& [command, runner] : runners) {
    if (command->parsed()) return runner();
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  calq::core::ensure_passive_thread_waiting(argv);
  calq::cli::set_command_line(argc, argv);
  // Leaves the group (c10d's threads) after the error line, before static destruction.
  struct LeaveGroup {
    ~LeaveGroup() { calq::dist::Communicator::shutdown(); }
  } leave_group;
  try {
    return run(argc, argv);
  } catch (const calq::Error& e) {
    print_error("error", e.message());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // The file system refused a path the user gave (a symlink loop, a denied or vanished
    // directory): the user's to fix, said with the path, not a crash report.
    print_error("error", fmt::format("{}: {}; expected a readable, existing path",
                                     e.path1().string(), e.code().message()));
    return 1;
  } catch (const c10::OutOfMemoryError& e) {
    // An allocation LibTorch could not make: the machine's limit, not a bug (lower the batch,
    // the calibration size, or use --stream).
    print_error("error", first_line(e.what_without_backtrace()) +
                             "; expected less memory in use (smaller batch or calibration, "
                             "or calq run --stream)");
    return 1;
  } catch (const c10::Error& e) {
    // Every user input is checked by calq before LibTorch sees it (calq::Error above), so a
    // LibTorch check that fails is calq's bug: reported as one, exit 2.
    print_error("internal error", first_line(e.what_without_backtrace()));
    return 2;
  } catch (const std::exception& e) {
    print_error("internal error", first_line(e.what()));
    return 2;
  }
}
