#include "algorithms/qat.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "algorithms/ste_student.h"
#include "algorithms/targets.h"
#include "calib/calibration_set.h"
#include "calib/seeded_rng.h"
#include "core/error.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/options.h"
#include "core/progress.h"
#include "core/recipe.h"

namespace calq::algorithms {
namespace {

struct QatOptions {
  int64_t steps = 100;
  double lr = 1e-5;
  int64_t batch_windows = 2;
  int64_t holdout_windows = 8;
  int64_t eval_every = 10;
  uint64_t seed = 0;
};

/// Mean next-token cross-entropy of `ids` [b, T] (predicting tokens 1..T−1).
at::Tensor lm_loss(core::Model& model, const at::Tensor& ids) {
  const at::Tensor logits = model.forward(ids);
  const int64_t vocab = logits.size(-1);
  return at::cross_entropy_loss(logits.narrow(1, 0, ids.size(1) - 1).reshape({-1, vocab}),
                                ids.narrow(1, 1, ids.size(1) - 1).reshape({-1}));
}

class QatPass : public Pass {
 public:
  QatPass(QatOptions options, core::SchemeSection scheme)
      : options_(options), scheme_(std::move(scheme)) {}

  const char* name() const override { return "qat"; }
  const PassTraits& traits() const override {
    static const PassTraits traits = [] {
      PassTraits t;
      t.role = PassRole::ModelTrainer;
      t.reads.calibration_windows = true;
      t.float_weight_formats = true;
      return t;
    }();
    return traits;
  }
  calib::StatRequest needs(const LinearTarget&) const override { return {}; }
  void apply(PassStep&) override {}  // all the work happens in prepare()

  // A short fine-tune on a few calibration windows memorises them: the training loss keeps
  // falling while held-out text gets worse. So the last `holdout_windows` windows are never
  // trained on; the held-out loss is measured every `eval_every` steps, and the latent weights
  // of the best measurement (step 0, the plain RTN model, included) are the ones kept.
  void prepare(core::Model& model, const calib::CalibrationSet* calibration) override {
    CALQ_ASSERT(calibration != nullptr, "qat without calibration windows");
    const at::Tensor windows = calibration->windows.to(at::Device(model.device()));
    CALQ_CHECK(windows.size(1) >= 2,
               "calibration.seqlen: {} tokens per window; qat needs at least 2 (next-token loss)",
               windows.size(1));
    const int64_t n_holdout = options_.holdout_windows;
    const int64_t n_train = windows.size(0) - n_holdout;
    CALQ_CHECK(n_train >= 1,
               "calibration.nsamples: {} windows; qat holds out holdout_windows = {} for choosing "
               "its step and needs at least one more to train on (raise nsamples or lower "
               "holdout_windows)",
               windows.size(0), n_holdout);
    const at::Tensor train = windows.narrow(0, 0, n_train);
    const at::Tensor holdout = windows.narrow(0, n_train, n_holdout);
    const int64_t batch = std::min(options_.batch_windows, n_train);

    SteStudent student(scheme_.activations);
    int64_t n_linears = 0;
    for (int64_t i = 0; i < model.n_layers(); ++i) {
      core::DecoderLayer& layer = model.layer(i);
      for (const core::LinearSpec& spec : model.layer_schema(i).linears) {
        if (auto target = resolve_target(scheme_, spec.name)) {
          student.add(layer.linear(spec.name), target->spec, core::is_attention_input(spec.role));
          ++n_linears;
        }
      }
    }
    const auto holdout_loss = [&] {
      at::NoGradGuard no_grad;
      student.quantize();
      double sum = 0.0;
      for (int64_t s = 0; s < n_holdout; s += batch) {
        const int64_t b = std::min(batch, n_holdout - s);
        sum += lm_loss(model, holdout.narrow(0, s, b)).item<double>() * static_cast<double>(b);
      }
      return sum / static_cast<double>(n_holdout);
    };
    nlohmann::json curve = nlohmann::json::array();
    const double loss_before = holdout_loss();
    curve.push_back({0, loss_before});
    double best_loss = loss_before;
    int64_t best_step = 0;
    std::vector<at::Tensor> best = student.snapshot();

    torch::optim::Adam adam(student.parameters(), torch::optim::AdamOptions(options_.lr));
    calib::SeededRng rng(options_.seed ^ 0x716174ULL);
    double first = 0.0, last = 0.0;
    {
      Progress progress("qat steps", options_.steps);
      for (int64_t it = 1; it <= options_.steps; ++it) {
        {
          at::AutoGradMode grad(true);
          const at::Tensor idx = draw_batch(rng, n_train, batch).to(train.device());
          student.quantize();
          const at::Tensor loss = lm_loss(model, train.index_select(0, idx));
          adam.zero_grad();
          loss.backward();
          adam.step();
          last = loss.item<double>();
          if (it == 1) first = last;
        }
        if (it == options_.steps || (options_.eval_every > 0 && it % options_.eval_every == 0)) {
          const double l = holdout_loss();
          curve.push_back({it, l});
          if (l < best_loss) {
            best_loss = l;
            best_step = it;
            best = student.snapshot();
          }
        }
        progress.step();
      }
      progress.finish();
    }
    student.load(best);
    student.finish();
    log::info("qat: held-out loss on {} windows {:.4f} -> {:.4f}, kept step {} of {} ({} linears)",
              n_holdout, loss_before, best_loss, best_step, options_.steps, n_linears);
    summary_ = {{"loss_before", loss_before},
                {"loss_after", best_loss},
                {"kept_step", best_step},
                {"holdout_windows", n_holdout},
                {"train_windows", n_train},
                {"holdout_curve", curve},
                {"train_loss_first", first},
                {"train_loss_last", last},
                {"linears", n_linears},
                {"activations", trains_quantized_activations(scheme_)
                                    ? "fake-quantized (STE) during training"
                                    : "float during training"}};
  }

  std::string summary_json() const override { return summary_.is_null() ? "" : summary_.dump(); }

 private:
  QatOptions options_;
  core::SchemeSection scheme_;
  nlohmann::json summary_;
};

}  // namespace

std::unique_ptr<Pass> make_qat(const core::Options& options, const core::SchemeSection& scheme) {
  QatOptions o;
  o.steps = options.get_int_in_range("steps", o.steps, 0, 1000000);
  o.lr = options.get_double("lr", o.lr);
  if (!(o.lr > 0)) options.fail("lr", "{} is not a learning rate; expected a number > 0", o.lr);
  o.batch_windows = options.get_int_at_least("batch_windows", o.batch_windows, 1);
  o.holdout_windows = options.get_int_at_least("holdout_windows", o.holdout_windows, 1);
  o.eval_every = options.get_int_at_least("eval_every", o.eval_every, 0);
  o.seed = static_cast<uint64_t>(options.get_int_at_least("seed", 0, 0));
  options.finish();
  if (scheme.weights.format != core::WeightFormat::Int) {
    options.fail("", "trains through the integer quantizer; expected scheme.weights.format int");
  }
  return std::make_unique<QatPass>(o, scheme);
}

}  // namespace calq::algorithms
