// k nearest neighbours on the CPU: per query, all squared distances to the (structure-of-arrays)
// reference cloud, then a bounded selection: a sorted top-k array that only takes distances
// strictly below its current k-th (small k), or a partial sort on (distance, index) (large k).
// Both equal a stable sort's first k: ascending distances, lowest index on ties.
#include <ATen/Parallel.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "knn/knn.h"
#include "utils/checks.h"

namespace {

constexpr int64_t kInsertionMaxK = 48;  // above this a partial sort beats the sorted array

// d[i] = |r_i - q|^2 for i in [0, n), summed as dx*dx + dy*dy + dz*dz.
#define CUDA_EXT_DIST_BODY                                        \
  for (int64_t i = 0; i < n; ++i) {                                \
    const auto dx = rx[i] - qx, dy = ry[i] - qy, dz = rz[i] - qz; \
    d[i] = dx * dx + dy * dy + dz * dz;                            \
  }
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void distances(const float* rx, const float* ry, const float* rz, int64_t n, float qx, float qy, float qz, float* d) {
  CUDA_EXT_DIST_BODY
}
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void distances(const double* rx, const double* ry, const double* rz, int64_t n, double qx, double qy, double qz,
               double* d) {
  CUDA_EXT_DIST_BODY
}
#undef CUDA_EXT_DIST_BODY

// Insert (v, i) into the sorted arrays of length len (< capacity), after any equal distance.
template <typename T>
inline void insert_sorted(T* top_d, int64_t* top_i, int64_t len, T v, int64_t i) {
  int64_t p = len;
  while (p > 0 && top_d[p - 1] > v) {
    top_d[p] = top_d[p - 1], top_i[p] = top_i[p - 1];
    --p;
  }
  top_d[p] = v, top_i[p] = i;
}

template <typename T>
void select_small_k(const T* d, int64_t n, int64_t k, T* top_d, int64_t* top_i) {
  for (int64_t i = 0; i < k; ++i) insert_sorted(top_d, top_i, i, d[i], i);
  T thr = top_d[k - 1];
  for (int64_t i = k; i < n; ++i) {
    if (d[i] < thr) {  // strict: an equal later index never displaces an earlier one
      insert_sorted(top_d, top_i, k - 1, d[i], i);
      thr = top_d[k - 1];
    }
  }
}

template <typename T>
void select_large_k(const T* d, int64_t n, int64_t k, std::vector<int64_t>& order, T* top_d, int64_t* top_i) {
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [d](int64_t a, int64_t b) { return d[a] < d[b] || (d[a] == d[b] && a < b); });
  for (int64_t j = 0; j < k; ++j) top_d[j] = d[order[j]], top_i[j] = order[j];
}

template <typename T>
void knn_kernel(const at::Tensor& ref_t, const at::Tensor& query, int64_t k, at::Tensor& dist, at::Tensor& idx) {
  const int64_t B = query.size(0), M = query.size(1), N = ref_t.size(2);
  const T* r = ref_t.data_ptr<T>();  // (B, 3, N)
  const T* q = query.data_ptr<T>();  // (B, M, 3)
  T* out_d = dist.data_ptr<T>();
  int64_t* out_i = idx.data_ptr<int64_t>();
  at::parallel_for(0, B * M, 16, [&](int64_t s, int64_t e) {
    std::vector<T> d(N);
    std::vector<int64_t> order;
    for (int64_t bm = s; bm < e; ++bm) {
      const T* rb = r + (bm / M) * 3 * N;
      const T* qp = q + bm * 3;
      distances(rb, rb + N, rb + 2 * N, N, qp[0], qp[1], qp[2], d.data());
      if (k <= kInsertionMaxK)
        select_small_k(d.data(), N, k, out_d + bm * k, out_i + bm * k);
      else
        select_large_k(d.data(), N, k, order, out_d + bm * k, out_i + bm * k);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& ref, const at::Tensor& query, int64_t k) {
  CHECK_CPU(ref);
  CHECK_CPU(query);
  CHECK_CONTIGUOUS(ref);
  CHECK_CONTIGUOUS(query);
  CHECK_XYZ(ref);
  CHECK_XYZ(query);
  CHECK_SAME_DTYPE(ref, query);
  TORCH_CHECK(ref.size(0) == query.size(0), "knn: ref and query must have the same batch size, got ", ref.size(0),
              " and ", query.size(0));
  TORCH_CHECK(k >= 1 && k <= ref.size(1), "knn: k must be in [1, N=", ref.size(1), "], got ", k);
  const int64_t B = query.size(0), M = query.size(1);
  auto dist = at::empty({B, M, k}, query.options());
  auto idx = at::empty({B, M, k}, query.options().dtype(at::kLong));
  auto ref_t = ref.transpose(1, 2).contiguous();  // (B, 3, N): one array per coordinate
  AT_DISPATCH_FLOATING_TYPES(ref.scalar_type(), "knn_cpu", [&] { knn_kernel<scalar_t>(ref_t, query, k, dist, idx); });
  return {dist, idx};
}
