// The op schemas: the one list of what the ipt library offers. Kernels register per device in
// cpu/ and cuda/; fake (meta) kernels and autograd are registered from Python (ipt/ops).
#include <torch/library.h>

TORCH_LIBRARY(ipt, m) {
  // (B, C, H, W) -> (B, N, C*patch*patch) tokens, with `pos` (N, C*patch*patch) added when given.
  m.def("patch_unfold(Tensor x, int patch, Tensor? pos=None) -> Tensor");
  // (B, N, C*patch*patch) tokens -> (B, C, H, W) image; the exact inverse of patch_unfold.
  m.def("patch_fold(Tensor tokens, int patch, int[2] size) -> Tensor");

  // MATLAB imresize(x, 'bicubic') to `size`; scale = output/input length per axis as MATLAB uses it
  // (0.5 halves). uint8 in -> uint8 out with MATLAB's rounding after each pass; float in -> float out.
  m.def("bicubic_resize(Tensor x, int[2] size, float[2] scale) -> Tensor");

  // clip(x + sigma * N(0, 1), 0, 255), seeded per (seed, sample id); float output, not rounded.
  m.def("add_gaussian_noise(Tensor x, float sigma, int seed, Tensor sample_ids) -> Tensor");

  // Procedural rain: grey streak layers (B, 1, height, width) in [0, 255], and their blend into images.
  // Each parameter is a (low, high) range that every sample draws from; see csrc/common/rain.h.
  m.def("rain_streaks(Tensor sample_ids, int height, int width, int seed, float[2] amount, float[2] thickness, "
        "float[2] length, float[2] angle) -> Tensor");
  m.def("add_rain(Tensor x, Tensor sample_ids, int seed, float[2] amount, float[2] thickness, float[2] length, "
        "float[2] angle, float[2] alpha) -> Tensor");
}
