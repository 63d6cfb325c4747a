// Philox4x32-10 counter-based random numbers (Salmon et al., SC'11), shared by the CPU and CUDA kernels
// so that the same (seed, sample id, element) gives the same number on every device, in any batch
// order. Checked against Random123's known-answer vectors through the reference (tests/test_noise.py).
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"

namespace ipt {

struct Philox4 {
  uint32_t v[4];
};

IPT_HOST_DEVICE void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

IPT_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += kWeyl0;
      key1 += kWeyl1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kMul0, ctr.v[0], hi0, lo0);
    mulhilo32(kMul1, ctr.v[2], hi1, lo1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
  }
  return ctr;
}

// Streams of different purposes never share counters, even for the same (seed, sample id).
enum RandomDomain : uint32_t {
  kNoiseDomain = 0,
  kRainSeedDomain = 1,
  kRainParamDomain = 2,
  kBlurPathDomain = 3,
  kBlurParamDomain = 4,
};

// Block `block` (4 words) of the stream of (seed, sample, domain). Blocks up to 2^60 are distinct.
IPT_HOST_DEVICE Philox4 random_block(uint64_t seed, uint64_t sample, RandomDomain domain, uint64_t block) {
  const Philox4 ctr{{static_cast<uint32_t>(block),
                     static_cast<uint32_t>((block >> 32) & 0x0FFFFFFFu) | (static_cast<uint32_t>(domain) << 28),
                     static_cast<uint32_t>(sample), static_cast<uint32_t>(sample >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// A uniform double in the open interval (0, 1): never 0, so log() is always finite.
IPT_HOST_DEVICE double uniform_open01(uint32_t bits) { return (static_cast<double>(bits) + 0.5) * 0x1p-32; }

// A uniform draw from [range[0], range[1]] (a degradation parameter of one sample).
IPT_HOST_DEVICE double lerp_range(const double range[2], uint32_t bits) {
  return range[0] + (range[1] - range[0]) * uniform_open01(bits);
}

// The standard normal quantile of p (Wichura's AS241, accurate to about 1e-16): a rational function
// of (p - 1/2)^2 in the centre (85% of draws, no transcendental function), of sqrt(-log(min(p, 1-p)))
// in the tails. AS241's third branch, for sqrt(-log(.)) > 5, is unreachable from 32-bit uniforms
// (min(p, 1-p) >= 2^-33, so sqrt(-log(.)) <= 4.79) and is left out.
IPT_HOST_DEVICE double normal_quantile(double p) {
  const double q = p - 0.5;
  if (fabs(q) <= 0.425) {
    const double r = 0.180625 - q * q;
    const double num = (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r +
                            45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r +
                          133.14166789178437745) * r + 3.387132872796366608);
    const double den = (((((((r * 5226.495278852854561 + 28729.085735721942674) * r + 39307.89580009271061) * r +
                            21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r +
                          42.313330701600911252) * r + 1.0);
    return q * num / den;
  }
  const double r = sqrt(-log(q < 0.0 ? p : 1.0 - p)) - 1.6;
  const double num = (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r + 0.24178072517745061177) * r +
                          1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r +
                        4.6303378461565452959) * r + 1.42343711074968357734);
  const double den = (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r +
                          0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r +
                        2.05319162663775882187) * r + 1.0);
  const double z = num / den;
  return q < 0.0 ? -z : z;
}

// Four standard normal numbers from one block: word k gives normal k by inversion.
IPT_HOST_DEVICE void normals_from_block(const Philox4& block, double z[4]) {
  for (int k = 0; k < 4; ++k) z[k] = normal_quantile(uniform_open01(block.v[k]));
}

// clip(x + sigma * z, 0, 255): one noisy pixel on the 0-255 scale.
IPT_HOST_DEVICE double add_noise_clipped(double x, double sigma, double z) {
  const double v = x + sigma * z;
  return v < 0.0 ? 0.0 : (v > 255.0 ? 255.0 : v);
}

}  // namespace ipt
