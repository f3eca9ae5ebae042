"""Apply a parameter record to chunks of images, and undo it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from pixscale.core.kernels import Affine, Array, Kernel, PixelArray, choose_kernel, exact
from pixscale.core.params import Params
from pixscale.core.storage import (
    DTYPES,
    PACKED_UINT16,
    HalfKernel,
    Packing,
    check_per_image_float16,
    choose_half_kernel,
    find_packing,
)
from pixscale.errors import ParamsError

Expand = Callable[[Array], Array]
AnyKernel = Kernel | HalfKernel
#: Largest lookup table ``Transform.decode`` builds (per-pixel tables of large images
#: fall back to the kernel).
TABLE_BYTES = 16 << 20
#: Smallest proof budget for per-image kernels (values): above it a chunk's kernels are
#: proven only when the proof costs less than applying the reference to the chunk itself.
IMAGE_PROOF_MIN = 1 << 22
#: Chunks up to this many values decode through the table; larger ones through the
#: kernel (measured on MNIST: a table lookup is 6× faster for one image, the float64
#: multiply-add 2× faster for a batch of 256, since ``np.take`` first widens every
#: uint8 index to intp).
TABLE_MAX_VALUES = 1 << 14
#: The unsigned integer of each output dtype's width, to compare values bit for bit.
BITS = {"float32": np.uint32, "float16": np.uint16}


def scope_expander(params: Params) -> Expand:
    """Map flat per-element arrays to arrays that broadcast over a flattened image (P,).

    Per-channel constants are repeated over the whole image so that numpy's inner loops
    run over long contiguous rows (measured: 10× faster than broadcasting a length-3 axis).
    """
    shape = params.image_shape
    if params.scope == "channel" and params.channel_axis is not None:
        axis = params.channel_axis

        def per_channel(values: Array) -> Array:
            if values.ndim == 0:
                return values
            along = [1] * len(shape)
            along[axis] = shape[axis]
            return np.ascontiguousarray(np.broadcast_to(values.reshape(along), shape)).ravel()

        return per_channel
    if params.scope == "pixel":
        return lambda values: values if values.ndim == 0 else values.reshape(-1)
    # global, or channel on single-channel data: one value for every pixel
    return lambda values: values.reshape(()) if values.size == 1 else values


def _at(element: int, values: Array) -> Array:
    """Element ``element`` of a flat parameter array (0-d ones hold for every element)."""
    return values if values.ndim == 0 else values[element]


def per_image_column(values: Array) -> Array:
    return values if values.ndim == 0 else values[:, None]


def flat_affine(params: Params, images: slice | npt.NDArray[np.intp] | None = None) -> Affine:
    """The record's map with one flat entry per scope element (or per image of ``images``:
    a slice, or an array of image positions)."""
    low, span = params.source_low, params.source_span
    if images is not None:
        low, span = low[images], span[images]
    return Affine(
        low.reshape(-1),
        span.reshape(-1),
        np.asarray(params.target_low, np.float64),
        np.asarray(params.target_span, np.float64),
        params.clip,
        params.dtype_max,
        params.value_max,
    )


def _choose(affine: Affine, dtype: str, budget: int | None = None) -> AnyKernel:
    if dtype == "float16":
        return choose_half_kernel(affine, budget)
    return choose_kernel(affine, budget)


#: Values per block of a table lookup: its intp indices stay cache-sized.
GATHER_BLOCK = 1 << 16


def _gather(
    table: tuple[npt.NDArray[np.floating], npt.NDArray[np.intp] | None],
    flat: PixelArray,
    out: npt.NDArray[np.floating],
) -> None:
    """``out[i, p] = values[offsets[p] + flat[i, p]]``, in blocks of rows."""
    values, offsets = table
    rows = max(1, GATHER_BLOCK // max(1, flat.shape[1]))
    for start in range(0, flat.shape[0], rows):
        index = flat[start : start + rows].astype(np.intp)
        if offsets is not None:
            index += offsets
        np.take(values, index, out=out[start : start + rows])


class Transform:
    """float32 (or float16) output for uint8 or uint16 chunks under one parameter record.

    Parameters
    ----------
    params
        The record's parameters (their ``source_dtype`` is the chunks' dtype).
    dtype
        ``"float32"`` (the default) or ``"float16"``: each value the nearest of that dtype
        to the float64 formula, by a kernel proven on every input of the source dtype
        (256 or 65,536). float16 refuses parameters whose outputs would overflow it
        (per-image scope: on a bound, here).
    """

    def __init__(self, params: Params, dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise ParamsError(f"unknown output dtype {dtype!r}; choose from {DTYPES}")
        self.params = params
        self.dtype = dtype
        self.per_image = params.scope == "image"
        if self.per_image and dtype == "float16":
            values = int(np.prod(params.image_shape))
            check_per_image_float16(params.strategy, params.target_range, values, params.value_max)
        if not self.per_image:
            self.kernel = _choose(flat_affine(params), dtype).expand(scope_expander(params))

    @property
    def kernel_name(self) -> str:
        return "chosen per chunk" if self.per_image else self.kernel.name

    def _kernel_for(self, start: int, count: int) -> AnyKernel:
        if not self.per_image:
            return self.kernel
        affine = flat_affine(self.params, slice(start, start + count))
        return _choose(affine, self.dtype, self._image_budget(count)).expand(per_image_column)

    def _image_budget(self, count: int) -> int:
        """Per-image kernels are proven when that costs at most the chunk's own values."""
        return max(IMAGE_PROOF_MIN, count * int(np.prod(self.params.image_shape)))

    def packing(self, start: int = 0, count: int | None = None) -> Packing:
        """The CF ``scale_factor``/``add_offset`` per scope element that decode the packed
        pixels exactly to this record's float32 output (per image for ``start``, ``count``).

        Raises
        ------
        ParamsError
            Where no float64 pair is exact (see ``find_packing``), and for uint16 sources.
        """
        if self.params.source_dtype != "uint8":
            raise ParamsError(PACKED_UINT16)
        if not self.per_image:
            packing = find_packing(flat_affine(self.params))
            shape = self.params.source_low.shape  # 0-d (global), (C,), the image shape
            return replace(
                packing,
                scale_factor=packing.scale_factor.reshape(shape),
                add_offset=packing.add_offset.reshape(shape),
            )
        stop = len(self.params.source_low) if count is None else start + count
        return find_packing(flat_affine(self.params, slice(start, stop)))

    def apply(
        self, chunk: PixelArray, start: int, out: npt.NDArray[np.floating] | None = None
    ) -> npt.NDArray[np.floating]:
        """Scale ``chunk`` (images ``start``… of the dataset) to this transform's dtype."""
        self._check_dtype(chunk)
        count = chunk.shape[0]
        flat = chunk.reshape(count, -1)
        result = np.empty(flat.shape, self.dtype) if out is None else out.reshape(flat.shape)
        if result.dtype != np.dtype(self.dtype):
            raise ParamsError(f"output buffer is {result.dtype}, the transform writes {self.dtype}")
        table = self._table() if self.dtype == "float16" else None
        if table is not None:  # numpy's float→float16 cast is scalar code: a table is 3× faster
            _gather(table, flat, result)
        else:
            self._kernel_for(start, count)(flat, result)
        return result.reshape(chunk.shape)

    def _check_dtype(self, chunk: PixelArray) -> None:
        if chunk.dtype != np.dtype(self.params.source_dtype):
            raise ParamsError(
                f"parameters for {self.params.source_dtype} pixels applied to {chunk.dtype} data"
            )

    def apply_at(
        self, chunk: PixelArray, positions: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.floating]:
        """Scale ``chunk`` whose rows are the images at ``positions`` of the dataset (any
        order, repeats allowed): what a reader decoding random samples needs."""
        if not self.per_image:
            return self.apply(chunk, 0)
        self._check_dtype(chunk)
        flat = chunk.reshape(chunk.shape[0], -1)
        result = np.empty(flat.shape, self.dtype)
        affine = flat_affine(self.params, np.asarray(positions, np.intp))
        budget = self._image_budget(chunk.shape[0])
        _choose(affine, self.dtype, budget).expand(per_image_column)(flat, result)
        return result.reshape(chunk.shape)

    def decode(
        self, chunk: PixelArray, positions: npt.NDArray[np.intp] | None = None
    ) -> npt.NDArray[np.floating]:
        """``apply`` for readers of packed files, through a lookup table of the 256 outputs
        per scope element (the reference values themselves, so exact by construction);
        one ``np.take`` instead of a kernel's passes, which is what random samples need.
        Large chunks, per-image scope and tables over ``TABLE_BYTES`` use the kernel.
        """
        table = self._table() if chunk.size <= TABLE_MAX_VALUES else None
        if table is None:
            if positions is not None:
                return self.apply_at(chunk, positions)
            if self.per_image:
                raise ParamsError("per-image parameters need the images' positions to decode")
            return self.apply(chunk, 0)
        flat = chunk.reshape(chunk.shape[0], -1)
        result = np.empty(flat.shape, self.dtype)
        _gather(table, flat, result)
        return result.reshape(chunk.shape)

    def lookup_table(self) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.intp] | None] | None:
        """The output values of every input per scope element (256 for uint8, 65,536 for
        uint16), flat, and each image position's offset into them (None for one element);
        None for per-image scope or oversized tables."""
        return self._table()

    def _table(self) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.intp] | None] | None:
        if "_lookup" in self.__dict__:
            found: tuple[npt.NDArray[np.floating], npt.NDArray[np.intp] | None] | None
            found = self.__dict__["_lookup"]
            return found
        table = None
        if not self.per_image:
            affine = flat_affine(self.params)
            elements = int(affine.low.size)
            inputs = affine.inputs()
            if elements * inputs.size * np.dtype(self.dtype).itemsize <= TABLE_BYTES:
                grid = np.empty((elements, inputs.size), self.dtype)
                for element in range(elements):  # float64 temporaries of one element each
                    grid[element] = exact(inputs, affine.map(functools.partial(_at, element)))
                values = grid.reshape(-1)
                offsets = None
                if elements > 1:
                    starts = np.arange(elements, dtype=np.intp) * inputs.size
                    expand = scope_expander(self.params)
                    offsets = np.asarray(expand(starts.reshape(self.params.source_low.shape)))
                    offsets = offsets.astype(np.intp).reshape(-1)
                table = (values, offsets)
        self.__dict__["_lookup"] = table
        return table

    def invert(self, values: npt.NDArray[np.floating], start: int) -> tuple[PixelArray, int]:
        """The source images (uint8 or uint16, values within ``bits``) that map to
        ``values``, and how many values do not round-trip."""
        count = values.shape[0]
        flat = np.asarray(values, self.dtype).reshape(count, -1)
        affine = self._kernel_for(start, count).affine
        guess = (flat.astype(np.float64) - affine.out_low) * affine.span_in / affine.span_out
        guess += affine.low
        np.nan_to_num(guess, copy=False, nan=-1.0)
        np.rint(guess, out=guess)
        np.clip(guess, 0, self.params.value_max, out=guess)
        pixels = guess.astype(self.params.source_dtype)
        again = self.apply(pixels, start)
        bits = BITS[self.dtype]
        mismatches = int(np.count_nonzero(again.view(bits) != flat.view(bits)))
        return pixels.reshape(values.shape), mismatches
