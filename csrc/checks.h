// Argument validation shared by the CPU and CUDA wrappers, so both devices reject bad input with the
// same messages (ipt/ops/_checks.py holds the Python twin used by the reference and fake kernels).
// TORCH_CHECK_TYPE surfaces in Python as TypeError and TORCH_CHECK_VALUE as ValueError, the same
// exception types the reference raises.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common/patch_index.h"
#include "common/rain.h"

#include <cmath>

namespace ipt {

inline void check_float_dtype(const char* op, const char* name, const at::Tensor& t) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf,
              op, ": ", name, " has dtype ", dtype,
              "; supported dtypes are float32, float64, bfloat16 and float16");
}

// The degradations also take uint8 images (what decoders produce).
inline void check_image_dtype(const char* op, const at::Tensor& x) {
  const auto dtype = x.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kByte || dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 ||
                       dtype == at::kHalf,
                   op, ": x has dtype ", dtype, "; supported dtypes are uint8, float32, float64, bfloat16 and float16");
}

inline void check_image_batch(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D (B, C, H, W), got shape ", x.sizes());
  check_image_dtype(op, x);
}

// Degraded images are float: uint8 input gives float32, float input keeps its dtype.
inline at::ScalarType degraded_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kByte ? at::kFloat : x.scalar_type();
}

inline void check_sample_ids(const char* op, const at::Tensor& ids, int64_t batch, const at::Device& device) {
  TORCH_CHECK_VALUE(ids.dim() == 1 && ids.size(0) == batch, op, ": sample_ids must have shape (B,) = (", batch,
                    ",), got ", ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kLong, op, ": sample_ids must be int64, got ", ids.scalar_type());
  TORCH_CHECK_VALUE(ids.device() == device, op, ": sample_ids is on ", ids.device(), " but the images are on ",
                    device, "; they must be on the same device");
}

inline void check_seed(const char* op, int64_t seed) {
  TORCH_CHECK_VALUE(seed >= 0, op, ": seed must be >= 0, got ", seed);
}

inline void check_range(const char* op, const char* name, at::ArrayRef<double> range, double min, double max) {
  TORCH_CHECK_VALUE(range.size() == 2, op, ": ", name, " must be a (low, high) pair, got ", range.size(), " values");
  TORCH_CHECK_VALUE(std::isfinite(range[0]) && std::isfinite(range[1]) && min <= range[0] && range[0] <= range[1] &&
                        range[1] <= max,
                    op, ": ", name, " range (", range[0], ", ", range[1], ") must satisfy ", min,
                    " <= low <= high <= ", max);
}

// Validates the rain parameter ranges (alpha may be empty for rain_streaks) and packs them.
inline RainRanges check_rain_ranges(const char* op, at::ArrayRef<double> amount, at::ArrayRef<double> thickness,
                                    at::ArrayRef<double> length, at::ArrayRef<double> angle,
                                    at::ArrayRef<double> alpha) {
  check_range(op, "amount", amount, 0.0, 1.0);
  check_range(op, "thickness", thickness, 0.05, 64.0);
  check_range(op, "length", length, 0.0, 512.0);
  check_range(op, "angle", angle, -360.0, 360.0);
  RainRanges r{{amount[0], amount[1]}, {thickness[0], thickness[1]}, {length[0], length[1]}, {angle[0], angle[1]},
               {0.0, 0.0}};
  if (!alpha.empty()) {
    check_range(op, "alpha", alpha, 0.0, 4.0);
    r.alpha[0] = alpha[0];
    r.alpha[1] = alpha[1];
  }
  return r;
}

inline void check_noise_args(const at::Tensor& x, double sigma, int64_t seed, const at::Tensor& sample_ids) {
  constexpr const char* op = "add_gaussian_noise";
  check_image_batch(op, x);
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma >= 0.0, op, ": sigma must be finite and >= 0, got ", sigma);
  check_seed(op, seed);
  check_sample_ids(op, sample_ids, x.size(0), x.device());
}

inline RainRanges check_rain_streaks_args(const at::Tensor& sample_ids, int64_t height, int64_t width, int64_t seed,
                                          at::ArrayRef<double> amount, at::ArrayRef<double> thickness,
                                          at::ArrayRef<double> length, at::ArrayRef<double> angle) {
  constexpr const char* op = "rain_streaks";
  TORCH_CHECK_VALUE(height >= 1 && width >= 1, op, ": height and width must be >= 1, got ", height, "x", width);
  check_seed(op, seed);
  check_sample_ids(op, sample_ids, sample_ids.dim() == 1 ? sample_ids.size(0) : -1, sample_ids.device());
  return check_rain_ranges(op, amount, thickness, length, angle, {});
}

