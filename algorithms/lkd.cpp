#include "algorithms/lkd.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "algorithms/ste_student.h"
#include "algorithms/targets.h"
#include "calib/calibration_set.h"
#include "calib/layerwise_runner.h"
#include "calib/seeded_rng.h"
#include "core/model/model.h"
#include "core/options.h"
#include "core/recipe.h"

namespace calq::algorithms {
namespace {

struct LkdOptions {
  int64_t steps = 200;
  double lr = 1e-4;
  int64_t batch_windows = 4;
  int64_t eval_windows = 32;
  uint64_t seed = 0;
  bool random_tokens = false;
  int64_t random_windows = 64;
  int64_t random_seqlen = 256;
};

/// Runs `layer` over `inputs` in slices of `batch` windows with gradients off.
at::Tensor forward_all(core::DecoderLayer& layer, const core::ForwardContext& ctx,
                       const at::Tensor& inputs, int64_t batch) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> outputs;
  for (int64_t s = 0; s < inputs.size(0); s += batch)
    outputs.push_back(layer.forward(inputs.narrow(0, s, std::min(batch, inputs.size(0) - s)), ctx));
  return at::cat(outputs, 0);
}

class LkdPass : public Pass {
 public:
  LkdPass(LkdOptions options, core::SchemeSection scheme)
      : options_(options), scheme_(std::move(scheme)) {
    traits_.role = PassRole::Transform;
    // The student is the whole block: all of its linears train together.
    traits_.schedule = PassSchedule::WholeLayer;
    traits_.reads.calibration_windows = !options_.random_tokens;
    traits_.float_weight_formats = true;
  }

  const char* name() const override { return "lkd"; }
  const PassTraits& traits() const override { return traits_; }
  calib::StatRequest needs(const LinearTarget&) const override { return {}; }

  void prepare(core::Model& model, const calib::CalibrationSet*) override {
    if (!options_.random_tokens) return;
    // Data-free inputs: uniform token ids, embedded once and then carried through the float
    // layers by this pass (the paper formulation: teacher and student see the float input).
    at::NoGradGuard no_grad;
    calib::SeededRng rng(options_.seed ^ 0x6c6b64ULL);
    std::vector<int64_t> ids(static_cast<size_t>(options_.random_windows * options_.random_seqlen));
    for (int64_t& id : ids) id = rng.uniform_int(0, model.config().vocab_size - 1);
    const at::Tensor windows =
        at::tensor(ids, at::kLong).reshape({options_.random_windows, options_.random_seqlen});
    std::vector<at::Tensor> embedded;
    for (int64_t s = 0; s < options_.random_windows; s += options_.batch_windows) {
      const int64_t n = std::min(options_.batch_windows, options_.random_windows - s);
      embedded.push_back(model.embed(windows.narrow(0, s, n).to(at::Device(model.device()))));
    }
    random_inputs_ = at::cat(embedded, 0);
  }

