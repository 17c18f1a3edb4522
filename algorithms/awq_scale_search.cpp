#include "algorithms/awq_scale_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "calib/linear_stats.h"
#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/model/model.h"
#include "core/model/norm_scaling.h"
#include "core/quant/quantized_tensor.h"
#include "core/shape_text.h"

namespace calq::algorithms {
namespace {

// Tokens per forward of an inspected module (whole windows, at least one): few large ops rather
// than many small ones, while the attention scores [batch, heads, seq, seq] stay bounded (Llama
// 8 heads at 512: 16 windows, 128 MiB). Every window is independent: no result depends on it.
constexpr int64_t kInspectTokens = 8192;

// llm-awq/AutoAWQ constants: the floor of a candidate scale and the duo-scaling denominator's
// offset (s = x̄^r / (w̄^(1−r) + 1e−4)), both 1e−4; the group max offset of w̄ is 1e−6.
constexpr double kMinScale = 1e-4;
constexpr double kDuoOffset = 1e-4;
constexpr double kWeightMeanOffset = 1e-6;

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}


/// The inspected module's output for a chunk of calibration inputs [windows, seq, in].
at::Tensor inspected_output(core::DecoderLayer& layer,
                            const ScaleGroup& group,
                            const at::Tensor& batch,
                            const core::ForwardContext& ctx) {
  switch (group.inspect) {
    case Inspect::Attention:
      return layer.attention(batch, ctx);
    case Inspect::Mlp:
      return layer.mlp(batch, ctx);
    case Inspect::Linear:
      return layer.linear(group.inspected_linear).forward(batch);
  }
  CALQ_ASSERT(false, "awq: unknown inspected module");
  return {};
}

/// How a group's inputs are cut into chunks: along `dim` (0: windows of x [n, seq, in]; 1: the
/// tokens of a routed expert's x [1, tokens, in]), `per_chunk` units at a time.
struct ChunkPlan {
  int64_t dim = 0;
  int64_t total = 0;
  int64_t per_chunk = 1;
  int64_t count() const { return (total + per_chunk - 1) / per_chunk; }
};

/// Units per chunk: as many as `budget` bytes hold at `unit_bytes` each, at least one, at most
/// `cap`. The cap keeps today's batches (kInspectTokens) when the budget allows them, so the
/// float32 sums of each chunk, and with them every loss, are unchanged.
int64_t units_per_chunk(int64_t budget, int64_t unit_bytes, int64_t cap) {
  const int64_t fit = unit_bytes > 0 ? budget / unit_bytes : cap;
  return std::max<int64_t>(1, std::min(cap, fit));
}

/// The group's calibration inputs as windows [n_samples, seq, in]; an expert's routed tokens,
/// which form no windows, as one [1, tokens, in] (every inspected module here is per token).
at::Tensor group_inputs(const calib::LinearStats& stats, const std::string& name,
                        bool routed_tokens) {
  CALQ_ASSERT(stats.inputs.defined() && stats.mean_abs.defined() && stats.n_samples > 0,
              "awq: no inputs or mean |x| collected for {}", name);
  const int64_t tokens = stats.inputs.size(0);
  if (routed_tokens) return stats.inputs.view({1, tokens, stats.inputs.size(-1)});
  CALQ_ASSERT(tokens % stats.n_samples == 0, "awq: {} tokens of {} are not {} equal windows",
              tokens, name, stats.n_samples);
  return stats.inputs.view({stats.n_samples, tokens / stats.n_samples, stats.inputs.size(-1)});
}

/// The output width of the inspected module: hidden for attention and MLP blocks.
int64_t inspected_width(core::DecoderLayer& layer, const ScaleGroup& group) {
  return group.inspect == Inspect::Linear
             ? layer.linear(group.inspected_linear).weight.size(0)
             : layer.linear(group.linears.front()).weight.size(1);
}

ChunkPlan plan_chunks(core::DecoderLayer& layer,
                      const core::Model& model,
                      const ScaleGroup& group,
                      const at::Tensor& x,
                      int64_t budget) {
  ChunkPlan plan;
  if (group.routed_inputs) {  // [1, tokens, in]: today one batch; tokens when the budget says
    plan.dim = 1;
    plan.total = x.size(1);
    plan.per_chunk =
        units_per_chunk(budget, scale_search_window_bytes(layer, model, group, 1), plan.total);
  } else {
    plan.dim = 0;
    plan.total = x.size(0);
    plan.per_chunk =
        units_per_chunk(budget, scale_search_window_bytes(layer, model, group, x.size(1)),
                        std::max<int64_t>(1, kInspectTokens / x.size(1)));
  }
  return plan;
}

/// The scaled linears a group quantizes, their original weights and each candidate's s. A float
/// router keeps its weight while candidates are tried (its W·s·s⁻¹ is W), and takes no part in
/// the weight mean.
struct CandidateWeights {
  std::vector<std::string> members;
  std::vector<const core::QuantSpec*> specs;
  std::vector<at::Tensor> originals;  ///< clones, restored after every chunk
  std::vector<at::Tensor> live;       ///< the layer's weights, overwritten per candidate
  std::vector<at::Tensor> scales;     ///< per candidate, [in] float32
  bool keep = false;                  ///< keep every candidate's weights (quantize once)
  std::vector<std::vector<at::Tensor>> kept;

