"""``Scaler``: the same exact scaling for arrays in memory, in scikit-learn's vocabulary."""

from __future__ import annotations

import inspect
import os
import weakref
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
from pixscale.engine.fitting import fit_params, fitted_to, warn_if_test_split
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
    source_range, target_range, from_data, mean, std, clip, zero_std, bits
        The other ``Spec`` fields (``mean``/``std`` in [0, 1] units, as torchvision
        quotes them).

    Arrays are uint8 or uint16 (``bits`` says how many bits of a uint16 the pixels use);
    parameters fitted on one dtype are refused for the other.

    Attributes
    ----------
    params_ : Params
        The fitted parameters (``None`` for image scope, whose parameters are per image).
    mean_, scale_ : ndarray of float64
        Standardize only: the mean and the (zero-guarded) population std per scope
        element, in the input's pixel units as ``sklearn.preprocessing.StandardScaler``'s
        are (shape ``(1,)`` for global scope, ``(channels,)`` for channel, the image shape
        for pixel).
    n_samples_seen_ : int
        Images fitted on (summed over ``partial_fit`` calls).

    The scikit-learn estimator contract
    -----------------------------------
    The constructor stores its arguments as given; they are checked by ``fit`` (and
    ``transform``). ``get_params``/``set_params``/``repr`` follow the ``__init__``
    signature, so ``sklearn.base.clone`` works, and scikit-learn itself is never imported.
    Fitted attributes exist only after ``fit``/``partial_fit``: reading them before raises
    ``AttributeError``, and ``sklearn.utils.validation.check_is_fitted`` tells the two
    apart (``__sklearn_is_fitted__``). The fixed strategies (``unit``, ``symmetric``,
    ``none``, ``range`` with constants) and image scope need no statistics and transform
    without ``fit`` too; image scope's ``fit`` is a no-op (it records
    ``n_samples_seen_``), and its ``params_`` is ``None`` even before ``fit``.
    ``fit`` on a path named like a test split (``test.npy``, ``t10k-…``) warns
    ``TestSplitWarning`` as ``pixscale.fit`` does.

    ``inverse_transform`` of image scope needs the per-image parameters of the images:
    it inverts exactly an array this scaler's ``transform`` returned (that very object,
    whichever transform came last; the parameters are kept only as long as the array
    lives), or values whose per-image ``Params`` are given as ``params=``; anything else
    is refused with a ``ParamsError``.

    ``sklearn.utils.estimator_checks.check_estimator`` (scikit-learn 1.9, whose tags for
    this class are read from ``__sklearn_tags__``, the one place scikit-learn is imported,
    and only when it asks) runs what applies and passes it: ``check_estimator_cloneable``,
    ``check_estimator_repr``, ``check_no_attributes_set_in_init``, ``check_get_params_invariance``,
    ``check_set_params``, ``check_parameters_default_constructible``,
    ``check_do_not_raise_errors_in_init_or_set_params``, ``check_estimators_unfitted``,
    ``check_valid_tag_types``, ``check_mixin_order``. The rest cannot apply: each feeds a
    2-D float64 ``X`` (``make_blobs``; also float32, complex, object, NaN/inf, sparse,
    1-D, 1-sample or 1-feature variants), and a ``Scaler`` takes stacks of uint8/uint16
    images (3-D or 4-D with the default layouts) and refuses floats by design, its
    exactness being a property of integer pixels; ``inverse_transform`` takes float32
    only. Those are ``check_fit_score_takes_y``, ``check_estimators_overwrite_params``,
    ``check_dont_overwrite_parameters``, ``check_estimators_fit_returns_self``,
    ``check_readonly_memmap_input``, ``check_positive_only_tag_during_fit``,
    ``check_estimators_dtypes``, ``check_complex_data``, ``check_dtype_object``,
    ``check_estimators_empty_data_messages`` (an ``InputError``, not ``ValueError``),
    ``check_pipeline_consistency``, ``check_estimators_nan_inf``, the three sparse checks,
    ``check_estimators_pickle``, ``check_f_contiguous_array_estimator``,
    ``check_transformer_data_not_an_array``, ``check_transformer_general``,
    ``check_transformers_unfitted`` (fixed strategies and image scope need no fit),
    ``check_methods_sample_order_invariance``, ``check_methods_subset_invariance``,
    ``check_fit2d_1sample``, ``check_fit2d_1feature``, ``check_fit1d``,
    ``check_fit2d_predict1d``, ``check_dict_unchanged``, ``check_fit_idempotent``,
    ``check_fit_check_is_fitted``, ``check_fit_non_negative``, and
    ``check_n_features_in``/``check_n_features_in_after_fitting``: ``n_features_in_`` and
    ``feature_names_in_`` have no meaning for image stacks and are not set. The tags say
    so (``two_d_array=False``, ``three_d_array=True``), so ``check_estimator`` skips them.

    Examples
    --------
    >>> s = Scaler("standardize", scope="channel").fit(x_train)   # uint8 or uint16, NHWC
    >>> y = s.transform(x_test)                                   # float32
    >>> assert (s.inverse_transform(y) == x_test).all()
    """

    n_samples_seen_: int
    _params: Params | None
    _fitted_on: dict[str, Any] | None
    _sums: PixelSums

    def __init__(
        self,
        strategy: str = "unit",
        *,
        scope: str = "global",
        layout: str | None = None,
        source_range: tuple[float, float] | None = None,
        target_range: tuple[float, float] | None = None,
        from_data: bool = False,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        clip: bool = False,
        zero_std: str = "unit",
        bits: int | None = None,
    ) -> None:
        self.strategy = strategy
        self.scope = scope
        self.layout = layout
        self.source_range = source_range
        self.target_range = target_range
        self.from_data = from_data
        self.mean = mean
        self.std = std
        self.clip = clip
        self.zero_std = zero_std
        self.bits = bits

    # -- the estimator contract -----------------------------------------------------------

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's parameters, in order (what ``get_params`` reports)."""
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, as given (``deep`` is accepted; none is an estimator)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> Scaler:
        """Set constructor arguments (checked by the next ``fit``); fitted state is kept."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for estimator {self!r}; "
                    f"valid parameters are {valid}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        given = [
            f"{name}={value!r}" if name != "strategy" else repr(value)
            for name, value in self.get_params().items()
            if not _same(value, defaults.get(name, inspect.Parameter.empty))
        ]
        return f"{type(self).__name__}({', '.join(given)})"

    def __sklearn_is_fitted__(self) -> bool:
        return "n_samples_seen_" in self.__dict__

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags (imported only when scikit-learn asks for them): a
        transformer of non-negative uint8/uint16 image stacks, not of 2-D float ``X``."""
        from sklearn.utils import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            InputTags,
            Tags,
            TargetTags,
            TransformerTags,
        )

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=[]),
            input_tags=InputTags(two_d_array=False, three_d_array=True, positive_only=True),
            requires_fit=self.scope != "image",
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_image_outputs", None)  # weak references to arrays do not pickle
        return state

    @property
    def spec(self) -> Spec:
        """The constructor arguments as a checked ``Spec`` (``ParamsError`` if invalid)."""
        return Spec(
            self.strategy,
            self.scope,
            source_range=_tuple(self.source_range),
            target_range=_tuple(self.target_range),
            from_data=self.from_data,
            mean=_tuple(self.mean),
            std=_tuple(self.std),
            clip=self.clip,
            zero_std=self.zero_std,
            bits=self.bits,
        )

    @property
    def params_(self) -> Params | None:
        params: Params | None = self.__dict__.get("_params")
        if params is not None:
            return params
        if self.scope == "image":
            return None  # per image: nothing fitted, before or after fit
        raise AttributeError(f"{type(self).__name__} is not fitted yet: no params_ before fit()")

    @params_.setter
    def params_(self, params: Params | None) -> None:
        self.__dict__["_params"] = params

    @property
    def mean_(self) -> npt.NDArray[np.float64]:
        """Standardize: the mean per scope element, in pixel units."""
        return self._standardized("mean_")[0]

    @property
    def scale_(self) -> npt.NDArray[np.float64]:
        """Standardize: the population std per scope element (zero-guarded), in pixel units."""
        return self._standardized("scale_")[1]

    @property
    def fitted_on(self) -> dict[str, Any] | None:
        """Provenance of the data fitted on (``None`` before ``fit``)."""
        fitted: dict[str, Any] | None = self.__dict__.get("_fitted_on")
        return fitted

    def _standardized(self, name: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        params = self.__dict__.get("_params")
        if params is None or params.strategy != "standardize" or params.scope == "image":
            raise AttributeError(
                f"{type(self).__name__} has no {name}: it exists after fit() with the "
                "standardize strategy and a global, channel or pixel scope"
            )
        low, span = params.source_low.copy(), params.source_span.copy()
        if params.scope == "global":
            low, span = low.reshape(1), span.reshape(1)
        return low, span

    def _reset(self) -> None:
        for name in ("_params", "_sums", "_fitted_on", "n_samples_seen_"):
            self.__dict__.pop(name, None)

    @classmethod
    def from_params(cls, params: Params) -> Scaler:
        """A scaler applying ``params`` unchanged."""
        scaler = cls(params.strategy, zero_std=_policy(params))
        scaler._params = params
        scaler._fitted_on = params.fitted_on
        shape = (params.fitted_on or {}).get("shape")
        count = shape[0] if isinstance(shape, list) and shape else 0
        scaler.n_samples_seen_ = count if isinstance(count, int) else 0
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
        scaler._fitted_on = params.fitted_on or record.get("source")
        return scaler

    # -- fitting ------------------------------------------------------------------------

    def fit(self, data: Any, y: Any = None, **reading: Any) -> Scaler:
        """Fit on ``data``: a uint8/uint16 array, an input path (or several), or a ``Source``.

        ``y`` is ignored (scikit-learn's signature). ``reading`` holds input options for
        paths (``key``, ``mode``, ``layout``, ``labels``). Image scope learns nothing: its
        ``fit`` checks the data and records ``n_samples_seen_``. A fitted strategy on
        paths named like a test split warns ``TestSplitWarning``.
        """
        spec = self.spec  # the constructor arguments are checked here
        self._reset()
        if isinstance(data, np.ndarray):
            return self.partial_fit(data)
        source = as_source(data, reading)
        if spec.scope == "image":
            self.n_samples_seen_ = source.n_images
            self._fitted_on = source.describe()
            return self
        if spec.needs_stats:
            warn_if_test_split(source.files)
        self._params = fit_params(source, spec, DEFAULT_CHUNK_MB)
        self._fitted_on = source.describe()
        self.n_samples_seen_ = source.n_images
        return self

    def partial_fit(self, chunk: npt.NDArray[Any], y: Any = None) -> Scaler:
        """Fold one more chunk of images (first axis) into exact running statistics."""
        spec = self.spec
        x = self._check(chunk)
        geometry = self._geometry(x)
        sums: PixelSums | None = self.__dict__.get("_sums")
        if sums is None:
            sums = PixelSums.empty(geometry.image_shape, geometry.dtype)
        elif sums.s1.shape != x.shape[1:]:
            raise InputError(f"images of shape {x.shape[1:]}, earlier {sums.s1.shape}")
        elif sums.minimum.dtype != x.dtype:
            raise InputError(f"{x.dtype} images, earlier {sums.minimum.dtype}")
        self._check_bits(x, spec.bits)
        if spec.scope == "image":
            build_params(spec, geometry, image_stats(np.ascontiguousarray(x[:1])))  # checks
            sums.count += x.shape[0]
        elif spec.needs_stats:
            sums.add(x)
            self._params = build_params(
                spec, geometry, sums.reduce(spec.scope, geometry.channel_axis)
            )
        else:
            sums.count += x.shape[0]
            self._params = build_params(spec, geometry)
        self._sums = sums
        self.n_samples_seen_ = sums.count
        self._fitted_on = {
            "name": "<array>",
            "format": "array",
            "shape": [sums.count, *x.shape[1:]],
            "dtype": geometry.dtype,
            "layout": geometry.layout,
        }
        return self

    # -- applying -----------------------------------------------------------------------

    def transform(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """float32 values of the uint8/uint16 images ``x``, each the float32 nearest the
        exact map (image scope: each image by its own statistics, nothing kept but what
        ``inverse_transform`` of this very output needs)."""
        x = self._check(x)
        flat = np.ascontiguousarray(x)
        if self.scope == "image" and self.__dict__.get("_params") is None:
            spec = self.spec
            self._check_bits(flat, spec.bits)
            params = build_params(spec, self._geometry(x), image_stats(flat))
            y = Transform(params).apply(flat, 0)
            self._remember(y, params)
            return y
        params = self._params_for(x)
        self._check_bits(flat, params.bits)
        return Transform(params).apply(flat, 0)

    def fit_transform(self, x: npt.NDArray[Any], y: Any = None) -> npt.NDArray[np.float32]:
        """``fit(x).transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(
        self, y: npt.NDArray[Any], params: Params | None = None
    ) -> npt.NDArray[Any]:
        """The uint8/uint16 images that ``transform`` maps to ``y`` (exact for its outputs).

        ``params``: the per-image parameters of ``y``'s images (image scope; by default
        those of the array ``transform`` returned, when ``y`` is that very array).

        Raises
        ------
        ParamsError
            Before ``fit`` (fitted strategies), or for image scope without the per-image
            parameters of ``y``.
        """
        values = np.asarray(y)
        if values.dtype != np.float32:
            raise InputError(f"inverse_transform takes float32 values, got {values.dtype}")
        if params is None:
            params = self.__dict__.get("_params")
        if params is None and self.scope == "image":
            params = self._remembered(y)
        if params is None:
            if self.scope == "image":
                raise ParamsError(
                    "image scope cannot be inverted without the per-image parameters: "
                    "pass an array this Scaler's transform() returned, or params="
                )
            if self.spec.needs_stats:
                raise ParamsError("this Scaler is not fitted yet: call fit() first")
            params = self._params_for(values, self._source_dtype())
        elif params.scope != "image":
            params = self._params_for_params(params, values, params.source_dtype)
        elif params.source_low.shape[0] != values.shape[0]:
            raise ParamsError(
                f"per-image parameters for {params.source_low.shape[0]} images, "
                f"values hold {values.shape[0]}"
            )
        pixels, _ = Transform(params).invert(values, 0)
        return pixels

    def _remember(self, y: npt.NDArray[np.float32], params: Params) -> None:
        outputs: dict[int, tuple[weakref.ref[Any], Params]] = self.__dict__.setdefault(
            "_image_outputs", {}
        )
        key = id(y)
        outputs[key] = (weakref.ref(y, lambda _: outputs.pop(key, None)), params)

    def _remembered(self, y: Any) -> Params | None:
        outputs: dict[int, tuple[weakref.ref[Any], Params]] = self.__dict__.get(
            "_image_outputs", {}
        )
        entry = outputs.get(id(y))
        if entry is None or entry[0]() is not y:
            return None
        return entry[1]

    def _source_dtype(self) -> str:
        bits = self.bits
        return "uint16" if bits is not None and bits > 8 else "uint8"

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
        params: Params | None = self.__dict__.get("_params")
        if params is None:
            spec = self.spec
            if spec.needs_stats or spec.scope == "image":
                raise ParamsError("this Scaler is not fitted yet: call fit() first")
            raise ParamsError("this Scaler has no data shape yet: call fit() first")
        return params

    def _params_for(self, x: npt.NDArray[Any], dtype: str | None = None) -> Params:
        """Parameters for images like ``x`` (of pixel ``dtype``; by default ``x``'s own)."""
        if self.__dict__.get("_params") is None:
            spec = self.spec
            if not (spec.needs_stats or spec.scope == "image"):
                return build_params(spec, self._geometry(x, dtype))
        return fitted_to(self.fitted(), self._geometry(x, dtype), "Scaler")

    def _params_for_params(
        self, params: Params, x: npt.NDArray[Any], dtype: str | None = None
    ) -> Params:
        """``params`` checked against images like ``x``."""
        return fitted_to(params, self._geometry(x, dtype), "Scaler")

    def _geometry(self, x: npt.NDArray[Any], dtype: str | None = None) -> Geometry:
        layout = self.layout or default_layout(x.ndim)
        if LAYOUT_NDIM.get(layout, x.ndim) != x.ndim:
            raise InputError(f"layout {layout} does not fit an array of shape {x.shape}")
        dtype = dtype or source_dtype(x.dtype)
        return Geometry(tuple(x.shape[1:]), layout, channel_axis_of(layout), dtype or "uint8")

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


def _tuple(values: Any) -> Any:
    """A list given for a range, mean or std, as the tuple ``Spec`` holds (else as given)."""
    return tuple(values) if isinstance(values, list) else values


def _same(value: Any, default: Any) -> bool:
    """True when ``value`` is its parameter's default (so ``repr`` leaves it out)."""
    try:
        return bool(value is default or (type(value) is type(default) and value == default))
    except (TypeError, ValueError):
        return False


def _policy(params: Params) -> str:
    zero = params.zero_std
    return str(zero.get("policy", "unit")) if isinstance(zero, dict) else "unit"


__all__ = ["Scaler"]
