// Squared distances on the GPU, rounded exactly as the CPU kernels and cuda_ext/reference.py.
#pragma once

// Round-to-nearest intrinsics: nvcc may not contract them into an FMA, which would change bits.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// dx*dx + dy*dy + dz*dz in that order, exactly as the CPU kernel and the reference.
template <typename T>
__device__ __forceinline__ T sq_dist(T dx, T dy, T dz) {
  return add_rn(add_rn(mul_rn(dx, dx), mul_rn(dy, dy)), mul_rn(dz, dz));
}
