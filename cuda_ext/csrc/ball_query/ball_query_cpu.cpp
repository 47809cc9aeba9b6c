// Ball query on the CPU, pointnet2_ops semantics: the first nsample points in index order with
// squared distance < radius^2; the first found index fills the remaining slots; zeros when none.
#include <ATen/Parallel.h>

#include "ball_query/ball_query.h"
#include "utils/checks.h"

namespace {

template <typename T>
void ball_query_kernel(const at::Tensor& new_xyz, const at::Tensor& xyz, double radius, int64_t nsample, at::Tensor& out) {
  const int64_t B = new_xyz.size(0), M = new_xyz.size(1), N = xyz.size(1);
  const T r2 = static_cast<T>(radius * radius);  // as the reference: radius^2 in double, compared in T
  const T* c = new_xyz.data_ptr<T>();
  const T* p = xyz.data_ptr<T>();
  int32_t* o = out.data_ptr<int32_t>();
  at::parallel_for(0, B * M, 64, [&](int64_t s, int64_t e) {
    for (int64_t bm = s; bm < e; ++bm) {
      const T* q = c + bm * 3;
      const T* pts = p + (bm / M) * N * 3;
      int32_t* row = o + bm * nsample;
      int64_t cnt = 0;
      for (int64_t i = 0; i < N && cnt < nsample; ++i) {
        const T dx = q[0] - pts[3 * i], dy = q[1] - pts[3 * i + 1], dz = q[2] - pts[3 * i + 2];
        if (dx * dx + dy * dy + dz * dz < r2) {
          if (cnt == 0) std::fill(row, row + nsample, static_cast<int32_t>(i));
          row[cnt++] = static_cast<int32_t>(i);
        }
      }
      if (cnt == 0) std::fill(row, row + nsample, 0);  // empty ball: index 0, as pointnet2_ops
    }
  });
}

}  // namespace

at::Tensor ball_query_cpu(const at::Tensor& new_xyz, const at::Tensor& xyz, double radius, int64_t nsample) {
  CHECK_CPU(new_xyz);
  CHECK_CPU(xyz);
  CHECK_CONTIGUOUS(new_xyz);
  CHECK_CONTIGUOUS(xyz);
  CHECK_XYZ(new_xyz);
  CHECK_XYZ(xyz);
  CHECK_SAME_DTYPE(new_xyz, xyz);
  TORCH_CHECK(new_xyz.size(0) == xyz.size(0), "ball_query: batch sizes differ: ", new_xyz.size(0), " and ", xyz.size(0));
  TORCH_CHECK(nsample >= 1, "ball_query: nsample must be >= 1, got ", nsample);
  auto out = at::empty({new_xyz.size(0), new_xyz.size(1), nsample}, new_xyz.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "ball_query_cpu",
                             [&] { ball_query_kernel<scalar_t>(new_xyz, xyz, radius, nsample, out); });
  return out;
}
