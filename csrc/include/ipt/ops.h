// C++ entry points of the ipt ops for projects that link libipt_ops (built by CMakeLists.txt).
// Each call goes through the PyTorch dispatcher, so it reaches the CPU or CUDA kernel that matches the
// tensors, exactly as torch.ops.ipt.* does in Python. Signatures follow the schemas in csrc/ops.cpp;
// a mismatch is reported by the dispatcher at the first call.
//
// Link with -Wl,--no-as-needed (or reference the library another way): the ops register themselves in
// static initialisers, which a linker that drops "unused" libraries would never run.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>

namespace ipt {

// (B, C, H, W) -> (B, N, C*patch*patch) tokens (+ pos (N, C*patch*patch) when given).
inline at::Tensor patch_unfold(const at::Tensor& x, int64_t patch, const std::optional<at::Tensor>& pos = std::nullopt) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("ipt::patch_unfold", "")
                             .typed<at::Tensor(const at::Tensor&, int64_t, const std::optional<at::Tensor>&)>();
  return op.call(x, patch, pos);
}

// (B, N, C*patch*patch) tokens -> (B, C, H, W) image, the inverse of patch_unfold.
inline at::Tensor patch_fold(const at::Tensor& tokens, int64_t patch, at::IntArrayRef size) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("ipt::patch_fold", "")
                             .typed<at::Tensor(const at::Tensor&, int64_t, at::IntArrayRef)>();
  return op.call(tokens, patch, size);
}

}  // namespace ipt
