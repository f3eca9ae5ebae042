"""Exact and fast application of the affine map to uint8 and uint16 chunks.

The reference value of every output is the float64 formula rounded once to float32
(``reference``). Because inputs are uint8 (or uint16), a scope element has only 256 (or
65,536) possible outputs, so a fast kernel can be *proved* exact by running it on every
input the dtype holds and comparing bits with the reference. ``choose_kernel`` tries the
cheap forms in order of measured speed and keeps the first that is exact for every scope
element; the float64 formula itself is the fallback, so the output never depends on the
choice.

Proofs run on the distinct parameter values only (many pixel positions share theirs), in
blocks of ``PROOF_BLOCK_VALUES`` inputs × elements so that their memory stays near 40 MiB
whatever the number of elements. A proof costs as much as the reference formula on as
many values; where it would cost more than ``budget`` values (uint16 per-image scope: 65,536
inputs per image against a few thousand pixels), the reference kernel is used unproven:
it *is* the definition.

Measured on 3 MiB chunks (2-core machine): float32 division ≈ 1.1 ms, float32
multiply-add ≈ 0.9 ms, float64 multiply-add in cache-sized blocks ≈ 2.1 ms, ``np.take``
on a lookup table ≈ 4.7 ms, the float64 formula unblocked ≈ 8.5 ms. The float32 forms
are exact for the fixed strategies (unit, symmetric, integer ranges); fitted means and
stds almost never have an exact float32 form, and take the float64 multiply-add.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]
#: Source pixels: uint8 or uint16.
PixelArray = npt.NDArray[np.unsignedinteger[Any]]
#: Constants of any float dtype and shape (0-d, per element, per image column).
Array = npt.NDArray[Any]

_PROBE = np.arange(256, dtype=np.uint8)
_PROBE16 = np.arange(1 << 16, dtype=np.uint16)
#: Inputs × elements per proof block: about 18 bytes each (the inputs, the kernel's
#: float32, the reference's float64 and float32), so 2 Mi of them take about 40 MiB.
PROOF_BLOCK_VALUES = 1 << 21
#: Largest proof (inputs × distinct elements) of dataset-wide parameters: about 2 s of
#: reference arithmetic. Beyond it (uint16 per-pixel parameters of large images) the
#: reference kernel is used without a search.
PROOF_MAX_VALUES = 1 << 28

#: Elements per float64 block: 256 Ki × 8 bytes = 2 MiB, about the size of L2/L3 share.
FLOAT64_BLOCK = 1 << 18

FLOAT32_KERNELS = ("cast", "divide", "multiply-add", "subtract-divide")
FLOAT64_KERNELS = ("multiply-add-f64", "float64")


@dataclass(frozen=True)
class Affine:
    """y = (x - low) * span_out / span_in + out_low, per scope element (broadcastable)."""

    low: Array
    span_in: Array
    out_low: Array
    span_out: Array
    clip: bool = False
    #: The largest value of the source dtype: kernels are proven on 0..dtype_max.
    dtype_max: int = 255
    #: The largest value the data may hold (``--bits``): ranges are checked on 0..value_max.
    value_max: int = 255

    def clip_bounds(self) -> tuple[Array, Array]:
        end = self.out_low + self.span_out
        return np.minimum(self.out_low, end), np.maximum(self.out_low, end)

    def map(self, fn: Callable[[Array], Array]) -> Affine:
        """The same map with every parameter array transformed by ``fn``."""
        return Affine(
            fn(self.low),
            fn(self.span_in),
            fn(self.out_low),
            fn(self.span_out),
            self.clip,
            self.dtype_max,
            self.value_max,
        )

    @property
    def n_elements(self) -> int:
        return int(np.broadcast(self.low, self.span_in).size)

    def inputs(self, top: int | None = None) -> PixelArray:
        """Every input 0..``top`` (default: every value of the source dtype)."""
        top = self.dtype_max if top is None else top
        return (_PROBE if self.dtype_max <= 255 else _PROBE16)[: top + 1]

    def distinct(self) -> Affine:
        """The same map on the distinct (low, span_in, out_low, span_out) tuples only, flat."""
        n = self.n_elements
        if n <= 1:
            return self
        parts = (self.low, self.span_in, self.out_low, self.span_out)
        columns = [np.broadcast_to(np.asarray(a, np.float64).reshape(-1), (n,)) for a in parts]
        unique = np.unique(np.stack(columns, axis=1), axis=0)
        low, span_in, out_low, span_out = (np.ascontiguousarray(unique[:, i]) for i in range(4))
        return Affine(low, span_in, out_low, span_out, self.clip, self.dtype_max, self.value_max)


def exact(x: npt.NDArray[np.generic], affine: Affine) -> Float64Array:
    """The formula in float64 (clipped when asked), before any rounding to the output dtype."""
    values = (np.asarray(x, np.float64) - affine.low) * affine.span_out / affine.span_in
    values += affine.out_low
    if affine.clip:
        lo, hi = affine.clip_bounds()
        np.clip(values, lo, hi, out=values)
    return values


def reference(x: npt.NDArray[np.generic], affine: Affine) -> Float32Array:
    """The definition: float64 arithmetic, one rounding to float32."""
    return exact(x, affine).astype(np.float32)


@dataclass(frozen=True)
class Kernel:
    """A named arithmetic form of the map with its constants (float32 or float64)."""

    name: str
    constants: tuple[Array, ...]
    bounds: tuple[Array, Array] | None
    affine: Affine

    def __call__(self, x: PixelArray, out: Array) -> None:
        """Write the map of ``x`` (images × pixels) into ``out`` (same shape; float32, or
        float16 for the float64 kernels, whose blocks are then rounded once to float16)."""
        if self.name in FLOAT64_KERNELS:
            self._blocked_float64(x, out)
        else:
            self.float32_form(x, out, self.constants)
        if self.bounds is not None:
            np.clip(out, self.bounds[0], self.bounds[1], out=out)

    def float32_form(self, x: PixelArray, out: Float32Array, c: tuple[Array, ...]) -> None:
        """The float32 arithmetic of this kernel with constants ``c`` (float32 kernels only)."""
        if self.name == "cast":
            out[...] = x
        elif self.name == "divide":
            np.divide(x, c[0], out=out)
        elif self.name == "multiply-add":
            np.multiply(x, c[0], out=out)
            np.add(out, c[1], out=out)
        else:  # subtract-divide
            np.subtract(x, c[0], out=out)
            np.divide(out, c[1], out=out)

    def _blocked_float64(self, x: PixelArray, out: Array) -> None:
        # float64 temporaries stay cache-sized: memory traffic, not arithmetic, is the cost.
        # Each block is rounded once, to the dtype of ``out`` (float32, or float16).
        rows = max(1, FLOAT64_BLOCK // max(1, x.shape[-1])) if x.ndim > 1 else x.shape[0]
        rows = min(rows, max(1, x.shape[0]))  # a single sample needs no 2 MiB buffer
        buffer = np.empty((rows, *x.shape[1:]), np.float64)
        for start in range(0, x.shape[0], rows):
            block = x[start : start + rows]
            temp = buffer[: block.shape[0]]
            pick = functools.partial(_rows, start=start, rows=rows)
            if self.name == "multiply-add-f64":
                scale, offset = (pick(c) for c in self.constants)
                np.multiply(block, scale, out=temp)
                np.add(temp, offset, out=temp)
                out[start : start + rows] = temp
            else:
                out[start : start + rows] = exact(block, self.affine.map(pick))

    def expand(self, fn: Callable[[Array], Array]) -> Kernel:
        """The same kernel with constants reshaped for the chunk layout by ``fn``."""
        bounds = None if self.bounds is None else (fn(self.bounds[0]), fn(self.bounds[1]))
        return Kernel(self.name, tuple(fn(c) for c in self.constants), bounds, self.affine.map(fn))


def _rows(values: Array, start: int, rows: int) -> Array:
    """Per-image constants (shape (n, 1)) follow the block; others broadcast as they are."""
    return values[start : start + rows] if values.ndim == 2 else values


def _f32(values: Array) -> Array:
    return np.asarray(values, np.float64).astype(np.float32)


def candidates(affine: Affine) -> list[Kernel]:
    """Kernels fastest first; all but the last must still pass ``is_exact``."""
    low, span_in, out_low, span_out = affine.low, affine.span_in, affine.out_low, affine.span_out
    bounds = None
    if affine.clip:
        lo, hi = affine.clip_bounds()
        bounds = (_f32(lo), _f32(hi))
    ratio = span_in / span_out
    scale = span_out / span_in
    offset = out_low - low * scale
    f32 = _f32
    found = []
    if np.all(low == 0) and np.all(out_low == 0):
        if np.all(span_in == span_out):
            found.append(Kernel("cast", (), bounds, affine))
        found.append(Kernel("divide", (f32(ratio),), bounds, affine))
    found.append(Kernel("multiply-add", (f32(scale), f32(offset)), bounds, affine))
    found.append(
        Kernel("subtract-divide", (f32(low - out_low * ratio), f32(ratio)), bounds, affine)
    )
    found.append(Kernel("multiply-add-f64", (scale, offset), bounds, affine))
    found.append(Kernel("float64", (), bounds, affine))
    return [k.expand(np.asarray) for k in found]


def probe(affine: Affine, n_elements: int) -> PixelArray:
    """Every input of the source dtype (rows) for each of ``n_elements`` (columns)."""
    inputs = affine.inputs()
    return np.ascontiguousarray(np.broadcast_to(inputs[:, None], (inputs.size, n_elements)))


def is_exact(kernel: Kernel, affine: Affine, n_elements: int | None = None) -> bool:
    """Compare the kernel with the reference on every input of every scope element
    (256 for uint8, 65,536 for uint16), a block of elements at a time."""
    n_elements = affine.n_elements if n_elements is None else n_elements
    step = max(1, PROOF_BLOCK_VALUES // (affine.dtype_max + 1))
    if n_elements <= step:
        return _is_exact_block(kernel, affine, n_elements)
    for first in range(0, n_elements, step):
        pick = functools.partial(_element_block, first=first, step=step, n=n_elements)
        part = kernel.expand(pick)
        if not _is_exact_block(part, affine.map(pick), min(step, n_elements - first)):
            return False
    return True


def _element_block(values: Array, first: int, step: int, n: int) -> Array:
    values = np.asarray(values)
    if values.ndim == 0 or values.size == 1:
        return values.reshape(())
    return np.broadcast_to(values.reshape(-1), (n,))[first : first + step]


def _is_exact_block(kernel: Kernel, affine: Affine, n_elements: int) -> bool:
    inputs = probe(affine, n_elements)
    got = np.empty(inputs.shape, np.float32)
    kernel(inputs, got)
    want = reference(inputs, affine)
    return bool(np.array_equal(got.view(np.uint32), want.view(np.uint32)))


def proof_fits(affine: Affine, budget: int | None) -> bool:
    """Whether proving kernels for ``affine`` (already distinct) costs at most ``budget``
    values (default ``PROOF_MAX_VALUES``)."""
    limit = PROOF_MAX_VALUES if budget is None else budget
    return affine.n_elements * (affine.dtype_max + 1) <= limit


def choose_kernel(affine: Affine, budget: int | None = None) -> Kernel:
    """The fastest kernel that is exact for ``affine`` (flat, 0-d or 1-d params), proven on
    its distinct parameter values; the reference kernel when the proof would cost more
    than ``budget`` values (see the module docstring)."""
    *fast, fallback = candidates(affine)
    distinct = affine.distinct()
    if not proof_fits(distinct, budget):
        return fallback
    for index, kernel in enumerate(candidates(distinct)[:-1]):
        if is_exact(kernel, distinct):
            return fast[index]
    return fallback
