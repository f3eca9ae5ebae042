"""Exceptions raised by the library; the CLI turns them into one-line errors."""

import re

#: The user information (``user:password@``) of a URL, and its query and fragment (where
#: presigned URLs carry their signature): never part of a message.
URL_USER = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
URL_QUERY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s?#]*)[?#]\S*?(?=:\s|\s|$)")


def redacted(message: str) -> str:
    """``message`` with every URL's user information and query left out."""
    return URL_QUERY.sub(r"\1", URL_USER.sub(r"\1", message))


class PixscaleError(Exception):
    """Any failure the user can fix: bad input, bad options, refused output. Its message
    names URLs without their credentials (``redacted``), whoever built it."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redacted(a) if isinstance(a, str) else a for a in args))


class InputError(PixscaleError):
    """An input file is missing, unreadable, malformed or not uint8."""


class OutputError(PixscaleError):
    """An output cannot be written, or would clobber something."""


class ParamsError(PixscaleError):
    """Parameters are incomplete, inconsistent or do not fit the data."""


class PixscaleWarning(UserWarning):
    """Something the user probably did not mean, though the result is valid."""


class TestSplitWarning(PixscaleWarning):
    """Statistics fitted on what looks like a test or validation split."""

    __test__ = False  # not a pytest test class, whatever its name


class ShapeMismatchWarning(PixscaleWarning):
    """Parameters fitted on images of one shape applied to images of another."""
