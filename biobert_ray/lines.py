"""Line-based input files (relation sets, question lists): their numbered lines, and the error that names
a file and line."""

from __future__ import annotations

from collections.abc import Iterator

from biobert_ray.storage import open_input


class FormatError(ValueError):
    """A line of an input file that cannot be read; the message reads ``uri:line: reason: 'text'``."""

    def __init__(self, uri: str, line: int, reason: str, text: str) -> None:
        super().__init__(f"{uri}:{line}: {reason}: {text[:200]!r}")


def numbered_lines(uri: str, error: type[FormatError] = FormatError) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line)`` of the file at ``uri`` (any fsspec URI; ``.gz`` decompressed),
    decoded as UTF-8, without the line break and a leading byte-order mark; a line that is not UTF-8
    raises ``error``."""
    with open_input(uri) as stream:
        for number, raw in enumerate(stream, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise error(uri, number, f"not UTF-8 ({err.reason})", repr(raw[:80])) from None
            yield number, line.removeprefix("\ufeff") if number == 1 else line
