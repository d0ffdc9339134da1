"""The compiled loop of :class:`kernels.PatternConv2d`, built once per machine with a C++ compiler.

``torch.utils.cpp_extension.load_inline`` compiles the source below the first time it is asked
for (about 40 s of CPU) into the torch extensions cache (``$TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``) and loads it from there afterwards. ``-march=native`` is right
for a build made on the machine that runs it, which is how this is used.

The loop (per example ``b`` and output channel ``o``, split over ``torch.get_num_threads()``
threads): the output plane starts at ``bias[o]``; every kept entry ``e`` of the channel adds
``weight[e] * xpad[b, channel[e]]`` shifted by its kernel position. With stride 1 the plane is
accumulated at the padded width, so each entry is one contiguous axpy of about ``H * (W + 2)``
floats (vectorised by the compiler) instead of ``H`` short rows, and is cropped at the end.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from kernels.errors import KernelsError

__all__ = ["EXTENSION_NAME", "compiled_pattern_conv"]

EXTENSION_NAME = "dppt_pattern_conv_v1"

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <vector>

torch::Tensor pattern_conv(torch::Tensor xpad, torch::Tensor start, torch::Tensor channel,
                           torch::Tensor offset, torch::Tensor weight, torch::Tensor bias,
                           int64_t out_h, int64_t out_w, int64_t stride) {
  TORCH_CHECK(xpad.dtype() == torch::kFloat32 && xpad.is_contiguous() && xpad.dim() == 4,
              "xpad must be a contiguous float32 (B, I, H, W) tensor");
  const int64_t B = xpad.size(0), I = xpad.size(1), Hp = xpad.size(2), Wp = xpad.size(3);
  const int64_t O = start.size(0) - 1;
  auto y = torch::empty({B, O, out_h, out_w}, xpad.options());
  const float* xp = xpad.data_ptr<float>();
  const int32_t* st = start.data_ptr<int32_t>();
  const int32_t* ch = channel.data_ptr<int32_t>();
  const int32_t* off = offset.data_ptr<int32_t>();
  const float* wt = weight.data_ptr<float>();
  const float* bs = bias.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t plane = Hp * Wp, out_plane = out_h * out_w;
  const int64_t span = (out_h - 1) * Wp + out_w;  // stride 1: one axpy over the padded width
  at::parallel_for(0, B * O, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(stride == 1 ? span : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / O, o = task % O;
      float* out = yp + task * out_plane;
      const float bo = bs[o];
      const float* xb = xp + b * I * plane;
      if (stride == 1) {
        float* a = acc.data();
        for (int64_t k = 0; k < span; ++k) a[k] = bo;
        for (int32_t e = st[o]; e < st[o + 1]; ++e) {
          const float w = wt[e];
          const float* src = xb + ch[e] * plane + off[e];
          #pragma omp simd
          for (int64_t k = 0; k < span; ++k) a[k] += w * src[k];
        }
        for (int64_t h = 0; h < out_h; ++h)
          for (int64_t c = 0; c < out_w; ++c) out[h * out_w + c] = a[h * Wp + c];
      } else {
        for (int64_t k = 0; k < out_plane; ++k) out[k] = bo;
        for (int32_t e = st[o]; e < st[o + 1]; ++e) {
          const float w = wt[e];
          const float* src = xb + ch[e] * plane + off[e];
          for (int64_t h = 0; h < out_h; ++h) {
            const float* s = src + h * stride * Wp;
            float* d = out + h * out_w;
            for (int64_t c = 0; c < out_w; ++c) d[c] += w * s[c * stride];
          }
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
            _state["error"] = (
                f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            )
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
