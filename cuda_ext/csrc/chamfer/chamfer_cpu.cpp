// Chamfer distance on the CPU: each direction is the k = 1 case of the CPU kNN; the backward
// adds 2 (p - q) g to p's gradient and subtracts it from its nearest neighbour q's, batch by batch.
#include <ATen/Parallel.h>

#include "chamfer/chamfer.h"
#include "knn/knn.h"
#include "utils/checks.h"

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_forward_cpu(const at::Tensor& xyz1, const at::Tensor& xyz2) {
  auto r1 = knn_cpu(xyz2, xyz1, 1);  // nearest xyz2 point of each xyz1 point
  auto r2 = knn_cpu(xyz1, xyz2, 1);
  return {std::get<0>(r1).squeeze(2), std::get<0>(r2).squeeze(2), std::get<1>(r1).squeeze(2).to(at::kInt),
          std::get<1>(r2).squeeze(2).to(at::kInt)};
}

namespace {

// grad of sum_i g_i |p_i - q_{nn_i}|^2 into gp (for p) and gq (for q), one batch.
template <typename T>
void chamfer_grad(const T* p, const T* q, const int32_t* nn, const T* g, int64_t n, T* gp, T* gq) {
  for (int64_t i = 0; i < n; ++i) {
    const T* a = p + 3 * i;
    const T* b = q + 3 * static_cast<int64_t>(nn[i]);
    for (int c = 0; c < 3; ++c) {
      const T v = T(2) * (a[c] - b[c]) * g[i];
      gp[3 * i + c] += v;
      gq[3 * static_cast<int64_t>(nn[i]) + c] -= v;
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> chamfer_backward_cpu(const at::Tensor& xyz1, const at::Tensor& xyz2, const at::Tensor& idx1,
                                                        const at::Tensor& idx2, const at::Tensor& grad_dist1,
                                                        const at::Tensor& grad_dist2) {
  for (const auto* t : {&xyz1, &xyz2, &idx1, &idx2, &grad_dist1, &grad_dist2}) {
    CHECK_CPU(*t);
    CHECK_CONTIGUOUS(*t);
  }
  CHECK_XYZ(xyz1);
  CHECK_XYZ(xyz2);
  CHECK_INT32(idx1);
  CHECK_INT32(idx2);
  const int64_t B = xyz1.size(0), N = xyz1.size(1), M = xyz2.size(1);
  TORCH_CHECK(idx1.sizes() == grad_dist1.sizes() && idx1.numel() == B * N, "chamfer_backward: idx1/grad_dist1 must be (B, N)");
  TORCH_CHECK(idx2.sizes() == grad_dist2.sizes() && idx2.numel() == B * M, "chamfer_backward: idx2/grad_dist2 must be (B, M)");
  auto g1 = at::zeros_like(xyz1), g2 = at::zeros_like(xyz2);
  AT_DISPATCH_FLOATING_TYPES(xyz1.scalar_type(), "chamfer_backward_cpu", [&] {
    const scalar_t *p1 = xyz1.data_ptr<scalar_t>(), *p2 = xyz2.data_ptr<scalar_t>();
    const scalar_t *gd1 = grad_dist1.data_ptr<scalar_t>(), *gd2 = grad_dist2.data_ptr<scalar_t>();
    const int32_t *i1 = idx1.data_ptr<int32_t>(), *i2 = idx2.data_ptr<int32_t>();
    scalar_t *o1 = g1.data_ptr<scalar_t>(), *o2 = g2.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t s, int64_t e) {
      for (int64_t b = s; b < e; ++b) {
        chamfer_grad(p1 + b * N * 3, p2 + b * M * 3, i1 + b * N, gd1 + b * N, N, o1 + b * N * 3, o2 + b * M * 3);
        chamfer_grad(p2 + b * M * 3, p1 + b * N * 3, i2 + b * M, gd2 + b * M, M, o2 + b * M * 3, o1 + b * N * 3);
      }
    });
  });
  return {g1, g2};
}
