// Argument checks of the compiled ops (CPU and CUDA), built only from csrc/contract.h, which is
// generated from ipt/ops/contract.py: every bound, dtype set and message comes from there. The Python
// twin (ipt/ops/checks.py) runs the same checks, in the same order, for the reference and the fake
// kernels; tests/test_op_contracts.py proves both raise the same error for the same bad input.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>

#include "common/blur.h"
#include "common/patch.h"
#include "common/rain.h"
#include "contract.h"

namespace ipt {

// --- formatting and raising: the rule of contract.py, as ipt/ops/checks.py show() implements it ------

template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline std::string show(T value) {
  return std::to_string(value);
}
inline std::string show(double value) {
  if (std::isnan(value)) return "nan";  // printf may write -nan; Python never does
  char text[32];
  std::snprintf(text, sizeof(text), "%g", value);
  return text;
}
inline std::string show(const char* text) { return text; }
inline std::string show(const c10::Device& device) { return device.str(); }
inline std::string show(c10::ScalarType dtype) {
  const char* name = contract::dtype_name(dtype);
  return name != nullptr ? std::string("torch.") + name : std::string(c10::toString(dtype));
}
template <typename T>
inline std::string show(at::ArrayRef<T> values) {  // [2, 3]
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + show(values[i]);
  return out + "]";
}
inline std::string show_tuple(std::initializer_list<int64_t> values) {  // (2,) or (4, 27)
  std::string out = "(";
  for (const int64_t v : values) out += (out.size() > 1 ? ", " : "") + show(v);
  return out + (values.size() == 1 ? ",)" : ")");
}

using Field = std::pair<const char*, std::string>;

// Fills the {field}s of a message template.
inline std::string format_message(const char* text, std::initializer_list<Field> fields) {
  std::string out;
  for (const char* p = text; *p != '\0'; ++p) {
    const char* close = *p == '{' ? std::strchr(p, '}') : nullptr;
    const Field* field = nullptr;
    for (const Field& f : fields) {
      if (close != nullptr && std::string(p + 1, close) == f.first) field = &f;
    }
    if (field == nullptr) {
      out += *p;
    } else {
      out += field->second;
      p = close;
    }
  }
  return out;
}

inline void fail(const contract::Message& message, std::initializer_list<Field> fields) {
  const std::string text = format_message(message.text, fields);
  TORCH_CHECK_TYPE(!message.type_error, text);
  TORCH_CHECK_VALUE(false, text);
}

// Raises `message` (TypeError or ValueError, as the contract says) unless `ok`; the fields are only
// formatted on failure.
#define IPT_REQUIRE(ok, message, ...)                                   \
  do {                                                                  \
    if (C10_UNLIKELY(!(ok))) ::ipt::fail(message, {__VA_ARGS__});       \
  } while (0)

// --- generic checks ----------------------------------------------------------------------------------

inline void check_dims(const char* op, const char* name, const at::Tensor& t, int64_t ndim, const char* layout) {
  IPT_REQUIRE(t.dim() == ndim, contract::msg::kDims, {"op", op}, {"name", name}, {"ndim", show(ndim)},
              {"layout", layout}, {"shape", show(t.sizes())});
}

inline void check_dtype(const char* op, const char* name, const at::Tensor& t, const contract::DtypeSet& set) {
  bool ok = false;
  for (size_t i = 0; i < set.count; ++i) ok = ok || t.scalar_type() == set.types[i];
  IPT_REQUIRE(ok, contract::msg::kDtype, {"op", op}, {"name", name}, {"dtype", show(t.scalar_type())},
              {"supported", set.text});
}

inline void check_same_dtype(const char* op, const char* name, const at::Tensor& t, const char* other,
                             const at::Tensor& ref) {
  IPT_REQUIRE(t.scalar_type() == ref.scalar_type(), contract::msg::kSameDtype, {"op", op}, {"name", name},
              {"dtype", show(t.scalar_type())}, {"other", other}, {"other_dtype", show(ref.scalar_type())});
}

inline void check_same_device(const char* op, const char* name, const at::Tensor& t, const char* other,
                              const at::Tensor& ref) {
  IPT_REQUIRE(t.device() == ref.device(), contract::msg::kSameDevice, {"op", op}, {"name", name},
              {"device", show(t.device())}, {"other", other}, {"other_device", show(ref.device())});
}

inline void check_shape(const char* op, const char* name, const at::Tensor& t, const char* layout,
                        std::initializer_list<int64_t> expected) {
  IPT_REQUIRE(t.sizes().equals(at::IntArrayRef(expected)), contract::msg::kShape, {"op", op}, {"name", name},
              {"layout", layout}, {"expected", show_tuple(expected)}, {"shape", show(t.sizes())});
}

inline void check_int_min(const char* op, const char* name, int64_t value, int64_t min) {
  IPT_REQUIRE(value >= min, contract::msg::kIntMin, {"op", op}, {"name", name}, {"min", show(min)},
              {"value", show(value)});
}

inline void check_finite_min(const char* op, const char* name, double value, double min) {
  IPT_REQUIRE(std::isfinite(value) && value >= min, contract::msg::kFiniteMin, {"op", op}, {"name", name},
              {"min", show(min)}, {"value", show(value)});
}

// An integer side (a length in pixels): at least `min` and below 2**kSideBits.
inline void check_side(const char* op, const char* name, int64_t value, int64_t min) {
  check_int_min(op, name, value, min);
  IPT_REQUIRE(value < (int64_t{1} << contract::kSideBits), contract::msg::kSideMax, {"op", op}, {"name", name},
              {"bits", show(contract::kSideBits)}, {"value", show(value)});
}

// Both lengths of a size argument below 2**kSideBits (their lower bound is each op's own check).
inline void check_size_max(const char* op, at::IntArrayRef size) {
  IPT_REQUIRE(size[0] < (int64_t{1} << contract::kSideBits) && size[1] < (int64_t{1} << contract::kSideBits),
              contract::msg::kSizeMax, {"op", op}, {"bits", show(contract::kSideBits)}, {"value", show(size)});
}

// Whether a tensor of `sizes` (each >= 0) has fewer than 2**kNumelBits elements. The running product is
// compared with the bound by division before each multiplication, so it never overflows.
inline bool numel_fits(at::IntArrayRef sizes) {
  for (const int64_t s : sizes) {
    if (s == 0) return true;
  }
  constexpr int64_t kMaxNumel = (int64_t{1} << contract::kNumelBits) - 1;
  int64_t numel = 1;
  for (const int64_t s : sizes) {
    if (numel > kMaxNumel / s) return false;
    numel *= s;
  }
  return true;
}

inline void check_numel(const char* op, const char* name, at::IntArrayRef sizes) {
  IPT_REQUIRE(numel_fits(sizes), contract::msg::kNumelMax, {"op", op}, {"name", name}, {"shape", show(sizes)},
              {"bits", show(contract::kNumelBits)});
}

// An image batch's sides and element count, the bounds of contract.py.
inline void check_image_bounds(const char* op, const at::Tensor& x) {
  IPT_REQUIRE(x.size(2) < (int64_t{1} << contract::kSideBits) && x.size(3) < (int64_t{1} << contract::kSideBits),
              contract::msg::kImageSideMax, {"op", op}, {"bits", show(contract::kSideBits)},
              {"shape", show(x.sizes())});
  check_numel(op, "x", x.sizes());
}

// The upper bound 2**63 is int64's own; the schemas carry seeds as int64, so only the front (Python)
// can be handed a larger one, and checks it there.
inline void check_seed(const char* op, int64_t seed) {
  IPT_REQUIRE(seed >= contract::kSeedMin, contract::msg::kSeed, {"op", op}, {"min", show(contract::kSeedMin)},
              {"bits", show(contract::kSeedBits)}, {"value", show(seed)});
}

inline void check_range(const char* op, const contract::RangeBound& bound, at::ArrayRef<double> range) {
  IPT_REQUIRE(range.size() == 2, contract::msg::kPair, {"op", op}, {"name", bound.name}, {"value", show(range)});
  IPT_REQUIRE(std::isfinite(range[0]) && std::isfinite(range[1]) && bound.min <= range[0] && range[0] <= range[1] &&
                  range[1] <= bound.max,
              contract::msg::kRange, {"op", op}, {"name", bound.name}, {"low", show(range[0])},
              {"high", show(range[1])}, {"min", show(bound.min)}, {"max", show(bound.max)});
}

// Checks each range against its bound (both in contract order) and copies it to fields[i].
inline void check_ranges(const char* op, const contract::RangeBound* bounds,
                         std::initializer_list<at::ArrayRef<double>> ranges, double* const* fields) {
  size_t i = 0;
  for (const at::ArrayRef<double> range : ranges) {
    check_range(op, bounds[i], range);
    fields[i][0] = range[0];
    fields[i][1] = range[1];
    ++i;
  }
}

#define IPT_RANGE_FIELD(name) packed.name,
// Checks the rain ranges (rain_streaks passes all but the blend strength) and packs them for the kernels.
inline RainRanges check_rain_ranges(const char* op, std::initializer_list<at::ArrayRef<double>> ranges) {
  RainRanges packed{};
  double* const fields[] = {IPT_RAIN_PARAMS(IPT_RANGE_FIELD)};
  check_ranges(op, contract::kRainBounds, ranges, fields);
  return packed;
}

inline BlurRanges check_blur_ranges(const char* op, std::initializer_list<at::ArrayRef<double>> ranges) {
  BlurRanges packed{};
  double* const fields[] = {IPT_BLUR_PARAMS(IPT_RANGE_FIELD)};
  check_ranges(op, contract::kBlurBounds, ranges, fields);
  return packed;
}
#undef IPT_RANGE_FIELD

inline void check_image_batch(const char* op, const at::Tensor& x) {
  check_dims(op, "x", x, 4, contract::kImageLayout);
  check_dtype(op, "x", x, contract::kImageDtypes);
  check_image_bounds(op, x);
}

// The sample ids of an op that makes one output per id (no image to match).
inline void check_id_vector(const char* op, const at::Tensor& ids) {
  check_dims(op, "sample_ids", ids, 1, contract::kSampleIdsLayout);
  check_dtype(op, "sample_ids", ids, contract::kIndexDtypes);
}

inline void check_sample_ids(const char* op, const at::Tensor& ids, const at::Tensor& x) {
  check_shape(op, "sample_ids", ids, contract::kSampleIdsLayout, {x.size(0)});
  check_dtype(op, "sample_ids", ids, contract::kIndexDtypes);
  check_same_device(op, "sample_ids", ids, "x", x);
}

// Degraded images are float: uint8 input gives float32, float input keeps its dtype.
inline at::ScalarType degraded_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kByte ? at::kFloat : x.scalar_type();
}

