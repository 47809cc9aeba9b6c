// Three nearest neighbours and inverse-distance interpolation (pointnet2_ops).
//   three_nn: unknown (B, n, 3), known (B, m, 3), m >= 3 -> (squared dist (B, n, 3) ascending,
//             idx (B, n, 3) int32, lowest index on ties); the Python wrapper takes the sqrt.
//   three_interpolate_forward:  features (B, C, m), idx (B, n, 3) int32, weight (B, n, 3) -> (B, C, n)
//   three_interpolate_backward: grad_out (B, C, n), idx, weight, m -> grad_features (B, C, m)
// dtypes: float32/float64.
// Each op has a _cpu and (under WITH_CUDA) a _cuda kernel with the same signature; the inline
// dispatcher picks one by device.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

std::tuple<at::Tensor, at::Tensor> three_nn_cpu(const at::Tensor& unknown, const at::Tensor& known);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> three_nn_cuda(const at::Tensor& unknown, const at::Tensor& known);
#endif

inline std::tuple<at::Tensor, at::Tensor> three_nn(const at::Tensor& unknown, const at::Tensor& known) {
  if (unknown.is_cuda()) {
#ifdef WITH_CUDA
    return three_nn_cuda(unknown, known);
#else
    TORCH_CHECK(false, "three_nn: cuda_ext was not compiled with CUDA");
#endif
  }
  return three_nn_cpu(unknown, known);
}

at::Tensor three_interpolate_forward_cpu(const at::Tensor& features, const at::Tensor& idx, const at::Tensor& weight);
#ifdef WITH_CUDA
at::Tensor three_interpolate_forward_cuda(const at::Tensor& features, const at::Tensor& idx, const at::Tensor& weight);
#endif

inline at::Tensor three_interpolate_forward(const at::Tensor& features, const at::Tensor& idx, const at::Tensor& weight) {
  if (features.is_cuda()) {
#ifdef WITH_CUDA
    return three_interpolate_forward_cuda(features, idx, weight);
#else
    TORCH_CHECK(false, "three_interpolate_forward: cuda_ext was not compiled with CUDA");
#endif
  }
  return three_interpolate_forward_cpu(features, idx, weight);
}

at::Tensor three_interpolate_backward_cpu(const at::Tensor& grad_out, const at::Tensor& idx, const at::Tensor& weight, int64_t m);
#ifdef WITH_CUDA
at::Tensor three_interpolate_backward_cuda(const at::Tensor& grad_out, const at::Tensor& idx, const at::Tensor& weight, int64_t m);
#endif

inline at::Tensor three_interpolate_backward(const at::Tensor& grad_out, const at::Tensor& idx, const at::Tensor& weight, int64_t m) {
  if (grad_out.is_cuda()) {
#ifdef WITH_CUDA
    return three_interpolate_backward_cuda(grad_out, idx, weight, m);
#else
    TORCH_CHECK(false, "three_interpolate_backward: cuda_ext was not compiled with CUDA");
#endif
  }
  return three_interpolate_backward_cpu(grad_out, idx, weight, m);
}
