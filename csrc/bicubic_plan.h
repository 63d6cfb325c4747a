// How a bicubic resize is carried out, shared by the CPU and CUDA wrappers: the two axes, which one is
// resized first (MATLAB resizes the axis with the smaller scale first; rows on a tie), the shape
// of the intermediate image, and the arithmetic types per input dtype.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <vector>

#include "common/bicubic.h"

namespace ipt {

struct ResizePlan {
  ResizeAxis rows, cols;
  int64_t planes;
  bool rows_first;

  ResizePlan(const at::Tensor& x, at::IntArrayRef size, at::ArrayRef<double> scale)
      : rows{x.size(2), size[0], scale[0]},
        cols{x.size(3), size[1], scale[1]},
        planes(x.size(0) * x.size(1)),
        rows_first(scale[0] <= scale[1]) {}

  std::vector<int64_t> intermediate_shape() const {
    return rows_first ? std::vector<int64_t>{planes, rows.out_len, cols.in_len}
                      : std::vector<int64_t>{planes, rows.in_len, cols.out_len};
  }
};

// uint8 images follow MATLAB: double arithmetic, rounded to uint8 after each pass. float64 stays in
// double; the narrower float types accumulate in float and keep float between the passes.
template <typename T>
struct ResizeAccumulator {
  using type = float;
  using intermediate = float;
};
template <>
struct ResizeAccumulator<double> {
  using type = double;
  using intermediate = double;
};
template <>
struct ResizeAccumulator<uint8_t> {
  using type = double;
  using intermediate = uint8_t;
};

}  // namespace ipt
