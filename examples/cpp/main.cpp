// Cuts a known image into tokens with a position embedding added, folds them back, and prints what
// it got, so a caller (tests/test_extension.py) can check the values against the Python package.
#include <ATen/ATen.h>
#include <ipt/ops.h>

#include <iostream>

int main() {
  const at::Tensor image = at::arange(2 * 3 * 6 * 9, at::kFloat).reshape({2, 3, 6, 9});
  const at::Tensor pos = at::arange(6 * 27, at::kFloat).reshape({6, 27}) * 0.5;

  const at::Tensor tokens = ipt::patch_unfold(image, 3, pos);
  const at::Tensor back = ipt::patch_fold(tokens - pos, 3, {6, 9});

  std::cout << "tokens_shape " << tokens.size(0) << " " << tokens.size(1) << " " << tokens.size(2) << "\n";
  std::cout << "tokens_sum " << tokens.sum().item<double>() << "\n";
  const at::Tensor token = tokens[1][4].contiguous();
  std::cout << "token_1_4";
  for (int64_t d = 0; d < token.size(0); ++d) std::cout << " " << token[d].item<float>();
  std::cout << "\n";
  std::cout << "roundtrip_exact " << at::equal(back, image) << "\n";
  return 0;
}