inline RainRanges check_add_rain_args(const at::Tensor& x, const at::Tensor& sample_ids, int64_t seed,
                                      at::ArrayRef<double> amount, at::ArrayRef<double> thickness,
                                      at::ArrayRef<double> length, at::ArrayRef<double> angle,
                                      at::ArrayRef<double> alpha) {
  constexpr const char* op = "add_rain";
  check_image_batch(op, x);
  check_seed(op, seed);
  check_sample_ids(op, sample_ids, x.size(0), x.device());
  TORCH_CHECK_VALUE(alpha.size() == 2, op, ": alpha must be a (low, high) pair");
  return check_rain_ranges(op, amount, thickness, length, angle, alpha);
}

inline void check_resize_args(const at::Tensor& x, at::IntArrayRef size, at::ArrayRef<double> scale) {
  constexpr const char* op = "bicubic_resize";
  check_image_batch(op, x);
  TORCH_CHECK_VALUE(x.size(2) >= 1 && x.size(3) >= 1, op, ": H and W must be >= 1, got ", x.sizes());
  TORCH_CHECK_VALUE(size.size() == 2 && size[0] >= 1 && size[1] >= 1, op,
                    ": size must be two output lengths >= 1, got ", size);
  TORCH_CHECK_VALUE(scale.size() == 2 && std::isfinite(scale[0]) && std::isfinite(scale[1]) &&
                        scale[0] >= 1.0 / 1024 && scale[1] >= 1.0 / 1024 && scale[0] <= 1024.0 && scale[1] <= 1024.0,
                    op, ": scale must be two output/input length ratios in [1/1024, 1024], got ", scale);
}

inline void check_patch_size(const char* op, int64_t patch) {
  TORCH_CHECK_VALUE(patch >= 1, op, ": patch must be >= 1, got ", patch);
}

// Validates patch_unfold's arguments and returns the geometry of x.
inline PatchGeometry check_patch_unfold_args(const at::Tensor& x, int64_t patch,
                                             const c10::optional<at::Tensor>& pos) {
  constexpr const char* op = "patch_unfold";
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D (B, C, H, W), got shape ", x.sizes());
  check_float_dtype(op, "x", x);
  check_patch_size(op, patch);
  const PatchGeometry g{x.size(1), x.size(2), x.size(3), patch};
  TORCH_CHECK_VALUE(g.height % patch == 0 && g.width % patch == 0, op, ": H=", g.height, " and W=", g.width,
              " must be multiples of patch=", patch);
  if (pos.has_value()) {
    const at::Tensor& p = *pos;
    TORCH_CHECK_VALUE(p.dim() == 2 && p.size(0) == g.num_tokens() && p.size(1) == g.token_dim(), op,
                ": pos must have shape (N, C*patch^2) = (", g.num_tokens(), ", ", g.token_dim(),
                "), got ", p.sizes());
    TORCH_CHECK_TYPE(p.scalar_type() == x.scalar_type(), op, ": pos has dtype ", p.scalar_type(),
                " but x has dtype ", x.scalar_type(), "; they must match");
    TORCH_CHECK_VALUE(p.device() == x.device(), op, ": pos is on ", p.device(), " but x is on ", x.device(),
                "; they must be on the same device");
  }
  return g;
}

// Validates patch_fold's arguments and returns the geometry of the image it produces.
inline PatchGeometry check_patch_fold_args(const at::Tensor& tokens, int64_t patch, at::IntArrayRef size) {
  constexpr const char* op = "patch_fold";
  TORCH_CHECK_VALUE(tokens.dim() == 3, op, ": tokens must be 3-D (B, N, C*patch^2), got shape ", tokens.sizes());
  check_float_dtype(op, "tokens", tokens);
  check_patch_size(op, patch);
  TORCH_CHECK_VALUE(size.size() == 2, op, ": size must be (H, W), got ", size);
  const int64_t height = size[0], width = size[1];
  TORCH_CHECK_VALUE(height >= 1 && width >= 1 && height % patch == 0 && width % patch == 0, op, ": size (H=",
              height, ", W=", width, ") must be positive multiples of patch=", patch);
  const int64_t patch_area = patch * patch;
  TORCH_CHECK_VALUE(tokens.size(2) % patch_area == 0, op, ": token length ", tokens.size(2),
              " is not a multiple of patch^2=", patch_area);
  const PatchGeometry g{tokens.size(2) / patch_area, height, width, patch};
  TORCH_CHECK_VALUE(tokens.size(1) == g.num_tokens(), op, ": got ", tokens.size(1), " tokens but size (", height,
              ", ", width, ") with patch ", patch, " needs ", g.num_tokens());
  return g;
}

}  // namespace ipt
