// Gather columns of features by index (pointnet2_ops gather_operation).
//   forward:  features (B, C, N) float, idx (B, M) int32 in [0, N) -> (B, C, M)
//   backward: grad_out (B, C, M), idx (B, M) int32, n = N -> grad_features (B, C, N) (scatter-add)
// dtypes: float32/float64 on CPU; plus float16/bfloat16 on CUDA.
// Each op has a _cpu and (under WITH_CUDA) a _cuda kernel with the same signature; the inline
// dispatcher picks one by device.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

at::Tensor gather_forward_cpu(const at::Tensor& features, const at::Tensor& idx);
#ifdef WITH_CUDA
at::Tensor gather_forward_cuda(const at::Tensor& features, const at::Tensor& idx);
#endif

inline at::Tensor gather_forward(const at::Tensor& features, const at::Tensor& idx) {
  if (features.is_cuda()) {
#ifdef WITH_CUDA
    return gather_forward_cuda(features, idx);
#else
    TORCH_CHECK(false, "gather_forward: cuda_ext was not compiled with CUDA");
#endif
  }
  return gather_forward_cpu(features, idx);
}

at::Tensor gather_backward_cpu(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n);
#ifdef WITH_CUDA
at::Tensor gather_backward_cuda(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n);
#endif

inline at::Tensor gather_backward(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  if (grad_out.is_cuda()) {
#ifdef WITH_CUDA
    return gather_backward_cuda(grad_out, idx, n);
#else
    TORCH_CHECK(false, "gather_backward: cuda_ext was not compiled with CUDA");
#endif
  }
  return gather_backward_cpu(grad_out, idx, n);
}
