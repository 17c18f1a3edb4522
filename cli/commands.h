// Each `calq <command>` registers its options on the CLI11 app and returns the function that
// runs it. main.cpp owns the app, the global flags and the error-to-exit-code policy.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace calq::cli {

using CommandRunner = std::function<int()>;

CommandRunner add_run_command(CLI::App& app);
CommandRunner add_eval_command(CLI::App& app);
CommandRunner add_generate_command(CLI::App& app);
CommandRunner add_inspect_command(CLI::App& app);
CommandRunner add_bench_command(CLI::App& app);
CommandRunner add_outliers_command(CLI::App& app);
CommandRunner add_sweep_command(CLI::App& app);
CommandRunner add_synth_command(CLI::App& app);
CommandRunner add_verify_command(CLI::App& app);

}  // namespace calq::cli
