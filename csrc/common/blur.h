// Camera-shake motion blur, shared by the CPU and CUDA kernels (ipt/ops/blur.py states the model).
//
// Per sample, parameters are drawn uniformly from their [lo, hi] ranges by the Philox stream of (seed,
// sample id). The path starts at (0, 0) heading at `angle` and moves `length / (steps - 1)` pixels per
// step (Boracchi & Foi 2012, as DeblurGAN's generate_trajectory): each step, block t of the path stream
// gives a rare impulsive jerk (word 0 decides, word 1 turns it) and a 2-D Gaussian shake (words 2, 3);
// anxiety scales the shake and the centripetal pull back to the start; the velocity is renormalised to
// the step length. The shutter sees the first 1 + floor(exposure * (steps - 1)) positions. They are
// centred by their bounding box on the kernel's anchor size / 2 (the box's sides are at most `length`, so a
// length of at most 2 * ((size - 1) / 2) always fits), rounded to 1/kSplatOne pixel and splatted bilinearly
// with integer weights; the kernel is then divided by its known total. The splat is exact integer
// arithmetic; the path before it is double arithmetic whose libm calls (cos, sin, log) may differ by an ulp
// between the CPU and the GPU, which the rounding to 1/256 pixel absorbs unless a position falls within
// about 1e-13 px of a rounding boundary (roughly one kernel in ten million).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "macros.h"
#include "philox.h"

