// CUDA kernels of patch_unfold / patch_fold: one thread per output element (coalesced writes), the
// strided reads are served by L1/L2 since neighbouring tokens read neighbouring pixels. The index
// math is the shared common/patch.h, and 32-bit indices are used whenever offsets fit.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "launch.cuh"

namespace ipt {
namespace {

template <typename T, typename Index>
__global__ void patch_unfold_kernel(const T* __restrict__ x, const T* __restrict__ pos, T* __restrict__ out,
                                    int64_t total, Index n_tokens, Index dim, Index grid_w, Index patch_dim,
                                    Index sb, Index sc, Index sh, Index sw) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    const Index flat = static_cast<Index>(idx);
    const Index d = flat % dim;
    const Index token = flat / dim;  // b * n_tokens + n
    const Index n = token % n_tokens;
    const Index b = token / n_tokens;
    Index c, h, w;
    token_feature_to_pixel<Index>(n, d, grid_w, patch_dim, c, h, w);
    T value = x[b * sb + c * sc + h * sh + w * sw];
    if (pos != nullptr) value = value + pos[n * dim + d];
    out[idx] = value;
  }
}

template <typename T, typename Index>
__global__ void patch_fold_kernel(const T* __restrict__ tokens, T* __restrict__ out, int64_t total,
                                  Index channels, Index height, Index width, Index grid_w, Index patch_dim,
                                  Index sb, Index sn, Index sd) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{blockDim.x} * gridDim.x) {
    const Index flat = static_cast<Index>(idx);
    const Index w = flat % width;
    const Index bch = flat / width;
    const Index h = bch % height;
    const Index bc = bch / height;
    const Index c = bc % channels;
    const Index b = bc / channels;
    Index n, d;
    pixel_to_token_feature<Index>(c, h, w, grid_w, patch_dim, n, d);
    out[idx] = tokens[b * sb + n * sn + d * sd];
  }
}

at::Tensor patch_unfold_cuda(const at::Tensor& x, int64_t patch_dim, const c10::optional<at::Tensor>& pos) {
  const PatchGeometry g = check_patch_unfold(x, patch_dim, pos);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({x.size(0), g.num_tokens(), g.token_dim()}, x.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const at::Tensor pos_c = pos.has_value() ? pos->contiguous() : at::Tensor();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "patch_unfold_cuda", [&] {
    const scalar_t* pos_ptr = pos_c.defined() ? pos_c.const_data_ptr<scalar_t>() : nullptr;
    auto launch = [&](auto index_tag) {
      using Index = decltype(index_tag);
      patch_unfold_kernel<scalar_t, Index><<<cuda::blocks_for(total), cuda::kThreadsPerBlock, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), pos_ptr, out.mutable_data_ptr<scalar_t>(), total,
          static_cast<Index>(g.num_tokens()), static_cast<Index>(g.token_dim()), static_cast<Index>(g.grid_w()),
          static_cast<Index>(patch_dim), static_cast<Index>(x.stride(0)), static_cast<Index>(x.stride(1)),
          static_cast<Index>(x.stride(2)), static_cast<Index>(x.stride(3)));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (cuda::offsets_fit_int32(x) && cuda::offsets_fit_int32(out)) {
      launch(int32_t{});
    } else {
      launch(int64_t{});
    }
  });
  return out;
}

at::Tensor patch_fold_cuda(const at::Tensor& tokens, int64_t patch_dim, at::IntArrayRef size) {
  const PatchGeometry g = check_patch_fold(tokens, patch_dim, size);
  const c10::cuda::CUDAGuard guard(tokens.device());
  at::Tensor out = at::empty({tokens.size(0), g.channels, g.height, g.width}, tokens.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, tokens.scalar_type(), "patch_fold_cuda", [&] {
    auto launch = [&](auto index_tag) {
      using Index = decltype(index_tag);
      patch_fold_kernel<scalar_t, Index><<<cuda::blocks_for(total), cuda::kThreadsPerBlock, 0, stream>>>(
          tokens.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), total,
          static_cast<Index>(g.channels), static_cast<Index>(g.height), static_cast<Index>(g.width),
          static_cast<Index>(g.grid_w()), static_cast<Index>(patch_dim), static_cast<Index>(tokens.stride(0)),
          static_cast<Index>(tokens.stride(1)), static_cast<Index>(tokens.stride(2)));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (cuda::offsets_fit_int32(tokens) && cuda::offsets_fit_int32(out)) {
      launch(int32_t{});
    } else {
      launch(int64_t{});
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CUDA, m) {
  m.impl("patch_unfold", &patch_unfold_cuda);
  m.impl("patch_fold", &patch_fold_cuda);
}

}  // namespace ipt
