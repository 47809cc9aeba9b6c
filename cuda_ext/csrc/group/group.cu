// Group features by a (B, M, K) index on CUDA (pointnet2_ops grouping_operation): as on the CPU
// (group_cpu.cpp), the gather kernels of gather.cu over the flattened (B, M*K) index, which has
// the same memory layout, forward and backward (so float16/bfloat16 gradients accumulate in
// float32 there too).
#include "gather/gather.h"
#include "group/group.h"
#include "utils/checks.h"

namespace {

void check_idx(const at::Tensor& idx, const at::Tensor& data) {
  CHECK_CUDA(idx);
  CHECK_CONTIGUOUS(idx);
  CHECK_INT32(idx);
  CHECK_DIM(idx, 3);
  TORCH_CHECK(idx.device() == data.device(), "idx must be on ", data.device(), ", got ", idx.device());
  TORCH_CHECK(idx.size(0) == data.size(0), "idx must have batch size ", data.size(0), ", got ", idx.size(0));
}

}  // namespace

at::Tensor group_forward_cuda(const at::Tensor& features, const at::Tensor& idx) {
  CHECK_CUDA(features);
  CHECK_DIM(features, 3);
  check_idx(idx, features);
  const int64_t B = idx.size(0), M = idx.size(1), K = idx.size(2);
  at::Tensor out = gather_forward_cuda(features, idx.view({B, M * K}));  // (B, C, M*K)
  return out.view({B, features.size(1), M, K});
}

at::Tensor group_backward_cuda(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  CHECK_CUDA(grad_out);
  CHECK_CONTIGUOUS(grad_out);
  CHECK_DIM(grad_out, 4);
  check_idx(idx, grad_out);
  const int64_t B = idx.size(0), M = idx.size(1), K = idx.size(2);
  TORCH_CHECK(grad_out.size(2) == M && grad_out.size(3) == K, "idx must have shape (B, ", grad_out.size(2), ", ",
              grad_out.size(3), ") to match grad_out, got ", idx.sizes());
  return gather_backward_cuda(grad_out.view({B, grad_out.size(1), M * K}), idx.view({B, M * K}), n);
}
