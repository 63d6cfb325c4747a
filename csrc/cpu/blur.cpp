// CPU kernels of motion_blur_kernels and blur (the recipe is in common/blur.h).
//
// motion_blur_kernels: one sample per task, its integer kernel built in the output's own memory.
// blur: one image plane per task. The plane is copied once into a buffer of the sum's type (BlurAcc) grown by
// the mirrored
// border, so the inner loop is a plain multiply-add over contiguous pixels (no index math), 16 sums at a time;
// only the kernel's non-zero taps are visited -- a camera-shake PSF is a thin curve, a few percent of its
// square -- in row-major order, which keeps each pixel's sum in the reference's order.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../common/blur.h"

namespace ipt {
namespace {

at::Tensor motion_blur_kernels_cpu(const at::Tensor& sample_ids, int64_t size, int64_t seed, int64_t steps
                                       IPT_BLUR_PARAMS(IPT_RANGE_PARAM)) {
  const BlurRanges ranges =
      check_motion_blur_kernels(sample_ids, size, seed, steps, {IPT_BLUR_PARAMS(IPT_RANGE_NAME)});
  at::Tensor out = at::empty({sample_ids.size(0), size, size}, sample_ids.options().dtype(at::kFloat));
  const at::Tensor ids = sample_ids.contiguous();
  const int64_t* id = ids.const_data_ptr<int64_t>();
  float* dst = out.mutable_data_ptr<float>();
  at::parallel_for(0, ids.size(0), 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> acc(size * size);
    for (int64_t b = begin; b < end; ++b) {
      const uint64_t sample = static_cast<uint64_t>(id[b]);
      const BlurSample s = draw_blur_sample(ranges, static_cast<uint64_t>(seed), sample);
      const int64_t total = shake_kernel(acc.data(), size, s, steps, static_cast<uint64_t>(seed), sample);
      float* d = dst + b * size * size;
      for (int64_t i = 0; i < size * size; ++i) d[i] = normalise_kernel(acc[i], total);
    }
  });
  return out;
}

template <typename Acc>
struct Tap {
  int64_t offset;  // of the tap's source pixel from the output pixel's, in the padded plane
  Acc weight;
};

// The non-zero taps of one kernel, in row-major order: tap (i, j) reads padded row y + kh - 1 - i and
// column x + kw - 1 - j for output pixel (y, x).
template <typename Acc>
std::vector<Tap<Acc>> nonzero_taps(const Acc* kernel, int64_t kh, int64_t kw, int64_t padded_w) {
  std::vector<Tap<Acc>> taps;
  for (int64_t i = 0; i < kh; ++i) {
    for (int64_t j = 0; j < kw; ++j) {
      const Acc w = kernel[i * kw + j];
      if (w != Acc{0}) taps.push_back({(kh - 1 - i) * padded_w + (kw - 1 - j), w});
    }
  }
  return taps;
}

// Output pixels summed at once per pass over the taps: their sums stay in registers instead of being loaded
// and stored once per tap.
constexpr int64_t kPixelsPerPass = 16;

// Adds the taps to `count` consecutive outputs of one row (count <= kPixelsPerPass; a constant count lets the
// compiler unroll and keep the sums in registers). Each sum takes the taps in order: the reference's order.
template <typename Acc, typename Out, int64_t kCount>
inline void sum_taps(const std::vector<Tap<Acc>>& taps, const Acc* origin, Out* out, int64_t count = kCount) {
  Acc acc[kPixelsPerPass] = {};
  for (const Tap<Acc>& tap : taps) {
    const Acc* p = origin + tap.offset;
    const Acc w = tap.weight;
    for (int64_t k = 0; k < (kCount > 0 ? kCount : count); ++k) acc[k] += w * p[k];
  }
  for (int64_t k = 0; k < (kCount > 0 ? kCount : count); ++k) out[k] = static_cast<Out>(acc[k]);
}

template <typename In, typename Out, typename Acc = BlurAcc<In>>
void blur_planes(const In* src, const Acc* kernels, Out* dst, int64_t batch, int64_t channels, int64_t height,
                 int64_t width, int64_t kh, int64_t kw) {
  // Output (y, x) reads source (y + kh/2 - i, x + kw/2 - j): rows from y - (kh - 1 - kh/2) to y + kh/2.
  const int64_t top = kh - 1 - kh / 2, left = kw - 1 - kw / 2;
  const int64_t padded_h = height + kh - 1, padded_w = width + kw - 1, plane = height * width;
  at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<Acc> padded(padded_h * padded_w);
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / channels;
      const In* s = src + bc * plane;
      for (int64_t y = 0; y < padded_h; ++y) {
        const In* srow = s + mirror(y - top, height) * width;
        Acc* prow = padded.data() + y * padded_w;
        for (int64_t x = 0; x < left; ++x) prow[x] = static_cast<Acc>(srow[mirror(x - left, width)]);
        for (int64_t x = 0; x < width; ++x) prow[left + x] = static_cast<Acc>(srow[x]);  // contiguous: vectorised
        for (int64_t x = left + width; x < padded_w; ++x) prow[x] = static_cast<Acc>(srow[mirror(x - left, width)]);
      }
      const std::vector<Tap<Acc>> taps = nonzero_taps(kernels + b * kh * kw, kh, kw, padded_w);
      Out* d = dst + bc * plane;
      for (int64_t y = 0; y < height; ++y) {
        const Acc* origin = padded.data() + y * padded_w;
        int64_t x = 0;
        for (; x + kPixelsPerPass <= width; x += kPixelsPerPass) {
          sum_taps<Acc, Out, kPixelsPerPass>(taps, origin + x, d + y * width + x);
        }
        if (x < width) sum_taps<Acc, Out, 0>(taps, origin + x, d + y * width + x, width - x);
      }
    }
  });
}

at::Tensor blur_cpu(const at::Tensor& x_in, const at::Tensor& kernels_in) {
  check_blur(x_in, kernels_in);
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().dtype(degraded_dtype(x_in)));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kBFloat16, at::kHalf, at::kByte, x.scalar_type(), "blur_cpu", [&] {
    using Out = std::conditional_t<std::is_same_v<scalar_t, uint8_t>, float, scalar_t>;
    using Acc = BlurAcc<scalar_t>;
    const at::Tensor kernels = kernels_in.to(c10::CppTypeToScalarType<Acc>::value).contiguous();
    blur_planes<scalar_t, Out>(x.const_data_ptr<scalar_t>(), kernels.const_data_ptr<Acc>(),
                               out.mutable_data_ptr<Out>(), x.size(0), x.size(1), x.size(2), x.size(3),
                               kernels.size(1), kernels.size(2));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CPU, m) {
  m.impl("motion_blur_kernels", &motion_blur_kernels_cpu);
  m.impl("blur", &blur_cpu);
}

}  // namespace ipt
