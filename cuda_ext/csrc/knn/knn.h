// k nearest neighbours of each query point among the reference points.
//   ref: (B, N, 3), query: (B, M, 3), same float dtype, 1 <= k <= N
//   returns (squared dist (B, M, k) ascending, idx (B, M, k) int64, lowest index on ties);
//   the Python wrapper takes the sqrt.
// dtypes: float32/float64 on CPU; plus float16/bfloat16 on CUDA.
// Each op has a _cpu and (under WITH_CUDA) a _cuda kernel with the same signature; the inline
// dispatcher picks one by device.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& ref, const at::Tensor& query, int64_t k);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& ref, const at::Tensor& query, int64_t k);
#endif

inline std::tuple<at::Tensor, at::Tensor> knn(const at::Tensor& ref, const at::Tensor& query, int64_t k) {
  if (ref.is_cuda()) {
#ifdef WITH_CUDA
    return knn_cuda(ref, query, k);
#else
    TORCH_CHECK(false, "knn: cuda_ext was not compiled with CUDA");
#endif
  }
  return knn_cpu(ref, query, k);
}
