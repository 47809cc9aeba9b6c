// gather_operation on the CPU: rows (b, c) in parallel; the backward scatter-adds within a row,
// so it is deterministic.
#include <ATen/Parallel.h>

#include "gather/gather.h"
#include "utils/checks.h"

namespace {

// Throws if any index is outside [0, n) (before touching memory with it).
void check_index_range(const at::Tensor& idx, int64_t n, const char* op) {
  const int32_t* p = idx.data_ptr<int32_t>();
  const int64_t len = idx.numel();
  int64_t bad = -1;
  for (int64_t i = 0; i < len && bad < 0; ++i)
    if (p[i] < 0 || p[i] >= n) bad = i;
  TORCH_CHECK(bad < 0, op, ": idx must be in [0, N=", n, "), got ", bad < 0 ? 0 : p[bad], " at flat position ", bad);
}

void check_gather(const at::Tensor& values, const at::Tensor& idx) {
  CHECK_CPU(values);
  CHECK_CPU(idx);
  CHECK_CONTIGUOUS(values);
  CHECK_CONTIGUOUS(idx);
  CHECK_DIM(values, 3);
  CHECK_DIM(idx, 2);
  CHECK_INT32(idx);
  TORCH_CHECK(values.size(0) == idx.size(0), "gather: batch sizes differ: ", values.size(0), " and ", idx.size(0));
}

}  // namespace

at::Tensor gather_forward_cpu(const at::Tensor& features, const at::Tensor& idx) {
  check_gather(features, idx);
  const int64_t B = features.size(0), C = features.size(1), N = features.size(2), M = idx.size(1);
  check_index_range(idx, N, "gather_forward");
  auto out = at::empty({B, C, M}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "gather_forward_cpu", [&] {
    const scalar_t* f = features.data_ptr<scalar_t>();
    const int32_t* ix = idx.data_ptr<int32_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * C, 16, [&](int64_t s, int64_t e) {
      for (int64_t bc = s; bc < e; ++bc) {
        const int32_t* row_idx = ix + (bc / C) * M;
        for (int64_t m = 0; m < M; ++m) o[bc * M + m] = f[bc * N + row_idx[m]];
      }
    });
  });
  return out;
}

at::Tensor gather_backward_cpu(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  check_gather(grad_out, idx);
  TORCH_CHECK(grad_out.size(2) == idx.size(1), "gather_backward: grad_out (B,C,M) and idx (B,M) disagree on M");
  const int64_t B = grad_out.size(0), C = grad_out.size(1), M = idx.size(1);
  check_index_range(idx, n, "gather_backward");
  auto grad = at::zeros({B, C, n}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "gather_backward_cpu", [&] {
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    const int32_t* ix = idx.data_ptr<int32_t>();
    scalar_t* o = grad.data_ptr<scalar_t>();
    at::parallel_for(0, B * C, 16, [&](int64_t s, int64_t e) {
      for (int64_t bc = s; bc < e; ++bc) {
        const int32_t* row_idx = ix + (bc / C) * M;
        for (int64_t m = 0; m < M; ++m) o[bc * n + row_idx[m]] += g[bc * M + m];
      }
    });
  });
  return grad;
}
