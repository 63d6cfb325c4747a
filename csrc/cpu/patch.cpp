// CPU kernels of patch_unfold / patch_fold. Both are pure data movement, so the loops are ordered to
// write memory contiguously and read each input cache line while it is hot; rows of tokens are
// spread over threads with at::parallel_for (OpenMP).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../checks.h"

namespace ipt {
namespace {

// Aim for ~32K elements of work per task so thread start-up is amortised on small inputs.
int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, elements_per_item));
}

// The per-token copy loops take patch_dim as a template argument where it is one of the common
// sizes (IPT uses 3, ViTs 16), so the compiler fully unrolls and vectorises the innermost runs;
// kPatch == 0 is the generic fallback with a run-time patch_dim. kUnitStride marks images whose
// rows are contiguous (the usual case), turning the innermost loops into plain vectorisable copies.
template <int kPatch, bool kUnitStride>
struct PatchLoops {
  template <typename T>
  static void unfold_token(const T* x, int64_t sc, int64_t sh, int64_t runtime_sw, const T* pos,
                           int64_t channels, int64_t runtime_patch, T* out) {
    const int64_t p = kPatch ? kPatch : runtime_patch;
    const int64_t sw = kUnitStride ? 1 : runtime_sw;
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t kh = 0; kh < p; ++kh) {
        const T* xr = x + c * sc + kh * sh;
        if (pos) {
          for (int64_t kw = 0; kw < p; ++kw) out[kw] = xr[kw * sw] + pos[kw];
          pos += p;
        } else {
          for (int64_t kw = 0; kw < p; ++kw) out[kw] = xr[kw * sw];
        }
        out += p;
      }
    }
  }

  template <typename T>
  static void fold_row(const T* tokens, int64_t sn, int64_t runtime_sd, int64_t grid_w, int64_t runtime_patch,
                       T* out) {
    const int64_t p = kPatch ? kPatch : runtime_patch;
    const int64_t sd = kUnitStride ? 1 : runtime_sd;
    for (int64_t j = 0; j < grid_w; ++j, tokens += sn) {
      for (int64_t kw = 0; kw < p; ++kw) *out++ = tokens[kw * sd];
    }
  }
};

// Calls body(PatchLoops<P, U>{}) with P the compile-time patch_dim when specialised (else 0) and U
// whether the innermost stride is 1.
template <bool kUnitStride, typename Body>
void with_patch_size(int64_t patch_dim, const Body& body) {
  switch (patch_dim) {
    case 1: return body(PatchLoops<1, kUnitStride>{});
    case 2: return body(PatchLoops<2, kUnitStride>{});
    case 3: return body(PatchLoops<3, kUnitStride>{});
    case 4: return body(PatchLoops<4, kUnitStride>{});
    case 8: return body(PatchLoops<8, kUnitStride>{});
    case 16: return body(PatchLoops<16, kUnitStride>{});
    default: return body(PatchLoops<0, kUnitStride>{});
  }
}

template <typename Body>
void with_patch_loops(int64_t patch_dim, int64_t inner_stride, const Body& body) {
  if (inner_stride == 1) {
    with_patch_size<true>(patch_dim, body);
  } else {
    with_patch_size<false>(patch_dim, body);
  }
}

template <typename T>
void unfold_rows(const at::Tensor& x, const T* pos, const PatchGeometry& g, at::Tensor& out) {
  const T* src = x.const_data_ptr<T>();
  T* dst = out.mutable_data_ptr<T>();
  const int64_t sb = x.stride(0), sc = x.stride(1), sh = x.stride(2), sw = x.stride(3);
  const int64_t p = g.patch_dim, grid_h = g.grid_h(), grid_w = g.grid_w();
  const int64_t n_tokens = g.num_tokens(), dim = g.token_dim();
  const int64_t rows = x.size(0) * grid_h;  // one work item = one row of tokens of one image

  with_patch_loops(p, sw, [&](auto loops) {
    at::parallel_for(0, rows, grain_for(grid_w * dim), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / grid_h, i = row % grid_h;
        for (int64_t j = 0; j < grid_w; ++j) {
          const int64_t n = i * grid_w + j;
          loops.unfold_token(src + b * sb + i * p * sh + j * p * sw, sc, sh, sw, pos ? pos + n * dim : nullptr,
                             g.channels, p, dst + (b * n_tokens + n) * dim);
        }
      }
    });
  });
}

template <typename T>
void fold_rows(const at::Tensor& tokens, const PatchGeometry& g, at::Tensor& out) {
  const T* src = tokens.const_data_ptr<T>();
  T* dst = out.mutable_data_ptr<T>();
  const int64_t sb = tokens.stride(0), sn = tokens.stride(1), sd = tokens.stride(2);
  const int64_t p = g.patch_dim, grid_h = g.grid_h(), grid_w = g.grid_w();
  const int64_t C = g.channels, H = g.height, W = g.width;
  const int64_t rows = tokens.size(0) * C * grid_h;  // one work item = p image rows of one channel

  with_patch_loops(p, sd, [&](auto loops) {
    at::parallel_for(0, rows, grain_for(p * W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t i = row % grid_h, bc = row / grid_h;
        const int64_t c = bc % C, b = bc / C;
        for (int64_t kh = 0; kh < p; ++kh) {
          loops.fold_row(src + b * sb + i * grid_w * sn + (c * p + kh) * p * sd, sn, sd, grid_w, p,
                         dst + (bc * H + i * p + kh) * W);
        }
      }
    });
  });
}

at::Tensor patch_unfold_cpu(const at::Tensor& x, int64_t patch_dim, const c10::optional<at::Tensor>& pos) {
  const PatchGeometry g = check_patch_unfold(x, patch_dim, pos);
  at::Tensor out = at::empty({x.size(0), g.num_tokens(), g.token_dim()}, x.options());
  if (out.numel() == 0) return out;
  const at::Tensor pos_c = pos.has_value() ? pos->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "patch_unfold_cpu", [&] {
    unfold_rows<scalar_t>(x, pos_c.defined() ? pos_c.const_data_ptr<scalar_t>() : nullptr, g, out);
  });
  return out;
}

at::Tensor patch_fold_cpu(const at::Tensor& tokens, int64_t patch_dim, at::IntArrayRef size) {
  const PatchGeometry g = check_patch_fold(tokens, patch_dim, size);
  at::Tensor out = at::empty({tokens.size(0), g.channels, g.height, g.width}, tokens.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, tokens.scalar_type(), "patch_fold_cpu", [&] {
    fold_rows<scalar_t>(tokens, g, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ipt, CPU, m) {
  m.impl("patch_unfold", &patch_unfold_cpu);
  m.impl("patch_fold", &patch_fold_cpu);
}

}  // namespace ipt
