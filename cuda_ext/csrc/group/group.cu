// Group features by a (B, M, K) index, CUDA kernels (pointnet2_ops grouping_operation).
//
// One thread per output element over a grid-stride loop; the backward pass scatter-adds with
// atomics (gpuAtomicAdd also covers float16/bfloat16).
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "group.h"
#include "utils/checks.h"

namespace {

constexpr int kThreads = 256;

// Enough blocks to fill any GPU; the grid-stride loops cover the rest.
int64_t num_blocks(int64_t total) { return std::min<int64_t>((total + kThreads - 1) / kThreads, 4096); }

// The (B, M, K) index is read as (B, S) with S = M * K columns: out[b, c, s] = features[b, c, idx[b, s]].
template <typename scalar_t>
__global__ void group_forward_kernel(const scalar_t* __restrict__ features,  // (B, C, N)
                                     const int32_t* __restrict__ idx,        // (B, S)
                                     int64_t total, int64_t C, int64_t N, int64_t S,
                                     scalar_t* __restrict__ out) {  // (B, C, S)
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bc = i / S;  // b * C + c
    const int64_t s = i % S;
    const int32_t j = idx[bc / C * S + s];
    CUDA_KERNEL_ASSERT(j >= 0 && j < N);
    out[i] = features[bc * N + j];
  }
}

template <typename scalar_t>
__global__ void group_backward_kernel(const scalar_t* __restrict__ grad_out,  // (B, C, S)
                                      const int32_t* __restrict__ idx,        // (B, S)
                                      int64_t total, int64_t C, int64_t N, int64_t S,
                                      scalar_t* __restrict__ grad_features) {  // (B, C, N)
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bc = i / S;  // b * C + c
    const int64_t s = i % S;
    const int32_t j = idx[bc / C * S + s];
    CUDA_KERNEL_ASSERT(j >= 0 && j < N);
    gpuAtomicAdd(grad_features + bc * N + j, grad_out[i]);
  }
}

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
  CHECK_CONTIGUOUS(features);
  CHECK_DIM(features, 3);
  CHECK_FLOATING(features);
  check_idx(idx, features);
  const int64_t B = features.size(0), C = features.size(1), N = features.size(2);
  const int64_t M = idx.size(1), K = idx.size(2);
  c10::cuda::CUDAGuard guard(features.device());
  at::Tensor out = at::empty({B, C, M, K}, features.options());
  if (out.numel() == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, features.scalar_type(),
                                  "group_forward_cuda", [&] {
    group_forward_kernel<scalar_t><<<num_blocks(out.numel()), kThreads, 0, stream>>>(
        features.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), out.numel(), C, N, M * K, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor group_backward_cuda(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  CHECK_CUDA(grad_out);
  CHECK_CONTIGUOUS(grad_out);
  CHECK_DIM(grad_out, 4);
  CHECK_FLOATING(grad_out);
  check_idx(idx, grad_out);
  TORCH_CHECK(idx.size(1) == grad_out.size(2) && idx.size(2) == grad_out.size(3), "idx must have shape (B, ",
              grad_out.size(2), ", ", grad_out.size(3), ") to match grad_out, got ", idx.sizes());
  TORCH_CHECK(n >= 1, "n must be positive, got ", n);
  const int64_t B = grad_out.size(0), C = grad_out.size(1), S = grad_out.size(2) * grad_out.size(3);
  c10::cuda::CUDAGuard guard(grad_out.device());
  at::Tensor grad_features = at::zeros({B, C, n}, grad_out.options());
  if (grad_out.numel() == 0) return grad_features;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, grad_out.scalar_type(),
                                  "group_backward_cuda", [&] {
    group_backward_kernel<scalar_t><<<num_blocks(grad_out.numel()), kThreads, 0, stream>>>(
        grad_out.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), grad_out.numel(), C, n, S,
        grad_features.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_features;
}
