"""Point ops for point-cloud transformers: FPS, gather, ball query, kNN, grouping,
three-NN interpolation and Chamfer distance (provisional: reference only)."""
from .reference import (
    ball_query,
    chamfer_distance,
    furthest_point_sample,
    gather_operation,
    grouping_operation,
    knn,
    three_interpolate,
    three_nn,
)
