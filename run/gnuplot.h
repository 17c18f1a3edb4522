// Pictures through gnuplot (Debian gnuplot-nox), the one place calq drives it: a script is
// written next to the picture so it can be re-run or edited by hand.
#pragma once

#include <string>

namespace calq::run {

/// Writes DIR/STEM.gp, which draws `body` (the commands after "set terminal/output") to
/// DIR/STEM.png and DIR/STEM.svg, and runs it. Missing or failing gnuplot is a warning naming
/// `what`, never an error: the numbers are in the JSON/CSV either way.
void draw_with_gnuplot(const std::string& dir, const std::string& stem, const std::string& body,
                       const std::string& what);

}  // namespace calq::run
