"""Smaller outputs, proven exact the way the float32 kernels are: on every input.

Two ways to store less than float32 without giving up exactness:

* **float16** (``--dtype float16``): every value is the float16 nearest the float64
  formula, rounded *once* from float64 (rounding the float32 output again would round
  twice, which differs at float16 ties). ``choose_half_kernel`` tries cheap forms (a
  proven float32 kernel rounded to float16, the float64 multiply-add rounded to float16)
  and keeps the first that equals ``reference16`` on every input (256 for uint8, 65,536
  for uint16) of every scope element; the float64 formula rounded once is the fallback.
  Outputs that would round to ±inf (magnitude 65520 or more) are refused before anything
  is written.
* **packed uint8** (``--store uint8``): the original pixels plus, per scope element, a
  float64 ``scale_factor`` and ``add_offset`` in the CF convention. CF readers decode
  uint8 data with float64 attributes in float64, as ``x.astype(float64) * scale_factor +
  add_offset`` (two roundings, no fused multiply-add: xarray's ``CFScaleOffsetCoder``,
  netCDF4-python's auto-scaling); ``cf_decode`` is that arithmetic, and ``find_packing``
  proves that the float32 of it is the float32 output for all 256 inputs, or refuses.
  uint16 pixels do not fit uint8: packing them is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pixscale.core.kernels import (
    FLOAT32_KERNELS,
    FLOAT64_BLOCK,
    PROOF_BLOCK_VALUES,
    Affine,
    Array,
    Float64Array,
    Kernel,
    PixelArray,
    UInt8Array,
    _element_block,
    _rows,
    candidates,
    exact,
    probe,
    proof_fits,
    reference,
)
from pixscale.errors import ParamsError

Float16Array = npt.NDArray[np.float16]

#: Output dtypes (``--dtype``); float32 is the default.
DTYPES = ("float32", "float16")
#: Ways to store the values (``--store``): the scaled floats, or the packed uint8 pixels.
STORES = ("float", "uint8")

#: The largest finite float16.
FLOAT16_MAX = float(np.finfo(np.float16).max)
#: Halfway between FLOAT16_MAX and the next power of two: float64 values of this magnitude
#: or more round to ±inf in float16 (round to nearest, ties to even).
FLOAT16_OVERFLOW = 65520.0

_PROBE = np.arange(256, dtype=np.uint8)


def _probe(n_elements: int) -> UInt8Array:
    return np.ascontiguousarray(np.broadcast_to(_PROBE[:, None], (256, n_elements)))


def _elements(affine: Affine) -> int:
    return affine.n_elements


def _allowed(affine: Affine) -> PixelArray:
    """The inputs the data may hold (0..value_max) for every element (columns)."""
    inputs = affine.inputs(affine.value_max)
    n = _elements(affine)
    return np.ascontiguousarray(np.broadcast_to(inputs[:, None], (inputs.size, n)))


# ---------------------------------------------------------------- float16


def reference16(x: npt.NDArray[np.generic], affine: Affine) -> Float16Array:
    """The definition for float16 outputs: float64 arithmetic, one rounding to float16."""
    return exact(x, affine).astype(np.float16)


def float16_reach(affine: Affine) -> float:
    """The largest magnitude the map reaches on the inputs the data may hold (float64,
    before rounding). The map is affine: its extremes are at the ends of the input range."""
    ends = np.asarray([0, affine.value_max], np.uint16)
    values = exact(np.broadcast_to(ends[:, None], (2, _elements(affine))), affine)
    return float(np.max(np.abs(values))) if values.size else 0.0


def check_float16_range(affine: Affine) -> None:
    """Refuse maps whose outputs would round to ±inf in float16.

    Raises
    ------
    ParamsError
        Naming the magnitude reached.
    """
    reach = float16_reach(affine)
    if reach >= FLOAT16_OVERFLOW:
        raise ParamsError(
            f"outputs would reach {reach:.6g}, beyond float16's range (±{FLOAT16_MAX:g}); "
            "use --dtype float32"
        )


def per_image_float16_bound(
    strategy: str, target_range: tuple[float, float], values_per_image: int, value_max: int = 255
) -> float:
    """An upper bound on |output| for per-image scope, known before any image is read.

    Per-image parameters are fitted chunk by chunk while writing, so the float16 range is
    checked up front on a bound: standardized values are at most ``sqrt(n - 1)`` standard
    deviations from the mean of ``n`` values (Samuelson's inequality, ddof 0), or at most
    ``value_max`` (255 for uint8) for a constant image (centred only); per-image min-max
    ranges land in the target.
    """
    if strategy == "standardize":
        return max(float(value_max), float(np.sqrt(max(values_per_image - 1, 0))))
    return max(abs(target_range[0]), abs(target_range[1]))


def check_per_image_float16(
    strategy: str, target_range: tuple[float, float], values_per_image: int, value_max: int = 255
) -> None:
    """Refuse per-image float16 outputs that could overflow, before anything is written."""
    bound = per_image_float16_bound(strategy, target_range, values_per_image, value_max)
    if bound >= FLOAT16_OVERFLOW:
        raise ParamsError(
            f"per-image outputs may reach {bound:.6g}, beyond float16's range "
            f"(±{FLOAT16_MAX:g}); use --dtype float32"
        )


@dataclass(frozen=True)
class HalfKernel:
    """A kernel whose result is rounded to float16.

    ``via="float32"``: the base float32 kernel, then float32 → float16 (two roundings,
    kept only where proven equal to one). ``via="float64"``: the base float64 kernel,
    each float64 value rounded once to float16.
    """

    base: Kernel
    via: str
    bounds: tuple[Array, Array] | None

    @property
    def name(self) -> str:
        return f"{self.base.name}>float16"

    @property
    def affine(self) -> Affine:
        return self.base.affine

    def __call__(self, x: PixelArray, out: Float16Array) -> None:
        """Write the map of ``x`` (images × pixels) into ``out`` (float16, same shape)."""
        if self.via == "float64":
            self.base(x, out)  # float64 blocks assigned into float16: one rounding
        else:
            self._via_float32(x, out)
        if self.bounds is not None:
            np.clip(out, self.bounds[0], self.bounds[1], out=out)

    def _via_float32(self, x: PixelArray, out: Float16Array) -> None:
        rows = max(1, FLOAT64_BLOCK // max(1, x.shape[-1])) if x.ndim > 1 else x.shape[0]
        rows = min(rows, max(1, x.shape[0]))
        buffer = np.empty((rows, *x.shape[1:]), np.float32)
        for start in range(0, x.shape[0], rows):
            block = x[start : start + rows]
            temp = buffer[: block.shape[0]]
            pick = functools.partial(_rows, start=start, rows=rows)
            self.base.float32_form(block, temp, tuple(pick(c) for c in self.base.constants))
            out[start : start + rows] = temp

    def expand(self, fn: Callable[[Array], Array]) -> HalfKernel:
        """The same kernel with constants reshaped for the chunk layout by ``fn``."""
        bounds = None if self.bounds is None else (fn(self.bounds[0]), fn(self.bounds[1]))
        return HalfKernel(self.base.expand(fn), self.via, bounds)


def half_candidates(affine: Affine) -> list[HalfKernel]:
    """Float16 kernels fastest first; all but the last must pass ``is_exact16``."""
    bounds = None
    if affine.clip:
        lo, hi = affine.clip_bounds()
        bounds = (np.asarray(lo).astype(np.float16), np.asarray(hi).astype(np.float16))
    found = []
    for kernel in candidates(affine):
        unclipped = Kernel(kernel.name, kernel.constants, None, kernel.affine)
        if kernel.name in FLOAT32_KERNELS:
            found.append(HalfKernel(unclipped, "float32", bounds))
        elif kernel.name == "multiply-add-f64":
            found.append(HalfKernel(unclipped, "float64", bounds))
        else:  # the float64 formula clips before its single rounding
            found.append(HalfKernel(kernel, "float64", None))
    return found


def is_exact16(kernel: HalfKernel, affine: Affine, n_elements: int | None = None) -> bool:
    """Compare with ``reference16`` on every input of every scope element (bits), a block
    of elements at a time (as ``kernels.is_exact``)."""
    n_elements = _elements(affine) if n_elements is None else n_elements
    step = max(1, PROOF_BLOCK_VALUES // (affine.dtype_max + 1))
    for first in range(0, n_elements, step):
        pick = functools.partial(_element_block, first=first, step=step, n=n_elements)
        part, part_affine = kernel, affine
        if n_elements > step:
            part, part_affine = kernel.expand(pick), affine.map(pick)
        inputs = probe(part_affine, min(step, n_elements - first))
        got = np.empty(inputs.shape, np.float16)
        part(inputs, got)
        want = reference16(inputs, part_affine)
        if not np.array_equal(got.view(np.uint16), want.view(np.uint16)):
            return False
    return True


def choose_half_kernel(affine: Affine, budget: int | None = None) -> HalfKernel:
    """The fastest float16 kernel exact for ``affine``, proven on its distinct parameter
    values (the reference past ``budget``, as ``choose_kernel``); refuses float16 overflow."""
    check_float16_range(affine)
    *fast, fallback = half_candidates(affine)
    distinct = affine.distinct()
    if not proof_fits(distinct, budget):
        return fallback
    for index, kernel in enumerate(half_candidates(distinct)[:-1]):
        if is_exact16(kernel, distinct):
            return fast[index]
    return fallback


def float16_collisions(affine: Affine) -> int:
    """Inputs per scope element that share a float16 value with a neighbour (summed).

    Non-zero means the float16 output cannot be inverted to the exact pixel (the steps of
    the map are finer than float16's spacing there); ``invert`` then reports it lossy.
    """
    n = _elements(affine)
    step = max(1, PROOF_BLOCK_VALUES // (affine.value_max + 1))
    shared = 0
    for first in range(0, n, step):  # blocks of elements keep the float64 values bounded
        part = affine
        if n > step:
            part = affine.map(functools.partial(_element_block, first=first, step=step, n=n))
        values = reference16(_allowed(part), part)
        shared += int(np.count_nonzero(values[1:] == values[:-1]))
    return shared


# ---------------------------------------------------------------- packed uint8


def cf_decode(
    x: npt.NDArray[np.generic], scale_factor: Array, add_offset: Array
) -> npt.NDArray[np.float32]:
    """What CF readers compute for uint8 data with float64 attributes, then float32.

    xarray (``CFScaleOffsetCoder.decode``): the data is cast to float64 (the attributes'
    dtype), multiplied in place by ``scale_factor``, then ``add_offset`` is added, and the
    result stays float64; ``.astype("float32")`` is the caller's.
    """
    values = np.asarray(x).astype(np.float64)
    values *= scale_factor
    values += add_offset
    return values.astype(np.float32)


@dataclass(frozen=True)
class Packing:
    """Per scope element (flat, or 0-d), the CF attributes that decode the packed pixels."""

    scale_factor: Float64Array
    add_offset: Float64Array
    #: Elements whose attributes are not the record's own scale and offset (nudged by a
    #: few float64 ulps to be exact).
    nudged: int = 0

    @property
    def is_scalar(self) -> bool:
        return self.scale_factor.size == 1

    def decode(self, x: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        return cf_decode(x, self.scale_factor, self.add_offset)


#: Why ``--store uint8`` refuses uint16 sources.
PACKED_UINT16 = (
    "--store uint8 keeps the source pixels, and uint16 pixels do not fit uint8; "
    "store float32 or float16 instead"
)
#: float64 ulps tried either side of scale and offset when the plain pair is not exact.
NUDGE_ULPS = 3


def _exact_elements(
    scale_factor: Float64Array, add_offset: Float64Array, want: npt.NDArray[np.uint32]
) -> npt.NDArray[np.bool_]:
    probe = _probe(want.shape[1])
    got = cf_decode(probe, scale_factor, add_offset).view(np.uint32)
    return np.asarray(np.all(got == want, axis=0))


def _steps(values: Float64Array, ulps: int) -> Float64Array:
    """``values`` moved by ``ulps`` float64 steps (negative: down)."""
    out = values.copy()
    direction = np.inf if ulps > 0 else -np.inf
    for _ in range(abs(ulps)):
        out = np.nextafter(out, direction)
    return out


def _anchored_pair(
    scale: np.float64, exact_values: Float64Array, want: npt.NDArray[np.uint32]
) -> tuple[float, float] | None:
    """A pair whose line passes exactly through one input's value: for each ``x``, the
    offsets ``exact(x) - x * scale`` (scale a few ulps either way). This finds the pair
    when the plain offset misses a value the reference makes exact, such as a 0 that
    ``out_low - low * scale`` leaves at 1e-16."""
    inputs = _PROBE.astype(np.float64)
    for step in range(-NUDGE_ULPS, NUDGE_ULPS + 1):
        s = _steps(np.asarray([scale], np.float64), step)
        offsets = np.unique(exact_values - inputs * s[0])
        grid = np.broadcast_to(_PROBE[:, None], (256, offsets.size))
        decoded = cf_decode(grid, s[0], offsets[None, :]).view(np.uint32)
        good = np.flatnonzero(np.all(decoded == want[:, None], axis=0))
        if good.size:
            return float(s[0]), float(offsets[good[0]])
    return None


def find_packing(affine: Affine) -> Packing:
    """float64 ``scale_factor``/``add_offset`` per scope element such that
    ``float32(x * scale_factor + add_offset)``, in CF readers' float64 arithmetic, is the
    float32 output for all 256 ``x``.

    The record's own scale and offset are tried first; elements where they are not exact
    try pairs a few float64 ulps away, then offsets that put the line exactly through one
    input's float64 value.

    Raises
    ------
    ParamsError
        When some scope element has no exact pair (for example, ``--clip`` merging inputs:
        a packed file holds the original pixels, and CF readers do not clip).
    """
    if affine.dtype_max > 255:
        raise ParamsError(PACKED_UINT16)
    n = _elements(affine)
    shape = np.broadcast(affine.low, affine.span_in).shape
    low = np.broadcast_to(np.asarray(affine.low, np.float64), shape).reshape(-1)
    span_in = np.broadcast_to(np.asarray(affine.span_in, np.float64), shape).reshape(-1)
    scale = np.asarray(affine.span_out / span_in, np.float64).reshape(-1)
    offset = np.asarray(affine.out_low - low * scale, np.float64).reshape(-1)
    want = reference(_probe(n), affine).view(np.uint32)
    ok = _exact_elements(scale, offset, want)
    original = scale.copy(), offset.copy()
    for ds in range(-NUDGE_ULPS, NUDGE_ULPS + 1):
        for do in range(-NUDGE_ULPS, NUDGE_ULPS + 1):
            if ok.all():
                break
            todo = np.flatnonzero(~ok)
            s = _steps(original[0][todo], ds)
            o = _steps(original[1][todo], do)
            good = _exact_elements(s, o, want[:, todo])
            scale[todo[good]], offset[todo[good]] = s[good], o[good]
            ok[todo[good]] = True
    exact_values = exact(_probe(n), affine)
    for element in np.flatnonzero(~ok):
        found = _anchored_pair(original[0][element], exact_values[:, element], want[:, element])
        if found is not None:
            scale[element], offset[element] = found
            ok[element] = True
    if not ok.all():
        bad = int(np.count_nonzero(~ok))
        raise ParamsError(
            f"--store uint8 would not decode exactly: for {bad} of {n} scope element(s) no "
            "float64 scale_factor/add_offset gives the float32 output on all 256 inputs"
            + (" (--clip merges inputs, which CF readers do not do)" if affine.clip else "")
            + "; store float32 or float16 instead"
        )
    nudged = int(np.count_nonzero((scale != original[0]) | (offset != original[1])))
    return Packing(scale.reshape(shape), offset.reshape(shape), nudged)
