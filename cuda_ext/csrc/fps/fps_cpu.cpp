// Furthest point sampling on the CPU: a plain O(N * npoint) loop for small clouds and an exact
// bucket FPS for large ones (kd-tree leaves with a bounding box and the largest min-distance of
// their points; a leaf is skipped when the box is farther from the new centre than that largest
// min-distance, which cannot change any point in it; the QuickFPS / fpsample kd-line idea).
// Both return the indices of the plain definition bit for bit: distances are summed as
// dx*dx + dy*dy + dz*dz and ties go to the lowest index.
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include "fps/fps.h"
#include "utils/checks.h"
#include "utils/simd.h"

namespace {

constexpr int64_t kLeafSize = 64;

template <typename T>
struct Point {
  T c[3];
  int32_t idx;
};

// Points of one cloud as structure-of-arrays, in the order the algorithm visits them.
template <typename T>
struct Cloud {
  std::vector<T> x, y, z, mind;  // mind: squared distance to the chosen set (-inf: never chosen)
  std::vector<int32_t> orig;     // original index of each position

  Cloud(const std::vector<Point<T>>& pts, bool skip_near_origin)
      : x(pts.size()), y(pts.size()), z(pts.size()), mind(pts.size()), orig(pts.size()) {
    const T inf = std::numeric_limits<T>::infinity();
    for (size_t i = 0; i < pts.size(); ++i) {
      const T* p = pts[i].c;
      x[i] = p[0], y[i] = p[1], z[i] = p[2], orig[i] = pts[i].idx;
      // pointnet2_ops never picks a point with x^2+y^2+z^2 <= 1e-3 after the first one
      const bool excluded = skip_near_origin && p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= T(1e-3);
      mind[i] = excluded ? -inf : inf;
    }
  }
};

template <typename T>
std::vector<Point<T>> load_points(const T* xyz, int64_t n) {
  std::vector<Point<T>> pts(n);
  for (int64_t i = 0; i < n; ++i) pts[i] = Point<T>{{xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2]}, static_cast<int32_t>(i)};
  return pts;
}

template <typename T>
void fps_plain(const T* xyz, int64_t n, int64_t npoint, bool skip, int32_t* out) {
  Cloud<T> c(load_points(xyz, n), skip);
  int64_t last = 0;
  out[0] = 0;
  for (int64_t j = 1; j < npoint; ++j) {
    const T* p = xyz + 3 * last;
    auto best = simd::update_min_argmax(c.x.data(), c.y.data(), c.z.data(), c.mind.data(), n, p[0], p[1], p[2]);
    last = best.value < T(0) ? 0 : best.pos;  // < 0 only when every candidate is excluded
    out[j] = static_cast<int32_t>(last);
  }
}

// Median split along the widest axis until a range holds at most kLeafSize points; each leaf
// is then sorted by original index so that its first maximum is its lowest-index maximum.
template <typename T>
void split(std::vector<Point<T>>& pts, int64_t begin, int64_t end, std::vector<std::pair<int64_t, int64_t>>& leaves) {
  if (end - begin <= kLeafSize) {
    std::sort(pts.begin() + begin, pts.begin() + end, [](const Point<T>& a, const Point<T>& b) { return a.idx < b.idx; });
    leaves.emplace_back(begin, end);
    return;
  }
  T lo[3] = {pts[begin].c[0], pts[begin].c[1], pts[begin].c[2]}, hi[3] = {lo[0], lo[1], lo[2]};
  for (int64_t i = begin + 1; i < end; ++i)
    for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], pts[i].c[a]), hi[a] = std::max(hi[a], pts[i].c[a]);
  int axis = 0;
  for (int a = 1; a < 3; ++a)
    if (hi[a] - lo[a] > hi[axis] - lo[axis]) axis = a;
  const int64_t mid = begin + (end - begin) / 2;
  std::nth_element(pts.begin() + begin, pts.begin() + mid, pts.begin() + end,
                   [axis](const Point<T>& a, const Point<T>& b) { return a.c[axis] < b.c[axis]; });
  split(pts, begin, mid, leaves);
  split(pts, mid, end, leaves);
}

// kd-tree leaves as structure-of-arrays, padded to a multiple of 8 with leaves that are never
// touched (empty box at infinity) nor chosen (best -inf).
template <typename T>
struct Leaves {
  int64_t count = 0;
  std::vector<T> lo[3], hi[3];
  std::vector<T> best;           // largest min-distance in the leaf
  std::vector<int32_t> orig;     // its lowest original index
  std::vector<int32_t> begin, end;

