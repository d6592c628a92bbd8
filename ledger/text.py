"""Free text a record holds (names, titles, reasons, ids of source records): what counts as empty.

Python's `str.strip()` keeps characters that show nothing: a zero-width space (U+200B), a
byte-order mark (U+FEFF), control characters. A name of only those is as empty as a name of
spaces, and is refused the same way.
"""

from __future__ import annotations

import unicodedata

from ledger.errors import InvalidField

_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _invisible(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in _INVISIBLE


def trimmed(value: str) -> str:
    """The text without whitespace or invisible characters at either end."""
    start, end = 0, len(value)
    while start < end and _invisible(value[start]):
        start += 1
    while end > start and _invisible(value[end - 1]):
        end -= 1
    return value[start:end]


def blank(value: str | None) -> bool:
    """Whether the text shows nothing at all (None, empty, spaces, zero-width characters)."""
    return value is None or not trimmed(value)


def required(name: str, value: str | None) -> str:
    """The text trimmed, refused (InvalidField naming `name`) if it shows nothing."""
    if value is None or blank(value):
        raise InvalidField(f"{name} must not be empty", name)
    return trimmed(value)


def check_text(name: str, value: str | None) -> str:
    """A name, title or reference: not empty, trimmed, one line."""
    return check_one_line(name, required(name, value))


def check_reason(reason: str) -> str:
    """Why something was corrected, voided, cancelled, closed or ended: not empty, trimmed
    (it may run over several lines)."""
    return required("reason", reason)


def check_one_line(name: str, value: str) -> str:
    """The text, refused (InvalidField naming `name`) if it holds a control character (a line
    break, a tab, a NUL…) or a line or paragraph separator (U+2028, U+2029): a name, a title
    or a label is one line, and a line break in it forges lines in every listing that prints
    one record per line."""
    bad = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise InvalidField(f"{name} must be one line without control characters (it holds "
                           f"U+{ord(bad):04X})", name)
    return value
