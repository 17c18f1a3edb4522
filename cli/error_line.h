// The one line calq prints for an error, made safe for a terminal: messages quote file content
// (a tokenizer's merges, a tensor name, a path), which may hold NUL, escape sequences or
// megabytes. Used by main for every "calq: error: ..." line (issue 18, class 8a).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace calq::cli {

/// Default cap on a printed message, in bytes before the "...".
constexpr size_t kMaxErrorLineBytes = 2000;

/// `message` with every byte a terminal would act on escaped — C0 controls and DEL as \n, \t,
/// \r, \0 or \xHH, C1 controls (U+0080..U+009F) as \u0080.., bytes that are not UTF-8 as \xHH —
/// cut after `max_bytes` of output at a character boundary, with "..." when cut. NULs inside
/// `message` count (a std::string holds them): nothing after one is lost.
std::string terminal_line(std::string_view message, size_t max_bytes = kMaxErrorLineBytes);

}  // namespace calq::cli
