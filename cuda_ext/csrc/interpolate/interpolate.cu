// Three nearest neighbours and inverse-distance interpolation, CUDA kernels (pointnet2_ops).
//
// three_nn: one thread per unknown point; the known points are streamed through shared memory in
// tiles, in index order, and the CPU kernel's top-3 insertion keeps the lowest index on ties. Squared distances
// are summed as dx*dx + dy*dy + dz*dz with round-to-nearest intrinsics (no FMA contraction), so
// indices equal the CPU kernel bit for bit. three_interpolate: one thread per output element; the
// backward pass scatter-adds with atomics.
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "interpolate.h"
#include "utils/checks.h"
#include "utils/distance.cuh"

namespace {

constexpr int kThreads = 256;  // also the tile of known points held in shared memory

int64_t num_blocks(int64_t total) { return std::min<int64_t>((total + kThreads - 1) / kThreads, 4096); }

// The CPU kernel's top-3 selection (knn_cpu.cpp select_small_k with k = 3), in registers: the
// first 3 points are inserted unconditionally, each after every entry not greater than it; a later
// point enters only when strictly below the 3rd. So ties keep the lowest index and a NaN or
// infinite distance behaves exactly as on the CPU (no slot is left at index 0).
template <typename T>
__device__ __forceinline__ void insert_three(T d, int32_t j, int& count, T& b1, T& b2, T& b3, int32_t& i1,
                                             int32_t& i2, int32_t& i3) {
  int pos;  // insertion starts after the filled entries (count < 3) or at the 3rd (list full)
  if (count < 3) {
    pos = count++;
  } else if (d < b3) {
    pos = 2;
  } else {
    return;
  }
  if (pos == 2) {
    if (!(b2 > d)) { b3 = d; i3 = j; return; }
    b3 = b2; i3 = i2;
    pos = 1;
  }
  if (pos == 1) {
    if (!(b1 > d)) { b2 = d; i2 = j; return; }
    b2 = b1; i2 = i1;
  }
  b1 = d; i1 = j;
}

// Grid: B * ceil(n / kThreads) blocks; block t of cloud b handles unknown points [t*kThreads, ...).
template <typename scalar_t>
__global__ void three_nn_kernel(const scalar_t* __restrict__ unknown,  // (B, n, 3)
                                const scalar_t* __restrict__ known,    // (B, m, 3)
                                int64_t n, int64_t m, int64_t tiles_per_cloud,
                                scalar_t* __restrict__ dist2,  // (B, n, 3)
                                int32_t* __restrict__ idx) {   // (B, n, 3)
  __shared__ scalar_t s_known[kThreads * 3];
  const int64_t b = blockIdx.x / tiles_per_cloud;
  const int64_t i = (blockIdx.x % tiles_per_cloud) * kThreads + threadIdx.x;
  const bool active = i < n;
  const int64_t q = (b * n + i) * 3;
  const scalar_t ux = active ? unknown[q + 0] : scalar_t(0);
  const scalar_t uy = active ? unknown[q + 1] : scalar_t(0);
  const scalar_t uz = active ? unknown[q + 2] : scalar_t(0);
  known += b * m * 3;
  scalar_t best1 = std::numeric_limits<scalar_t>::infinity(), best2 = best1, best3 = best1;
  int32_t i1 = 0, i2 = 0, i3 = 0;
  int count = 0;  // entries filled so far (the first 3 points fill them unconditionally)
  for (int64_t start = 0; start < m; start += kThreads) {
    const int64_t len = min(static_cast<int64_t>(kThreads), m - start);
    __syncthreads();  // the previous tile has been read by everyone
    for (int64_t t = threadIdx.x; t < len * 3; t += kThreads) s_known[t] = known[start * 3 + t];
    __syncthreads();
    for (int64_t t = 0; active && t < len; ++t) {
      const scalar_t d = sq_dist(ux - s_known[t * 3 + 0], uy - s_known[t * 3 + 1], uz - s_known[t * 3 + 2]);
      insert_three(d, static_cast<int32_t>(start + t), count, best1, best2, best3, i1, i2, i3);
    }
  }
  if (!active) return;
  dist2[q + 0] = best1; dist2[q + 1] = best2; dist2[q + 2] = best3;
  idx[q + 0] = i1; idx[q + 1] = i2; idx[q + 2] = i3;
}

// out[b, c, i] = sum_k weight[b, i, k] * features[b, c, idx[b, i, k]]
template <typename scalar_t>
__global__ void three_interpolate_forward_kernel(const scalar_t* __restrict__ features,  // (B, C, m)
                                                 const int32_t* __restrict__ idx,        // (B, n, 3)
                                                 const scalar_t* __restrict__ weight,    // (B, n, 3)
                                                 int64_t total, int64_t C, int64_t m, int64_t n,
                                                 scalar_t* __restrict__ out) {  // (B, C, n)
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bc = o / n;  // b * C + c
    const int64_t w = (bc / C * n + o % n) * 3;
    const scalar_t* f = features + bc * m;
    CUDA_KERNEL_ASSERT(idx[w] >= 0 && idx[w] < m && idx[w + 1] >= 0 && idx[w + 1] < m && idx[w + 2] >= 0 &&
                       idx[w + 2] < m);
    out[o] = f[idx[w]] * weight[w] + f[idx[w + 1]] * weight[w + 1] + f[idx[w + 2]] * weight[w + 2];
  }
}

