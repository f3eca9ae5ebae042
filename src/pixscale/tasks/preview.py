"""A PNG preview: a grid of the first images with their labels, and pixel histograms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pixscale.core.location import Location, PathOrUrl, locate
from pixscale.core.spec import Geometry, Spec, build_params
from pixscale.core.transform import Transform
from pixscale.engine.scan import DEFAULT_CHUNK_MB, chunk_images
from pixscale.errors import InputError, OutputError
from pixscale.sources import open_source
from pixscale.sources.folder import require_pillow
from pixscale.store.io.atomic import staged_outputs
from pixscale.store.naming import is_pixscale_output
from pixscale.store.reader import open_converted

CELL = 84  # pixels per grid cell (images are scaled up to fit)
LABEL_HEIGHT = 16
HIST_SIZE = (360, 220)
OUTPUT_BINS = 64


@dataclass
class PreviewData:
    """What the picture shows: first images, labels and the two histograms."""

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[Any] | None
    class_names: list[str] | None
    source_hist: npt.NDArray[np.int64]
    output_hist: npt.NDArray[np.int64]
    output_range: tuple[float, float]
    caption: str
    #: The source's largest value (255; 65535 or 2**bits - 1 for uint16): the histogram's
    #: 256 bins and the images shown are scaled to it.
    source_top: int = 255
    source_dtype: str = "uint8"


def binned(pixels: npt.NDArray[Any], top: int) -> npt.NDArray[np.uint8]:
    """Pixels of 0..``top`` in 256 bins (themselves for uint8): for display and histograms."""
    if pixels.dtype == np.uint8 and top == 255:
        return pixels
    wide = np.minimum(pixels.astype(np.uint64), top) * 256 // (top + 1)
    return wide.astype(np.uint8)


def output_preview(path: Location, count: int) -> PreviewData:
    """Images mapped back to pixels through the record; histograms streamed in two passes."""
    converted = open_converted(path)
    transform = converted.transform()  # float16 outputs invert in float16
    rows = converted.chunk_rows
    low, high = np.inf, -np.inf
    for chunk in converted.chunks(rows):
        if not np.all(np.isfinite(chunk)):
            raise InputError(f"{path}: holds inf or NaN values (damaged output)")
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
    source_hist = np.zeros(256, np.int64)
    output_hist = np.zeros(OUTPUT_BINS, np.int64)
    shown: list[npt.NDArray[np.uint8]] = []
    start = 0
    top = converted.params.value_max
    for chunk in converted.chunks(rows):
        pixels, _ = transform.invert(chunk, start)
        pixels = binned(pixels, top)
        source_hist += np.bincount(pixels.reshape(-1), minlength=256)
        output_hist += np.histogram(chunk, OUTPUT_BINS, (low, high))[0]
        if start < count:
            shown.append(pixels[: count - start])
        start += chunk.shape[0]
    record = converted.record
    return PreviewData(
        np.concatenate(shown),
        None if converted.labels is None else converted.labels[:count],
        record.get("output", {}).get("class_names"),
        source_hist,
        output_hist,
        (low, high),
        f"{path.name}: {record['strategy']} ({record['scope']}), shown through its record",
        top,
        converted.params.source_dtype,
    )


def input_preview(path: Location, count: int, **reading: Any) -> PreviewData:
    """A uint8 or uint16 source, and its values under the default ``unit`` strategy."""
    source = open_source(path, **reading)
    top = (1 << (8 * np.dtype(source.dtype).itemsize)) - 1
    source_hist = np.zeros(256, np.int64)
    output_hist = np.zeros(OUTPUT_BINS, np.float64)
    transform = Transform(build_params(Spec(), Geometry((1,), "nf", None, source.dtype)))
    shown: list[npt.NDArray[np.uint8]] = []
    start = 0
    for chunk in source.chunks(chunk_images(source, DEFAULT_CHUNK_MB)):
        pixels = binned(chunk, top)
        source_hist += np.bincount(pixels.reshape(-1), minlength=256)
        if top > 255:  # 65,536 possible outputs: bin the values themselves
            values = transform.apply(chunk.reshape(-1, 1), 0)
            output_hist += np.histogram(values, OUTPUT_BINS, (0.0, 1.0))[0]
        if start < count:
            shown.append(pixels[: count - start])
        start += chunk.shape[0]
    if top == 255:
        # Every output value is one of 256: bin the 256 outputs weighted by their counts.
        outputs = transform.apply(np.arange(256, dtype=np.uint8)[:, None], 0)[:, 0]
        output_hist = np.histogram(outputs, OUTPUT_BINS, (0.0, 1.0), weights=source_hist)[0]
    labels = source.labels
    return PreviewData(
        np.concatenate(shown),
        None if labels is None else labels.values[:count],
        None if labels is None else labels.class_names,
        source_hist,
        output_hist.astype(np.int64),
        (0.0, 1.0),
        f"{path.name}: {source.dtype} source; right: after the default unit strategy",
        top,
        source.dtype,
    )


def to_display(images: npt.NDArray[np.uint8], layout: str) -> npt.NDArray[np.uint8]:
    """Images as (N, H, W) or (N, H, W, 3) for Pillow; other channel counts show their
    first channel."""
    if layout == "nchw":
        images = images.transpose(0, 2, 3, 1)
    if images.ndim == 4 and images.shape[-1] != 3:
        images = images[..., 0]
    if images.ndim not in (3, 4):
        raise InputError(f"cannot draw images of shape {images.shape[1:]}")
    return images


def ellipsised(draw: Any, text: str, font: Any, width: int) -> str:
    """``text``, or its longest beginning that fits ``width`` pixels with an ellipsis after
    it, so that a long class name stays under its own tile."""
    if draw.textlength(text, font=font) <= width:
        return text
    # only FreeType fonts (those with a name) have "…"; Pillow's bitmap font has not
    mark = "…" if hasattr(font, "getname") else "..."
    low, high = 0, len(text)  # the longest fitting beginning is text[:low]
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle].rstrip() + mark, font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + mark


def draw_histogram(
    draw: Any,
    box: tuple[int, int, int, int],
    counts: npt.NDArray[np.int64],
    value_range: tuple[float, float],
    title: str,
    font: Any,
) -> None:
    left, top, right, bottom = box
    plot_left, plot_bottom = left + 44, bottom - 28
    draw.text((left + 44, top), title, fill="black", font=font)
    draw.line([(plot_left, top + 18), (plot_left, plot_bottom), (right, plot_bottom)], fill="black")
    peak = max(int(counts.max()), 1)
    width = (right - plot_left) / len(counts)
    # Log scale: image backgrounds would otherwise flatten every other bin.
    for i, value in enumerate(counts.tolist()):
        height = (plot_bottom - top - 20) * np.log1p(value) / np.log1p(peak)
        x0 = plot_left + i * width
        draw.rectangle(
            [x0, plot_bottom - height, x0 + max(width - 1, 1), plot_bottom], fill=(70, 110, 180)
        )
    low, high = value_range
    draw.text((plot_left, plot_bottom + 4), f"{low:.3g}", fill="black", font=font)
    draw.text((right - 40, plot_bottom + 4), f"{high:.3g}", fill="black", font=font)
    draw.text(
        ((plot_left + right) // 2 - 30, plot_bottom + 14), "pixel value", fill="black", font=font
    )
    draw.text((left, top + 18), f"{peak:.2g}", fill="black", font=font)
    draw.text((left, (top + plot_bottom) // 2), "count\n(log)", fill="black", font=font)
    draw.text((left, plot_bottom - 10), "0", fill="black", font=font)


def preview(
    path: PathOrUrl,
    output: PathOrUrl,
    count: int = 16,
    overwrite: bool = False,
    **reading: Any,
) -> tuple[int, int]:
    """Write the preview PNG of an input or output; returns its (width, height).

    Parameters
    ----------
    path
        An input (opened with the input options ``reading``) or a pixscale output.
    output
        The PNG file to write.
    count
        Images in the grid.
    overwrite
        Replace an existing PNG.
    """
    options = reading.get("storage_options")
    path, output = locate(path, options), locate(output, options, OutputError)
    image_module = require_pillow("drawing a preview")
    from PIL import ImageDraw, ImageFont

    data = (
        output_preview(path, count)
        if is_pixscale_output(path)
        else input_preview(path, count, **reading)
    )
    images, labels, names = data.images, data.labels, data.class_names
    layout = "nhwc" if images.ndim == 4 and images.shape[-1] in (1, 3) else "nhw"
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        layout = "nchw"
    shown = to_display(images, layout)
    columns = min(8, len(shown))
    grid_rows = -(-len(shown) // columns)
    width = max(columns * CELL, 2 * HIST_SIZE[0]) + 20
    height = 24 + grid_rows * (CELL + LABEL_HEIGHT) + HIST_SIZE[1] + 20
    canvas = image_module.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((10, 4), data.caption, fill="black", font=font)
    for index, pixels in enumerate(shown):
        tile = image_module.fromarray(pixels).resize((CELL - 8, CELL - 8), image_module.NEAREST)
        x = 10 + (index % columns) * CELL
        y = 24 + (index // columns) * (CELL + LABEL_HEIGHT)
        canvas.paste(tile, (x, y))
        if labels is not None:
            label = int(labels[index])
            text = names[label] if names and label < len(names) else str(label)
            text = ellipsised(draw, text, font, CELL - 8)
            draw.text((x, y + CELL - 6), text, fill="black", font=font)
    top = 24 + grid_rows * (CELL + LABEL_HEIGHT) + 4
    draw_histogram(
        draw,
        (10, top, 10 + HIST_SIZE[0] - 20, top + HIST_SIZE[1]),
        data.source_hist,
        (0, data.source_top),
        f"source pixels ({data.source_dtype})",
        font,
    )
    draw_histogram(
        draw,
        (10 + HIST_SIZE[0], top, 10 + 2 * HIST_SIZE[0] - 20, top + HIST_SIZE[1]),
        data.output_hist,
        data.output_range,
        "output values (float32)",
        font,
    )
    with staged_outputs(overwrite, [path]) as staged:
        canvas.save(staged.stage(output), format="PNG")
    return int(canvas.size[0]), int(canvas.size[1])
