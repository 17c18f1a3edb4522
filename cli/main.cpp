// calq's command line: global flags, subcommand dispatch, and the exit-code contract —
// 0 success; 1 a user error (one line "calq: error: ..."); 2 an internal error.
#include <c10/util/Exception.h>

#include <cstdio>
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
#include "cli/thread_count.h"
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
  const std::string line =
      std::string("calq: ") + kind + ": " + calq::cli::terminal_line(message) + "\n";
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
                 "CPU threads for LibTorch and OpenBLAS (0 = all cores; capped at the cores)")
      ->check(calq::cli::at_least(0));

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
  calq::cli::set_run_threads(calq::cli::resolve_thread_count(threads));

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
