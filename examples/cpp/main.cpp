// Calls every ipt op on known inputs and prints what it got, so a caller (tests/test_extension.py) can
// check the values against the Python package: patch tokens with a position embedding and back,
// MATLAB bicubic downsampling, seeded noise, rain layers and rain added to images.
#include <ATen/ATen.h>
#include <ipt/ops.h>

#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace {

void print_values(const std::string& name, const at::Tensor& t) {
  const at::Tensor flat = t.to(at::kDouble).flatten().contiguous();
  std::cout << name;
  for (int64_t i = 0; i < flat.numel(); ++i) std::cout << " " << flat[i].item<double>();
  std::cout << "\n";
}

}  // namespace

int main() {
  std::cout << std::setprecision(17);
  const at::Tensor image = at::arange(2 * 3 * 6 * 9, at::kFloat).reshape({2, 3, 6, 9});
  const at::Tensor pos = at::arange(6 * 27, at::kFloat).reshape({6, 27}) * 0.5;

  const at::Tensor tokens = ipt::patch_unfold(image, 3, pos);
  const at::Tensor back = ipt::patch_fold(tokens - pos, 3, {6, 9});
  std::cout << "tokens_shape " << tokens.size(0) << " " << tokens.size(1) << " " << tokens.size(2) << "\n";
  std::cout << "tokens_sum " << tokens.sum().item<double>() << "\n";
  print_values("token_1_4", tokens[1][4]);
  std::cout << "roundtrip_exact " << at::equal(back, image) << "\n";

  // Degradations of a uint8 image (what decoders give): x2 bicubic, sigma-30 noise, light rain.
  const at::Tensor photo = (at::arange(2 * 3 * 12 * 16, at::kLong) * 37 % 256).to(at::kByte).reshape({2, 3, 12, 16});
  const at::Tensor ids = at::arange(2, at::kLong);
  const std::vector<double> amount{0.002, 0.004}, thickness{1.0, 3.0}, length{25.0, 35.0}, angle{-10.0, 10.0},
      alpha{0.6, 0.9};
  print_values("bicubic_row", ipt::bicubic_resize(photo, {6, 8}, {0.5, 0.5})[1][2][3]);
  const at::Tensor noisy = ipt::add_gaussian_noise(photo, 30.0, 7, ids);
  std::cout << "noise_sum " << noisy.to(at::kDouble).sum().item<double>() << "\n";
  print_values("noise_row", noisy[1][0][5]);
  const at::Tensor layers = ipt::rain_streaks(ids, 12, 16, 5, amount, thickness, length, angle);
  std::cout << "streaks_sum " << layers.to(at::kDouble).sum().item<double>() << "\n";
  const at::Tensor rainy = ipt::add_rain(photo, ids, 5, amount, thickness, length, angle, alpha);
  std::cout << "rain_sum " << rainy.to(at::kDouble).sum().item<double>() << "\n";

  // Bad input raises the contract's message (ipt/ops/contract.py), as in Python.
  try {
    ipt::add_gaussian_noise(photo, -1.0, 7, ids);
    std::cout << "bad_sigma accepted\n";
  } catch (const c10::ValueError& e) {
    std::cout << "bad_sigma " << e.what_without_backtrace() << "\n";
  }
  return 0;
}
