// CPU kernel of bicubic_resize (MATLAB imresize, bicubic): two separable passes over contiguous planes,
// each reading a precomputed table of taps (common/bicubic.h). The vertical pass runs whole rows at a
// time so its inner loop is a vectorisable multiply-add over contiguous memory.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../common/bicubic.h"
#include "../bicubic_plan.h"

namespace ipt {
namespace {

template <typename Acc>
struct AxisTable {
  int64_t taps;
  std::vector<Acc> weights;     // (out_len, taps)
  std::vector<int64_t> index;   // (out_len, taps)

  explicit AxisTable(const ResizeAxis& axis)
      : taps(axis.taps()), weights(axis.out_len * taps), index(axis.out_len * taps) {
    for (int64_t i = 0; i < axis.out_len; ++i) {
      cubic_contributions(axis, i, weights.data() + i * taps, index.data() + i * taps);
    }
  }
};

template <typename Out, typename Acc>
inline Out store(Acc v) {
  if constexpr (std::is_same_v<Out, uint8_t>) {
    return round_saturate_u8(static_cast<double>(v));
  } else {
    return static_cast<Out>(v);
  }
}

// (planes, in_h, width) -> (planes, out_h, width)
template <typename In, typename Out, typename Acc>
void resize_rows(const In* src, Out* dst, int64_t planes, int64_t in_h, int64_t width, const ResizeAxis& axis) {
  const AxisTable<Acc> table(axis);
  const int64_t out_h = axis.out_len;
  at::parallel_for(0, planes * out_h, std::max<int64_t>(1, 8192 / (width * table.taps)), [&](int64_t begin, int64_t end) {
    std::vector<Acc> acc(width);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t plane = row / out_h, i = row % out_h;
      std::fill(acc.begin(), acc.end(), Acc(0));
      for (int64_t k = 0; k < table.taps; ++k) {
        const Acc w = table.weights[i * table.taps + k];
        if (w == Acc(0)) continue;
        const In* s = src + (plane * in_h + table.index[i * table.taps + k]) * width;
        for (int64_t x = 0; x < width; ++x) acc[x] += w * static_cast<Acc>(s[x]);
      }
      Out* d = dst + row * width;
      for (int64_t x = 0; x < width; ++x) d[x] = store<Out>(acc[x]);
    }
  });
}

// (rows, in_w) -> (rows, out_w), rows = planes * height
template <typename In, typename Out, typename Acc>
void resize_cols(const In* src, Out* dst, int64_t rows, int64_t in_w, const ResizeAxis& axis) {
  const AxisTable<Acc> table(axis);
  const int64_t out_w = axis.out_len;
  at::parallel_for(0, rows, std::max<int64_t>(1, 8192 / (out_w * table.taps)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const In* s = src + r * in_w;
      Out* d = dst + r * out_w;
      for (int64_t j = 0; j < out_w; ++j) {
        const Acc* w = table.weights.data() + j * table.taps;
        const int64_t* idx = table.index.data() + j * table.taps;
        Acc acc = 0;
        for (int64_t k = 0; k < table.taps; ++k) acc += w[k] * static_cast<Acc>(s[idx[k]]);
        d[j] = store<Out>(acc);
      }
    }
  });
}

at::Tensor bicubic_resize_cpu(const at::Tensor& x_in, at::IntArrayRef size, at::ArrayRef<double> scale) {
  check_bicubic_resize(x_in, size, scale);
  const ResizePlan plan(x_in, size, scale);
  at::Tensor out = at::empty({x_in.size(0), x_in.size(1), size[0], size[1]}, x_in.options());
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kBFloat16, at::kHalf, at::kByte, x.scalar_type(), "bicubic_resize_cpu", [&] {
    using T = scalar_t;
    using Acc = typename ResizeAccumulator<T>::type;
    using Mid = typename ResizeAccumulator<T>::intermediate;  // uint8 stays uint8 between passes (MATLAB)
    at::Tensor mid = at::empty(plan.intermediate_shape(), x.options().dtype(c10::CppTypeToScalarType<Mid>::value));
    const T* src = x.const_data_ptr<T>();
    Mid* tmp = mid.mutable_data_ptr<Mid>();
    T* dst = out.mutable_data_ptr<T>();
    if (plan.rows_first) {
      resize_rows<T, Mid, Acc>(src, tmp, plan.planes, plan.rows.in_len, plan.cols.in_len, plan.rows);
      resize_cols<Mid, T, Acc>(tmp, dst, plan.planes * plan.rows.out_len, plan.cols.in_len, plan.cols);
    } else {
      resize_cols<T, Mid, Acc>(src, tmp, plan.planes * plan.rows.in_len, plan.cols.in_len, plan.cols);
      resize_rows<Mid, T, Acc>(tmp, dst, plan.planes, plan.rows.in_len, plan.cols.out_len, plan.rows);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CPU, m) { m.impl("bicubic_resize", &bicubic_resize_cpu); }

}  // namespace ipt
