// CUDA kernels of rain_streaks and add_rain (recipe in common/rain.h): every padded-grid pixel decides
// whether it is a seed and splats its streak with 64-bit integer atomics (exact, so the order of the
// additions cannot change the result); a block per sample then finds the accumulator's min and max (and
// draws the sample's blend strength once), and a last pass normalises the layer, or blends it straight
// into the images for add_rain.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "../common/rain.h"
#include "launch.cuh"

namespace ipt {
namespace {

using Accum = unsigned long long;  // the accumulation is never negative; CUDA atomics want this type

__global__ void splat_kernel(Accum* __restrict__ acc, const int64_t* __restrict__ ids, RainRanges ranges,
                             uint64_t seed, int64_t height, int64_t width, int64_t max_padded) {
  const int64_t b = blockIdx.y;
  const uint64_t sample = static_cast<uint64_t>(ids[b]);
  const RainSample s = draw_rain_sample(ranges, seed, sample);
  const int64_t r = s.radius, padded_w = width + 2 * r, padded = (height + 2 * r) * padded_w;
  for (int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; index < max_padded && index < padded;
       index += int64_t{blockDim.x} * gridDim.x) {
    const int32_t value = rain_seed_value(seed, sample, s.amount, index);
    if (value == 0) continue;
    const int64_t cy = index / padded_w - r, cx = index % padded_w - r;  // the seed in image coordinates
    Accum* plane = acc + b * height * width;
    for (int64_t dy = -r; dy <= r; ++dy) {
      const int64_t y = cy + dy;
      if (y < 0 || y >= height) continue;
      for (int64_t dx = -r; dx <= r; ++dx) {
        const int64_t x = cx + dx;
        if (x < 0 || x >= width) continue;
        const int32_t w = streak_weight(s, dx, dy);
        if (w != 0) atomicAdd(plane + y * width + x, static_cast<Accum>(value) * static_cast<Accum>(w));
      }
    }
  }
}

// Min and max of each sample's accumulator, and (for add_rain) the sample's blend strength: a block per
// sample, grid-stride over samples, since a batch is int64 and grid.x an unsigned int.
__global__ void min_max_kernel(const Accum* __restrict__ acc, int64_t batch, int64_t plane, Accum* __restrict__ lo_hi,
                               const int64_t* __restrict__ ids, RainRanges ranges, uint64_t seed,
                               double* __restrict__ alpha) {
  __shared__ Accum lo_s[cuda::kThreadsPerBlock], hi_s[cuda::kThreadsPerBlock];
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {  // the same b for the whole block
    const Accum* a = acc + b * plane;
    Accum lo = ~Accum{0}, hi = 0;
    for (int64_t i = threadIdx.x; i < plane; i += blockDim.x) {
      lo = a[i] < lo ? a[i] : lo;
      hi = a[i] > hi ? a[i] : hi;
    }
    lo_s[threadIdx.x] = lo;
    hi_s[threadIdx.x] = hi;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
      if (threadIdx.x < stride) {
        lo_s[threadIdx.x] = lo_s[threadIdx.x + stride] < lo_s[threadIdx.x] ? lo_s[threadIdx.x + stride] : lo_s[threadIdx.x];
        hi_s[threadIdx.x] = hi_s[threadIdx.x + stride] > hi_s[threadIdx.x] ? hi_s[threadIdx.x + stride] : hi_s[threadIdx.x];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      lo_hi[2 * b] = lo_s[0];
      lo_hi[2 * b + 1] = hi_s[0];
      alpha[b] = draw_rain_sample(ranges, seed, static_cast<uint64_t>(ids[b])).alpha;
    }
    __syncthreads();  // thread 0 has read the totals before the next sample overwrites them
  }
}

__device__ __forceinline__ float streak_at(const Accum* acc, const Accum* lo_hi, int64_t b, int64_t plane, int64_t i) {
  return normalise_streak(static_cast<int64_t>(acc[b * plane + i]), static_cast<int64_t>(lo_hi[2 * b]),
                          static_cast<int64_t>(lo_hi[2 * b + 1]));
}

__global__ void normalise_kernel(const Accum* __restrict__ acc, const Accum* __restrict__ lo_hi, float* __restrict__ out,
                                 int64_t total, int64_t plane) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    out[idx] = streak_at(acc, lo_hi, idx / plane, plane, idx % plane);
  }
}

template <typename In, typename Out>
__global__ void blend_kernel(const In* __restrict__ x, const Accum* __restrict__ acc, const Accum* __restrict__ lo_hi,
                             const double* __restrict__ alpha, Out* __restrict__ out, int64_t total, int64_t channels,
                             int64_t plane) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    const int64_t i = idx % plane, b = idx / plane / channels;
    out[idx] = static_cast<Out>(blend_rain(static_cast<double>(x[idx]), alpha[b], streak_at(acc, lo_hi, b, plane, i)));
  }
}

