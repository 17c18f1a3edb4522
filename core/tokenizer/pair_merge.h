// Greedy adjacent-pair merging shared by the llama2.c and byte-level BPE tokenizers: merge the
// best adjacent pair, leftmost on ties, until none is left. run.c rescans all pairs after every
// merge (O(n^2)); a heap over a linked list gives the same sequence of merges in O(n log n).
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <vector>

namespace calq::core {

/// One possible merge of an adjacent pair: the higher `priority` wins (llama2.c: the merged
/// piece's score; BPE: minus the merge rank).
struct PairMerge {
  double priority = 0;
  int32_t merged_id = 0;
};

/// Merges `tokens` in place. `find_merge(left_id, right_id)` returns the merge of that pair, or
/// nullopt when the pair does not merge. Among equal priorities the leftmost pair in the current
/// sequence merges first, as run.c's `>` scan and HF tokenizers' (rank, position) heap do.
template <typename FindMerge>
void merge_adjacent_pairs(std::vector<int32_t>& tokens, const FindMerge& find_merge) {
  const int32_t n = static_cast<int32_t>(tokens.size());
  if (n < 2)
    return;
  // Nodes keep their original index, so index order is sequence order: a smaller left index is
  // the leftmost pair, whatever was merged before.
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    double priority;
    int32_t left, right, left_id, right_id, merged_id;
  };
  const auto worse = [](const Candidate& a, const Candidate& b) {
    if (a.priority != b.priority)
      return a.priority < b.priority;
    return a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
  const auto push = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0)
      return;
    if (std::optional<PairMerge> m = find_merge(tokens[left], tokens[right])) {
      heap.push({m->priority, left, right, tokens[left], tokens[right], m->merged_id});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i)
    push(i, i + 1);
  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    // A candidate is stale once either side was merged into something else.
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        tokens[c.left] != c.left_id || tokens[c.right] != c.right_id) {
      continue;
    }
    tokens[c.left] = c.merged_id;
    alive[c.right] = false;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0)
      prev[next[c.right]] = c.left;
    push(prev[c.left], c.left);
    push(c.left, next[c.left]);
  }
  int32_t out = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (alive[i])
      tokens[out++] = tokens[i];
  }
  tokens.resize(out);
}

}  // namespace calq::core
