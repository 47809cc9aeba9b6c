// Vectorised inner loops of the CPU kernels (AVX2 for float32 when the CPU has it, chosen at run
// time; plain C++ otherwise). Distances are always dx*dx + dy*dy + dz*dz, mul and add rounded
// separately (no FMA; setup.py passes -ffp-contract=off), so every path gives the same bits.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CUDA_EXT_X86 1
#endif

namespace simd {

template <typename T>
struct Best {
  T value;
  int64_t pos;
};

// mind[i] = min(mind[i], |p_i - c|^2) for i in [0, n); returns the largest new mind and its
// first position (value -inf, pos 0 when every entry is -inf).
template <typename T>
inline Best<T> update_min_argmax_scalar(const T* x, const T* y, const T* z, T* mind, int64_t n, T cx, T cy, T cz) {
  Best<T> r{-std::numeric_limits<T>::infinity(), 0};
  for (int64_t i = 0; i < n; ++i) {
    const T dx = x[i] - cx, dy = y[i] - cy, dz = z[i] - cz;
    const T m = std::min(mind[i], dx * dx + dy * dy + dz * dz);
    mind[i] = m;
    if (m > r.value) r.value = m, r.pos = i;
  }
  return r;
}

#ifdef CUDA_EXT_X86
__attribute__((target("avx2"))) inline Best<float> update_min_argmax_avx2(const float* x, const float* y,
                                                                          const float* z, float* mind, int64_t n,
                                                                          float cx, float cy, float cz) {
  const __m256 vcx = _mm256_set1_ps(cx), vcy = _mm256_set1_ps(cy), vcz = _mm256_set1_ps(cz);
  __m256 vbest = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256i vpos = _mm256_setzero_si256(), vi = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i eight = _mm256_set1_epi32(8);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 dx = _mm256_sub_ps(_mm256_loadu_ps(x + i), vcx);
    const __m256 dy = _mm256_sub_ps(_mm256_loadu_ps(y + i), vcy);
    const __m256 dz = _mm256_sub_ps(_mm256_loadu_ps(z + i), vcz);
    const __m256 d = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(dx, dx), _mm256_mul_ps(dy, dy)), _mm256_mul_ps(dz, dz));
    const __m256 m = _mm256_min_ps(_mm256_loadu_ps(mind + i), d);
    _mm256_storeu_ps(mind + i, m);
    const __m256 gt = _mm256_cmp_ps(m, vbest, _CMP_GT_OQ);  // strict: each lane keeps its first maximum
    vbest = _mm256_blendv_ps(vbest, m, gt);
    vpos = _mm256_blendv_epi8(vpos, vi, _mm256_castps_si256(gt));
    vi = _mm256_add_epi32(vi, eight);
  }
  alignas(32) float bv[8];
  alignas(32) int32_t bp[8];
  _mm256_store_ps(bv, vbest);
  _mm256_store_si256(reinterpret_cast<__m256i*>(bp), vpos);
  Best<float> r{-std::numeric_limits<float>::infinity(), 0};
  for (int l = 0; l < 8; ++l)
    if (bv[l] > r.value || (bv[l] == r.value && bp[l] < r.pos)) r.value = bv[l], r.pos = bp[l];
  for (; i < n; ++i) {  // tail positions are larger than all the above: strict > keeps the first
    const float dx = x[i] - cx, dy = y[i] - cy, dz = z[i] - cz;
    const float m = std::min(mind[i], dx * dx + dy * dy + dz * dz);
    mind[i] = m;
    if (m > r.value) r.value = m, r.pos = i;
  }
  return r;
}

inline bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

template <typename T>
inline Best<T> update_min_argmax(const T* x, const T* y, const T* z, T* mind, int64_t n, T cx, T cy, T cz) {
  return update_min_argmax_scalar(x, y, z, mind, n, cx, cy, cz);
}

template <>
inline Best<float> update_min_argmax<float>(const float* x, const float* y, const float* z, float* mind, int64_t n,
                                            float cx, float cy, float cz) {
#ifdef CUDA_EXT_X86
  if (has_avx2()) return update_min_argmax_avx2(x, y, z, mind, n, cx, cy, cz);
#endif
  return update_min_argmax_scalar(x, y, z, mind, n, cx, cy, cz);
}

}  // namespace simd
