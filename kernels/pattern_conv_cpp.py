"""The compiled loop of :class:`kernels.PatternConv2d`, built once per machine with a C++ compiler.

``torch.utils.cpp_extension.load_inline`` compiles the source below the first time it is asked
for (about 40 s of CPU) into the torch extensions cache (``$TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``) and loads it from there afterwards. ``-march=native`` is right
for a build made on the machine that runs it, which is how this is used.

The loop (per example ``b`` and output channel ``o``, split over ``torch.get_num_threads()``
threads): the input is zero-padded once; the output plane starts at ``bias[o]``; every kept
entry ``e`` of the channel adds ``weight[e] * xpad[b, channel[e]]`` shifted by its kernel
position. With stride 1 the plane is accumulated at the padded width, so each entry is one
contiguous axpy of about ``H * (W + 2)`` floats (vectorised by the compiler) instead of ``H``
short rows. An epilogue crops the plane and, when asked, applies a ``pool x pool`` max pool
(stride ``pool``, floor) and a ReLU, which the graph would otherwise run as two more ops.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from kernels.errors import KernelsError

__all__ = ["EXTENSION_NAME", "compiled_pattern_conv"]

EXTENSION_NAME = "dppt_pattern_conv_v2"

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstring>
#include <vector>

torch::Tensor pattern_conv(torch::Tensor x, torch::Tensor start, torch::Tensor channel, torch::Tensor offset,
                           torch::Tensor weight, torch::Tensor bias, int64_t padding, int64_t stride, bool relu,
                           int64_t pool) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.dim() == 4, "x must be a float32 (B, I, H, W) tensor");
  x = x.contiguous();
  const int64_t B = x.size(0), I = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Hp = H + 2 * padding, Wp = W + 2 * padding, plane = Hp * Wp;
  const int64_t O = start.size(0) - 1;
  const int64_t out_h = (Hp - 3) / stride + 1, out_w = (Wp - 3) / stride + 1;
  const int64_t final_h = out_h / pool, final_w = out_w / pool;
  torch::Tensor xpad = x;
  if (padding > 0) {  // zero border, one row copy per input row
    xpad = torch::zeros({B, I, Hp, Wp}, x.options());
    const float* src = x.data_ptr<float>();
    float* dst = xpad.data_ptr<float>();
    at::parallel_for(0, B * I, 16, [&](int64_t begin, int64_t end) {
      for (int64_t bi = begin; bi < end; ++bi)
        for (int64_t h = 0; h < H; ++h)
          std::memcpy(dst + bi * plane + (h + padding) * Wp + padding, src + (bi * H + h) * W, W * sizeof(float));
    });
  }
  auto y = torch::empty({B, O, final_h, final_w}, x.options());
  const float* xp = xpad.data_ptr<float>();
  const int32_t* st = start.data_ptr<int32_t>();
  const int32_t* ch = channel.data_ptr<int32_t>();
  const int32_t* off = offset.data_ptr<int32_t>();
  const float* wt = weight.data_ptr<float>();
  const float* bs = bias.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // Stride 1: the plane is accumulated at the padded width (pitch Wp), one axpy per entry.
  const int64_t pitch = stride == 1 ? Wp : out_w;
  const int64_t span = stride == 1 ? (out_h - 1) * Wp + out_w : out_h * out_w;
  at::parallel_for(0, B * O, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(span);
    float* a = acc.data();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / O, o = task % O;
      const float* xb = xp + b * I * plane;
      std::fill(a, a + span, bs[o]);
      for (int32_t e = st[o]; e < st[o + 1]; ++e) {
        const float w = wt[e];
        const float* src = xb + ch[e] * plane + off[e];
        if (stride == 1) {
          #pragma omp simd
          for (int64_t k = 0; k < span; ++k) a[k] += w * src[k];
        } else {
          for (int64_t h = 0; h < out_h; ++h) {
            const float* s = src + h * stride * Wp;
            float* d = a + h * out_w;
            for (int64_t c = 0; c < out_w; ++c) d[c] += w * s[c * stride];
          }
        }
      }
      // Epilogue: max pool (kernel = stride = pool, floor), then ReLU (they commute).
      float* out = yp + task * final_h * final_w;
      for (int64_t h = 0; h < final_h; ++h) {
        for (int64_t c = 0; c < final_w; ++c) {
          float v = a[(h * pool) * pitch + c * pool];
          for (int64_t i = 0; i < pool; ++i)
            for (int64_t j = 0; j < pool; ++j) v = std::max(v, a[(h * pool + i) * pitch + c * pool + j]);
          out[h * final_w + c] = relu ? std::max(v, 0.0f) : v;
        }
      }
    }
  });
  return y;
}
"""

_state: dict[str, object] = {}


def compiled_pattern_conv(*, required: bool = False) -> Callable[..., object] | None:
    """The compiled ``pattern_conv`` function, building it on first use; ``None`` if it cannot be built.

    Parameters
    ----------
    required : bool
        Raise instead of returning ``None`` when the build fails.

    Raises
    ------
    KernelsError
        If ``required`` and the extension cannot be built (no C++ compiler, no Python headers).
    """
    if "kernel" not in _state:
        try:
            from torch.utils.cpp_extension import load_inline

            module = load_inline(
                name=EXTENSION_NAME,
                cpp_sources=_SOURCE,
                functions=["pattern_conv"],
                extra_cflags=["-O3", "-march=native", "-fopenmp"],
                extra_ldflags=["-fopenmp"],
                verbose=False,
            )
            _state["kernel"] = module.pattern_conv
        except Exception as err:  # noqa: BLE001 (a failed build raises compiler, OS and import errors alike)
            _state["kernel"] = None
            _state["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            warnings.warn(
                f"the compiled pattern convolution could not be built ({_state['error']}); "
                "using the pure-torch path (install a C++ compiler for the fast one).",
                RuntimeWarning,
                stacklevel=2,
            )
    kernel = _state["kernel"]
    if kernel is None and required:
        raise KernelsError(
            f"backend 'compiled' must build with torch.utils.cpp_extension. Found: {_state.get('error')} "
            "(install g++ and the Python headers, or use backend='torch')."
        )
    return kernel  # type: ignore[return-value]
