// core/kernels/device.h: which implementation a tensor's device selects, and the errors for the
// devices calq has no kernel for (docs/kernels.md §2). The CUDA side is tests/cuda/.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "core/kernels/device.h"
#include "core/kernels/fake_quant.h"
#include "core/kernels/hessian.h"
#include "core/quant/quantizer.h"

using namespace calq;

TEST_CASE("kernel dispatch picks the cpu for cpu tensors and names the op otherwise",
          "[core][kernel]") {
  CHECK(core::kernels::kernel_device(at::zeros({2}), "op") == core::kernels::KernelDevice::Cpu);
  const at::Tensor meta = at::empty({4, 4}, at::TensorOptions().device(at::kMeta));
  CHECK_THROWS_WITH(core::kernels::kernel_device(meta, "fake quant"),
                    Catch::Contains("fake quant: no kernel for tensors on meta"));
  std::vector<at::Tensor> sum;
  CHECK_THROWS_WITH(core::kernels::accumulate_xtx(sum, meta), Catch::Contains("hessian"));
}

TEST_CASE("kernels check shapes and dtypes before dispatching", "[core][kernel]") {
  const core::QuantSpec spec = core::weight_spec(8, core::Grid::Absmax, -1);
  const at::Tensor rows = at::randn({3, 5});
  CHECK_THROWS_WITH(core::kernels::fake_quantize_rows(rows, at::ones({2}), at::zeros({2}, at::kInt),
                                                      spec),
                    Catch::Contains("expected one of each per row"));
  std::vector<at::Tensor> sum;
  CHECK_THROWS_WITH(core::kernels::accumulate_xtx(sum, rows.to(at::kDouble)),
                    Catch::Contains("float32"));
  core::kernels::accumulate_xtx(sum, rows);
  CHECK_THROWS_WITH(core::kernels::accumulate_xtx(sum, at::randn({3, 6})),
                    Catch::Contains("one width"));
}
