"""Point ops for point-cloud transformers: FPS, gather, ball query, grouping, three-NN
interpolation, kNN and Chamfer distance, as C++ (OpenMP) and CUDA kernels in ``cuda_ext._C``
with a pure-torch reference (``cuda_ext.reference``) used when the extension is not built.

Compatibility: ``from cuda_ext import pointnet2_utils`` (pointnet2_ops names) and
``from cuda_ext.knn import KNN`` (KNN_CUDA module).
"""
from . import pointnet2_utils, reference
from .chamfer import chamfer_distance
from .grouping import ball_query, grouping_operation
from .interpolate import three_interpolate, three_nn
from .knn import KNN, knn
from .sampling import furthest_point_sample, gather_operation

__all__ = ["furthest_point_sample", "gather_operation", "ball_query", "grouping_operation", "three_nn",
           "three_interpolate", "knn", "KNN", "chamfer_distance", "pointnet2_utils", "reference"]
