// The op schemas: the one list of what the ipt library offers. Kernels register per device in
// cpu/ and cuda/; fake (meta) kernels and autograd are registered from Python (ipt/ops).
#include <torch/library.h>

TORCH_LIBRARY(ipt, m) {
  // (B, C, H, W) -> (B, N, C*patch*patch) tokens, with `pos` (N, C*patch*patch) added when given.
  m.def("patch_unfold(Tensor x, int patch, Tensor? pos=None) -> Tensor");
  // (B, N, C*patch*patch) tokens -> (B, C, H, W) image; the exact inverse of patch_unfold.
  m.def("patch_fold(Tensor tokens, int patch, int[2] size) -> Tensor");
}