  Leaves(const Cloud<T>& c, const std::vector<std::pair<int64_t, int64_t>>& ranges) {
    const int64_t L = static_cast<int64_t>(ranges.size()), padded = (L + 7) / 8 * 8;
    const T inf = std::numeric_limits<T>::infinity();
    count = padded;
    for (int a = 0; a < 3; ++a) lo[a].assign(padded, inf), hi[a].assign(padded, -inf);
    best.assign(padded, -inf), orig.assign(padded, std::numeric_limits<int32_t>::max());
    begin.assign(padded, 0), end.assign(padded, 0);
    for (int64_t l = 0; l < L; ++l) {
      begin[l] = static_cast<int32_t>(ranges[l].first), end[l] = static_cast<int32_t>(ranges[l].second);
      orig[l] = c.orig[begin[l]];
      for (int64_t i = begin[l]; i < end[l]; ++i) {
        const T p[3] = {c.x[i], c.y[i], c.z[i]};
        for (int a = 0; a < 3; ++a) lo[a][l] = std::min(lo[a][l], p[a]), hi[a][l] = std::max(hi[a][l], p[a]);
        if (c.mind[i] > best[l]) best[l] = c.mind[i], orig[l] = c.orig[i];
      }
    }
  }

  void update(int64_t l, Cloud<T>& c, const T* p) {
    const int64_t b = begin[l];
    auto r = simd::update_min_argmax(c.x.data() + b, c.y.data() + b, c.z.data() + b, c.mind.data() + b, end[l] - b,
                                     p[0], p[1], p[2]);
    best[l] = r.value, orig[l] = c.orig[b + r.pos];
  }
};

// Squared distance from p to a leaf's box, rounded like the point distances, so that it is never
// larger than the computed distance of any point in the box (rounding is monotone): when it is
// >= the leaf's largest min-distance, adding p cannot change any min-distance in the leaf.
template <typename T>
inline T box_distance(const Leaves<T>& lv, int64_t l, const T* p) {
  const T gx = std::max(std::max(lv.lo[0][l] - p[0], p[0] - lv.hi[0][l]), T(0));
  const T gy = std::max(std::max(lv.lo[1][l] - p[1], p[1] - lv.hi[1][l]), T(0));
  const T gz = std::max(std::max(lv.lo[2][l] - p[2], p[2] - lv.hi[2][l]), T(0));
  return gx * gx + gy * gy + gz * gz;
}

// One FPS step: adds p to the chosen set; returns the next point (largest min-distance, lowest
// original index on ties; -1 when no candidate is left).
template <typename T>
int64_t bucket_step(Leaves<T>& lv, Cloud<T>& c, const T* p) {
  T best = -std::numeric_limits<T>::infinity();
  int32_t orig = std::numeric_limits<int32_t>::max();
  for (int64_t l = 0; l < lv.count; ++l) {
    if (box_distance(lv, l, p) < lv.best[l]) lv.update(l, c, p);
    if (lv.best[l] > best || (lv.best[l] == best && lv.orig[l] < orig)) best = lv.best[l], orig = lv.orig[l];
  }
  return best < T(0) ? -1 : orig;
}

