"""Exceptions raised by the library; the CLI turns them into one-line errors."""


class PixscaleError(Exception):
    """Any failure the user can fix: bad input, bad options, refused output."""


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
