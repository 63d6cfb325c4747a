// CPU kernels of rain_streaks and add_rain (the recipe is in common/rain.h). One sample per task:
// draw its parameters, tabulate its integer streak kernel once, splat every seed of the padded grid
// into an exact int64 accumulator, then normalise (and blend, for add_rain).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "../common/rain.h"

namespace ipt {
namespace {

// Exact integer streak accumulation of one sample over an (height, width) image.
std::vector<int64_t> accumulate_streaks(const RainSample& s, uint64_t seed, uint64_t sample, int64_t height,
                                        int64_t width) {
  const int64_t r = s.radius, side = 2 * r + 1;
  std::vector<int32_t> kernel(side * side);
  for (int64_t dy = -r; dy <= r; ++dy)
    for (int64_t dx = -r; dx <= r; ++dx) kernel[(dy + r) * side + (dx + r)] = streak_weight(s, dx, dy);

  std::vector<int64_t> acc(height * width, 0);
  const int64_t padded_h = height + 2 * r, padded_w = width + 2 * r;
  for (int64_t py = 0; py < padded_h; ++py) {
    for (int64_t px = 0; px < padded_w; ++px) {
      const int32_t value = rain_seed_value(seed, sample, s.amount, py * padded_w + px);
      if (value == 0) continue;
      // The seed sits at image (py - r, px - r); its tap (dy, dx), |dy|, |dx| <= r, lands on
      // (py - r + dy, px - r + dx), i.e. kernel row y - py + 2r for image row y.
      const int64_t y0 = std::max<int64_t>(0, py - 2 * r), y1 = std::min<int64_t>(height - 1, py);
      const int64_t x0 = std::max<int64_t>(0, px - 2 * r), x1 = std::min<int64_t>(width - 1, px);
      for (int64_t y = y0; y <= y1; ++y) {
        const int32_t* krow = kernel.data() + (y - py + 2 * r) * side + (x0 - px + 2 * r);
        int64_t* arow = acc.data() + y * width;
        for (int64_t x = x0; x <= x1; ++x) arow[x] += static_cast<int64_t>(value) * krow[x - x0];
      }
    }
  }
  return acc;
}

// Calls emit(b, sample, acc, lo, hi) for each sample, samples spread over threads.
template <typename Emit>
void for_each_streak_layer(const at::Tensor& ids, int64_t height, int64_t width, int64_t seed,
                           const RainRanges& ranges, const Emit& emit) {
  const int64_t* id = ids.const_data_ptr<int64_t>();
  at::parallel_for(0, ids.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const uint64_t sample = static_cast<uint64_t>(id[b]);
      const RainSample s = draw_rain_sample(ranges, static_cast<uint64_t>(seed), sample);
      const std::vector<int64_t> acc = accumulate_streaks(s, static_cast<uint64_t>(seed), sample, height, width);
      const auto [lo, hi] = std::minmax_element(acc.begin(), acc.end());
      emit(b, s, acc, *lo, *hi);
    }
  });
}

at::Tensor rain_streaks_cpu(const at::Tensor& sample_ids, int64_t height, int64_t width, int64_t seed
                                IPT_RAIN_LAYER_PARAMS(IPT_RANGE_PARAM)) {
  const RainRanges ranges =
      check_rain_streaks(sample_ids, height, width, seed, {IPT_RAIN_LAYER_PARAMS(IPT_RANGE_NAME)});
  at::Tensor out = at::empty({sample_ids.size(0), 1, height, width}, sample_ids.options().dtype(at::kFloat));
  float* dst = out.mutable_data_ptr<float>();
  for_each_streak_layer(sample_ids.contiguous(), height, width, seed, ranges,
                        [&](int64_t b, const RainSample&, const std::vector<int64_t>& acc, int64_t lo, int64_t hi) {
                          float* d = dst + b * height * width;
                          for (size_t i = 0; i < acc.size(); ++i) d[i] = normalise_streak(acc[i], lo, hi);
                        });
  return out;
}

at::Tensor add_rain_cpu(const at::Tensor& x_in, const at::Tensor& sample_ids, int64_t seed
                            IPT_RAIN_PARAMS(IPT_RANGE_PARAM)) {
  const RainRanges ranges = check_add_rain(x_in, sample_ids, seed, {IPT_RAIN_PARAMS(IPT_RANGE_NAME)});
  at::Tensor out = at::empty(x_in.sizes(), x_in.options().dtype(degraded_dtype(x_in)));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous();
  const int64_t channels = x.size(1), height = x.size(2), width = x.size(3), plane = height * width;
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kBFloat16, at::kHalf, at::kByte, x.scalar_type(), "add_rain_cpu", [&] {
    using Out = std::conditional_t<std::is_same_v<scalar_t, uint8_t>, float, scalar_t>;
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    Out* dst = out.mutable_data_ptr<Out>();
    for_each_streak_layer(sample_ids.contiguous(), height, width, seed, ranges,
                          [&](int64_t b, const RainSample& s, const std::vector<int64_t>& acc, int64_t lo, int64_t hi) {
                            for (int64_t c = 0; c < channels; ++c) {
                              const scalar_t* xs = src + (b * channels + c) * plane;
                              Out* d = dst + (b * channels + c) * plane;
                              for (int64_t i = 0; i < plane; ++i) {
                                const double streak = normalise_streak(acc[i], lo, hi);
                                d[i] = static_cast<Out>(blend_rain(static_cast<double>(xs[i]), s.alpha, streak));
                              }
                            }
                          });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CPU, m) {
  m.impl("rain_streaks", &rain_streaks_cpu);
  m.impl("add_rain", &add_rain_cpu);
}

}  // namespace ipt
