// Ball query, CUDA kernel (pointnet2_ops semantics).
//
// One thread per centre scans the points in index order and stops after nsample hits; the first
// hit fills every slot so that a ball with fewer points repeats it; an empty ball keeps the zeros
// the output is created with. Squared distances are summed as dx*dx + dy*dy + dz*dz with
// round-to-nearest intrinsics (no FMA contraction) so hits equal the CPU kernel bit for bit.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>

#include "ball_query.h"
#include "utils/checks.h"
#include "utils/distance.cuh"

namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void ball_query_kernel(const scalar_t* __restrict__ new_xyz,  // (B, M, 3)
                                  const scalar_t* __restrict__ xyz,      // (B, N, 3)
                                  int64_t B, int64_t M, int64_t N, scalar_t radius2, int64_t nsample,
                                  int32_t* __restrict__ idx) {  // (B, M, nsample), zero-filled
  for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; q < B * M; q += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = q / M;
    const scalar_t* points = xyz + b * N * 3;
    const scalar_t cx = new_xyz[q * 3 + 0];
    const scalar_t cy = new_xyz[q * 3 + 1];
    const scalar_t cz = new_xyz[q * 3 + 2];
    int32_t* out = idx + q * nsample;
    int64_t count = 0;
    for (int64_t k = 0; k < N && count < nsample; ++k) {
      const scalar_t d2 = sq_dist(cx - points[k * 3 + 0], cy - points[k * 3 + 1], cz - points[k * 3 + 2]);
      if (!(d2 < radius2)) continue;
      if (count == 0) {
        for (int64_t l = 1; l < nsample; ++l) out[l] = static_cast<int32_t>(k);
      }
      out[count++] = static_cast<int32_t>(k);
    }
  }
}

}  // namespace

at::Tensor ball_query_cuda(const at::Tensor& new_xyz, const at::Tensor& xyz, double radius, int64_t nsample) {
  CHECK_CUDA(new_xyz);
  CHECK_CUDA(xyz);
  CHECK_CONTIGUOUS(new_xyz);
  CHECK_CONTIGUOUS(xyz);
  CHECK_XYZ(new_xyz);
  CHECK_XYZ(xyz);
  CHECK_FLOATING(xyz);
  CHECK_SAME_DTYPE(new_xyz, xyz);
  TORCH_CHECK(new_xyz.device() == xyz.device(), "new_xyz and xyz must be on the same device, got ",
              new_xyz.device(), " and ", xyz.device());
  TORCH_CHECK(new_xyz.size(0) == xyz.size(0), "new_xyz and xyz must have the same batch size, got ",
              new_xyz.size(0), " and ", xyz.size(0));
  TORCH_CHECK(nsample >= 1, "nsample must be positive, got ", nsample);
  TORCH_CHECK(xyz.size(1) <= std::numeric_limits<int32_t>::max(), "xyz has too many points for int32 indices");
  const int64_t B = xyz.size(0), N = xyz.size(1), M = new_xyz.size(1);
  c10::cuda::CUDAGuard guard(xyz.device());
  at::Tensor idx = at::zeros({B, M, nsample}, xyz.options().dtype(at::kInt));
  if (B * M == 0 || N == 0) return idx;
  const int64_t blocks = std::min<int64_t>((B * M + kThreads - 1) / kThreads, 4096);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "ball_query_cuda", [&] {
    // radius * radius in double, then rounded to the dtype: the threshold the reference compares with
    const scalar_t radius2 = static_cast<scalar_t>(radius * radius);
    ball_query_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        new_xyz.data_ptr<scalar_t>(), xyz.data_ptr<scalar_t>(), B, M, N, radius2, nsample, idx.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return idx;
}
