// Crash-safe file output: bytes go to a unique temporary file beside the target, which is
// fsync'ed and then renamed over it, so readers see the old file or the complete new one, never
// a torn write. Used by the safetensors writer, exporters and report.json.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace calq::core {

/// Calls `writer` with a binary stream onto "<path>.tmp.<pid>.<n>" (same directory), then fsyncs
/// and renames it to `path`. If `writer` throws, or writing, fsync or rename fails, the temporary
/// file is removed, `path` is left untouched and the exception propagates (I/O failures as
/// calq::Error naming `path`). The stream throws on write errors, so `writer` may stop early.
void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& writer);

/// write_file_atomically for contents already in memory (e.g. a JSON report).
void write_string_atomically(const std::string& path, std::string_view contents);

/// Moves the finished directory `tmp` to `final_path`, replacing a previous one so that the
/// final name never holds a half-written directory (the old one is renamed aside first, then
/// removed). Both must be on one filesystem (siblings). Refuses a target that exists and is not
/// a directory; which directories may be replaced is the caller's rule (core/io/output_dir.h).
void publish_directory(const std::string& tmp, const std::string& final_path);

}  // namespace calq::core