#ifdef CUDA_EXT_X86
__attribute__((target("avx2"))) int64_t bucket_step_avx2(Leaves<float>& lv, Cloud<float>& c, const float* p) {
  const __m256 px = _mm256_set1_ps(p[0]), py = _mm256_set1_ps(p[1]), pz = _mm256_set1_ps(p[2]);
  const __m256 zero = _mm256_setzero_ps();
  __m256 vbest = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256i vorig = _mm256_set1_epi32(std::numeric_limits<int32_t>::max());
  for (int64_t l = 0; l < lv.count; l += 8) {
    const __m256 gx = _mm256_max_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(&lv.lo[0][l]), px),
                                                  _mm256_sub_ps(px, _mm256_loadu_ps(&lv.hi[0][l]))), zero);
    const __m256 gy = _mm256_max_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(&lv.lo[1][l]), py),
                                                  _mm256_sub_ps(py, _mm256_loadu_ps(&lv.hi[1][l]))), zero);
    const __m256 gz = _mm256_max_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(&lv.lo[2][l]), pz),
                                                  _mm256_sub_ps(pz, _mm256_loadu_ps(&lv.hi[2][l]))), zero);
    const __m256 lb = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(gx, gx), _mm256_mul_ps(gy, gy)), _mm256_mul_ps(gz, gz));
    for (int bits = _mm256_movemask_ps(_mm256_cmp_ps(lb, _mm256_loadu_ps(&lv.best[l]), _CMP_LT_OQ)); bits;
         bits &= bits - 1)
      lv.update(l + __builtin_ctz(bits), c, p);
    const __m256 b = _mm256_loadu_ps(&lv.best[l]);
    const __m256i o = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&lv.orig[l]));
    const __m256 take = _mm256_or_ps(
        _mm256_cmp_ps(b, vbest, _CMP_GT_OQ),
        _mm256_and_ps(_mm256_cmp_ps(b, vbest, _CMP_EQ_OQ), _mm256_castsi256_ps(_mm256_cmpgt_epi32(vorig, o))));
    vbest = _mm256_blendv_ps(vbest, b, take);
    vorig = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(vorig), _mm256_castsi256_ps(o), take));
  }
  alignas(32) float bv[8];
  alignas(32) int32_t bo[8];
  _mm256_store_ps(bv, vbest);
  _mm256_store_si256(reinterpret_cast<__m256i*>(bo), vorig);
  float best = bv[0];
  int32_t orig = bo[0];
  for (int k = 1; k < 8; ++k)
    if (bv[k] > best || (bv[k] == best && bo[k] < orig)) best = bv[k], orig = bo[k];
  return best < 0.f ? -1 : orig;
}
#endif

template <typename T>
int64_t step(Leaves<T>& lv, Cloud<T>& c, const T* p) {
  return bucket_step(lv, c, p);
}

template <>
int64_t step<float>(Leaves<float>& lv, Cloud<float>& c, const float* p) {
#ifdef CUDA_EXT_X86
  if (simd::has_avx2()) return bucket_step_avx2(lv, c, p);
#endif
  return bucket_step(lv, c, p);
}

template <typename T>
void fps_bucket(const T* xyz, int64_t n, int64_t npoint, bool skip, int32_t* out) {
  auto pts = load_points(xyz, n);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  split(pts, 0, n, ranges);
  Cloud<T> c(pts, skip);
  Leaves<T> leaves(c, ranges);
  int64_t last = 0;
  out[0] = 0;
  for (int64_t j = 1; j < npoint; ++j) {
    last = std::max<int64_t>(step(leaves, c, xyz + 3 * last), 0);  // 0 when every candidate is excluded
    out[j] = static_cast<int32_t>(last);
  }
}

// The bucket FPS pays off once the O(N log N) kd split is cheaper than the plain loop it saves
// (measured here: plain is 2x faster at 2048 -> 128; bucket 1.4x at 2048 -> 1024 and 8192 -> 1024,
// 6x at 10000 -> 8192).
bool use_bucket(int64_t n, int64_t npoint) { return n >= 2048 && npoint >= 512; }

}  // namespace

at::Tensor furthest_point_sample_cpu_method(const at::Tensor& xyz, int64_t npoint, bool skip_near_origin,
                                            int64_t method) {
  CHECK_CPU(xyz);
  CHECK_CONTIGUOUS(xyz);
  CHECK_XYZ(xyz);
  const int64_t B = xyz.size(0), N = xyz.size(1);
  TORCH_CHECK(npoint >= 1 && npoint <= N, "furthest_point_sample: npoint must be in [1, N=", N, "], got ", npoint);
  TORCH_CHECK(method >= 0 && method <= 2, "furthest_point_sample: method must be 0, 1 or 2, got ", method);
  auto out = at::empty({B, npoint}, xyz.options().dtype(at::kInt));
  const bool bucket = method == 2 || (method == 0 && use_bucket(N, npoint));
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "furthest_point_sample_cpu", [&] {
    const scalar_t* src = xyz.data_ptr<scalar_t>();
    int32_t* dst = out.data_ptr<int32_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        if (bucket)
          fps_bucket(src + b * N * 3, N, npoint, skip_near_origin, dst + b * npoint);
        else
          fps_plain(src + b * N * 3, N, npoint, skip_near_origin, dst + b * npoint);
      }
    });
  });
  return out;
}

at::Tensor furthest_point_sample_cpu(const at::Tensor& xyz, int64_t npoint, bool skip_near_origin) {
  return furthest_point_sample_cpu_method(xyz, npoint, skip_near_origin, 0);
}