  CandidateWeights(core::DecoderLayer& layer,
                   const ScaleGroup& group,
                   const std::map<std::string, core::QuantSpec>& all_specs) {
    for (const auto& name : group.linears) {
      const auto it = all_specs.find(name);
      if (it == all_specs.end())
        continue;
      members.push_back(name);
      specs.push_back(&it->second);
      originals.push_back(layer.linear(name).weight.clone());
      live.push_back(layer.linear(name).weight);
    }
    CALQ_ASSERT(!members.empty(), "awq: no quantizer for any linear of {}", group.describe());
  }

  int64_t kept_bytes() const {
    int64_t bytes = 0;
    for (const auto& w : live)
      bytes += w.numel() * w.element_size();
    return bytes * static_cast<int64_t>(scales.size());
  }

  /// Candidate c's weights, Q(W·diag(s))·diag(s)⁻¹ (llm-awq simulates x/s by pre-dividing the
  /// quantized weight), in each weight's dtype.
  std::vector<at::Tensor> quantized(size_t c) const {
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < live.size(); ++i) {
      const at::Tensor s_w = scales[c].to(originals[i].scalar_type());
      const at::Tensor q = core::fake_quantize(originals[i] * s_w, *specs[i]);
      out.push_back((q / s_w.to(at::kFloat)).to(live[i].scalar_type()));
    }
    return out;
  }

  /// Quantizes every candidate up front when they are kept: allocated together, before the
  /// chunks' temporaries, so they do not pin fragments of the heap between them.
  void set_keep(bool value) {
    keep = value;
    for (size_t c = 0; keep && c < scales.size(); ++c)
      kept.push_back(quantized(c));
  }

  void load(size_t c) {
    const std::vector<at::Tensor> w = keep ? kept[c] : quantized(c);
    for (size_t i = 0; i < live.size(); ++i)
      live[i].copy_(w[i]);
  }

  void restore() {
    for (size_t i = 0; i < live.size(); ++i)
      live[i].copy_(originals[i]);
  }
};