// --- the ops: the same checks in the same order as ipt/ops/checks.py -----------------------------------

// Returns the geometry of x.
inline PatchGeometry check_patch_unfold(const at::Tensor& x, int64_t patch_dim, const c10::optional<at::Tensor>& pos) {
  constexpr const char* op = "patch_unfold";
  check_dims(op, "x", x, 4, contract::kImageLayout);
  check_dtype(op, "x", x, contract::kFloatDtypes);
  check_image_bounds(op, x);
  check_side(op, "patch_dim", patch_dim, contract::kPatchDimMin);
  const PatchGeometry g{x.size(1), x.size(2), x.size(3), patch_dim};
  IPT_REQUIRE(g.height % patch_dim == 0 && g.width % patch_dim == 0, contract::msg::kPatchMultiple, {"op", op},
              {"height", show(g.height)}, {"width", show(g.width)}, {"patch_dim", show(patch_dim)});
  // The tokens have as many elements as x (checked above), but an empty x leaves their length unbounded.
  IPT_REQUIRE(numel_fits({g.channels, patch_dim, patch_dim}), contract::msg::kTokenDimMax, {"op", op},
              {"bits", show(contract::kNumelBits)}, {"channels", show(g.channels)}, {"patch_dim", show(patch_dim)});
  if (pos.has_value()) {
    check_shape(op, "pos", *pos, contract::kPosLayout, {g.num_tokens(), g.token_dim()});
    check_same_dtype(op, "pos", *pos, "x", x);
    check_same_device(op, "pos", *pos, "x", x);
  }
  return g;
}

