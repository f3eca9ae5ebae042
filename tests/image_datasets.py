"""Image datasets in the shapes people download them, built from arrays for the tests:
Parquet in the Hugging Face Hub's layout, zip and tar archives of class folders, WebDataset
shards."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cli_helpers import run_cli

DIGITS = [str(n) for n in range(10)]


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt)
    return buffer.getvalue()


def hub_parquet(
    path: Path,
    images: np.ndarray | None,
    labels: np.ndarray | None,
    *,
    names: Sequence[str] | None = DIGITS,
    fmt: str = "PNG",
    row_group_size: int = 1000,
    encoded: Sequence[bytes] | None = None,
) -> Path:
    """A shard as the Hub stores ``datasets`` with an Image and a ClassLabel feature."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if encoded is None:
        assert images is not None
        encoded = [encode(image, fmt) for image in images]
    cells = encoded
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = [pa.field("image", image_type)]
    columns: list[pa.Array] = [pa.array([{"bytes": b, "path": None} for b in cells], image_type)]
    features: dict[str, object] = {"image": {"_type": "Image"}}
    if labels is not None:
        fields.append(pa.field("label", pa.int64()))
        columns.append(pa.array(labels.astype(np.int64)))
        label_feature: dict[str, object] = {"_type": "ClassLabel"}
        if names is not None:
            label_feature["names"] = list(names)
        features["label"] = label_feature
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    table = pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata))
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def class_members(
    images: np.ndarray, labels: np.ndarray | None, root: str = "digits", fmt: str = "PNG"
) -> list[tuple[str, bytes]]:
    """``root/<label>/<index>.png`` members (flat ``root/<index>.png`` without labels), in
    index order: archive order is dataset order."""
    suffix = ".jpg" if fmt == "JPEG" else f".{fmt.lower()}"
    members = []
    for index, image in enumerate(images):
        folder = f"{root}/{labels[index]}" if labels is not None else root
        members.append((f"{folder}/{index:05d}{suffix}", encode(image, fmt)))
    return members


def write_zip(path: Path, members: Sequence[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def write_tar(path: Path, members: Sequence[tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def webdataset_members(
    images: np.ndarray, labels: np.ndarray | None, first: int = 0, fmt: str = "PNG"
) -> list[tuple[str, bytes]]:
    """``KEY.png`` and ``KEY.cls`` for each image, as WebDataset's writers lay them out."""
    suffix = ".jpg" if fmt == "JPEG" else f".{fmt.lower()}"
    members = []
    for offset, image in enumerate(images):
        key = f"sample{first + offset:06d}"
        members.append((key + suffix, encode(image, fmt)))
        if labels is not None:
            members.append((f"{key}.cls", f"{int(labels[offset])}\n".encode()))
    return members


def unit(images: np.ndarray) -> np.ndarray:
    """What the default strategy stores: ``np.float32(x) / np.float32(255)``."""
    return images.astype(np.float32) / np.float32(255)


def cli(*args: object) -> tuple[int, str]:
    """``pixscale ARGS`` in this process: the exit code and stderr."""
    result = run_cli(*args)
    return result.exit_code, result.stderr


def assert_clean_error(code: int, stderr: str, *texts: str) -> str:
    """Exit 1 and one ``Error:`` line on stderr, no traceback, holding every one of ``texts``."""
    lines = stderr.splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def claimed_png(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header declares a greyscale width×height image."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes(4 * (width + 1)), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
