// k nearest neighbours, CUDA kernel (drop-in for KNN_CUDA, without its compile-at-import).
//
// One thread per query point. The reference points are streamed through shared memory in tiles,
// in index order, and each thread keeps its k best in a sorted insertion list; a candidate only
// moves past strictly larger distances, so equal distances keep the lowest index first, as the
// stable sort of cuda_ext/reference.py. The lists live in a (k, B*M) scratch buffer so that the
// threads of a warp touch consecutive addresses. Squared distances are summed as
// dx*dx + dy*dy + dz*dz with round-to-nearest intrinsics (no FMA contraction), in float for half
// types, so indices equal the CPU kernel bit for bit.
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <tuple>

#include "knn.h"
#include "utils/checks.h"
#include "utils/distance.cuh"

namespace {

constexpr int kThreads = 256;  // also the tile of reference points held in shared memory

// Sorted insertion into a list of `count` <= k entries, element s at d[s * stride].
template <typename T>
__device__ __forceinline__ void insert(T* d, int64_t* id, int64_t stride, int64_t& count, int64_t k, T v, int64_t j) {
  int64_t pos;
  if (count == k) {
    if (!(v < d[(k - 1) * stride])) return;  // ties keep the earlier (lower) index
    pos = k - 1;
  } else {
    pos = count++;
  }
  while (pos > 0 && d[(pos - 1) * stride] > v) {
    d[pos * stride] = d[(pos - 1) * stride];
    id[pos * stride] = id[(pos - 1) * stride];
    --pos;
  }
  d[pos * stride] = v;
  id[pos * stride] = j;
}

// Grid: B * ceil(M / kThreads) blocks; block t of cloud b handles queries [t*kThreads, ...).
template <typename scalar_t>
__global__ void knn_kernel(const scalar_t* __restrict__ ref,    // (B, N, 3)
                           const scalar_t* __restrict__ query,  // (B, M, 3)
                           int64_t N, int64_t M, int64_t k, int64_t tiles_per_cloud, int64_t Q,
                           at::acc_type<scalar_t, true>* __restrict__ scratch_d,  // (k, Q = B*M)
                           int64_t* __restrict__ scratch_i,                      // (k, Q)
                           scalar_t* __restrict__ dist2,                         // (B, M, k)
                           int64_t* __restrict__ idx) {                          // (B, M, k)
  using acc_t = at::acc_type<scalar_t, true>;
  __shared__ acc_t s_ref[kThreads * 3];
  const int64_t b = blockIdx.x / tiles_per_cloud;
  const int64_t i = (blockIdx.x % tiles_per_cloud) * kThreads + threadIdx.x;
  const bool active = i < M;
  const int64_t q = b * M + i;  // row of this query in (B*M)
  const acc_t qx = active ? static_cast<acc_t>(query[q * 3 + 0]) : acc_t(0);
  const acc_t qy = active ? static_cast<acc_t>(query[q * 3 + 1]) : acc_t(0);
  const acc_t qz = active ? static_cast<acc_t>(query[q * 3 + 2]) : acc_t(0);
  ref += b * N * 3;
  acc_t* d = scratch_d + q;
  int64_t* id = scratch_i + q;
  int64_t count = 0;
  acc_t worst = 0;  // k-th best distance once the list is full
  for (int64_t start = 0; start < N; start += kThreads) {
    const int64_t len = min(static_cast<int64_t>(kThreads), N - start);
    __syncthreads();  // the previous tile has been read by everyone
    for (int64_t t = threadIdx.x; t < len * 3; t += kThreads) s_ref[t] = static_cast<acc_t>(ref[start * 3 + t]);
    __syncthreads();
    for (int64_t t = 0; active && t < len; ++t) {
      const acc_t v = sq_dist(qx - s_ref[t * 3 + 0], qy - s_ref[t * 3 + 1], qz - s_ref[t * 3 + 2]);
      if (count == k && !(v < worst)) continue;  // the common case, decided in registers
      insert(d, id, Q, count, k, v, start + t);
      if (count == k) worst = d[(k - 1) * Q];
    }
  }
  if (!active) return;
  for (int64_t s = 0; s < k; ++s) {
    dist2[q * k + s] = static_cast<scalar_t>(d[s * Q]);
    idx[q * k + s] = id[s * Q];
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& ref, const at::Tensor& query, int64_t k) {
  CHECK_CUDA(ref);
  CHECK_CUDA(query);
  CHECK_CONTIGUOUS(ref);
  CHECK_CONTIGUOUS(query);
  CHECK_XYZ(ref);
  CHECK_XYZ(query);
  CHECK_FLOATING(ref);
  CHECK_SAME_DTYPE(ref, query);
  TORCH_CHECK(ref.device() == query.device(), "ref and query must be on the same device, got ", ref.device(),
              " and ", query.device());
  TORCH_CHECK(ref.size(0) == query.size(0), "ref and query must have the same batch size, got ", ref.size(0),
              " and ", query.size(0));
  const int64_t B = ref.size(0), N = ref.size(1), M = query.size(1);
  TORCH_CHECK(k >= 1 && k <= N, "k must be in [1, N=", N, "], got ", k);
  c10::cuda::CUDAGuard guard(ref.device());
  at::Tensor dist2 = at::empty({B, M, k}, ref.options());
  at::Tensor idx = at::empty({B, M, k}, ref.options().dtype(at::kLong));
  if (B * M == 0) return {dist2, idx};
  const int64_t tiles = (M + kThreads - 1) / kThreads;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, ref.scalar_type(), "knn_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    at::Tensor scratch_d = at::empty({k, B * M}, ref.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    at::Tensor scratch_i = at::empty({k, B * M}, ref.options().dtype(at::kLong));
    knn_kernel<scalar_t><<<B * tiles, kThreads, 0, stream>>>(
        ref.data_ptr<scalar_t>(), query.data_ptr<scalar_t>(), N, M, k, tiles, B * M, scratch_d.data_ptr<acc_t>(),
        scratch_i.data_ptr<int64_t>(), dist2.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dist2, idx};
}