// Returns the geometry of the image it produces.
inline PatchGeometry check_patch_fold(const at::Tensor& tokens, int64_t patch_dim, at::IntArrayRef size) {
  constexpr const char* op = "patch_fold";
  check_dims(op, "tokens", tokens, 3, contract::kTokensLayout);
  check_dtype(op, "tokens", tokens, contract::kFloatDtypes);
  check_side(op, "patch_dim", patch_dim, contract::kPatchDimMin);
  IPT_REQUIRE(size.size() == 2, contract::msg::kFoldSizeLen, {"op", op}, {"value", show(size)});
  const int64_t height = size[0], width = size[1];
  IPT_REQUIRE(height >= 1 && width >= 1 && height % patch_dim == 0 && width % patch_dim == 0,
              contract::msg::kFoldSize, {"op", op}, {"height", show(height)}, {"width", show(width)},
              {"patch_dim", show(patch_dim)});
  check_size_max(op, size);
  const int64_t area = patch_dim * patch_dim;  // < 2**62: patch_dim is a side
  IPT_REQUIRE(tokens.size(2) % area == 0, contract::msg::kTokenLength, {"op", op}, {"length", show(tokens.size(2))},
              {"area", show(area)});
  const PatchGeometry g{tokens.size(2) / area, height, width, patch_dim};
  IPT_REQUIRE(tokens.size(1) == g.num_tokens(), contract::msg::kTokenCount, {"op", op},
              {"count", show(tokens.size(1))}, {"height", show(height)}, {"width", show(width)},
              {"patch_dim", show(patch_dim)}, {"needed", show(g.num_tokens())});
  check_numel(op, "output", {tokens.size(0), g.channels, height, width});
  return g;
}