/// §4.2 steps 3–4, chunk by chunk: the float output Y of the unmodified module, computed once
/// per chunk and compared with every candidate's Ŷ; Σ(Y − Ŷ)² of a chunk is a float32 sum,
/// accumulated in double in chunk order for every candidate. Returns one sum per candidate; the
/// layer's weights are the originals again on return.
///
/// With several ranks (docs/distributed.md) each rank evaluates a contiguous share of the chunks
/// on every candidate, the per-chunk sums are gathered in chunk order and every rank adds them in
/// that order: the losses, and with them the chosen ratio, are one process's to the last bit on
/// any world size (at equal threads per rank), and every rank picks the same candidate.
std::vector<double> chunked_sum_sq(core::DecoderLayer& layer,
                                   const core::Model& model,
                                   const ScaleGroup& group,
                                   const at::Tensor& x,
                                   const ChunkPlan& plan,
                                   CandidateWeights& weights) {
  const auto n_candidates = static_cast<int64_t>(weights.scales.size());
  dist::Communicator& ranks = dist::Communicator::world();
  const dist::Share mine = dist::share_of(plan.count(), 1, ranks.rank(), ranks.size());
  at::Tensor chunk_sums = at::zeros({mine.size(), n_candidates}, at::kDouble);
  auto sums = chunk_sums.accessor<double, 2>();
  // No observer: nothing records. A routed expert's group inspects a linear (its up → down pair),
  // which reads no RoPE or mask: it gets an empty context rather than a [tokens, tokens] mask.
  CALQ_ASSERT(plan.dim == 0 || group.inspect == Inspect::Linear,
              "awq: routed inputs of {} inspect a block", group.describe());
  core::ForwardContext ctx;
  if (plan.dim == 0)
    ctx = model.make_context(x.size(1));
  for (int64_t chunk = mine.begin; chunk < mine.end; ++chunk) {
    const int64_t start = chunk * plan.per_chunk;
    const at::Tensor batch = x.narrow(plan.dim, start, std::min(plan.per_chunk, plan.total - start));
    if (plan.dim == 1)
      ctx.seq_len = batch.size(1);
    const at::Tensor reference = inspected_output(layer, group, batch, ctx).to(at::kFloat);
    for (int64_t c = 0; c < n_candidates; ++c) {
      weights.load(static_cast<size_t>(c));
      const at::Tensor diff = reference - inspected_output(layer, group, batch, ctx).to(at::kFloat);
      sums[chunk - mine.begin][c] = diff.pow(2).sum().item<double>();
    }
    weights.restore();
  }
  const at::Tensor all = ranks.gather_rows(
      chunk_sums, fmt::format("layer {} awq {}: grid losses", layer.index(), group.describe()));
  const auto every = all.accessor<double, 2>();
  std::vector<double> sum_sq(static_cast<size_t>(n_candidates), 0.0);
  for (int64_t chunk = 0; chunk < all.size(0); ++chunk)
    for (int64_t c = 0; c < n_candidates; ++c)
      sum_sq[static_cast<size_t>(c)] += every[chunk][c];
  return sum_sq;
}

}  // namespace

std::string ScaleGroup::describe() const {
  return fmt::format("{} -> {}", prev_op, fmt::join(linears, ","));
}

BlockGroups awq_scale_groups(const core::LayerSchema& schema,
                             core::DecoderLayer& layer,
                             const std::vector<std::string>& targeted) {
  BlockGroups out;
  for (const core::ScalingPair& pair : schema.scaling) {
    ScaleGroup group{pair.prev_op, pair.linears, pair.inspect, pair.inspected_linear,
                     schema.linear(pair.linears.front()).expert >= 0, pair.prev_rows_begin,
                     pair.prev_rows};
    if (!pair.refused.empty()) {
      out.skipped.push_back({group.describe(), group.linears, pair.refused});
      continue;
    }
    // A router is scaled with its group but quantized only when the recipe names it.
    bool all_targeted = true;
    for (const auto& name : group.linears)
      all_targeted = all_targeted && (contains(targeted, name) ||
                                      core::is_router(schema.linear(name).role));
    if (!all_targeted) {
      out.skipped.push_back(
          {group.describe(), group.linears, "not every scaled linear is in scheme.targets"});
      continue;
    }
    if (!group.prev_is_norm()) {
      // llm-awq auto_scale.py: v → o only when v_proj and o_proj weights have the same shape;
      // with grouped-query attention v has fewer output rows than o has input columns.
      const at::Tensor& prev = layer.linear(group.prev_op).weight;
      const at::Tensor& next = layer.linear(group.linears.front()).weight;
      const core::LinearRole prev_role = schema.linear(group.prev_op).role;
      if (prev_role == core::LinearRole::Value && !prev.sizes().equals(next.sizes())) {
        // Say which of the two ways the shapes differ: fewer kv heads than heads, or
        // heads × head_dim ≠ hidden (Qwen3's explicit head_dim) with the same head count.
        const bool gqa = prev.size(0) != next.size(1);
        out.skipped.push_back(
            {group.describe(), group.linears,
             fmt::format("{} {} and {} {} differ ({})", group.prev_op,
                         core::shape_text(prev.sizes()),
                         group.linears.front(), core::shape_text(next.sizes()),
                         gqa ? "grouped-query attention"
                             : "heads x head_dim is not hidden_size; llm-awq scales v -> o only "
                               "between equal shapes")});
        continue;
      }
      // A fused qkv's v rows feed o's columns one for one only without grouped-query attention
      // (AutoAWQ awq/models/phi3.py pairs qkv_proj → o_proj unconditionally; its scale_fc_fc
      // would then divide k rows as well).
      if (prev_role == core::LinearRole::QueryKeyValue && group.prev_rows != next.size(1)) {
        out.skipped.push_back(
            {group.describe(), group.linears,
             fmt::format("{}'s v rows [{}, {}) are {} and {} {} reads {} (grouped-query "
                         "attention)", group.prev_op, group.prev_rows_begin,
                         group.prev_rows_begin + group.prev_rows, group.prev_rows,
                         group.linears.front(), core::shape_text(next.sizes()), next.size(1))});
        continue;
      }
      const int64_t rows = group.prev_rows > 0 ? group.prev_rows : prev.size(0);
      CALQ_ASSERT(group.prev_rows_begin >= 0 && group.prev_rows_begin + rows <= prev.size(0) &&
                      rows == next.size(1),
                  "awq: {} rows [{}, {}) of {} feed {} inputs of {}", group.prev_op,
                  group.prev_rows_begin, group.prev_rows_begin + rows, prev.size(0), next.size(1),
                  group.linears.front());
    }
    out.groups.push_back(std::move(group));
  }
  return out;
}