// Blocks of min_max_kernel: one per sample up to this many (any GPU runs far fewer at once), then each
// block takes several samples.
constexpr int64_t kMaxSampleBlocks = int64_t{1} << 16;

struct StreakAccumulators {
  at::Tensor acc, lo_hi, alpha;  // (B, H*W) exact sums, (B, 2) their min and max, (B,) blend strengths
};

// Splats and reduces the streak accumulators of all samples. The splat grid has one row of blocks per
// sample (grid.y), and grid.y is at most 65535 on every GPU, so larger batches are launched in chunks.
StreakAccumulators streak_accumulators(const at::Tensor& ids, int64_t height, int64_t width, uint64_t seed,
                                       const RainRanges& ranges, cudaStream_t stream) {
  const int64_t batch = ids.size(0), plane = height * width;
  at::Tensor acc = at::zeros({batch, plane}, ids.options().dtype(at::kLong));
  at::Tensor lo_hi = at::empty({batch, 2}, ids.options().dtype(at::kLong));
  at::Tensor alpha = at::empty({batch}, ids.options().dtype(at::kDouble));
  Accum* acc_ptr = reinterpret_cast<Accum*>(acc.mutable_data_ptr<int64_t>());
  Accum* lo_hi_ptr = reinterpret_cast<Accum*>(lo_hi.mutable_data_ptr<int64_t>());
  const int64_t* ids_ptr = ids.const_data_ptr<int64_t>();
  const int64_t max_r = streak_radius(ranges.length[1], ranges.thickness[1]);
  const int64_t max_padded = (height + 2 * max_r) * (width + 2 * max_r);
  constexpr int64_t kMaxGridY = 65535;
  for (int64_t first = 0; first < batch; first += kMaxGridY) {
    const int64_t count = std::min<int64_t>(kMaxGridY, batch - first);
    const dim3 grid(cuda::blocks_for(max_padded), static_cast<unsigned int>(count));
    splat_kernel<<<grid, cuda::kThreadsPerBlock, 0, stream>>>(acc_ptr + first * plane, ids_ptr + first, ranges, seed,
                                                             height, width, max_padded);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const unsigned int sample_blocks = static_cast<unsigned int>(std::min<int64_t>(batch, kMaxSampleBlocks));
  min_max_kernel<<<sample_blocks, cuda::kThreadsPerBlock, 0, stream>>>(
      acc_ptr, batch, plane, lo_hi_ptr, ids.const_data_ptr<int64_t>(), ranges, seed, alpha.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {acc, lo_hi, alpha};
}

at::Tensor rain_streaks_cuda(const at::Tensor& sample_ids, int64_t height, int64_t width, int64_t seed
                                 IPT_RAIN_LAYER_PARAMS(IPT_RANGE_PARAM)) {
  const RainRanges ranges =
      check_rain_streaks(sample_ids, height, width, seed, {IPT_RAIN_LAYER_PARAMS(IPT_RANGE_NAME)});
  const c10::cuda::CUDAGuard guard(sample_ids.device());
  at::Tensor out = at::empty({sample_ids.size(0), 1, height, width}, sample_ids.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const StreakAccumulators s = streak_accumulators(sample_ids.contiguous(), height, width, seed, ranges, stream);
  const int64_t total = out.numel();
  normalise_kernel<<<cuda::blocks_for(total), cuda::kThreadsPerBlock, 0, stream>>>(
      reinterpret_cast<const Accum*>(s.acc.const_data_ptr<int64_t>()),
      reinterpret_cast<const Accum*>(s.lo_hi.const_data_ptr<int64_t>()), out.mutable_data_ptr<float>(), total,
      height * width);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor add_rain_cuda(const at::Tensor& x_in, const at::Tensor& sample_ids, int64_t seed
                            IPT_RAIN_PARAMS(IPT_RANGE_PARAM)) {
  const RainRanges ranges = check_add_rain(x_in, sample_ids, seed, {IPT_RAIN_PARAMS(IPT_RANGE_NAME)});
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().dtype(degraded_dtype(x_in)));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous();
  const at::Tensor ids = sample_ids.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t height = x.size(2), width = x.size(3), total = x.numel();
  const StreakAccumulators s = streak_accumulators(ids, height, width, seed, ranges, stream);
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kBFloat16, at::kHalf, at::kByte, x.scalar_type(), "add_rain_cuda", [&] {
    using Out = std::conditional_t<std::is_same_v<scalar_t, uint8_t>, float, scalar_t>;
    blend_kernel<scalar_t, Out><<<cuda::blocks_for(total), cuda::kThreadsPerBlock, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), reinterpret_cast<const Accum*>(s.acc.const_data_ptr<int64_t>()),
        reinterpret_cast<const Accum*>(s.lo_hi.const_data_ptr<int64_t>()), s.alpha.const_data_ptr<double>(),
        out.mutable_data_ptr<Out>(), total, x.size(1), height * width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CUDA, m) {
  m.impl("rain_streaks", &rain_streaks_cuda);
  m.impl("add_rain", &add_rain_cuda);
}

}  // namespace ipt
