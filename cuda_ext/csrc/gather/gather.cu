// Gather columns of features by index, CUDA kernels (pointnet2_ops gather_operation).
//
// One thread per output element over a grid-stride loop; the backward pass scatter-adds with
// atomics into a float32 buffer for float16/bfloat16 (16-bit atomics would round at every add, and
// repeated indices, as ball query gives, add many times), cast to the input dtype once at the end.
// grouping_operation (group.cu) is this gather over the (B, M*K) view of its index.
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "gather.h"
#include "utils/checks.h"

namespace {

constexpr int kThreads = 256;

// Enough blocks to fill any GPU; the grid-stride loops cover the rest.
int64_t num_blocks(int64_t total) { return std::min<int64_t>((total + kThreads - 1) / kThreads, 4096); }

template <typename scalar_t>
__global__ void gather_forward_kernel(const scalar_t* __restrict__ features,  // (B, C, N)
                                      const int32_t* __restrict__ idx,        // (B, M)
                                      int64_t total, int64_t C, int64_t N, int64_t M,
                                      scalar_t* __restrict__ out) {  // (B, C, M)
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bc = i / M;  // b * C + c
    const int64_t m = i % M;
    const int32_t j = idx[bc / C * M + m];
    CUDA_KERNEL_ASSERT(j >= 0 && j < N);
    out[i] = features[bc * N + j];
  }
}

template <typename scalar_t, typename acc_t>
__global__ void gather_backward_kernel(const scalar_t* __restrict__ grad_out,  // (B, C, M)
                                       const int32_t* __restrict__ idx,        // (B, M)
                                       int64_t total, int64_t C, int64_t N, int64_t M,
                                       acc_t* __restrict__ grad_features) {  // (B, C, N)
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bc = i / M;  // b * C + c
    const int64_t m = i % M;
    const int32_t j = idx[bc / C * M + m];
    CUDA_KERNEL_ASSERT(j >= 0 && j < N);
    gpuAtomicAdd(grad_features + bc * N + j, static_cast<acc_t>(grad_out[i]));
  }
}

void check_idx(const at::Tensor& idx, const at::Tensor& data) {
  CHECK_CUDA(idx);
  CHECK_CONTIGUOUS(idx);
  CHECK_INT32(idx);
  CHECK_DIM(idx, 2);
  TORCH_CHECK(idx.device() == data.device(), "idx must be on ", data.device(), ", got ", idx.device());
  TORCH_CHECK(idx.size(0) == data.size(0), "idx must have batch size ", data.size(0), ", got ", idx.size(0));
}

}  // namespace

at::Tensor gather_forward_cuda(const at::Tensor& features, const at::Tensor& idx) {
  CHECK_CUDA(features);
  CHECK_CONTIGUOUS(features);
  CHECK_DIM(features, 3);
  CHECK_FLOATING(features);
  check_idx(idx, features);
  const int64_t B = features.size(0), C = features.size(1), N = features.size(2), M = idx.size(1);
  c10::cuda::CUDAGuard guard(features.device());
  at::Tensor out = at::empty({B, C, M}, features.options());
  if (out.numel() == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, features.scalar_type(),
                                  "gather_forward_cuda", [&] {
    gather_forward_kernel<scalar_t><<<num_blocks(out.numel()), kThreads, 0, stream>>>(
        features.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), out.numel(), C, N, M, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor gather_backward_cuda(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  CHECK_CUDA(grad_out);
  CHECK_CONTIGUOUS(grad_out);
  CHECK_DIM(grad_out, 3);
  CHECK_FLOATING(grad_out);
  check_idx(idx, grad_out);
  TORCH_CHECK(idx.size(1) == grad_out.size(2), "idx must have M=", grad_out.size(2), " columns, got ", idx.size(1));
  const int64_t B = grad_out.size(0), C = grad_out.size(1), M = grad_out.size(2);
  c10::cuda::CUDAGuard guard(grad_out.device());
  // an empty op has an empty (or all-zero) gradient, as on the CPU: before any check of n
  if (grad_out.numel() == 0) return at::zeros({B, C, n}, grad_out.options());
  TORCH_CHECK(n >= 1, "n must be positive, got ", n);
  auto stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor grad_features;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, grad_out.scalar_type(),
                                  "gather_backward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;  // float for float16/bfloat16/float32, double for double
    at::Tensor acc = at::zeros({B, C, n}, grad_out.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    gather_backward_kernel<scalar_t, acc_t><<<num_blocks(grad_out.numel()), kThreads, 0, stream>>>(
        grad_out.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), grad_out.numel(), C, n, M, acc.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_features = acc.to(grad_out.scalar_type());  // one rounding for 16-bit types, no copy otherwise
  });
  return grad_features;
}
