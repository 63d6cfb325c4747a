// CUDA kernel of bicubic_resize: the tap tables are built on the device with the shared
// common/bicubic.h, then two separable passes run one thread per output element (coalesced along W).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "../common/bicubic.h"
#include "../bicubic_plan.h"
#include "launch.cuh"

namespace ipt {
namespace {

template <typename Acc>
__global__ void build_table_kernel(ResizeAxis axis, int64_t taps, Acc* weights, int64_t* index) {
  // Grid-stride: blocks_for caps the grid, so one thread may build several rows of a long axis.
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < axis.out_len;
       i += int64_t{blockDim.x} * gridDim.x) {
    cubic_contributions(axis, i, weights + i * taps, index + i * taps);
  }
}

template <typename Out, typename Acc>
__device__ __forceinline__ Out store(Acc v) {
  if constexpr (std::is_same_v<Out, uint8_t>) {
    return round_saturate_u8(static_cast<double>(v));
  } else {
    return static_cast<Out>(v);
  }
}

// (planes, in_h, width) -> (planes, out_h, width)
template <typename In, typename Out, typename Acc>
__global__ void resize_rows_kernel(const In* __restrict__ src, Out* __restrict__ dst, int64_t total, int64_t in_h,
                                   int64_t out_h, int64_t width, int64_t taps, const Acc* __restrict__ weights,
                                   const int64_t* __restrict__ index) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    const int64_t x = idx % width, row = idx / width;
    const int64_t i = row % out_h, plane = row / out_h;
    const Acc* w = weights + i * taps;
    const int64_t* k_index = index + i * taps;
    const In* s = src + plane * in_h * width + x;
    Acc acc = 0;
    for (int64_t k = 0; k < taps; ++k) acc += w[k] * static_cast<Acc>(s[k_index[k] * width]);
    dst[idx] = store<Out>(acc);
  }
}

// (rows, in_w) -> (rows, out_w)
template <typename In, typename Out, typename Acc>
__global__ void resize_cols_kernel(const In* __restrict__ src, Out* __restrict__ dst, int64_t total, int64_t in_w,
                                   int64_t out_w, int64_t taps, const Acc* __restrict__ weights,
                                   const int64_t* __restrict__ index) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    const int64_t j = idx % out_w, row = idx / out_w;
    const Acc* w = weights + j * taps;
    const int64_t* k_index = index + j * taps;
    const In* s = src + row * in_w;
    Acc acc = 0;
    for (int64_t k = 0; k < taps; ++k) acc += w[k] * static_cast<Acc>(s[k_index[k]]);
    dst[idx] = store<Out>(acc);
  }
}

template <typename Acc>
struct DeviceTable {
  at::Tensor weights, index;
  int64_t taps;

  DeviceTable(const ResizeAxis& axis, const at::TensorOptions& options, cudaStream_t stream) : taps(axis.taps()) {
    weights = at::empty({axis.out_len, taps}, options.dtype(c10::CppTypeToScalarType<Acc>::value));
    index = at::empty({axis.out_len, taps}, options.dtype(at::kLong));
    build_table_kernel<Acc><<<cuda::blocks_for(axis.out_len), cuda::kThreadsPerBlock, 0, stream>>>(
        axis, taps, weights.mutable_data_ptr<Acc>(), index.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

at::Tensor bicubic_resize_cuda(const at::Tensor& x_in, at::IntArrayRef size, at::ArrayRef<double> scale) {
  check_bicubic_resize(x_in, size, scale);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const ResizePlan plan(x_in, size, scale);
  at::Tensor out = at::empty({x_in.size(0), x_in.size(1), size[0], size[1]}, x_in.options());
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kBFloat16, at::kHalf, at::kByte, x.scalar_type(), "bicubic_resize_cuda", [&] {
    using T = scalar_t;
    using Acc = typename ResizeAccumulator<T>::type;
    using Mid = typename ResizeAccumulator<T>::intermediate;
    const DeviceTable<Acc> rows(plan.rows, x.options(), stream), cols(plan.cols, x.options(), stream);
    at::Tensor mid = at::empty(plan.intermediate_shape(), x.options().dtype(c10::CppTypeToScalarType<Mid>::value));
    const int64_t mid_total = mid.numel(), out_total = out.numel();
    auto rows_pass = [&](const auto* src, auto* dst, int64_t total, int64_t width) {
      using In = std::remove_cv_t<std::remove_pointer_t<decltype(src)>>;
      using Dst = std::remove_pointer_t<decltype(dst)>;
      resize_rows_kernel<In, Dst, Acc><<<cuda::blocks_for(total), cuda::kThreadsPerBlock, 0, stream>>>(
          src, dst, total, plan.rows.in_len, plan.rows.out_len, width, rows.taps, rows.weights.const_data_ptr<Acc>(),
          rows.index.const_data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    auto cols_pass = [&](const auto* src, auto* dst, int64_t total) {
      using In = std::remove_cv_t<std::remove_pointer_t<decltype(src)>>;
      using Dst = std::remove_pointer_t<decltype(dst)>;
      resize_cols_kernel<In, Dst, Acc><<<cuda::blocks_for(total), cuda::kThreadsPerBlock, 0, stream>>>(
          src, dst, total, plan.cols.in_len, plan.cols.out_len, cols.taps, cols.weights.const_data_ptr<Acc>(),
          cols.index.const_data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    const T* src = x.const_data_ptr<T>();
    Mid* tmp = mid.mutable_data_ptr<Mid>();
    T* dst = out.mutable_data_ptr<T>();
    if (plan.rows_first) {
      rows_pass(src, tmp, mid_total, plan.cols.in_len);
      cols_pass(static_cast<const Mid*>(tmp), dst, out_total);
    } else {
      cols_pass(src, tmp, mid_total);
      rows_pass(static_cast<const Mid*>(tmp), dst, out_total, plan.cols.out_len);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CUDA, m) { m.impl("bicubic_resize", &bicubic_resize_cuda); }

}  // namespace ipt
