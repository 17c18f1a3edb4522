// Did-you-mean suggestions for names the user mistyped: recipe keys (core/options) and, later,
// pass names in the registry.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace calq::core {

/// Levenshtein distance with adjacent transpositions (optimal string alignment).
size_t edit_distance(const std::string& a, const std::string& b);
/// The candidate closest to `word` when it is close enough to be a likely typo, else "".
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace calq::core