int64_t scale_search_window_bytes(core::DecoderLayer& layer,
                                  const core::Model& model,
                                  const ScaleGroup& group,
                                  int64_t seq) {
  constexpr int64_t kFloatBytes = 4;  // outputs and the loss are compared in float32
  const int64_t in = layer.linear(group.linears.front()).weight.size(1);
  int64_t scaled_out = 0;
  for (const auto& name : group.linears)
    scaled_out += layer.linear(name).weight.size(0);
  int64_t out_width = in;  // attention and MLP blocks map hidden to hidden
  int64_t activations = 0;
  switch (group.inspect) {
    case Inspect::Attention:
      activations = 2 * scaled_out + 2 * model.config().n_heads * seq;
      break;
    case Inspect::Mlp:
      activations = 2 * scaled_out;
      break;
    case Inspect::Linear:
      out_width = layer.linear(group.inspected_linear).weight.size(0);
      break;
  }
  return kFloatBytes * seq * (3 * out_width + activations);
}

std::vector<ScaleCandidate> scale_candidates(const ScaleSearchOptions& options) {
  std::vector<ScaleCandidate> out;
  if (options.duo_scaling == DuoScaling::Both) {
    const int n = options.n_grid / 2;  // int(self.n_grid / 2)
    for (int k = 0; k < n; ++k) {
      const double ratio = static_cast<double>(k) / n;
      out.push_back({ratio, false});
      out.push_back({ratio, true});
    }
    return out;
  }
  for (int k = 0; k < options.n_grid; ++k)
    out.push_back({static_cast<double>(k) / options.n_grid, options.duo_scaling == DuoScaling::On});
  return out;
}

at::Tensor candidate_scales(const at::Tensor& x_mean,
                            const at::Tensor& w_mean,
                            const ScaleCandidate& candidate,
                            AwqFlavor flavor) {
  const at::Tensor x = x_mean.to(at::kFloat).reshape({-1});
  at::Tensor s;
  if (candidate.duo) {
    CALQ_ASSERT(w_mean.defined(), "awq: duo scaling without a weight mean");
    s = x.pow(candidate.ratio) /
        (w_mean.to(at::kFloat).reshape({-1}).pow(1.0 - candidate.ratio) + kDuoOffset);
  } else {
    s = x.pow(candidate.ratio);
  }
  s = s.clamp_min(kMinScale);
  s = s / (s.max() * s.min()).sqrt();
  if (flavor == AwqFlavor::AutoAwq)
    s = at::where(at::isfinite(s), s, at::ones_like(s));  // scales[isinf | isnan] = 1
  return s;
}

at::Tensor weight_mean(const std::vector<at::Tensor>& weights, int64_t group_size) {
  std::vector<at::Tensor> rows;
  for (const auto& w : weights)
    rows.push_back(w.to(at::kFloat));
  const at::Tensor a = at::cat(rows, 0).abs();
  const int64_t r = a.size(0), in = a.size(1);
  const int64_t g = group_size > 0 ? std::min(group_size, in) : in;
  const int64_t n_full = in / g, tail = in % g;
  std::vector<at::Tensor> maxima;
  maxima.push_back(a.narrow(1, 0, n_full * g).reshape({r, n_full, g}).amax(-1));
  if (tail > 0)
    maxima.push_back(a.narrow(1, n_full * g, tail).amax(-1, /*keepdim=*/true));
  const at::Tensor index = core::sequential_g_idx(in, g).to(a.device()).to(at::kLong);
  const at::Tensor group_max = at::cat(maxima, 1).index_select(1, index);  // [r, in]
  return (a / (group_max + kWeightMeanOffset)).mean(0);
}

