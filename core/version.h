// calq's version: one number, the project(VERSION) of the top CMakeLists.txt, passed to this
// file's .cpp as a compile definition. The CLI's --version, report.json and the quantizer tag
// of exported checkpoints all read it here.
#pragma once

namespace calq::core {

/// "0.1.0"
const char* calq_version();

}  // namespace calq::core
