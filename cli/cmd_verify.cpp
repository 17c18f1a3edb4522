// `calq verify DIR`: the certificate of a quantized checkpoint directory (core/checkpoint/
// certificate.h does the work): the summary on stdout, the whole certificate with --json FILE;
// exit 0 when it passes, else the first failure as calq's one error line (exit 1), every
// failure being in the JSON.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/checkpoint/certificate.h"
#include "core/error.h"
#include "core/io/atomic_file.h"

namespace calq::cli {
namespace {

struct VerifyArgs {
  std::string dir;
  std::string json;
  bool quiet = false;
};

int run_verify(const VerifyArgs& args) {
  const core::Certificate cert = core::certify_checkpoint(args.dir);
  if (!args.json.empty())
    core::write_string_atomically(args.json, cert.json() + "\n");
  if (!args.quiet) {
    const std::string text = cert.text();
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  if (cert.passed())
    return 0;
  // main prints it as "calq: error: <first failure>" and exits 1.
  throw Error(cert.failures.size() == 1
                  ? cert.failures.front()
                  : cert.failures.front() +
                        fmt::format(" (and {} more; --json lists all)", cert.failures.size() - 1));
}

}  // namespace

CommandRunner add_verify_command(CLI::App& app) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "verify",
      "Certify a quantized checkpoint: its tensors against quantization_config and the "
      "family's layer schema, and what loads it where");
  cmd->add_option("dir", args->dir, "HF model directory (a calq export or another tool's)")
      ->required();
  cmd->add_option("--json", args->json, "Write the whole certificate (every failure) to FILE");
  cmd->add_flag("--no-summary", args->quiet,
                "Print nothing on stdout (the error line still goes to stderr)");
  return [args] { return run_verify(*args); };
}

}  // namespace calq::cli
