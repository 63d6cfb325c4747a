// Launch helpers shared by the CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace ipt {
namespace cuda {

constexpr int kThreadsPerBlock = 256;

// Blocks for a grid-stride loop over `total` elements: enough to fill any current GPU many times over,
// few enough that each thread handles several elements on large inputs.
inline unsigned int blocks_for(int64_t total) {
  const int64_t wanted = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(wanted, int64_t{1} << 16)));
}

// True when every element offset of `t` fits in int32, so kernels can use cheap 32-bit index math.
inline bool offsets_fit_int32(const at::Tensor& t) {
  int64_t max_offset = 0;
  for (int64_t d = 0; d < t.dim(); ++d) max_offset += (t.size(d) - 1) * t.stride(d);
  return std::max<int64_t>(max_offset, t.numel()) < std::numeric_limits<int32_t>::max() / 2;
}

}  // namespace cuda
}  // namespace ipt
