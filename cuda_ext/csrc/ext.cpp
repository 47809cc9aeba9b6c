// Python bindings of the point ops (`cuda_ext._C`). Every op dispatches on the device of its
// first tensor (see the headers); argument checking for users happens in the Python wrappers.
#include <torch/extension.h>

#include "ball_query/ball_query.h"
#include "chamfer/chamfer.h"
#include "fps/fps.h"
#include "gather/gather.h"
#include "group/group.h"
#include "interpolate/interpolate.h"
#include "knn/knn.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("with_cuda", [] {
#ifdef WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "whether the CUDA kernels were compiled in");
  m.def("furthest_point_sample", &furthest_point_sample, "FPS: xyz (B,N,3), npoint, skip_near_origin -> (B,npoint) int32");
  m.def("furthest_point_sample_cpu_method", &furthest_point_sample_cpu_method,
        "CPU FPS with a fixed method: 0 auto, 1 plain loop, 2 bucket");
  m.def("gather_forward", &gather_forward, "features (B,C,N), idx (B,M) int32 -> (B,C,M)");
  m.def("gather_backward", &gather_backward, "grad_out (B,C,M), idx (B,M), n -> (B,C,N)");
  m.def("ball_query", &ball_query, "new_xyz (B,M,3), xyz (B,N,3), radius, nsample -> (B,M,nsample) int32");
  m.def("group_forward", &group_forward, "features (B,C,N), idx (B,M,K) int32 -> (B,C,M,K)");
  m.def("group_backward", &group_backward, "grad_out (B,C,M,K), idx (B,M,K), n -> (B,C,N)");
  m.def("three_nn", &three_nn, "unknown (B,n,3), known (B,m,3) -> squared dist (B,n,3), idx (B,n,3) int32");
  m.def("three_interpolate_forward", &three_interpolate_forward, "features (B,C,m), idx, weight (B,n,3) -> (B,C,n)");
  m.def("three_interpolate_backward", &three_interpolate_backward, "grad_out (B,C,n), idx, weight, m -> (B,C,m)");
  m.def("knn", &knn, "ref (B,N,3), query (B,M,3), k -> squared dist (B,M,k), idx (B,M,k) int64");
  m.def("chamfer_forward", &chamfer_forward, "xyz1 (B,N,3), xyz2 (B,M,3) -> dist1, dist2 (squared), idx1, idx2 int32");
  m.def("chamfer_backward", &chamfer_backward, "xyz1, xyz2, idx1, idx2, grad_dist1, grad_dist2 -> grad_xyz1, grad_xyz2");
}
