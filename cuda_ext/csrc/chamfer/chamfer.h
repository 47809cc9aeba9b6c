// Chamfer distance (nearest neighbour in the other cloud, both directions).
//   forward: xyz1 (B, N, 3), xyz2 (B, M, 3) -> dist1 (B, N), dist2 (B, M) squared distances,
//            idx1 (B, N), idx2 (B, M) int32 (lowest index on ties)
//   backward: xyz1, xyz2, idx1, idx2, grad_dist1 (B, N), grad_dist2 (B, M) -> grad_xyz1, grad_xyz2
// dtypes: float32/float64.
// Each op has a _cpu and (under WITH_CUDA) a _cuda kernel with the same signature; the inline
// dispatcher picks one by device.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_forward_cpu(const at::Tensor& xyz1, const at::Tensor& xyz2);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_forward_cuda(const at::Tensor& xyz1, const at::Tensor& xyz2);
#endif

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_forward(const at::Tensor& xyz1, const at::Tensor& xyz2) {
  if (xyz1.is_cuda()) {
#ifdef WITH_CUDA
    return chamfer_forward_cuda(xyz1, xyz2);
#else
    TORCH_CHECK(false, "chamfer_forward: cuda_ext was not compiled with CUDA");
#endif
  }
  return chamfer_forward_cpu(xyz1, xyz2);
}

std::tuple<at::Tensor, at::Tensor> chamfer_backward_cpu(const at::Tensor& xyz1, const at::Tensor& xyz2, const at::Tensor& idx1, const at::Tensor& idx2, const at::Tensor& grad_dist1, const at::Tensor& grad_dist2);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> chamfer_backward_cuda(const at::Tensor& xyz1, const at::Tensor& xyz2, const at::Tensor& idx1, const at::Tensor& idx2, const at::Tensor& grad_dist1, const at::Tensor& grad_dist2);
#endif

inline std::tuple<at::Tensor, at::Tensor> chamfer_backward(const at::Tensor& xyz1, const at::Tensor& xyz2, const at::Tensor& idx1, const at::Tensor& idx2, const at::Tensor& grad_dist1, const at::Tensor& grad_dist2) {
  if (xyz1.is_cuda()) {
#ifdef WITH_CUDA
    return chamfer_backward_cuda(xyz1, xyz2, idx1, idx2, grad_dist1, grad_dist2);
#else
    TORCH_CHECK(false, "chamfer_backward: cuda_ext was not compiled with CUDA");
#endif
  }
  return chamfer_backward_cpu(xyz1, xyz2, idx1, idx2, grad_dist1, grad_dist2);
}
