#include "calib/layerwise_runner.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "calib/calibration_set.h"
#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/log.h"
#include "core/model/allocation_policy.h"
#include "core/model/model.h"
#include "core/progress.h"
#include "core/resident_memory.h"

namespace calq::calib {

LayerwiseRunner::LayerwiseRunner(core::Model& model, at::Tensor windows, RunnerOptions options)
    : model_(model), windows_(std::move(windows)), options_(options) {
  CALQ_ASSERT(windows_.dim() == 2, "calibration windows must be [nsamples, seqlen]");
  const at::Tensor ids = windows_.to(at::kCPU, at::kLong).contiguous();
  windows_hash_ = fnv1a64(ids.data_ptr(), static_cast<size_t>(ids.numel()) * sizeof(int64_t));
  const dist::Communicator& ranks = dist::Communicator::world();
  const dist::Share share =
      options_.shard_windows
          ? dist::share_of(windows_.size(0), std::max<int64_t>(1, options_.batch_size),
                           ranks.rank(), ranks.size())
          : dist::Share{0, windows_.size(0)};
  share_begin_ = share.begin;
  share_end_ = share.end;
}

std::optional<std::string> LayerwiseRunner::cache_key(const LayerHandler& handler, int64_t layer,
                                                      int64_t step,
                                                      const std::vector<std::string>& subset,
                                                      const Requirements& needs) const {
  if (options_.cache.cache == nullptr) return std::nullopt;
  const std::optional<std::string> scope = handler.cache_scope(layer, step);
  if (!scope) return std::nullopt;
  // Batch size is part of the key: float32 sums over batches round differently, and a hit must
  // give the bytes a fresh collection would.
  std::string described = fmt::format("calq-stats-v1|{}|windows {:016x} {}x{}|batch {}|layer {} step {}|",
                                      options_.cache.context, windows_hash_, windows_.size(0),
                                      windows_.size(1), options_.batch_size, layer, step);
  if (options_.observe_all_experts) described += "all_experts|";  // older keys unchanged
  for (const std::string& name : subset) described += name + ",";
  for (const auto& [name, r] : needs) {
    described += fmt::format("|{}:{}{}{}{}", name, int(r.hessian), int(r.absmax), int(r.mean_abs),
                             int(r.inputs));
  }
  described += "|scope " + *scope;
  return fmt::format("L{}-S{}-{:016x}", layer, step, fnv1a64(described.data(), described.size()));
}

namespace {

/// Thrown by a statistics forward's observer once every accumulator has seen this batch's input:
/// the rest of the layer computes nothing any statistic reads.
struct StopForward {};

/// Linears of a dense layer that read one tensor — the same input norm's output (q,k,v; gate,up)
/// — share the first one's accumulator: one Σxᵀx GEMM instead of three. Keyed by name; a linear
/// that shares nothing maps to itself. Mixture-of-experts layers share nothing (an expert's input
/// is its routed tokens, and their observation order is the router's).
std::map<std::string, std::string> shared_inputs(const core::LayerSchema& schema,
                                                 const Requirements& needs) {
  std::map<std::string, std::string> leader;
  std::map<std::string, std::string> first_of_norm;
  for (const core::LinearSpec& l : schema.linears) {
    const auto need = needs.find(l.name);
    if (need == needs.end() || !need->second.any()) continue;
    std::string& first = first_of_norm[l.input_norm];
    const bool shares = schema.moe.n_experts == 0 && !l.input_norm.empty() && !first.empty();
    if (first.empty()) first = l.name;
    leader[l.name] = shares ? first : l.name;
  }
  // Requested names the schema does not list keep their own accumulator.
  for (const auto& [name, request] : needs)
    if (request.any()) leader.emplace(name, name);
  return leader;
}

}  // namespace

void LayerwiseRunner::forward_layer(core::DecoderLayer& layer, const ActivationStore& inputs,
                                    ActivationStore& out) const {
  const int64_t n = inputs.windows();
  const int64_t batch = std::max<int64_t>(1, options_.batch_size);
  const core::ForwardContext ctx = model_.make_context(inputs.seqlen());
  for (int64_t s = 0; s < n; s += batch) {
    const int64_t b = std::min(batch, n - s);
    at::Tensor y = layer.forward(inputs.read(s, b), ctx);
    out.write(s, y);
  }
}

void LayerwiseRunner::collect(core::DecoderLayer& layer, const ActivationStore& inputs,
                              std::map<std::string, LinearStatsAccumulator>& accumulators) {
  const int64_t n = inputs.windows();
  const int64_t batch = std::max<int64_t>(1, options_.batch_size);
  core::ForwardContext ctx = model_.make_context(inputs.seqlen());
  const bool dense = model_.layer_schema(layer.index()).moe.n_experts == 0;
  size_t seen = 0;
  ctx.observer = [&accumulators, &seen, dense](int64_t, std::string_view name,
                                                const at::Tensor& x) {
    const auto it = accumulators.find(std::string(name));
    if (it == accumulators.end()) return;
    it->second.add(x);
    // A dense layer calls each linear once per forward, in order: once the last accumulator
    // is fed, nothing after it is read.
    if (dense && ++seen == accumulators.size()) throw StopForward{};
  };
  ctx.observe_all_experts = options_.observe_all_experts;
  for (int64_t s = 0; s < n; s += batch) {
    seen = 0;
    try {
      layer.forward(inputs.read(s, std::min(batch, n - s)), ctx);
    } catch (const StopForward&) {
      ++placement_.stopped_forwards;
    }
  }
}

ActivationStore LayerwiseRunner::initial_inputs(int64_t copies) {
  const auto device = at::Device(model_.device());
  const int64_t n = share_end_ - share_begin_;
  const int64_t seq = windows_.size(1);
  const int64_t width = model_.config().hidden_size;
  const auto dtype = model_.compute_dtype();
  const int64_t bytes = n * seq * width * static_cast<int64_t>(c10::elementSize(dtype));
  const bool on_disk = offloads(options_.offload, copies * bytes);
  placement_.offload = core::activation_offload_name(options_.offload.mode);
  placement_.on_disk = on_disk;
  placement_.bytes = bytes;
  placement_.copies = copies;
  placement_.batch_windows = std::max<int64_t>(1, options_.batch_size);
  if (options_.first_layer > 0) {
    CALQ_ASSERT(options_.first_inputs.defined(), "a resumed run needs the inputs of layer {}",
                options_.first_layer);
    ActivationStore store = ActivationStore::holding(
        options_.first_inputs.narrow(0, share_begin_, n).to(device), on_disk, options_.offload.dir);
    options_.first_inputs = at::Tensor();
    placement_.dir = store.dir();
    return store;
  }
  ActivationStore store(n, seq, width, dtype, device, on_disk, options_.offload.dir);
  placement_.dir = store.dir();
  const int64_t batch = placement_.batch_windows;
  for (int64_t s = 0; s < n; s += batch)
    store.write(s, model_.embed(windows_.narrow(0, share_begin_ + s, std::min(batch, n - s)).to(device)));
  if (options_.release_layers) {
    model_.release_embeddings();  // a 7B table is 0.25 GB in float16; eval reads it again
    core::give_back_free_heap_pages();
  }
  return store;
}

void LayerwiseRunner::run(LayerHandler& handler) {
  at::NoGradGuard no_grad;
  dist::Communicator& ranks = dist::Communicator::world();
  const bool quantized_next = handler.propagate_quantized();
  ActivationStore inputs = initial_inputs(quantized_next ? 1 : 2);
  if (placement_.on_disk) {
    log::info("calibration: layer activations ({:.0f} MiB a copy, {} at once) in a scratch file "
              "in {} (calibration.offload: {})",
              static_cast<double>(placement_.bytes) / (1 << 20), placement_.copies,
              placement_.dir, placement_.offload);
  }

  Progress progress("calibrate layers", model_.n_layers() - options_.first_layer,
                    options_.show_progress);
  using Clock = std::chrono::steady_clock;
  const auto since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  for (int64_t i = options_.first_layer; i < model_.n_layers(); ++i) {
    LayerTiming timing;
    timing.layer = i;
    auto t = Clock::now();
    core::DecoderLayer& layer = model_.layer(i);
    handler.begin_layer(layer, i);
    timing.load_s = since(t);
    log::debug("layer {} loaded, resident {:.0f} MiB (peak {:.0f})", i, core::resident_mb(),
               core::peak_resident_mb());
    // AWQ-style handlers hand the next layer the float output: compute it before any change.
    ActivationStore float_outputs;
    if (!quantized_next) {
      t = Clock::now();
      float_outputs = inputs.like();
      forward_layer(layer, inputs, float_outputs);
      timing.float_outputs_s = since(t);
    }

    const std::vector<std::vector<std::string>> schedule = handler.schedule(layer);
    for (size_t k = 0; k < schedule.size(); ++k) {
      const std::vector<std::string>& subset = schedule[k];
      const Requirements needs = handler.needs(layer, subset);
      // One accumulator per distinct input (shared_inputs), asking for what all its readers do.
      const std::map<std::string, std::string> leader =
          shared_inputs(model_.layer_schema(i), needs);
      std::map<std::string, LinearStatsAccumulator> accumulators;
      {
        Requirements merged;
        for (const auto& [name, first] : leader) merged[first].merge(needs.at(name));
        for (const auto& [name, request] : merged) accumulators.emplace(name, LinearStatsAccumulator(request));
      }
      std::map<std::string, LinearStats> stats;
      if (!accumulators.empty()) {
        const auto key = cache_key(handler, i, static_cast<int64_t>(k), subset, needs);
        if (key) {
          auto hit = options_.cache.cache->load(*key, fmt::format("layer {} step {}", i, k),
                                                model_.device());
          if (hit) stats = std::move(*hit);
          // Every rank collects, or none does: the collection's reductions are collectives.
          if (ranks.distributed() &&
              ranks.sum(stats.empty() ? 0 : 1, fmt::format("layer {} step {}: cache", i, k)) <
                  ranks.size())
            stats.clear();
        }
        if (stats.empty()) {
          t = Clock::now();
          collect(layer, inputs, accumulators);
          const core::LayerSchema& schema = model_.layer_schema(i);
          for (auto& [name, acc] : accumulators) {
            int64_t in = 0;
            for (const core::LinearSpec& l : schema.linears)
              if (l.name == name) in = l.in;
            acc.reduce_across_ranks(in, model_.compute_dtype(),
                                    fmt::format("layer {} step {}: {}", i, k, name));
          }
          log::debug("layer {} step {}: forward done, resident {:.0f} MiB (peak {:.0f})", i, k,
                     core::resident_mb(), core::peak_resident_mb());
          std::map<std::string, LinearStats> finished;
          for (auto& [name, acc] : accumulators) finished.emplace(name, acc.finish());
          for (const auto& [name, first] : leader) {
            LinearStats s = finished.at(first);
            // Passes may consume a Hessian in place (GPTQ damps it): each reader its own.
            if (name != first && s.hessian.defined()) s.hessian = s.hessian.clone();
            stats.emplace(name, std::move(s));
          }
          // Before the cache keeps them: a poisoned entry would fail every later run.
          for (const auto& [name, s] : stats) require_finite(s, i, name);
          if (key && ranks.is_root()) options_.cache.cache->store(*key, stats);
          timing.statistics_s += since(t);
        }
        // The double sums are not needed once finished: a 7B down_proj's is 462 MiB.
        accumulators.clear();
      }
      // The forward's many sub-threshold temporaries stay in malloc's heap once freed; handed
      // back before the passes allocate theirs, or the heap grows layer after layer (AWQ on
      // sotu-llama-6L: +300 MiB a layer without it, flat with it).
      core::give_back_free_heap_pages();
      LayerStep step{layer, model_, i, static_cast<int64_t>(k), subset, stats, inputs,
                     [&layer, this](const at::Tensor& x) {
                       return layer.forward(x, model_.make_context(x.size(1)));
                     }};
      log::debug("layer {} step {}: statistics collected, resident {:.0f} MiB (peak {:.0f})", i, k,
                 core::resident_mb(), core::peak_resident_mb());
      t = Clock::now();
      handler.process(step);
      timing.process_s += since(t);
      core::give_back_free_heap_pages();
      log::debug("layer {} step {}: processed, resident {:.0f} MiB (peak {:.0f})", i, k,
                 core::resident_mb(), core::peak_resident_mb());
    }
    handler.end_layer(layer, i);
    if (quantized_next) {
      t = Clock::now();
      forward_layer(layer, inputs, inputs);  // X_{i+1} over X_i, batch by batch
      timing.propagate_s = since(t);
    } else {
      inputs = std::move(float_outputs);
    }
    log::debug("layer {}: next inputs computed, resident {:.0f} MiB (peak {:.0f})", i,
               core::resident_mb(), core::peak_resident_mb());
    handler.layer_done(layer, i, inputs);
    if (options_.release_layers) model_.release(i);
    core::give_back_free_heap_pages();
    timing.peak_rss_mb = core::peak_resident_mb();
    log::debug("layer {} done in {:.1f} s (statistics {:.1f}, passes {:.1f}, next inputs {:.1f}), "
               "resident {:.0f} MiB (peak {:.0f})", i,
               timing.load_s + timing.float_outputs_s + timing.statistics_s + timing.process_s +
                   timing.propagate_s,
               timing.statistics_s, timing.process_s, timing.propagate_s + timing.float_outputs_s,
               core::resident_mb(), timing.peak_rss_mb);
    timings_.push_back(timing);
    progress.step();
  }
  progress.finish();
  log::debug("calibration: {} statistics forwards stopped after their last observed linear",
             placement_.stopped_forwards);
}

}  // namespace calq::calib