  void apply(PassStep& step) override {
    const auto start = std::chrono::steady_clock::now();
    core::DecoderLayer& layer = step.step.layer;
    const at::Tensor inputs = options_.random_tokens ? random_inputs_
                            : step.step.layer_inputs.defined() ? step.step.layer_inputs.all()
                                                               : at::Tensor();
    CALQ_CHECK(inputs.defined() && inputs.size(0) > 0,
               "layer {}: lkd has no layer inputs; expected calibration data (calibration.data) "
               "or passes.lkd.inputs: random_tokens",
               step.step.layer_index);
    const int64_t n = inputs.size(0);
    const int64_t batch = std::min(options_.batch_windows, n);
    const int64_t n_eval = options_.eval_windows == 0 ? n : std::min(options_.eval_windows, n);
    const core::ForwardContext ctx = step.step.model.make_context(inputs.size(1));
    const at::Tensor teacher = forward_all(layer, ctx, inputs, batch);

    // The float start, kept so that a layer the distillation made worse is handed on untrained.
    std::vector<at::Tensor> start_weights;
    for (const LinearTarget& target : step.targets)
      start_weights.push_back(layer.linear(target.name).weight.clone());
    SteStudent student(scheme_.activations);
    const core::LayerSchema& schema = step.step.model.layer_schema(step.step.layer_index);
    for (const LinearTarget& target : step.targets)
      student.add(layer.linear(target.name), target.spec,
                  core::is_attention_input(schema.linear(target.name).role));
    const auto eval_mse = [&] {
      at::NoGradGuard no_grad;
      student.quantize();
      const at::Tensor out = forward_all(layer, ctx, inputs.narrow(0, 0, n_eval), batch);
      return (out - teacher.narrow(0, 0, n_eval)).pow(2).mean().item<double>();
    };
    const double mse_before = eval_mse();

    torch::optim::Adam adam(student.parameters(), torch::optim::AdamOptions(options_.lr));
    calib::SeededRng rng(options_.seed + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(
                                              step.step.layer_index + 1));
    double first_loss = 0.0, last_loss = 0.0;
    {
      at::AutoGradMode grad(true);
      for (int64_t it = 0; it < options_.steps; ++it) {
        const at::Tensor idx = draw_batch(rng, n, batch).to(inputs.device());
        student.quantize();
        const at::Tensor out = layer.forward(inputs.index_select(0, idx), ctx);
        const at::Tensor loss = (out - teacher.index_select(0, idx)).pow(2).mean();
        adam.zero_grad();
        loss.backward();
        adam.step();
        last_loss = loss.item<double>();
        if (it == 0) first_loss = last_loss;
      }
    }
    const double mse_after = eval_mse();
    const std::vector<double> changes = student.weight_changes();
    student.finish();
    // Adam with a fixed step count can overshoot on a layer that starts close to its teacher;
    // the student is kept only where it beats the untrained quantization on the MSE windows.
    const bool kept = mse_after < mse_before;
    if (!kept) {
      at::NoGradGuard no_grad;
      for (size_t i = 0; i < step.targets.size(); ++i)
        layer.linear(step.targets[i].name).weight.copy_(start_weights[i]);
    }
    // Random-token inputs follow the float layers (the runner does the same for calibration data
    // unless another pass asks for quantized propagation).
    if (options_.random_tokens) random_inputs_ = teacher;

    for (size_t i = 0; i < step.targets.size(); ++i) {
      LinearReport report;
      report.figures["weight_change"] = changes[i];
      step.linears[step.targets[i].name].reports["lkd"] = std::move(report);
    }
    layers_.push_back({{"index", step.step.layer_index},
                       {"mse_before", mse_before},
                       {"mse_after", mse_after},
                       {"kept", kept ? "trained" : "untrained (training raised the MSE)"},
                       {"train_loss_first", first_loss},
                       {"train_loss_last", last_loss},
                       {"seconds", std::chrono::duration<double>(
                                       std::chrono::steady_clock::now() - start).count()}});
  }

  void finish() override { random_inputs_ = at::Tensor(); }

  PassCarry carry() const override {
    PassCarry c;
    c.json = layers_.dump();
    if (random_inputs_.defined()) c.tensors["random_inputs"] = random_inputs_;
    return c;
  }

  void restore(const PassCarry& carry) override {
    if (!carry.json.empty()) layers_ = nlohmann::json::parse(carry.json);
    if (const auto it = carry.tensors.find("random_inputs"); it != carry.tensors.end())
      random_inputs_ = it->second;
  }

  std::string summary_json() const override {
    nlohmann::json summary = {
        {"inputs", options_.random_tokens ? "random_tokens" : "calibration"},
        {"activations", trains_quantized_activations(scheme_)
                            ? "fake-quantized (STE) during training" : "float during training"},
        {"mse_windows", options_.eval_windows},
        {"layers", layers_}};
    return summary.dump();
  }

 private:
  LkdOptions options_;
  core::SchemeSection scheme_;
  PassTraits traits_;
  at::Tensor random_inputs_;
  nlohmann::json layers_ = nlohmann::json::array();
};

}  // namespace

std::unique_ptr<Pass> make_lkd(const core::Options& options, const core::SchemeSection& scheme) {
  LkdOptions o;
  o.steps = options.get_int_in_range("steps", o.steps, 0, 1000000);
  o.lr = options.get_double("lr", o.lr);
  if (!(o.lr > 0)) options.fail("lr", "{} is not a learning rate; expected a number > 0", o.lr);
  o.batch_windows = options.get_int_at_least("batch_windows", o.batch_windows, 1);
  o.eval_windows = options.get_int_at_least("eval_windows", o.eval_windows, 0);
  o.seed = static_cast<uint64_t>(options.get_int_at_least("seed", 0, 0));
  o.random_tokens =
      options.get_string_in("inputs", "calibration", {"calibration", "random_tokens"}) ==
      "random_tokens";
  o.random_windows = options.get_int_at_least("random_windows", o.random_windows, 1);
  o.random_seqlen = options.get_int_at_least("random_seqlen", o.random_seqlen, 2);
  options.finish();
  if (scheme.weights.format != core::WeightFormat::Int) {
    options.fail("", "trains through the integer quantizer; expected scheme.weights.format int");
  }
  return std::make_unique<LkdPass>(o, scheme);
}

}  // namespace calq::algorithms
