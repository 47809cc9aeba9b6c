// grouping_operation on the CPU: a gather with a (B, M, K) index, computed as gather over the
// flattened (B, M*K) index (same memory layout), forward and backward.
#include "gather/gather.h"
#include "group/group.h"
#include "utils/checks.h"

at::Tensor group_forward_cpu(const at::Tensor& features, const at::Tensor& idx) {
  CHECK_DIM(idx, 3);
  CHECK_CONTIGUOUS(idx);
  const int64_t B = idx.size(0), M = idx.size(1), K = idx.size(2);
  auto out = gather_forward_cpu(features, idx.view({B, M * K}));  // (B, C, M*K)
  return out.view({B, features.size(1), M, K});
}

at::Tensor group_backward_cpu(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  CHECK_DIM(grad_out, 4);
  CHECK_DIM(idx, 3);
  CHECK_CONTIGUOUS(grad_out);
  CHECK_CONTIGUOUS(idx);
  const int64_t B = idx.size(0), M = idx.size(1), K = idx.size(2);
  TORCH_CHECK(grad_out.size(2) == M && grad_out.size(3) == K, "group_backward: grad_out ", grad_out.sizes(),
              " does not match idx ", idx.sizes());
  return gather_backward_cpu(grad_out.view({B, grad_out.size(1), M * K}), idx.view({B, M * K}), n);
}
