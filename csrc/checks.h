// Argument validation shared by the CPU and CUDA wrappers, so both devices reject bad input with the
// same messages (ipt/ops/_checks.py holds the Python twin used by the reference and fake kernels).
// TORCH_CHECK_TYPE surfaces in Python as TypeError and TORCH_CHECK_VALUE as ValueError, the same
// exception types the reference raises.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common/patch_index.h"

namespace ipt {

inline void check_float_dtype(const char* op, const char* name, const at::Tensor& t) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf,
              op, ": ", name, " has dtype ", dtype,
              "; supported dtypes are float32, float64, bfloat16 and float16");
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
