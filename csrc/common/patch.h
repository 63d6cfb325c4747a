// Index math of the patch unfold/fold pair, shared by the CPU and CUDA kernels.
//
// An image (C, H, W) cut into non-overlapping p x p patches becomes N = (H/p) * (W/p) tokens of
// D = C * p * p features. Tokens are in raster order over the (H/p, W/p) grid and the feature order
// inside a token is c * p^2 + kh * p + kw -- exactly F.unfold(x, p, stride=p).transpose(1, 2).
#pragma once

#include <cstdint>

#include "macros.h"

namespace ipt {

struct PatchGeometry {
  int64_t channels, height, width, patch_dim;

  IPT_HOST_DEVICE int64_t grid_h() const { return height / patch_dim; }
  IPT_HOST_DEVICE int64_t grid_w() const { return width / patch_dim; }
  IPT_HOST_DEVICE int64_t num_tokens() const { return grid_h() * grid_w(); }
  IPT_HOST_DEVICE int64_t token_dim() const { return channels * patch_dim * patch_dim; }
};

// Pixel coordinates (c, h, w) of feature `d` of token `n`.
template <typename Index>
IPT_HOST_DEVICE void token_feature_to_pixel(Index n, Index d, Index grid_w, Index patch_dim, Index& c,
                                            Index& h, Index& w) {
  const Index patch_area = patch_dim * patch_dim;
  c = d / patch_area;
  const Index within = d - c * patch_area;
  const Index kh = within / patch_dim;
  const Index kw = within - kh * patch_dim;
  const Index i = n / grid_w;
  const Index j = n - i * grid_w;
  h = i * patch_dim + kh;
  w = j * patch_dim + kw;
}

// Token `n` and feature `d` that pixel (c, h, w) lands in.
template <typename Index>
IPT_HOST_DEVICE void pixel_to_token_feature(Index c, Index h, Index w, Index grid_w, Index patch_dim,
                                            Index& n, Index& d) {
  const Index i = h / patch_dim;
  const Index kh = h - i * patch_dim;
  const Index j = w / patch_dim;
  const Index kw = w - j * patch_dim;
  n = i * grid_w + j;
  d = (c * patch_dim + kh) * patch_dim + kw;
}

}  // namespace ipt
