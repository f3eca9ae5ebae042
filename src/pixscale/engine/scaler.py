"""``Scaler``: the same exact scaling for arrays in memory, in scikit-learn's vocabulary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.layouts import LAYOUT_NDIM, channel_axis_of, default_layout
from pixscale.core.params import Params, dumps
from pixscale.core.pixels import above_message, first_above, max_value, source_dtype
from pixscale.core.spec import Geometry, Spec, build_params
from pixscale.core.stats import PixelSums, image_stats
from pixscale.core.transform import Transform
from pixscale.engine.fitting import fit_params, fitted_to
from pixscale.engine.pipeline import as_source
from pixscale.engine.scan import DEFAULT_CHUNK_MB
from pixscale.errors import InputError, ParamsError
from pixscale.store.records import load_params

PathLike = str | os.PathLike[str]


class Scaler:
    """Fit once, transform exactly: ``y`` is bit-identical to ``pixscale convert``'s output.

    Parameters
    ----------
    strategy
        ``unit`` (default), ``symmetric``, ``range``, ``standardize`` or ``none``.
    scope
        ``global``, ``channel``, ``pixel`` or ``image``.
    layout
        Layout of the arrays given (``nhw``, ``nhwc``, ``nchw``); by default NHW for
        3-D arrays and NHWC for 4-D ones.
    **options
        The other ``Spec`` fields: ``source_range``, ``target_range``, ``from_data``,
        ``mean``, ``std``, ``clip``, ``zero_std``, ``bits``.

    Arrays are uint8 or uint16 (``bits`` says how many bits of a uint16 the pixels use);
    parameters fitted on one dtype are refused for the other.

    Examples
    --------
    >>> s = Scaler("standardize", scope="channel").fit(x_train)   # uint8 or uint16, NHWC
    >>> y = s.transform(x_test)                                   # float32
    >>> assert (s.inverse_transform(y) == x_test).all()
    """

    def __init__(
        self,
        strategy: str = "unit",
        *,
        scope: str = "global",
        layout: str | None = None,
        **options: Any,
    ) -> None:
        self.spec = Spec(strategy, scope, **options)
        self.layout = layout
        self.params_: Params | None = None
        self._sums: PixelSums | None = None
        self.fitted_on: dict[str, Any] | None = None

    @classmethod
    def from_params(cls, params: Params) -> Scaler:
        """A scaler applying ``params`` unchanged."""
        scaler = cls(params.strategy, zero_std=_policy(params))
        scaler.params_ = params
        scaler.fitted_on = params.fitted_on
        return scaler

    @classmethod
    def load(cls, path: PathLike) -> Scaler:
        """The parameters of a params JSON or of any pixscale output.

        Read exactly as ``convert --params-from`` reads them (``load_params``): the four
        defining numbers are authoritative, and a record whose ``scale``, ``offset`` or
        fitted statistics disagree with them is refused, never half-applied.

        Raises
        ------
        ParamsError
            Naming ``path``: a malformed or inconsistent record, or per-image parameters.
        """
        params, record = load_params(path)
        if params.scope == "image":
            raise ParamsError(f"{path}: per-image parameters cannot be applied to other data")
        scaler = cls.from_params(params)
        scaler.fitted_on = params.fitted_on or record.get("source")
        return scaler

    # -- fitting ------------------------------------------------------------------------

    def fit(self, data: Any, **reading: Any) -> Scaler:
        """Fit on ``data``: a uint8/uint16 array, an input path (or several), or a ``Source``.

        ``reading`` holds input options for paths (``key``, ``mode``, ``layout``, ``labels``).
        """
        self._sums, self.params_, self.fitted_on = None, None, None
        if isinstance(data, np.ndarray):
            return self.partial_fit(data)
        source = as_source(data, reading)
        self._reject_image_scope()
        self.params_ = fit_params(source, self.spec, DEFAULT_CHUNK_MB)
        self.fitted_on = source.describe()
        return self

    def partial_fit(self, chunk: npt.NDArray[Any]) -> Scaler:
        """Fold one more chunk of images (first axis) into exact running statistics."""
        self._reject_image_scope()
        x = self._check(chunk)
        geometry = self._geometry(x)
        if self._sums is None:
            self._sums = PixelSums.empty(geometry.image_shape, geometry.dtype)
        elif self._sums.s1.shape != x.shape[1:]:
            raise InputError(f"images of shape {x.shape[1:]}, earlier {self._sums.s1.shape}")
        elif self._sums.minimum.dtype != x.dtype:
            raise InputError(f"{x.dtype} images, earlier {self._sums.minimum.dtype}")
        self._check_bits(x, self.spec.bits)
        stats = None
        if self.spec.needs_stats:
            self._sums.add(x)
            stats = self._sums.reduce(self.spec.scope, geometry.channel_axis)
        else:
            self._sums.count += x.shape[0]
        self.params_ = build_params(self.spec, geometry, stats)
        self.fitted_on = {
            "name": "<array>",
            "format": "array",
            "shape": [self._sums.count, *x.shape[1:]],
            "dtype": geometry.dtype,
            "layout": geometry.layout,
        }
        return self

    # -- applying -----------------------------------------------------------------------

    def transform(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """float32 values of the uint8/uint16 images ``x``, each the float32 nearest the
        exact map."""
        x = self._check(x)
        flat = np.ascontiguousarray(x)
        if self.spec.scope == "image" and (self.params_ is None or self.params_.scope == "image"):
            self._check_bits(flat, self.spec.bits)
            self.params_ = build_params(self.spec, self._geometry(x), image_stats(flat))
            return Transform(self.params_).apply(flat, 0)
        params = self._params_for(x)
        self._check_bits(flat, params.bits)
        return Transform(params).apply(flat, 0)

    def fit_transform(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """``fit(x).transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, y: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The uint8/uint16 images that ``transform`` maps to ``y`` (exact for its outputs)."""
        values = np.asarray(y)
        if values.dtype != np.float32:
            raise InputError(f"inverse_transform takes float32 values, got {values.dtype}")
        if self.params_ is None:
            raise ParamsError("this Scaler is not fitted yet: call fit() first")
        params = self.params_
        if params.scope != "image":
            params = self._params_for(values, params.source_dtype)
        elif params.source_low.shape[0] != values.shape[0]:
            raise ParamsError("per-image parameters hold for the images last transformed")
        pixels, _ = Transform(params).invert(values, 0)
        return pixels

    # -- the record ---------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """The params record that ``pixscale fit`` writes."""
        params = self.fitted()
        record = params.to_record()
        if self.fitted_on is not None:
            record["fitted_on"] = self.fitted_on
        return record

    def save(self, path: PathLike) -> None:
        """Write the params JSON (the same as ``pixscale fit -o``) to ``path``."""
        Path(path).write_text(dumps(self.to_record()))

    # -- helpers ------------------------------------------------------------------------

    def fitted(self) -> Params:
        """The fitted parameters; an error before ``fit``."""
        if self.params_ is None:
            if self.spec.needs_stats or self.spec.scope == "image":
                raise ParamsError("this Scaler is not fitted yet: call fit() first")
            raise ParamsError("this Scaler has no data shape yet: call fit() first")
        return self.params_

    def _params_for(self, x: npt.NDArray[Any], dtype: str | None = None) -> Params:
        """Parameters for images like ``x`` (of pixel ``dtype``; by default ``x``'s own)."""
        if self.params_ is None and not (self.spec.needs_stats or self.spec.scope == "image"):
            return build_params(self.spec, self._geometry(x))
        return fitted_to(self.fitted(), self._geometry(x, dtype), "Scaler")

    def _geometry(self, x: npt.NDArray[Any], dtype: str | None = None) -> Geometry:
        layout = self.layout or default_layout(x.ndim)
        if LAYOUT_NDIM.get(layout, x.ndim) != x.ndim:
            raise InputError(f"layout {layout} does not fit an array of shape {x.shape}")
        dtype = dtype or source_dtype(x.dtype)
        return Geometry(tuple(x.shape[1:]), layout, channel_axis_of(layout), dtype or "uint8")

    def _reject_image_scope(self) -> None:
        if self.spec.scope == "image":
            raise ParamsError("per-image scaling needs no fit: call transform() directly")

    @staticmethod
    def _check_bits(x: npt.NDArray[Any], bits: int | None) -> None:
        """Refuse values beyond ``bits`` bits (None: the dtype's own, nothing to check)."""
        if bits is None:
            return
        found = first_above(x, max_value(bits))
        if found is not None:
            raise InputError(f"<array>: {above_message(found[1], bits, f' (image {found[0]})')}")

    @staticmethod
    def _check(x: Any) -> npt.NDArray[Any]:
        if not isinstance(x, np.ndarray) or source_dtype(x.dtype) is None:
            dtype = getattr(x, "dtype", type(x).__name__)
            raise InputError(f"pixscale scales uint8 or uint16 images; got {dtype}")
        if x.ndim < 2 or x.shape[0] == 0 or 0 in x.shape:
            raise InputError(f"expected a non-empty stack of images, got shape {x.shape}")
        pixels: npt.NDArray[Any] = x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))
        return pixels


def _policy(params: Params) -> str:
    zero = params.zero_std
    return str(zero.get("policy", "unit")) if isinstance(zero, dict) else "unit"


__all__ = ["Scaler"]
