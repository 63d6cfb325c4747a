// CPU kernel of add_gaussian_noise: clip(x + sigma * z, 0, 255) with z from the Philox stream of
// (seed, sample id); element e of a sample (in C, H, W order) takes normal e % 4 of block e / 4.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../checks.h"
#include "../common/philox.h"

namespace ipt {
namespace {

template <typename In, typename Out>
void noise_kernel(const In* x, Out* out, const int64_t* ids, int64_t batch, int64_t per_sample, double sigma,
                  uint64_t seed) {
  const int64_t blocks_per_sample = (per_sample + 3) / 4;
  at::parallel_for(0, batch * blocks_per_sample, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t flat = begin; flat < end; ++flat) {
      const int64_t b = flat / blocks_per_sample, block = flat % blocks_per_sample;
      double z[4];
      normals_from_block(random_block(seed, static_cast<uint64_t>(ids[b]), kNoiseDomain, block), z);
      const int64_t first = block * 4, count = std::min<int64_t>(4, per_sample - first);
      const In* src = x + b * per_sample + first;
      Out* dst = out + b * per_sample + first;
      for (int64_t lane = 0; lane < count; ++lane) {
        dst[lane] = static_cast<Out>(add_noise_clipped(static_cast<double>(src[lane]), sigma, z[lane]));
      }
    }
  });
}

at::Tensor add_gaussian_noise_cpu(const at::Tensor& x_in, double sigma, int64_t seed, const at::Tensor& sample_ids) {
  check_add_gaussian_noise(x_in, sigma, seed, sample_ids);
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().dtype(degraded_dtype(x_in)));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous();
  const at::Tensor ids = sample_ids.contiguous();
  const int64_t batch = x.size(0), per_sample = x.numel() / batch;
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kBFloat16, at::kHalf, at::kByte, x.scalar_type(), "add_gaussian_noise_cpu", [&] {
    if constexpr (std::is_same_v<scalar_t, uint8_t>) {
      noise_kernel<uint8_t, float>(x.const_data_ptr<uint8_t>(), out.mutable_data_ptr<float>(),
                                   ids.const_data_ptr<int64_t>(), batch, per_sample, sigma, seed);
    } else {
      noise_kernel<scalar_t, scalar_t>(x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                                       ids.const_data_ptr<int64_t>(), batch, per_sample, sigma, seed);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CPU, m) { m.impl("add_gaussian_noise", &add_gaussian_noise_cpu); }

}  // namespace ipt
