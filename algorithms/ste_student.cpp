#include "algorithms/ste_student.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ATen.h>

#include <algorithm>

#include "algorithms/ste_fake_quant.h"
#include "calib/seeded_rng.h"
#include "core/error.h"
#include "core/model/activation_quant_extensions.h"

namespace calq::algorithms {

at::Tensor draw_batch(calib::SeededRng& rng, int64_t n, int64_t k) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  for (int64_t i = 0; i < k; ++i) {
    const auto j = static_cast<size_t>(rng.uniform_int(i, n - 1));
    std::swap(order[static_cast<size_t>(i)], order[j]);
  }
  return at::tensor(std::vector<int64_t>(order.begin(), order.begin() + k), at::kLong);
}

bool trains_quantized_activations(const core::SchemeSection& scheme) {
  return scheme.activations && scheme.activations->dynamic;
}

SteStudent::SteStudent(const std::optional<core::ActivationScheme>& activations) {
  if (activations && activations->dynamic) {
    act_ = activations->spec();
    bmm_inputs_ = activations->bmm_inputs;
  }
}

SteStudent::~SteStudent() {
  if (!finished_) restore();
}

void SteStudent::add(core::Linear& linear, const core::QuantSpec& spec, bool attention_input) {
  Saved s{&linear, spec, linear.weight, linear.weight.detach().to(at::kFloat).clone(),
          linear.extensions()};
  latents_.push_back(s.initial.clone().set_requires_grad(true));
  if (act_) {
    linear.put(std::make_shared<core::InputQuant>(*act_));
    if (bmm_inputs_ && attention_input)
      linear.put(std::make_shared<core::OutputQuant>(*act_));
  }
  saved_.push_back(std::move(s));
}

void SteStudent::quantize() {
  for (size_t i = 0; i < saved_.size(); ++i) {
    const Saved& s = saved_[i];
    s.linear->weight = ste_fake_quant(latents_[i], s.spec).to(s.weight.scalar_type());
  }
}

std::vector<at::Tensor> SteStudent::snapshot() const {
  std::vector<at::Tensor> copies;
  for (const at::Tensor& latent : latents_) copies.push_back(latent.detach().clone());
  return copies;
}

void SteStudent::load(const std::vector<at::Tensor>& snapshot) {
  CALQ_ASSERT(snapshot.size() == latents_.size(), "snapshot of another student");
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < latents_.size(); ++i) latents_[i].copy_(snapshot[i]);
}

std::vector<double> SteStudent::weight_changes() const {
  std::vector<double> changes;
  for (size_t i = 0; i < saved_.size(); ++i) {
    const at::Tensor& w0 = saved_[i].initial;
    changes.push_back((latents_[i].detach() - w0).norm().item<double>() /
                      std::max(w0.norm().item<double>(), 1e-30));
  }
  return changes;
}

void SteStudent::restore() {
  for (Saved& s : saved_) {
    s.linear->weight = s.weight;
    s.linear->set_extensions(s.extensions);
  }
}

void SteStudent::finish() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < saved_.size(); ++i)
    saved_[i].weight.copy_(latents_[i].detach().to(saved_[i].weight.scalar_type()));
  restore();
  finished_ = true;
}

}  // namespace calq::algorithms
