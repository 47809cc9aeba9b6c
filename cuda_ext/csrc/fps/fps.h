// Furthest point sampling.
//   xyz: (B, N, 3) float, contiguous; 1 <= npoint <= N
//   returns (B, npoint) int32: starts at index 0, each next index is the point with the largest
//   squared distance (dx*dx + dy*dy + dz*dz) to the chosen set, lowest index on ties.
//   skip_near_origin: points with x*x + y*y + z*z <= 1e-3 are never chosen after the first
//   (pointnet2_ops' CUDA kernel does this); index 0 is repeated when no candidate is left.
// dtypes: float32/float64 on CPU; plus float16/bfloat16 on CUDA.
// Each op has a _cpu and (under WITH_CUDA) a _cuda kernel with the same signature; the inline
// dispatcher picks one by device.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

at::Tensor furthest_point_sample_cpu(const at::Tensor& xyz, int64_t npoint, bool skip_near_origin);
#ifdef WITH_CUDA
at::Tensor furthest_point_sample_cuda(const at::Tensor& xyz, int64_t npoint, bool skip_near_origin);
#endif

inline at::Tensor furthest_point_sample(const at::Tensor& xyz, int64_t npoint, bool skip_near_origin) {
  if (xyz.is_cuda()) {
#ifdef WITH_CUDA
    return furthest_point_sample_cuda(xyz, npoint, skip_near_origin);
#else
    TORCH_CHECK(false, "furthest_point_sample: cuda_ext was not compiled with CUDA");
#endif
  }
  return furthest_point_sample_cpu(xyz, npoint, skip_near_origin);
}

// CPU only, for tests and benchmarks: method 0 = choose by size, 1 = plain O(N * npoint) loop,
// 2 = exact bucket (kd-tree leaves) FPS. All methods return the same indices.
at::Tensor furthest_point_sample_cpu_method(const at::Tensor& xyz, int64_t npoint, bool skip_near_origin,
                                            int64_t method);
