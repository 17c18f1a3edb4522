// A packed checkpoint's quantization_config held against the tensors it actually stores (issue
// 18, "metadata that lies"): a config edited to symmetric while zero points are stored, to a
// group size the scales do not have, or to 8 bits over 4-bit words would otherwise decode to a
// wrong model without a word, or reach an internal assertion. open_checkpoint_weights calls it
// before anything is dequantized; `calq verify` can ask for every mismatch.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace calq::core {

class WeightSource;
struct PackedLayout;

/// Up to `limit` mismatches between `layout` (parsed from `config_file`) and the tensors of
/// `source` (the checkpoint as stored, not dequantized), each one line "<config_file>: <config
/// field or tensor>: <what is wrong>; expected <what>"; empty when they agree. Checks the tensor
/// set of every packed linear (docs/formats.md §2.1, §3.1, §4.4, §4.5), dtypes, the shapes bits,
/// group_size, strategy and in/out features imply, zero points present iff asymmetric (GPTQ:
/// sym means every zero is 2^(bits-1)), g_idx in range and sequential without act-order, int8
/// codes within the bit width, and no stray packed tensors.
std::vector<std::string> find_layout_mismatches(const PackedLayout& layout,
                                                const WeightSource& source,
                                                const std::string& config_file, size_t limit);

/// Throws calq::Error with the first mismatch.
void check_layout_against_tensors(const PackedLayout& layout, const WeightSource& source,
                                  const std::string& config_file);

}  // namespace calq::core
