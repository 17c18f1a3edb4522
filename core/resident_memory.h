// The process's memory as the kernel counts it, for progress logs and reports.
#pragma once

namespace calq::core {

double resident_mb();       ///< current resident set (VmRSS), MiB; 0 where unknown
double peak_resident_mb();  ///< peak resident set (ru_maxrss), MiB

}  // namespace calq::core