inline void check_bicubic_resize(const at::Tensor& x, at::IntArrayRef size, at::ArrayRef<double> scale) {
  constexpr const char* op = "bicubic_resize";
  check_image_batch(op, x);
  IPT_REQUIRE(x.size(2) >= contract::kResizeSizeMin && x.size(3) >= contract::kResizeSizeMin,
              contract::msg::kImageSize, {"op", op}, {"min", show(contract::kResizeSizeMin)},
              {"shape", show(x.sizes())});
  IPT_REQUIRE(size.size() == 2 && size[0] >= contract::kResizeSizeMin && size[1] >= contract::kResizeSizeMin,
              contract::msg::kResizeSize, {"op", op}, {"min", show(contract::kResizeSizeMin)}, {"value", show(size)});
  check_size_max(op, size);
  bool scale_ok = scale.size() == 2;
  for (const double s : scale) {
    scale_ok = scale_ok && std::isfinite(s) && contract::kResizeScaleMin <= s && s <= contract::kResizeScaleMax;
  }
  IPT_REQUIRE(scale_ok, contract::msg::kResizeScale, {"op", op}, {"min", show(contract::kResizeScaleMin)},
              {"max", show(contract::kResizeScaleMax)}, {"value", show(scale)});
  check_numel(op, "output", {x.size(0), x.size(1), size[0], size[1]});
  // the image between the two passes: the axis with the smaller scale is resized first (rows on a tie)
  const bool rows_first = scale[0] <= scale[1];
  check_numel(op, "intermediate image",
              {x.size(0), x.size(1), rows_first ? size[0] : x.size(2), rows_first ? x.size(3) : size[1]});
}