namespace ipt {

constexpr int64_t kSplatOne = 256;  // sub-pixel steps of a splatted position
constexpr double kPi = 3.14159265358979323846;

struct BlurRanges {
  double length[2], exposure[2], anxiety[2], centripetal[2], big_shake[2], gaussian_shake[2], angle[2];
};

struct BlurSample {
  double length, exposure, anxiety, centripetal, big_shake, gaussian_shake, angle;
};

IPT_HOST_DEVICE BlurSample draw_blur_sample(const BlurRanges& r, uint64_t seed, uint64_t sample) {
  const Philox4 b0 = random_block(seed, sample, kBlurParamDomain, 0);
  const Philox4 b1 = random_block(seed, sample, kBlurParamDomain, 1);
  return BlurSample{lerp_range(r.length, b0.v[0]),      lerp_range(r.exposure, b0.v[1]),
                    lerp_range(r.anxiety, b0.v[2]),     lerp_range(r.centripetal, b0.v[3]),
                    lerp_range(r.big_shake, b1.v[0]),   lerp_range(r.gaussian_shake, b1.v[1]),
                    lerp_range(r.angle, b1.v[2])};
}

IPT_HOST_DEVICE int64_t exposed_positions(double exposure, int64_t steps) {
  return 1 + static_cast<int64_t>(floor(exposure * static_cast<double>(steps - 1)));
}

// The camera's state along its path.
struct ShakePath {
  double x, y, vx, vy, step, jerk_chance;
  uint64_t t;  // steps taken: the next block of the path stream
};

IPT_HOST_DEVICE ShakePath start_path(const BlurSample& s, int64_t steps) {
  const double step = s.length / static_cast<double>(steps - 1);
  const double angle = s.angle * (kPi / 180.0);
  return ShakePath{0.0, 0.0, cos(angle) * step, sin(angle) * step, step, s.big_shake * s.anxiety, 0};
}

// One step of the camera. The expressions keep the reference's order of operations (Python floats), which
// the build keeps exact: no a*b+c contraction on either device (setup.py).
IPT_HOST_DEVICE void advance_path(ShakePath& p, const BlurSample& s, uint64_t seed, uint64_t sample) {
  const Philox4 block = random_block(seed, sample, kBlurPathDomain, p.t++);
  double jerk_x = 0.0, jerk_y = 0.0;
  if (uniform_open01(block.v[0]) < p.jerk_chance) {  // turn back, doubled, by pi +- 0.5 rad
    const double turn = kPi + (uniform_open01(block.v[1]) - 0.5);
    const double cos_t = cos(turn), sin_t = sin(turn);
    jerk_x = 2.0 * (p.vx * cos_t - p.vy * sin_t);
    jerk_y = 2.0 * (p.vx * sin_t + p.vy * cos_t);
  }
  const double shake_x = normal_quantile(uniform_open01(block.v[2]));
  const double shake_y = normal_quantile(uniform_open01(block.v[3]));
  p.vx = p.vx + (jerk_x + s.anxiety * (s.gaussian_shake * shake_x - s.centripetal * p.x) * p.step);
  p.vy = p.vy + (jerk_y + s.anxiety * (s.gaussian_shake * shake_y - s.centripetal * p.y) * p.step);
  const double speed = sqrt(p.vx * p.vx + p.vy * p.vy);
  if (speed > 0.0) {
    p.vx = p.vx / speed * p.step;
    p.vy = p.vy / speed * p.step;
  }
  p.x = p.x + p.vx;
  p.y = p.y + p.vy;
}

// Calls visit(x, y) for each exposed position of a sample's path, in order.
template <typename Visit>
IPT_HOST_DEVICE void walk_shake_path(const BlurSample& s, int64_t steps, uint64_t seed, uint64_t sample,
                                     Visit&& visit) {
  const int64_t n = exposed_positions(s.exposure, steps);
  ShakePath p = start_path(s, steps);
  visit(p.x, p.y);
  for (int64_t t = 1; t < n; ++t) {
    advance_path(p, s, seed, sample);
    visit(p.x, p.y);
  }
}

// Splats a path position into the (size, size) integer kernel `acc`; (mid_x, mid_y) is the centre of
// the path's bounding box, which lands on the kernel's anchor (size / 2, as blur anchors kernels: an image
// blurred by a still camera is not moved, whatever the size's parity).
IPT_HOST_DEVICE void splat_position(int64_t* acc, int64_t size, double x, double y, double mid_x, double mid_y) {
  const double centre = static_cast<double>(size / 2);
  const int64_t last = kSplatOne * (size - 1);
  const double fx_pos = floor((x - mid_x + centre) * static_cast<double>(kSplatOne) + 0.5);
  const double fy_pos = floor((y - mid_y + centre) * static_cast<double>(kSplatOne) + 0.5);
  // clamped, though the fit argument above keeps them in range up to rounding
  const int64_t qx = fx_pos < 0.0 ? 0 : (fx_pos > static_cast<double>(last) ? last : static_cast<int64_t>(fx_pos));
  const int64_t qy = fy_pos < 0.0 ? 0 : (fy_pos > static_cast<double>(last) ? last : static_cast<int64_t>(fy_pos));
  const int64_t ix = qx / kSplatOne, fx = qx % kSplatOne, iy = qy / kSplatOne, fy = qy % kSplatOne;
  const int64_t wy[2] = {kSplatOne - fy, fy}, wx[2] = {kSplatOne - fx, fx};
  for (int dy = 0; dy < 2; ++dy) {
    for (int dx = 0; dx < 2; ++dx) {
      const int64_t w = wy[dy] * wx[dx];
      if (w != 0) acc[(iy + dy) * size + ix + dx] += w;  // a zero weight may sit one past the last row/column
    }
  }
}

// The (size, size) integer kernel of one sample; returns its total (positions * kSplatOne^2).
IPT_HOST_DEVICE int64_t shake_kernel(int64_t* acc, int64_t size, const BlurSample& s, int64_t steps, uint64_t seed,
                                     uint64_t sample) {
  double min_x = 0.0, max_x = 0.0, min_y = 0.0, max_y = 0.0;  // the path starts at (0, 0)
  walk_shake_path(s, steps, seed, sample, [&](double x, double y) {
    min_x = x < min_x ? x : min_x;
    max_x = x > max_x ? x : max_x;
    min_y = y < min_y ? y : min_y;
    max_y = y > max_y ? y : max_y;
  });
  const double mid_x = (min_x + max_x) / 2.0, mid_y = (min_y + max_y) / 2.0;
  for (int64_t i = 0; i < size * size; ++i) acc[i] = 0;
  walk_shake_path(s, steps, seed, sample, [&](double x, double y) { splat_position(acc, size, x, y, mid_x, mid_y); });
  return exposed_positions(s.exposure, steps) * kSplatOne * kSplatOne;
}

IPT_HOST_DEVICE float normalise_kernel(int64_t acc, int64_t total) {
  return static_cast<float>(static_cast<double>(acc) / static_cast<double>(total));
}

// The type blur sums in: float64 for float64 images, float32 for the others (uint8, float32, float16,
// bfloat16: their outputs are float32 or narrower, and float32 doubles the vector width). The reference sums
// in the same type, in the same order.
template <typename In>
using BlurAcc = std::conditional_t<std::is_same_v<In, double>, double, float>;

// Source index of a mirrored border with the edge repeated (... 1 0 | 0 1 ... n-1 | n-1 n-2 ...), for
// i in [-n, 2n): a kernel is never larger than the image, so one reflection is enough.
IPT_HOST_DEVICE int64_t mirror(int64_t i, int64_t n) { return i < 0 ? -i - 1 : (i >= n ? 2 * n - 1 - i : i); }

}  // namespace ipt
