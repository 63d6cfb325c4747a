// Procedural rain streaks, shared by the CPU and CUDA kernels.
//
// Per sample, parameters are drawn uniformly from their [lo, hi] ranges by the Philox stream of
// (seed, sample id). Sparse seeds are scattered over the image grown by the streak radius R (so
// streaks can enter from outside): a pixel is a seed when its uniform u >= 1 - amount, with value
// floor(256 u). Each seed is spread by a streak kernel: a line of `length` pixels at `angle` degrees
// from vertical, widened by a Gaussian of standard deviation thickness / 2. Kernel weights are
// quantised to integers (kWeightOne = 1.0), so the accumulation is exact integer arithmetic and gives
// the same layer on every device, whatever order the contributions are added in. The layer is then
// min-max normalised to [0, 255].
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"
#include "philox.h"

namespace ipt {

constexpr int32_t kWeightOne = 1024;

struct RainRanges {
  double amount[2], thickness[2], length[2], angle[2], alpha[2];
};

struct RainSample {
  double amount, thickness, length, angle_deg, alpha;
  double sin_a, cos_a, half_length, inv_two_var;
  int64_t radius;
};

IPT_HOST_DEVICE int64_t streak_radius(double length, double thickness) {
  return static_cast<int64_t>(ceil(length / 2.0 + 1.5 * thickness));  // 3 standard deviations
}

IPT_HOST_DEVICE RainSample draw_rain_sample(const RainRanges& r, uint64_t seed, uint64_t sample) {
  const Philox4 b0 = random_block(seed, sample, kRainParamDomain, 0);
  const Philox4 b1 = random_block(seed, sample, kRainParamDomain, 1);
  RainSample s;
  s.amount = lerp_range(r.amount, b0.v[0]);
  s.thickness = lerp_range(r.thickness, b0.v[1]);
  s.length = lerp_range(r.length, b0.v[2]);
  s.angle_deg = lerp_range(r.angle, b0.v[3]);
  s.alpha = lerp_range(r.alpha, b1.v[0]);
  const double angle = s.angle_deg * (3.14159265358979323846 / 180.0);
  s.sin_a = sin(angle);
  s.cos_a = cos(angle);
  s.half_length = s.length / 2.0;
  const double sigma = s.thickness / 2.0;
  s.inv_two_var = 1.0 / (2.0 * sigma * sigma);
  s.radius = streak_radius(s.length, s.thickness);
  return s;
}

// Integer weight of the streak kernel at offset (dx, dy) from its centre (y grows downwards).
IPT_HOST_DEVICE int32_t streak_weight(const RainSample& s, int64_t dx, int64_t dy) {
  const double x = static_cast<double>(dx), y = static_cast<double>(dy);
  const double along = x * s.sin_a + y * s.cos_a;
  const double across = x * s.cos_a - y * s.sin_a;
  const double beyond_end = fabs(along) > s.half_length ? fabs(along) - s.half_length : 0.0;
  const double dist2 = across * across + beyond_end * beyond_end;
  return static_cast<int32_t>(floor(exp(-dist2 * s.inv_two_var) * kWeightOne + 0.5));
}

// Seed value (0 = no seed) of pixel `index` of the padded grid of a sample.
IPT_HOST_DEVICE int32_t rain_seed_value(uint64_t seed, uint64_t sample, double amount, int64_t index) {
  const Philox4 block = random_block(seed, sample, kRainSeedDomain, static_cast<uint64_t>(index) / 4);
  const double u = uniform_open01(block.v[index % 4]);
  if (u < 1.0 - amount) return 0;
  const double value = floor(256.0 * u);
  return static_cast<int32_t>(value > 255.0 ? 255.0 : value);
}

// Maps an exact integer accumulation to the [0, 255] layer.
IPT_HOST_DEVICE float normalise_streak(int64_t acc, int64_t lo, int64_t hi) {
  if (hi <= lo) return 0.0f;
  return static_cast<float>(static_cast<double>(acc - lo) * 255.0 / static_cast<double>(hi - lo));
}

// clip(x + alpha * streak, 0, 255)
IPT_HOST_DEVICE double blend_rain(double x, double alpha, double streak) {
  const double v = x + alpha * streak;
  return v < 0.0 ? 0.0 : (v > 255.0 ? 255.0 : v);
}

}  // namespace ipt
