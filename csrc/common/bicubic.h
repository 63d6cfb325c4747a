// MATLAB imresize(..., 'bicubic') along one axis, shared by the CPU and CUDA kernels.
//
// Keys' cubic kernel with a = -0.5. `scale` is MATLAB's: output/input length (0.5 halves). When
// shrinking (scale < 1) the kernel is stretched to width 4/scale with weights scale*W(scale*d)
// (antialiasing). Output pixel i (1-based) is centred at u = i/scale + 0.5*(1 - 1/scale) in input
// coordinates and reads taps floor(u - width/2) + k, k = 0 .. P-1, P = ceil(width) + 2; weights are
// normalised to sum 1 and taps outside the image are mirrored with the edge pixel repeated (MATLAB's
// [1:n, n:-1:1] index table, applied periodically). The arithmetic is MATLAB's operation for
// operation, so that uint8 results that land exactly on x.5 round the way MATLAB's do.
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"

namespace ipt {

// a^3 rounded once, as MATLAB's absx.^3 is, not twice as a*a*a is: uint8 outputs that land exactly on
// x.5 follow that last bit. The rounding errors of both products are recovered exactly with fma, which
// is IEEE-exact on every device, so CPU and GPU agree bit for bit.
IPT_HOST_DEVICE double cube(double a) {
  const double square = a * a;
  const double square_err = fma(a, a, -square);
  const double hi = square * a;
  const double hi_err = fma(square, a, -hi);
  return hi + (hi_err + square_err * a);
}

IPT_HOST_DEVICE double keys_cubic(double x) {
  const double a = fabs(x), a2 = a * a, a3 = cube(a);
  if (a <= 1.0) return 1.5 * a3 - 2.5 * a2 + 1.0;
  if (a <= 2.0) return -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0;
  return 0.0;
}

struct ResizeAxis {
  int64_t in_len;
  int64_t out_len;
  double scale;  // MATLAB's scale: output/input length, 0.5 shrinks by 2, 2.0 enlarges by 2

  IPT_HOST_DEVICE bool antialias() const { return scale < 1.0; }
  IPT_HOST_DEVICE double kernel_width() const { return antialias() ? 4.0 / scale : 4.0; }
  IPT_HOST_DEVICE int64_t taps() const { return static_cast<int64_t>(ceil(kernel_width())) + 2; }
};

// 0-based mirrored index of 0-based position `pos` in an axis of length n (edge pixel repeated).
IPT_HOST_DEVICE int64_t mirror_index(int64_t pos, int64_t n) {
  const int64_t period = 2 * n;
  int64_t q = pos % period;
  if (q < 0) q += period;
  return q < n ? q : period - 1 - q;
}

// Writes the taps() normalised weights and 0-based source indices of output pixel `i` (0-based).
template <typename Weight, typename Index>
IPT_HOST_DEVICE void cubic_contributions(const ResizeAxis& axis, int64_t i, Weight* weights, Index* indices) {
  const double s = axis.scale;
  const double u = static_cast<double>(i + 1) / s + 0.5 * (1.0 - 1.0 / s);
  const int64_t left = static_cast<int64_t>(floor(u - axis.kernel_width() / 2.0));
  const int64_t taps = axis.taps();
  auto weight_at = [&](int64_t k) {
    const double distance = u - static_cast<double>(left + k);
    return axis.antialias() ? s * keys_cubic(s * distance) : keys_cubic(distance);
  };
  double total = 0.0;
  for (int64_t k = 0; k < taps; ++k) total += weight_at(k);
  for (int64_t k = 0; k < taps; ++k) {
    weights[k] = static_cast<Weight>(weight_at(k) / total);
    indices[k] = static_cast<Index>(mirror_index(left + k - 1, axis.in_len));
  }
}

// MATLAB's conversion of a computed value to uint8: round half away from zero, then saturate.
IPT_HOST_DEVICE uint8_t round_saturate_u8(double v) {
  const double r = floor(v + 0.5);
  return static_cast<uint8_t>(r < 0.0 ? 0.0 : (r > 255.0 ? 255.0 : r));
}

}  // namespace ipt
