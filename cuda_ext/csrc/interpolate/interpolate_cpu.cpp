// three_nn (the k = 3 case of the CPU kNN) and inverse-distance interpolation on the CPU.
#include <ATen/Parallel.h>

#include "interpolate/interpolate.h"
#include "knn/knn.h"
#include "utils/checks.h"

namespace {

void check_interpolate(const at::Tensor& values, const at::Tensor& idx, const at::Tensor& weight) {
  CHECK_CPU(values);
  CHECK_CONTIGUOUS(values);
  CHECK_CONTIGUOUS(idx);
  CHECK_CONTIGUOUS(weight);
  CHECK_DIM(values, 3);
  CHECK_INT32(idx);
  CHECK_SAME_DTYPE(values, weight);
  TORCH_CHECK(idx.dim() == 3 && idx.size(2) == 3 && weight.sizes() == idx.sizes() && idx.size(0) == values.size(0),
              "three_interpolate: idx and weight must be (B, n, 3) with the batch of features, got ", idx.sizes(),
              " and ", weight.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> three_nn_cpu(const at::Tensor& unknown, const at::Tensor& known) {
  TORCH_CHECK(known.dim() == 3 && known.size(1) >= 3, "three_nn: known must be (B, m, 3) with m >= 3, got ", known.sizes());
  auto res = knn_cpu(known, unknown, 3);
  return {std::get<0>(res), std::get<1>(res).to(at::kInt)};
}

at::Tensor three_interpolate_forward_cpu(const at::Tensor& features, const at::Tensor& idx, const at::Tensor& weight) {
  check_interpolate(features, idx, weight);
  const int64_t B = features.size(0), C = features.size(1), m = features.size(2), n = idx.size(1);
  TORCH_CHECK(idx.numel() == 0 || (idx.min().item<int32_t>() >= 0 && idx.max().item<int32_t>() < m),
              "three_interpolate: idx must be in [0, m=", m, ")");
  auto out = at::empty({B, C, n}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_forward_cpu", [&] {
    const scalar_t* f = features.data_ptr<scalar_t>();
    const int32_t* ix = idx.data_ptr<int32_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * C, 16, [&](int64_t s, int64_t e) {
      for (int64_t bc = s; bc < e; ++bc) {
        const int64_t off = (bc / C) * n * 3;
        const scalar_t* row = f + bc * m;
        for (int64_t i = 0; i < n; ++i) {
          const int32_t* j = ix + off + 3 * i;
          const scalar_t* wi = w + off + 3 * i;
          o[bc * n + i] = row[j[0]] * wi[0] + row[j[1]] * wi[1] + row[j[2]] * wi[2];
        }
      }
    });
  });
  return out;
}

at::Tensor three_interpolate_backward_cpu(const at::Tensor& grad_out, const at::Tensor& idx, const at::Tensor& weight,
                                          int64_t m) {
  check_interpolate(grad_out, idx, weight);
  const int64_t B = grad_out.size(0), C = grad_out.size(1), n = idx.size(1);
  TORCH_CHECK(grad_out.size(2) == n, "three_interpolate_backward: grad_out ", grad_out.sizes(), " does not match idx ", idx.sizes());
  TORCH_CHECK(idx.numel() == 0 || (idx.min().item<int32_t>() >= 0 && idx.max().item<int32_t>() < m),
              "three_interpolate_backward: idx must be in [0, m=", m, ")");
  auto grad = at::zeros({B, C, m}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "three_interpolate_backward_cpu", [&] {
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    const int32_t* ix = idx.data_ptr<int32_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* o = grad.data_ptr<scalar_t>();
    at::parallel_for(0, B * C, 16, [&](int64_t s, int64_t e) {
      for (int64_t bc = s; bc < e; ++bc) {
        const int64_t off = (bc / C) * n * 3;
        for (int64_t i = 0; i < n; ++i)
          for (int j = 0; j < 3; ++j) o[bc * m + ix[off + 3 * i + j]] += g[bc * n + i] * w[off + 3 * i + j];
      }
    });
  });
  return grad;
}
