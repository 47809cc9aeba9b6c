// Chamfer distance, CUDA kernels (drop-in for Point-MAE's chamfer_3D extension).
//
// forward: one nearest-neighbour pass per direction; one thread per point, the other cloud
// streamed through shared memory in tiles, in index order; the first point is taken, then strict <
// (ties keep the lowest index), exactly the CPU kernel's k = 1 selection.
// Squared distances are summed as dx*dx + dy*dy + dz*dz with round-to-nearest intrinsics (no FMA
// contraction), so indices equal the CPU kernel bit for bit.
// backward: d|a - b|^2 = 2 (a - b) (da - db); the partner's share is scattered with atomics.
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "chamfer.h"
#include "utils/checks.h"
#include "utils/distance.cuh"

namespace {

constexpr int kThreads = 256;  // also the tile of the other cloud held in shared memory

// For each point of `a` its nearest point of `b`. Grid: B * ceil(n / kThreads) blocks.
// a - b == -(b - a) exactly in IEEE arithmetic, so both directions give the reference's bits.
template <typename scalar_t>
__global__ void nearest_kernel(const scalar_t* __restrict__ a,  // (B, n, 3)
                               const scalar_t* __restrict__ b,  // (B, m, 3)
                               int64_t n, int64_t m, int64_t tiles_per_cloud,
                               scalar_t* __restrict__ dist,  // (B, n)
                               int32_t* __restrict__ idx) {  // (B, n)
  __shared__ scalar_t s_b[kThreads * 3];
  const int64_t batch = blockIdx.x / tiles_per_cloud;
  const int64_t i = (blockIdx.x % tiles_per_cloud) * kThreads + threadIdx.x;
  const bool active = i < n;
  const int64_t p = batch * n + i;
  const scalar_t ax = active ? a[p * 3 + 0] : scalar_t(0);
  const scalar_t ay = active ? a[p * 3 + 1] : scalar_t(0);
  const scalar_t az = active ? a[p * 3 + 2] : scalar_t(0);
  b += batch * m * 3;
  scalar_t best = std::numeric_limits<scalar_t>::infinity();
  int32_t besti = 0;
  for (int64_t start = 0; start < m; start += kThreads) {
    const int64_t len = min(static_cast<int64_t>(kThreads), m - start);
    __syncthreads();  // the previous tile has been read by everyone
    for (int64_t t = threadIdx.x; t < len * 3; t += kThreads) s_b[t] = b[start * 3 + t];
    __syncthreads();
    for (int64_t t = 0; active && t < len; ++t) {
      const scalar_t d = sq_dist(ax - s_b[t * 3 + 0], ay - s_b[t * 3 + 1], az - s_b[t * 3 + 2]);
      // the first point is taken unconditionally, as the CPU kernel (a NaN distance then stays)
      if (d < best || start + t == 0) {
        best = d;
        besti = static_cast<int32_t>(start + t);
      }
    }
  }
  if (!active) return;
  dist[p] = best;
  idx[p] = besti;
}

// grad_a[i] += 2 (a_i - b_j) g_i and grad_b[j] -= 2 (a_i - b_j) g_i with j = idx[i].
template <typename scalar_t>
__global__ void nearest_backward_kernel(const scalar_t* __restrict__ a,     // (B, n, 3)
                                        const scalar_t* __restrict__ b,     // (B, m, 3)
                                        const int32_t* __restrict__ idx,    // (B, n)
                                        const scalar_t* __restrict__ grad,  // (B, n)
                                        int64_t total, int64_t n, int64_t m,
                                        scalar_t* __restrict__ grad_a,   // (B, n, 3)
                                        scalar_t* __restrict__ grad_b) {  // (B, m, 3)
  for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < total; p += (int64_t)gridDim.x * blockDim.x) {
    const int32_t j = idx[p];
    CUDA_KERNEL_ASSERT(j >= 0 && j < m);
    const int64_t q = (p / n * m + j) * 3;
    const scalar_t g = 2 * grad[p];
    for (int c = 0; c < 3; ++c) {
      const scalar_t v = g * (a[p * 3 + c] - b[q + c]);
      grad_a[p * 3 + c] += v;             // only this thread writes point p in this pass
      gpuAtomicAdd(grad_b + q + c, -v);  // many points can share the nearest partner j
    }
  }
}

void check_cloud(const at::Tensor& x, const at::Tensor& like) {
  CHECK_CUDA(x);
  CHECK_CONTIGUOUS(x);
  TORCH_CHECK(x.device() == like.device(), "all chamfer inputs must be on ", like.device(), ", got ", x.device());
}

