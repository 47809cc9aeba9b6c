// Input checks shared by the CPU and CUDA kernels.
#pragma once
#include <ATen/ATen.h>

#define CHECK_CONTIGUOUS(x) TORCH_CHECK((x).is_contiguous(), #x " must be contiguous")
#define CHECK_CPU(x) TORCH_CHECK((x).device().is_cpu(), #x " must be a CPU tensor")
#define CHECK_CUDA(x) TORCH_CHECK((x).is_cuda(), #x " must be a CUDA tensor")
#define CHECK_DIM(x, d) TORCH_CHECK((x).dim() == (d), #x " must have " #d " dimensions, got ", (x).dim())
#define CHECK_XYZ(x) \
  TORCH_CHECK((x).dim() == 3 && (x).size(2) == 3, #x " must have shape (B, N, 3), got ", (x).sizes())
#define CHECK_INT32(x) TORCH_CHECK((x).scalar_type() == at::kInt, #x " must be int32, got ", (x).scalar_type())
#define CHECK_FLOATING(x) \
  TORCH_CHECK(at::isFloatingType((x).scalar_type()), #x " must be a floating tensor, got ", (x).scalar_type())
#define CHECK_SAME_DTYPE(x, y) \
  TORCH_CHECK((x).scalar_type() == (y).scalar_type(), #x " and " #y " must have the same dtype, got ", \
              (x).scalar_type(), " and ", (y).scalar_type())
