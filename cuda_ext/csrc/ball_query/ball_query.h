// Ball query with pointnet2_ops semantics.
//   new_xyz: (B, M, 3) centres, xyz: (B, N, 3) points, same float dtype
//   returns (B, M, nsample) int32: the first nsample indices (in index order) with squared
//   distance < radius*radius; the remaining slots repeat the first found index; a ball with no
//   point gives all zeros.
// dtypes: float32/float64.
// Each op has a _cpu and (under WITH_CUDA) a _cuda kernel with the same signature; the inline
// dispatcher picks one by device.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

at::Tensor ball_query_cpu(const at::Tensor& new_xyz, const at::Tensor& xyz, double radius, int64_t nsample);
#ifdef WITH_CUDA
at::Tensor ball_query_cuda(const at::Tensor& new_xyz, const at::Tensor& xyz, double radius, int64_t nsample);
#endif

inline at::Tensor ball_query(const at::Tensor& new_xyz, const at::Tensor& xyz, double radius, int64_t nsample) {
  if (new_xyz.is_cuda()) {
#ifdef WITH_CUDA
    return ball_query_cuda(new_xyz, xyz, radius, nsample);
#else
    TORCH_CHECK(false, "ball_query: cuda_ext was not compiled with CUDA");
#endif
  }
  return ball_query_cpu(new_xyz, xyz, radius, nsample);
}
