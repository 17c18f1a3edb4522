#include "run/window_logits.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "core/eval/perplexity.h"
#include "core/io/safetensors.h"
#include "core/model/model.h"

namespace calq::run {

void write_window_logits(core::Model& model, const std::vector<int32_t>& tokens,
                         const core::PerplexityResult& r, const std::string& path) {
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::from_blob(const_cast<int32_t*>(tokens.data()),
                                       {r.windows * r.seqlen}, at::kInt)
                             .view({r.windows, r.seqlen})
                             .to(at::kLong);
  std::vector<at::Tensor> logits;
  for (int64_t w = 0; w < r.windows; ++w) {
    logits.push_back(
        model.forward(ids.narrow(0, w, 1).to(at::Device(model.device()))).to(at::kFloat).cpu());
  }
  core::write_safetensors(path, {{"input_ids", ids}, {"logits", at::cat(logits, 0)}});
}

}  // namespace calq::run