std::vector<GroupScales> search_block_scales(core::DecoderLayer& layer,
                                             const core::Model& model,
                                             const std::vector<ScaleGroup>& groups,
                                             const std::map<std::string, calib::LinearStats>& stats,
                                             const std::map<std::string, core::QuantSpec>& specs,
                                             const ScaleSearchOptions& options) {
  const std::vector<ScaleCandidate> candidates = scale_candidates(options);
  CALQ_ASSERT(!candidates.empty(), "awq: empty scale grid");
  const bool any_duo = std::any_of(candidates.begin(), candidates.end(),
                                   [](const ScaleCandidate& c) { return c.duo; });
  std::vector<GroupScales> out;
  for (const ScaleGroup& group : groups) {
    const std::string& input_of = group.linears.front();
    const auto it = stats.find(input_of);
    CALQ_ASSERT(it != stats.end(), "awq: no statistics for {}", input_of);
    const at::Tensor x = group_inputs(it->second, input_of, group.routed_inputs);
    const at::Tensor& x_mean = it->second.mean_abs;

    CandidateWeights weights(layer, group, specs);
    at::Tensor w_mean;
    if (any_duo)
      w_mean = weight_mean(weights.originals, specs.at(weights.members.front()).group_size);
    for (const ScaleCandidate& candidate : candidates)
      weights.scales.push_back(candidate_scales(x_mean, w_mean, candidate, options.flavor));
    // Every candidate's weights are kept when they take at most half the budget (quantized once,
    // not once per chunk); what remains of the budget bounds the chunk.
    const bool keep = weights.kept_bytes() <= options.max_chunk_memory / 2;
    const ChunkPlan plan = plan_chunks(layer, model, group, x,
                                       options.max_chunk_memory - (keep ? weights.kept_bytes() : 0));
    weights.set_keep(keep);
    const std::vector<double> sum_sq = chunked_sum_sq(layer, model, group, x, plan, weights);

    GroupScales best{group, at::Tensor(), candidates.front(),
                     std::numeric_limits<double>::infinity(), 0.0, plan.per_chunk, plan.count()};
    const auto count = static_cast<double>(x.numel() / x.size(-1) * inspected_width(layer, group));
    for (size_t c = 0; c < candidates.size(); ++c) {
      const double loss = sum_sq[c] / count;
      if (c == 0)
        best.loss_first = loss;
      if (loss < best.loss) {  // strict: the earliest candidate wins ties; NaN never wins
        best.loss = loss;
        best.best = candidates[c];
        best.scales = weights.scales[c];
      }
    }
    CALQ_CHECK(std::isfinite(best.loss),
               "layer {} awq group {}: every scale candidate gave a non-finite loss; expected "
               "finite weights and calibration inputs",
               layer.index(), group.describe());
    out.push_back(std::move(best));
  }
  return out;
}

void apply_group_scales(core::DecoderLayer& layer, const ScaleGroup& group, const at::Tensor& s) {
  if (group.prev_is_norm()) {
    core::divide_norm_output(layer.norm(group.prev_op), s);
  } else {
    // llm-awq / AutoAWQ scale_fc_fc divide the last len(s) output rows (and bias): for Phi-3's
    // qkv_proj (v last) and gate_up_proj (up last) those are the schema's slice, which is what
    // is divided here, named rather than implied.
    core::Linear& prev = layer.linear(group.prev_op);
    const int64_t n = s.numel();
    const int64_t first = group.prev_rows > 0 ? group.prev_rows_begin : 0;
    const int64_t rows = group.prev_rows > 0 ? group.prev_rows : prev.weight.size(0);
    CALQ_ASSERT(n == rows && first + rows <= prev.weight.size(0),
                "awq: {} scales for rows [{}, {}) of {}", n, first, first + rows, group.prev_op);
    prev.weight.narrow(0, first, n).div_(s.to(prev.weight.scalar_type()).unsqueeze(1));
    if (prev.bias.defined())
      prev.bias.narrow(0, first, n).div_(s.to(prev.bias.scalar_type()));
  }
  for (const auto& name : group.linears) {
    at::Tensor& w = layer.linear(name).weight;
    w.mul_(s.to(w.scalar_type()));
  }
}

}  // namespace calq::algorithms
