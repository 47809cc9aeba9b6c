// A small kernel that CI compiles for every arch of setup.py's default TORCH_CUDA_ARCH_LIST
// (scripts/check_cuda_build.sh): nvcc rejects an arch it does not support (CUDA 13: compute_70),
// which would otherwise only show in a 10-minute full build for all archs. It uses what the real
// kernels use: the rounded distance helpers, float/half atomics, warp shuffles, shared memory.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "utils/distance.cuh"

__global__ void probe(const float* __restrict__ xyz, int n, float* __restrict__ out, __half* __restrict__ h,
                      __nv_bfloat16* __restrict__ bf) {
  __shared__ float best[32];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  float d = i < n ? sq_dist(xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2]) : 0.f;
  for (int offset = 16; offset > 0; offset /= 2) d = fmaxf(d, __shfl_down_sync(0xffffffffu, d, offset));
  if (threadIdx.x % 32 == 0) best[threadIdx.x / 32] = d;
  __syncthreads();
  if (threadIdx.x == 0) {
    atomicAdd(out, best[0]);
    atomicAdd(h, __float2half(best[0]));
    atomicAdd(bf, __float2bfloat16(best[0]));
  }
}