void check_pair(const at::Tensor& xyz1, const at::Tensor& xyz2) {
  check_cloud(xyz1, xyz1);
  check_cloud(xyz2, xyz1);
  CHECK_XYZ(xyz1);
  CHECK_XYZ(xyz2);
  CHECK_FLOATING(xyz1);
  CHECK_SAME_DTYPE(xyz1, xyz2);
  TORCH_CHECK(xyz1.size(0) == xyz2.size(0), "xyz1 and xyz2 must have the same batch size, got ", xyz1.size(0),
              " and ", xyz2.size(0));
  TORCH_CHECK(xyz1.size(1) >= 1 && xyz2.size(1) >= 1, "xyz1 and xyz2 must have at least one point, got ",
              xyz1.size(1), " and ", xyz2.size(1));
  TORCH_CHECK(std::max(xyz1.size(1), xyz2.size(1)) <= std::numeric_limits<int32_t>::max(),
              "too many points for int32 indices");
}

int64_t num_blocks(int64_t total) { return std::min<int64_t>((total + kThreads - 1) / kThreads, 4096); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_forward_cuda(const at::Tensor& xyz1,
                                                                                const at::Tensor& xyz2) {
  check_pair(xyz1, xyz2);
  const int64_t B = xyz1.size(0), N = xyz1.size(1), M = xyz2.size(1);
  c10::cuda::CUDAGuard guard(xyz1.device());
  at::Tensor dist1 = at::empty({B, N}, xyz1.options());
  at::Tensor dist2 = at::empty({B, M}, xyz1.options());
  at::Tensor idx1 = at::empty({B, N}, xyz1.options().dtype(at::kInt));
  at::Tensor idx2 = at::empty({B, M}, xyz1.options().dtype(at::kInt));
  if (B == 0) return {dist1, dist2, idx1, idx2};
  const int64_t tiles1 = (N + kThreads - 1) / kThreads, tiles2 = (M + kThreads - 1) / kThreads;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(xyz1.scalar_type(), "chamfer_forward_cuda", [&] {
    nearest_kernel<scalar_t><<<B * tiles1, kThreads, 0, stream>>>(
        xyz1.data_ptr<scalar_t>(), xyz2.data_ptr<scalar_t>(), N, M, tiles1, dist1.data_ptr<scalar_t>(),
        idx1.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    nearest_kernel<scalar_t><<<B * tiles2, kThreads, 0, stream>>>(
        xyz2.data_ptr<scalar_t>(), xyz1.data_ptr<scalar_t>(), M, N, tiles2, dist2.data_ptr<scalar_t>(),
        idx2.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dist1, dist2, idx1, idx2};
}

std::tuple<at::Tensor, at::Tensor> chamfer_backward_cuda(const at::Tensor& xyz1, const at::Tensor& xyz2,
                                                         const at::Tensor& idx1, const at::Tensor& idx2,
                                                         const at::Tensor& grad_dist1, const at::Tensor& grad_dist2) {
  check_pair(xyz1, xyz2);
  const int64_t B = xyz1.size(0), N = xyz1.size(1), M = xyz2.size(1);
  for (const at::Tensor* t : {&idx1, &idx2, &grad_dist1, &grad_dist2}) check_cloud(*t, xyz1);
  CHECK_INT32(idx1);
  CHECK_INT32(idx2);
  CHECK_SAME_DTYPE(grad_dist1, xyz1);
  CHECK_SAME_DTYPE(grad_dist2, xyz1);
  TORCH_CHECK(idx1.sizes() == at::IntArrayRef({B, N}) && grad_dist1.sizes() == at::IntArrayRef({B, N}),
              "idx1 and grad_dist1 must have shape (", B, ", ", N, "), got ", idx1.sizes(), " and ", grad_dist1.sizes());
  TORCH_CHECK(idx2.sizes() == at::IntArrayRef({B, M}) && grad_dist2.sizes() == at::IntArrayRef({B, M}),
              "idx2 and grad_dist2 must have shape (", B, ", ", M, "), got ", idx2.sizes(), " and ", grad_dist2.sizes());
  c10::cuda::CUDAGuard guard(xyz1.device());
  at::Tensor grad1 = at::zeros_like(xyz1);
  at::Tensor grad2 = at::zeros_like(xyz2);
  if (B == 0) return {grad1, grad2};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(xyz1.scalar_type(), "chamfer_backward_cuda", [&] {
    nearest_backward_kernel<scalar_t><<<num_blocks(B * N), kThreads, 0, stream>>>(
        xyz1.data_ptr<scalar_t>(), xyz2.data_ptr<scalar_t>(), idx1.data_ptr<int32_t>(),
        grad_dist1.data_ptr<scalar_t>(), B * N, N, M, grad1.data_ptr<scalar_t>(), grad2.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    nearest_backward_kernel<scalar_t><<<num_blocks(B * M), kThreads, 0, stream>>>(
        xyz2.data_ptr<scalar_t>(), xyz1.data_ptr<scalar_t>(), idx2.data_ptr<int32_t>(),
        grad_dist2.data_ptr<scalar_t>(), B * M, M, N, grad2.data_ptr<scalar_t>(), grad1.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad1, grad2};
}
