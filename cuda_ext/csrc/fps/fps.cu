// Furthest point sampling, CUDA kernel.
//
// One block per cloud. Each thread keeps the running min squared distance of its strided points
// in a (B, N) buffer; every iteration is a block-wide arg-max (warp shuffles, then one warp over
// the warp winners) that breaks ties towards the lowest index, so the result equals the CPU kernel
// and cuda_ext/reference.py bit for bit. Distances are summed as dx*dx + dy*dy + dz*dz with
// round-to-nearest intrinsics (no FMA contraction) in float for half types.
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

#include "fps.h"
#include "utils/checks.h"
#include "utils/distance.cuh"

namespace {

constexpr int kMaxThreads = 512;  // pointnet2_ops' choice: enough for N up to ~10^5 per cloud
constexpr unsigned kFullMask = 0xffffffffu;

// Larger distance wins; equal distances keep the lower index.
template <typename T>
__device__ __forceinline__ void take_better(T& best, int& besti, T other, int otheri) {
  if (other > best || (other == best && otheri < besti)) {
    best = other;
    besti = otheri;
  }
}

template <typename T>
__device__ __forceinline__ void warp_argmax(T& best, int& besti) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    T other = __shfl_down_sync(kFullMask, best, offset);
    int otheri = __shfl_down_sync(kFullMask, besti, offset);
    take_better(best, besti, other, otheri);
  }
}

// Block-wide arg-max; blockDim.x is a multiple of 32. Returns the winner index to every thread.
template <typename T>
__device__ int block_argmax(T best, int besti, T* s_best, int* s_besti, int* s_winner) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  warp_argmax(best, besti);
  if (lane == 0) {
    s_best[warp] = best;
    s_besti[warp] = besti;
  }
  __syncthreads();
  if (warp == 0) {
    const int nwarps = blockDim.x >> 5;
    best = lane < nwarps ? s_best[lane] : T(-1);
    besti = lane < nwarps ? s_besti[lane] : 0;
    warp_argmax(best, besti);
    if (lane == 0) *s_winner = besti;
  }
  __syncthreads();
  return *s_winner;
}

template <typename scalar_t>
__global__ void fps_kernel(const scalar_t* __restrict__ xyz,  // (B, N, 3)
                           int64_t n, int64_t npoint, bool skip_near_origin,
                           at::acc_type<scalar_t, true>* __restrict__ min_dist,  // (B, N)
                           int32_t* __restrict__ out) {                           // (B, npoint)
  using acc_t = at::acc_type<scalar_t, true>;
  __shared__ acc_t s_best[32];
  __shared__ int s_besti[32];
  __shared__ int s_winner;
  const int64_t b = blockIdx.x;
  xyz += b * n * 3;
  min_dist += b * n;
  out += b * npoint;
  const acc_t near_origin = static_cast<acc_t>(1e-3);  // the comparison the reference makes in dtype
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) min_dist[k] = std::numeric_limits<acc_t>::infinity();
  if (threadIdx.x == 0) out[0] = 0;
  int last = 0;
  for (int64_t j = 1; j < npoint; ++j) {
    const acc_t x1 = static_cast<acc_t>(xyz[last * 3 + 0]);
    const acc_t y1 = static_cast<acc_t>(xyz[last * 3 + 1]);
    const acc_t z1 = static_cast<acc_t>(xyz[last * 3 + 2]);
    acc_t best = -1;  // stays -1 (index 0) when every point is skipped, as in pointnet2_ops
    int besti = 0;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const acc_t x2 = static_cast<acc_t>(xyz[k * 3 + 0]);
      const acc_t y2 = static_cast<acc_t>(xyz[k * 3 + 1]);
      const acc_t z2 = static_cast<acc_t>(xyz[k * 3 + 2]);
      acc_t d = min_dist[k];
      const acc_t dk = sq_dist(x2 - x1, y2 - y1, z2 - z1);
      if (dk < d) {
        d = dk;
        min_dist[k] = d;
      }
      if (skip_near_origin && sq_dist(x2, y2, z2) <= near_origin) continue;
      if (d > best) {  // k grows within a thread, so strict > keeps the lowest index
        best = d;
        besti = static_cast<int>(k);
      }
    }
    last = block_argmax(best, besti, s_best, s_besti, &s_winner);
    if (threadIdx.x == 0) out[j] = last;
  }
}

int fps_threads(int64_t n) {
  int threads = 32;
  while (threads < n && threads < kMaxThreads) threads <<= 1;
  return threads;
}

}  // namespace

at::Tensor furthest_point_sample_cuda(const at::Tensor& xyz, int64_t npoint, bool skip_near_origin) {
  CHECK_CUDA(xyz);
  CHECK_CONTIGUOUS(xyz);
  CHECK_XYZ(xyz);
  CHECK_FLOATING(xyz);
  const int64_t B = xyz.size(0);
  const int64_t N = xyz.size(1);
  TORCH_CHECK(npoint >= 1 && npoint <= N, "npoint must be in [1, N=", N, "], got ", npoint);
  TORCH_CHECK(N <= std::numeric_limits<int32_t>::max(), "xyz has too many points for int32 indices: ", N);
  c10::cuda::CUDAGuard guard(xyz.device());
  at::Tensor out = at::empty({B, npoint}, xyz.options().dtype(at::kInt));
  if (B == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, xyz.scalar_type(),
                                  "furthest_point_sample_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    at::Tensor min_dist = at::empty({B, N}, xyz.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    fps_kernel<scalar_t><<<B, fps_threads(N), 0, stream>>>(
        xyz.data_ptr<scalar_t>(), N, npoint, skip_near_origin, min_dist.data_ptr<acc_t>(),
        out.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}