template <typename scalar_t>
__global__ void three_interpolate_backward_kernel(const scalar_t* __restrict__ grad_out,  // (B, C, n)
                                                  const int32_t* __restrict__ idx,        // (B, n, 3)
                                                  const scalar_t* __restrict__ weight,    // (B, n, 3)
                                                  int64_t total, int64_t C, int64_t m, int64_t n,
                                                  scalar_t* __restrict__ grad_features) {  // (B, C, m)
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bc = o / n;  // b * C + c
    const int64_t w = (bc / C * n + o % n) * 3;
    scalar_t* g = grad_features + bc * m;
    const scalar_t go = grad_out[o];
    for (int k = 0; k < 3; ++k) {
      CUDA_KERNEL_ASSERT(idx[w + k] >= 0 && idx[w + k] < m);
      gpuAtomicAdd(g + idx[w + k], go * weight[w + k]);
    }
  }
}

// idx: (B, n, 3) int32 and weight: (B, n, 3) with data's dtype and device.
void check_idx_weight(const at::Tensor& idx, const at::Tensor& weight, const at::Tensor& data, int64_t n) {
  CHECK_CUDA(idx);
  CHECK_CUDA(weight);
  CHECK_CONTIGUOUS(idx);
  CHECK_CONTIGUOUS(weight);
  CHECK_INT32(idx);
  CHECK_SAME_DTYPE(weight, data);
  TORCH_CHECK(idx.dim() == 3 && idx.size(0) == data.size(0) && idx.size(1) == n && idx.size(2) == 3,
              "idx must have shape (", data.size(0), ", ", n, ", 3), got ", idx.sizes());
  TORCH_CHECK(weight.sizes() == idx.sizes(), "weight must have shape ", idx.sizes(), ", got ", weight.sizes());
  TORCH_CHECK(idx.device() == data.device() && weight.device() == data.device(), "idx and weight must be on ",
              data.device(), ", got ", idx.device(), " and ", weight.device());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> three_nn_cuda(const at::Tensor& unknown, const at::Tensor& known) {
  CHECK_CUDA(unknown);
  CHECK_CUDA(known);
  CHECK_CONTIGUOUS(unknown);
  CHECK_CONTIGUOUS(known);
  CHECK_XYZ(unknown);
  CHECK_XYZ(known);
  CHECK_FLOATING(unknown);
  CHECK_SAME_DTYPE(unknown, known);
  TORCH_CHECK(unknown.device() == known.device(), "unknown and known must be on the same device, got ",
              unknown.device(), " and ", known.device());
  TORCH_CHECK(unknown.size(0) == known.size(0), "unknown and known must have the same batch size, got ",
              unknown.size(0), " and ", known.size(0));
  TORCH_CHECK(known.size(1) >= 3, "known must have at least 3 points, got ", known.size(1));
  TORCH_CHECK(known.size(1) <= std::numeric_limits<int32_t>::max(), "known has too many points for int32 indices");
  const int64_t B = unknown.size(0), n = unknown.size(1), m = known.size(1);
  c10::cuda::CUDAGuard guard(unknown.device());
  at::Tensor dist2 = at::empty({B, n, 3}, unknown.options());
  at::Tensor idx = at::empty({B, n, 3}, unknown.options().dtype(at::kInt));
  if (B * n == 0) return {dist2, idx};
  const int64_t tiles = (n + kThreads - 1) / kThreads;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(unknown.scalar_type(), "three_nn_cuda", [&] {
    three_nn_kernel<scalar_t><<<B * tiles, kThreads, 0, stream>>>(
        unknown.data_ptr<scalar_t>(), known.data_ptr<scalar_t>(), n, m, tiles, dist2.data_ptr<scalar_t>(),
        idx.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dist2, idx};
}

at::Tensor three_interpolate_forward_cuda(const at::Tensor& features, const at::Tensor& idx, const at::Tensor& weight) {
  CHECK_CUDA(features);
  CHECK_CONTIGUOUS(features);
  CHECK_DIM(features, 3);
  CHECK_FLOATING(features);
  TORCH_CHECK(idx.dim() == 3, "idx must have shape (B, n, 3), got ", idx.sizes());
  const int64_t B = features.size(0), C = features.size(1), m = features.size(2), n = idx.size(1);
  check_idx_weight(idx, weight, features, n);
  c10::cuda::CUDAGuard guard(features.device());
  at::Tensor out = at::empty({B, C, n}, features.options());
  if (out.numel() == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_forward_cuda", [&] {
    three_interpolate_forward_kernel<scalar_t><<<num_blocks(out.numel()), kThreads, 0, stream>>>(
        features.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), weight.data_ptr<scalar_t>(), out.numel(), C, m, n,
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor three_interpolate_backward_cuda(const at::Tensor& grad_out, const at::Tensor& idx, const at::Tensor& weight,
                                           int64_t m) {
  CHECK_CUDA(grad_out);
  CHECK_CONTIGUOUS(grad_out);
  CHECK_DIM(grad_out, 3);
  CHECK_FLOATING(grad_out);
  check_idx_weight(idx, weight, grad_out, grad_out.size(2));
  const int64_t B = grad_out.size(0), C = grad_out.size(1), n = grad_out.size(2);
  c10::cuda::CUDAGuard guard(grad_out.device());
  // an empty op has an empty (or all-zero) gradient, as on the CPU: before any check of m
  at::Tensor grad_features = at::zeros({B, C, m}, grad_out.options());
  if (grad_out.numel() == 0) return grad_features;
  TORCH_CHECK(m >= 1, "m must be positive, got ", m);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "three_interpolate_backward_cuda", [&] {
    three_interpolate_backward_kernel<scalar_t><<<num_blocks(grad_out.numel()), kThreads, 0, stream>>>(
        grad_out.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), weight.data_ptr<scalar_t>(), grad_out.numel(), C, m,
        n, grad_features.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_features;
}
