// Furthest point sampling on the CPU: a plain O(N * npoint) loop for small clouds and an exact
// bucket FPS for large ones (kd-tree leaves with a bounding box and the largest min-distance of
// their points; a leaf is skipped when the box is farther from the new centre than that largest
// min-distance, which cannot change any point in it; the QuickFPS / fpsample kd-line idea).
// Both return the indices of the plain definition bit for bit: distances are summed as
// dx*dx + dy*dy + dz*dz and ties go to the lowest index.
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "fps/fps.h"
#include "utils/checks.h"
#include "utils/simd.h"

namespace {

constexpr int64_t kLeafSize = 64;

// Points of one cloud as structure-of-arrays, in the order the algorithm visits them.
template <typename T>
struct Cloud {
  std::vector<T> x, y, z, mind;  // mind: squared distance to the chosen set (-inf: never chosen)
  std::vector<int32_t> orig;     // original index of each position

  Cloud(const T* xyz, int64_t n, bool skip_near_origin, const std::vector<int32_t>& order)
      : x(n), y(n), z(n), mind(n), orig(order) {
    const T inf = std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      const T* p = xyz + 3 * static_cast<int64_t>(order[i]);
      x[i] = p[0], y[i] = p[1], z[i] = p[2];
      // pointnet2_ops never picks a point with x^2+y^2+z^2 <= 1e-3 after the first one
      const bool excluded = skip_near_origin && p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= T(1e-3);
      mind[i] = excluded ? -inf : inf;
    }
  }
};

template <typename T>
void fps_plain(const T* xyz, int64_t n, int64_t npoint, bool skip, int32_t* out) {
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Cloud<T> c(xyz, n, skip, order);
  int64_t last = 0;
  out[0] = 0;
  for (int64_t j = 1; j < npoint; ++j) {
    const T* p = xyz + 3 * last;
    auto best = simd::update_min_argmax(c.x.data(), c.y.data(), c.z.data(), c.mind.data(), n, p[0], p[1], p[2]);
    last = best.value < T(0) ? 0 : best.pos;  // < 0 only when every candidate is excluded
    out[j] = static_cast<int32_t>(last);
  }
}

template <typename T>
struct Leaf {
  int64_t begin, end;
  T lo[3], hi[3];
  T best;        // largest min-distance in the leaf
  int64_t pos;   // its first position (lowest original index: leaves are sorted by index)
};

// Recursive median split along the widest axis until a range holds at most kLeafSize points.
template <typename T>
void split(const T* xyz, std::vector<int32_t>& order, int64_t begin, int64_t end, std::vector<std::pair<int64_t, int64_t>>& leaves) {
  if (end - begin <= kLeafSize) {
    std::sort(order.begin() + begin, order.begin() + end);
    leaves.emplace_back(begin, end);
    return;
  }
  T lo[3], hi[3];
  for (int a = 0; a < 3; ++a) lo[a] = hi[a] = xyz[3 * static_cast<int64_t>(order[begin]) + a];
  for (int64_t i = begin + 1; i < end; ++i)
    for (int a = 0; a < 3; ++a) {
      const T v = xyz[3 * static_cast<int64_t>(order[i]) + a];
      lo[a] = std::min(lo[a], v), hi[a] = std::max(hi[a], v);
    }
  int axis = 0;
  for (int a = 1; a < 3; ++a)
    if (hi[a] - lo[a] > hi[axis] - lo[axis]) axis = a;
  const int64_t mid = begin + (end - begin) / 2;
  std::nth_element(order.begin() + begin, order.begin() + mid, order.begin() + end,
                   [&](int32_t i, int32_t j) { return xyz[3 * static_cast<int64_t>(i) + axis] < xyz[3 * static_cast<int64_t>(j) + axis]; });
  split(xyz, order, begin, mid, leaves);
  split(xyz, order, mid, end, leaves);
}

template <typename T>
std::vector<Leaf<T>> make_leaves(const Cloud<T>& c, const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<Leaf<T>> leaves;
  leaves.reserve(ranges.size());
  for (const auto& r : ranges) {
    Leaf<T> l{r.first, r.second, {c.x[r.first], c.y[r.first], c.z[r.first]}, {c.x[r.first], c.y[r.first], c.z[r.first]},
              -std::numeric_limits<T>::infinity(), r.first};
    for (int64_t i = r.first; i < r.second; ++i) {
      const T p[3] = {c.x[i], c.y[i], c.z[i]};
      for (int a = 0; a < 3; ++a) l.lo[a] = std::min(l.lo[a], p[a]), l.hi[a] = std::max(l.hi[a], p[a]);
      if (c.mind[i] > l.best) l.best = c.mind[i], l.pos = i;
    }
    leaves.push_back(l);
  }
  return leaves;
}

// Squared distance from p to the leaf's box, rounded like the point distances so that it is
// never larger than the computed distance of any point in the box (rounding is monotone).
template <typename T>
inline T box_distance(const Leaf<T>& l, const T* p) {
  T g[3];
  for (int a = 0; a < 3; ++a) g[a] = p[a] < l.lo[a] ? l.lo[a] - p[a] : (p[a] > l.hi[a] ? p[a] - l.hi[a] : T(0));
  return g[0] * g[0] + g[1] * g[1] + g[2] * g[2];
}

template <typename T>
void fps_bucket(const T* xyz, int64_t n, int64_t npoint, bool skip, int32_t* out) {
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  split(xyz, order, 0, n, ranges);
  Cloud<T> c(xyz, n, skip, order);
  auto leaves = make_leaves(c, ranges);
  int64_t last = 0;
  out[0] = 0;
  for (int64_t j = 1; j < npoint; ++j) {
    const T* p = xyz + 3 * last;
    T best = -std::numeric_limits<T>::infinity();
    int64_t best_orig = 0;
    for (auto& l : leaves) {
      if (box_distance(l, p) < l.best) {  // otherwise no min-distance in the leaf can shrink
        auto r = simd::update_min_argmax(c.x.data() + l.begin, c.y.data() + l.begin, c.z.data() + l.begin,
                                         c.mind.data() + l.begin, l.end - l.begin, p[0], p[1], p[2]);
        l.best = r.value, l.pos = l.begin + r.pos;
      }
      const int64_t o = c.orig[l.pos];
      if (l.best > best || (l.best == best && o < best_orig)) best = l.best, best_orig = o;
    }
    last = best < T(0) ? 0 : best_orig;
    out[j] = static_cast<int32_t>(last);
  }
}

// The bucket FPS pays off once each new centre only touches a few leaves.
bool use_bucket(int64_t n, int64_t npoint) { return n >= 4 * kLeafSize && npoint >= 256; }

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
