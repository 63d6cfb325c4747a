// CUDA kernel of add_gaussian_noise: one thread per block of 4 elements (one Philox call), the same
// stream and arithmetic as the CPU kernel (common/philox.h), so both devices give the same noise.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "../common/philox.h"
#include "launch.cuh"

namespace ipt {
namespace {

template <typename In, typename Out>
__global__ void noise_kernel(const In* __restrict__ x, Out* __restrict__ out, const int64_t* __restrict__ ids,
                             int64_t total_blocks, int64_t blocks_per_sample, int64_t per_sample, double sigma,
                             uint64_t seed) {
  for (int64_t flat = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; flat < total_blocks;
       flat += int64_t{blockDim.x} * gridDim.x) {
    const int64_t b = flat / blocks_per_sample, block = flat % blocks_per_sample;
    double z[4];
    normals_from_block(random_block(seed, static_cast<uint64_t>(ids[b]), kNoiseDomain, block), z);
    const int64_t first = block * 4;
    const int64_t count = per_sample - first < 4 ? per_sample - first : 4;
    for (int64_t lane = 0; lane < count; ++lane) {
      const int64_t e = b * per_sample + first + lane;
      out[e] = static_cast<Out>(add_noise_clipped(static_cast<double>(x[e]), sigma, z[lane]));
    }
  }
}

at::Tensor add_gaussian_noise_cuda(const at::Tensor& x_in, double sigma, int64_t seed, const at::Tensor& sample_ids) {
  check_add_gaussian_noise(x_in, sigma, seed, sample_ids);
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().dtype(degraded_dtype(x_in)));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous();
  const at::Tensor ids = sample_ids.contiguous();
  const int64_t batch = x.size(0), per_sample = x.numel() / batch;
  const int64_t blocks_per_sample = (per_sample + 3) / 4, total_blocks = batch * blocks_per_sample;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kBFloat16, at::kHalf, at::kByte, x.scalar_type(), "add_gaussian_noise_cuda", [&] {
    using Out = std::conditional_t<std::is_same_v<scalar_t, uint8_t>, float, scalar_t>;
    noise_kernel<scalar_t, Out><<<cuda::blocks_for(total_blocks), cuda::kThreadsPerBlock, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<Out>(), ids.const_data_ptr<int64_t>(), total_blocks,
        blocks_per_sample, per_sample, sigma, static_cast<uint64_t>(seed));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CUDA, m) { m.impl("add_gaussian_noise", &add_gaussian_noise_cuda); }

}  // namespace ipt
