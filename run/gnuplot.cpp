#include "run/gnuplot.h"

#include <cstdlib>
#include <sstream>

#include <fmt/format.h>

#include "core/io/atomic_file.h"
#include "core/log.h"

namespace calq::run {

void draw_with_gnuplot(const std::string& dir, const std::string& stem, const std::string& body,
                       const std::string& what) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    log::warn("{}: gnuplot not found: no {} plot (install gnuplot-nox)", what, stem);
    return;
  }
  std::ostringstream script;
  for (const char* term : {"png size 900,600", "svg size 900,600"}) {
    const std::string ext = std::string(term).substr(0, 3);
    script << "set terminal " << term << "\nset output '" << dir << "/" << stem << "." << ext
           << "'\nset termoption noenhanced\n" << body << "\n";
  }
  core::write_string_atomically(dir + "/" + stem + ".gp", script.str());
  if (std::system(fmt::format("gnuplot '{}/{}.gp' 2> '{}/gnuplot.log'", dir, stem, dir).c_str()) != 0)
    log::warn("{}: gnuplot failed; see {}/gnuplot.log", what, dir);
}

}  // namespace calq::run
