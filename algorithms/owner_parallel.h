// Weight-parallel quantization over ranks (issue 23; docs/distributed.md §2): a quantizer whose
// traits declare `per_linear` turns each linear into its result from that linear's weight and
// statistics alone, so with N ranks every linear of a subset gets one owner, the owner alone
// quantizes it, and what the quantizer left — the dequantized weight, the QuantizedTensor and
// the pass's report — is broadcast from the owner to every rank. Every rank then holds the layer
// one process would (bit for bit at equal threads per rank), and propagates it itself.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "algorithms/pass.h"

namespace calq::core {
class DecoderLayer;
}

namespace calq::algorithms {

/// The owner rank of each item (same order) by the longest-processing-time greedy on `costs`:
/// the costliest first, each to the least loaded rank, ties by position and lowest rank, so every
/// rank computes the same assignment.
std::vector<int> assign_owners_by_cost(const std::vector<double>& costs, int world);

/// assign_owners_by_cost on GPTQ's estimated cost in²·out + in³ (its column loop and Cholesky).
std::vector<int> assign_owners(core::DecoderLayer& layer,
                               const std::vector<LinearTarget>& targets, int world);

/// Broadcasts each target's quantized state from its owner: the linear's weight, `quantized`
/// (shape and metadata first, as JSON), and reports[pass_name]. `step` names the collectives.
void share_owned_results(core::DecoderLayer& layer, const std::vector<LinearTarget>& targets,
                         const std::vector<int>& owners, std::map<std::string, LinearState>& states,
                         const std::string& pass_name, const std::string& step);

}  // namespace calq::algorithms
