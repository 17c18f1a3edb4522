// Where calq may write. The rules (docs/robustness.md "Output paths"): an output directory is
// new, empty, or one calq wrote itself (it holds the marker file below); anything else — a
// regular file, a directory with someone's files in it, ".", "..", "/" — is refused before any
// work starts, unless --overwrite allows replacing a directory that is not calq's. An output
// never equals or contains one of the run's inputs. Each output is held under an exclusive lock
// for the whole run, so two runs cannot interleave their files in it.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace calq::core {

/// The file calq writes into every directory it produces (exports, run folders, sweeps); its
/// presence is what lets a later run replace the directory. Loaders ignore it.
inline constexpr const char* kOutputMarker = ".calq-output";

/// `path` made absolute and normal, a trailing "/" dropped; refuses an empty path and one that
/// names ".", ".." or a file-system root, since replacing those would take the caller's
/// working directory or more with it. `field` names where the path came from ("save.path").
std::filesystem::path output_dir_path(const std::string& path, std::string_view field);

/// Throws calq::Error unless `dir` (from output_dir_path) may be written: absent, an empty
/// directory, or a directory holding kOutputMarker; with `overwrite`, any directory.
void check_output_dir(const std::filesystem::path& dir, std::string_view field, bool overwrite);

/// The key a JSON file calq writes (--json reports) carries, with the writing command as value:
/// such a file may be replaced by a later run, any other file may not.
inline constexpr const char* kWrittenByKey = "written_by";

/// Throws calq::Error unless `path` may be written as a single output file: absent, or a JSON
/// object with kWrittenByKey starting "calq" (a report an earlier run wrote). Never a
/// directory, device or FIFO, and never another file, whatever --overwrite says.
void check_output_file(const std::string& path, std::string_view field);

/// A path the run reads, for check_outputs_apart.
struct RunInput {
  std::string path;
  std::string field;  ///< "model.path", "calibration.data", ...
};

/// Throws when `dir` equals an input or contains one (replacing it would delete the input).
void check_output_apart(const std::filesystem::path& dir, std::string_view field,
                        const std::vector<RunInput>& inputs);

/// The temporary sibling a directory output is assembled in before its rename:
/// ".<name>.calq-tmp-<pid>" beside `final_dir`, so it never collides with a user's file and a
/// later run can tell a killed run's leftovers by the pid.
std::filesystem::path temp_sibling(const std::filesystem::path& final_dir);

/// For commands that only ever create (calq synth, calq outliers): output_dir_path, and
/// nothing at all may exist under the name.
std::filesystem::path new_output_dir(const std::string& path, std::string_view field);

/// Removes a temporary directory on scope exit unless `committed` (it was renamed into place).
struct TempDirGuard {
  std::filesystem::path dir;
  bool committed = false;
  ~TempDirGuard() {
    std::error_code ignored;
    if (!committed) std::filesystem::remove_all(dir, ignored);
  }
};

/// Writes kOutputMarker into `dir` (a directory being assembled, before it is published).
void write_output_marker(const std::filesystem::path& dir, std::string_view kind);

/// The claim a run holds on one output directory: created parent directories, an exclusive
/// flock(2) on the sibling ".<name>.calq-lock" (which also proves the parent is writable), and
/// optionally the directory itself with its marker. Released on destruction; what it created is
/// removed again unless keep() was called and the directory is otherwise empty.
class OutputClaim {
 public:
  /// `create_dir`: make `dir` itself now (a run folder written into piece by piece); otherwise
  /// only its parent (an export, published whole by rename).
  OutputClaim(const std::filesystem::path& dir, std::string_view field, bool create_dir);
  ~OutputClaim();
  OutputClaim(const OutputClaim&) = delete;
  OutputClaim& operator=(const OutputClaim&) = delete;

  /// The run finished: keep what was created.
  void keep() { keep_ = true; }

 private:
  void release();

  std::filesystem::path dir_;
  std::filesystem::path lock_path_;
  std::vector<std::filesystem::path> created_;  // outermost first
  int lock_fd_ = -1;
  bool wrote_marker_ = false;
  bool keep_ = false;
};

}  // namespace calq::core
