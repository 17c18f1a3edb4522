// The papers' table and plot from a sweep's report.json files: one row per method (the float
// model first), one column per evaluation set × setting (W4 g128, W8 A8, ...); table.md with the
// protocol in the caption, table.csv with one line per figure, and ppl_vs_bits.{png,svg} drawn by
// gnuplot (perplexity against average stored bits per weight, one line per method, log scale).
#pragma once

#include <string>
#include <vector>

namespace calq::cli {

struct SweepRun {
  std::string name;  ///< DIR/runs/<name>
  std::string report_path;
};

/// Writes DIR/table.md, DIR/table.csv and (when gnuplot is installed) DIR/ppl_vs_bits.png and
/// .svg; returns table.md's text.
std::string write_sweep_table(const std::string& dir, const std::vector<SweepRun>& runs);

}  // namespace calq::cli