inline void check_add_gaussian_noise(const at::Tensor& x, double sigma, int64_t seed, const at::Tensor& sample_ids) {
  constexpr const char* op = "add_gaussian_noise";
  check_image_batch(op, x);
  check_finite_min(op, "sigma", sigma, contract::kSigmaMin);
  check_seed(op, seed);
  check_sample_ids(op, sample_ids, x);
}

inline RainRanges check_rain_streaks(const at::Tensor& sample_ids, int64_t height, int64_t width, int64_t seed,
                                     std::initializer_list<at::ArrayRef<double>> ranges) {
  constexpr const char* op = "rain_streaks";
  check_id_vector(op, sample_ids);
  check_side(op, "height", height, contract::kRainSizeMin);
  check_side(op, "width", width, contract::kRainSizeMin);
  check_numel(op, "output", {sample_ids.size(0), 1, height, width});
  check_seed(op, seed);
  return check_rain_ranges(op, ranges);
}

inline RainRanges check_add_rain(const at::Tensor& x, const at::Tensor& sample_ids, int64_t seed,
                                 std::initializer_list<at::ArrayRef<double>> ranges) {
  constexpr const char* op = "add_rain";
  check_image_batch(op, x);
  check_seed(op, seed);
  check_sample_ids(op, sample_ids, x);
  return check_rain_ranges(op, ranges);
}

inline BlurRanges check_motion_blur_kernels(const at::Tensor& sample_ids, int64_t size, int64_t seed, int64_t steps,
                                            std::initializer_list<at::ArrayRef<double>> ranges) {
  constexpr const char* op = "motion_blur_kernels";
  check_id_vector(op, sample_ids);
  check_side(op, "size", size, contract::kBlurSizeMin);
  check_numel(op, "output", {sample_ids.size(0), size, size});
  check_seed(op, seed);
  check_int_min(op, "steps", steps, contract::kBlurStepsMin);
  IPT_REQUIRE(steps <= contract::kBlurStepsMax, contract::msg::kIntMax, {"op", op}, {"name", "steps"},
              {"max", show(contract::kBlurStepsMax)}, {"value", show(steps)});
  const BlurRanges packed = check_blur_ranges(op, ranges);
  // The longest path must fit the kernel around its anchor size / 2: a path of length L spans at most L pixels
  // per axis, L / 2 on each side of its centre.
  const int64_t longest = 2 * ((size - 1) / 2);
  IPT_REQUIRE(packed.length[1] <= static_cast<double>(longest), contract::msg::kBlurLength, {"op", op},
              {"low", show(packed.length[0])}, {"high", show(packed.length[1])}, {"max", show(longest)},
              {"size", show(size)});
  return packed;
}

inline void check_blur(const at::Tensor& x, const at::Tensor& kernels) {
  constexpr const char* op = "blur";
  check_image_batch(op, x);
  check_dims(op, "kernels", kernels, 3, contract::kKernelsLayout);
  check_dtype(op, "kernels", kernels, contract::kFloatDtypes);
  check_same_device(op, "kernels", kernels, "x", x);
  IPT_REQUIRE(kernels.size(0) == x.size(0), contract::msg::kKernelCount, {"op", op}, {"count", show(kernels.size(0))},
              {"batch", show(x.size(0))});
  IPT_REQUIRE(1 <= kernels.size(1) && kernels.size(1) <= x.size(2) && 1 <= kernels.size(2) && kernels.size(2) <= x.size(3),
              contract::msg::kKernelFit, {"op", op}, {"shape", show(kernels.sizes())}, {"image_shape", show(x.sizes())});
}

// Kernel parameter lists and calls spelled from the contract's rain and blur parameters, e.g.
//   f(const at::Tensor& x IPT_RAIN_PARAMS(IPT_RANGE_PARAM))  ->  f(const at::Tensor& x, at::ArrayRef<double> amount, ...)
//   check_add_rain(x, ids, seed, {IPT_RAIN_PARAMS(IPT_RANGE_NAME)})
#define IPT_RANGE_PARAM(name) , at::ArrayRef<double> name
#define IPT_RANGE_NAME(name) name,

}  // namespace ipt
