// calq's command line: global flags, subcommand dispatch, and the exit-code contract —
// 0 success; 1 a user error (one line "calq: error: ..."); 2 an internal error.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <map>
#include <algorithm>
#include <thread>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_wait_policy.h"

namespace {

std::string first_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

int run(int argc, char** argv) {
  CLI::App app{"calq: calibration-driven post-training quantization of LLMs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "calq 0.1.0");
  int verbosity = 0;
  bool quiet = false;
  int threads = 0;
  app.add_flag("-v,--verbose", verbosity, "More log output (debug)");
  app.add_flag("-q,--quiet", quiet, "Only warnings and errors on stderr");
  app.add_option("--threads", threads, "CPU threads for LibTorch (0 = all cores)")
      ->check(CLI::NonNegativeNumber);

  std::map<const CLI::App*, calq::cli::CommandRunner> runners;
  auto add = [&](auto adder) {
    const size_t before = app.get_subcommands({}).size();
    calq::cli::CommandRunner runner = adder(app);
    runners[app.get_subcommands({}).at(before)] = std::move(runner);
  };
  add(calq::cli::add_run_command);
  add(calq::cli::add_eval_command);
  add(calq::cli::add_inspect_command);
  add(calq::cli::add_bench_command);
  add(calq::cli::add_outliers_command);
  add(calq::cli::add_sweep_command);
  add(calq::cli::add_synth_command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (verbosity > 0) calq::log::set_level(calq::log::Level::Debug);
  if (quiet) calq::log::set_level(calq::log::Level::Warn);
  // Debian's LibTorch starts with one intra-op thread; a quantization run should use the machine.
  at::set_num_threads(threads > 0 ? threads
                                  : std::max(1, static_cast<int>(std::thread::hardware_concurrency())));

  for (const auto& [command, runner] : runners) {
    if (command->parsed()) return runner();
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  calq::core::ensure_passive_thread_waiting(argv);
  try {
    return run(argc, argv);
  } catch (const calq::Error& e) {
    std::fprintf(stderr, "calq: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "calq: error: %s\n", first_line(e.what_without_backtrace()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "calq: internal error: %s\n", first_line(e.what()).c_str());
    return 2;
  }
}
