// CUDA kernels of motion_blur_kernels and blur (recipe in common/blur.h).
//
// motion_blur_kernels: a thread per sample walks its path twice (bounding box, then splat) into an int64
// scratch kernel and normalises it; a path is sequential by nature, and a batch of a few hundred short
// paths is microseconds of work. blur: a thread per output pixel sums the non-zero taps of its sample's
// kernel in row-major order in BlurAcc (float32; float64 for float64 images), as the CPU kernel and the
// reference do (no fma
// contraction: --fmad=false), so the three agree bit for bit.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <type_traits>

#include "../checks.h"
#include "../common/blur.h"
#include "launch.cuh"

namespace ipt {
namespace {

__global__ void motion_blur_kernels_kernel(const int64_t* __restrict__ ids, int64_t batch, BlurRanges ranges,
                                           uint64_t seed, int64_t steps, int64_t size, int64_t* __restrict__ scratch,
                                           float* __restrict__ out) {
  const int64_t area = size * size;
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < batch; b += int64_t{blockDim.x} * gridDim.x) {
    const uint64_t sample = static_cast<uint64_t>(ids[b]);
    const BlurSample s = draw_blur_sample(ranges, seed, sample);
    int64_t* acc = scratch + b * area;
    const int64_t total = shake_kernel(acc, size, s, steps, seed, sample);
    for (int64_t i = 0; i < area; ++i) out[b * area + i] = normalise_kernel(acc[i], total);
  }
}

template <typename In, typename Out, typename Acc = BlurAcc<In>>
__global__ void blur_kernel(const In* __restrict__ x, const Acc* __restrict__ kernels, Out* __restrict__ out,
                            int64_t total, int64_t channels, int64_t height, int64_t width, int64_t kh, int64_t kw) {
  const int64_t plane = height * width;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    const int64_t b = idx / plane / channels, y = idx % plane / width, xo = idx % width;
    const In* src = x + (idx - idx % plane);  // this image plane
    const Acc* k = kernels + b * kh * kw;
    Acc acc = 0;
    for (int64_t i = 0; i < kh; ++i) {
      const In* row = src + mirror(y + kh / 2 - i, height) * width;
      for (int64_t j = 0; j < kw; ++j) {
        const Acc w = k[i * kw + j];
        if (w != Acc{0}) acc += w * static_cast<Acc>(row[mirror(xo + kw / 2 - j, width)]);
      }
    }
    out[idx] = static_cast<Out>(acc);
  }
}

at::Tensor motion_blur_kernels_cuda(const at::Tensor& sample_ids, int64_t size, int64_t seed, int64_t steps
                                        IPT_BLUR_PARAMS(IPT_RANGE_PARAM)) {
  const BlurRanges ranges =
      check_motion_blur_kernels(sample_ids, size, seed, steps, {IPT_BLUR_PARAMS(IPT_RANGE_NAME)});
  const c10::cuda::CUDAGuard guard(sample_ids.device());
  const int64_t batch = sample_ids.size(0);
  at::Tensor out = at::empty({batch, size, size}, sample_ids.options().dtype(at::kFloat));
  if (batch == 0) return out;
  at::Tensor scratch = at::empty({batch, size * size}, sample_ids.options().dtype(at::kLong));
  const at::Tensor ids = sample_ids.contiguous();
  motion_blur_kernels_kernel<<<cuda::blocks_for(batch), cuda::kThreadsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
      ids.const_data_ptr<int64_t>(), batch, ranges, static_cast<uint64_t>(seed), steps, size,
      scratch.mutable_data_ptr<int64_t>(), out.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor blur_cuda(const at::Tensor& x_in, const at::Tensor& kernels_in) {
  check_blur(x_in, kernels_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().dtype(degraded_dtype(x_in)));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous();
  const int64_t total = x.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kBFloat16, at::kHalf, at::kByte, x.scalar_type(), "blur_cuda", [&] {
    using Out = std::conditional_t<std::is_same_v<scalar_t, uint8_t>, float, scalar_t>;
    using Acc = BlurAcc<scalar_t>;
    const at::Tensor kernels = kernels_in.to(c10::CppTypeToScalarType<Acc>::value).contiguous();
    blur_kernel<scalar_t, Out><<<cuda::blocks_for(total), cuda::kThreadsPerBlock, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), kernels.const_data_ptr<Acc>(), out.mutable_data_ptr<Out>(), total,
        x.size(1), x.size(2), x.size(3), kernels.size(1), kernels.size(2));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CUDA, m) {
  m.impl("motion_blur_kernels", &motion_blur_kernels_cuda);
  m.impl("blur", &blur_cuda);
}

}  // namespace ipt
