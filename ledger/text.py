"""Free text a record holds (names, titles, reasons, labels, ids of source records): what counts
as empty, and which characters it may not hold.

Python's `str.strip()` keeps characters that show nothing: a zero-width space (U+200B), a
byte-order mark (U+FEFF), control characters. A name of only those is as empty as a name of
spaces, and is refused the same way. Only spaces and line breaks are trimmed at either end of
a text; anything else that shows nothing is refused wherever it sits, so that what is stored is
what was sent (bb28 F2: "\u202eabc" was stored as "abc" and answered 201).

They are refused: a bidirectional override or isolate (U+202A–U+202E,
U+2066–U+2069) makes a name display as another in every report that prints it (a "Trojan
source" spoof), and a zero-width character makes two names that look alike differ. Spaces of
every kind (the ideographic space U+3000 too) and punctuation such as the middle dot of
minority names (阿依古丽·买买提, U+00B7) are ordinary visible text and stay accepted.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from ledger.errors import FieldChecks, InvalidField

MAX_TEXT = 500  # a name, a title, a reference (as the API's Text)
MAX_REASON = 2000  # why something was corrected, voided, cancelled… (as the API's Reason)
MAX_LABEL = 200  # who or what an access token is for

_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_SPACES = frozenset({"Zs", "Zl", "Zp"})  # with str.isspace(): what is trimmed at either end
# Format characters (Cf) show nothing themselves but change how the text around them shows;
# surrogates (Cs) are halves of a character, never text on their own.
_HIDDEN = frozenset({"Cf", "Cs"})
_LINE_BREAKS = frozenset("\t\n\r")  # the only control characters a reason may hold
# Characters of other categories that show nothing either: the combining grapheme joiner, the
# Hangul fillers, the blank Braille pattern (an outside tester passed U+034F and U+3164).
_BLANK_LETTERS = frozenset("\u034f\u115f\u1160\u3164\uffa0\u2800")


def _invisible(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in _INVISIBLE or ch in _BLANK_LETTERS


def _space(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in _SPACES


def trimmed(value: str) -> str:
    """The text without spaces or line breaks at either end (other characters that show
    nothing stay, for `check_shown` to refuse)."""
    start, end = 0, len(value)
    while start < end and _space(value[start]):
        start += 1
    while end > start and _space(value[end - 1]):
        end -= 1
    return value[start:end]


# The ASCII characters that show nothing: the controls, the space and DEL.
_ASCII_INVISIBLE = "".join(map(chr, range(0x21))) + "\x7f"


def blank(value: str | None) -> bool:
    """Whether the text shows nothing at all (None, empty, spaces, zero-width characters)."""
    if value is None:
        return True
    if value.isascii():  # every record's source id: no look-up per character
        return not value.strip(_ASCII_INVISIBLE)
    return all(_invisible(ch) for ch in value)


def required(name: str, value: str | None) -> str:
    """The text trimmed, refused (InvalidField naming `name`) if it shows nothing."""
    if value is None or blank(value):
        raise InvalidField(f"{name} must not be empty", name)
    return trimmed(value)


def check_text(name: str, value: str | None, limit: int = MAX_TEXT) -> str:
    """A name, title or reference: not empty, trimmed, one line, nothing hidden in it, at most
    `limit` characters."""
    text = check_shown(name, check_one_line(name, required(name, value)))
    return check_length(name, text, limit)


def check_reason(reason: str, name: str = "reason") -> str:
    """Why something was corrected, voided, cancelled, closed or ended: not empty, trimmed,
    nothing hidden in it, at most MAX_REASON characters (it may run over several lines)."""
    text = required(name, reason)
    bad = next((ch for ch in text if unicodedata.category(ch) == "Cc"
                and ch not in _LINE_BREAKS), None)
    if bad is not None:
        raise InvalidField(f"{name} must not hold control characters other than line breaks "
                           f"and tabs (it holds {_described(bad)})", name)
    return check_length(name, check_shown(name, text), MAX_REASON)


def reason_checks(reason: str, refused: Iterable[str] = ()) -> FieldChecks:
    """A body of one reason (a void, a cancellation) checked as its write checks it
    (`check_reason`), for a body whose schema refused other fields (`refused`, held as
    refused)."""
    checks = FieldChecks(("reason",), refused)
    checks.run(check_reason, reason)
    return checks


def check_label(label: str | None) -> str:
    """A token's label: it may be empty; else as a name (one line, nothing hidden in it), at
    most MAX_LABEL characters. Returned trimmed."""
    text = trimmed(label or "")
    if not text:
        return ""
    return check_length("label", check_shown("label", check_one_line("label", text)), MAX_LABEL)


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


def check_shown(name: str, value: str) -> str:
    """The text, refused (InvalidField naming `name`) if it holds a character that shows
    nothing but changes how the text shows: a bidirectional override or isolate, a zero-width
    space or joiner, a byte-order mark (Unicode format characters), or half a surrogate pair.
    Joiners where a script or an emoji needs them are text (`_joins`)."""
    if value.isascii():  # no format character, selector or filler is ASCII
        return value
    bad = next((ch for i, ch in enumerate(value) if _hidden(ch) and not _joins(value, i)),
               None)
    if bad is not None:
        raise InvalidField(f"{name} must not hold invisible formatting characters such as "
                           f"bidirectional overrides or zero-width spaces (it holds "
                           f"{_described(bad)})", name)
    return value


# Characters that show nothing (Unicode's Default_Ignorable_Code_Point, beyond the format
# characters): selectors, fillers, invisible vowels, tags, and code points reserved as such
# (bb31 F1: "Alice\ufe0f" displayed as "Alice").
_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
              (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
              (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
              (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
              (0xE0000, 0xE0FFF))
# Scripts whose writing needs the zero-width (non-)joiner between letters, by block: Arabic
# (Uyghur, Persian; several blocks), Syriac, the Indic scripts, Mongolian.
_JOINING_SCRIPTS = (
    (0x0600, 0x06FF, "Arabic"), (0x0700, 0x074F, "Syriac"), (0x0750, 0x077F, "Arabic"),
    (0x08A0, 0x08FF, "Arabic"), (0x0900, 0x097F, "Devanagari"), (0x0980, 0x09FF, "Bengali"),
    (0x0A00, 0x0A7F, "Gurmukhi"), (0x0A80, 0x0AFF, "Gujarati"), (0x0B00, 0x0B7F, "Oriya"),
    (0x0B80, 0x0BFF, "Tamil"), (0x0C00, 0x0C7F, "Telugu"), (0x0C80, 0x0CFF, "Kannada"),
    (0x0D00, 0x0D7F, "Malayalam"), (0x0D80, 0x0DFF, "Sinhala"), (0x1800, 0x18AF, "Mongolian"),
    (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"))
_PICTOGRAPHS = ((0x2300, 0x23FF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x1F000, 0x1FAFF))
_HAN = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))
_MONGOLIAN_LETTERS = (0x1820, 0x18AF)
_ZWNJ, _ZWJ = "\u200c", "\u200d"
_TEXT_STYLE, _EMOJI_STYLE = "\ufe0e", "\ufe0f"
_BLACK_FLAG, _CANCEL_TAG = "\U0001f3f4", "\U000e007f"


def _in(ch: str, *ranges: tuple[int, int]) -> bool:
    return bool(ch) and any(low <= ord(ch) <= high for low, high in ranges)


# The same below the tags, as one set: `_hidden` runs for every character of every text.
_IGNORABLE_CHARS = _BLANK_LETTERS | frozenset(
    chr(c) for low, high in _IGNORABLE if high < 0xE0000 for c in range(low, high + 1))


def _hidden(ch: str) -> bool:
    """Whether a character shows nothing but may change how the text around it shows."""
    return (ch in _IGNORABLE_CHARS or unicodedata.category(ch) in _HIDDEN
            or "\U000e0000" <= ch <= "\U000e0fff")


def _script(ch: str) -> str | None:
    """The joining script of a letter or mark, if it is of one."""
    return next((name for low, high, name in _JOINING_SCRIPTS if low <= ord(ch) <= high), None)


def _base(value: str, i: int) -> str:
    """The character at `i`, or the one its combining marks sit on ("" if none)."""
    while i >= 0 and unicodedata.category(value[i])[0] == "M":
        i -= 1
    return value[i] if i >= 0 else ""


def _pictograph(ch: str) -> bool:
    return bool(ch) and unicodedata.category(ch) == "So" and _in(ch, *_PICTOGRAPHS)


def _emoji_before(value: str, i: int) -> bool:
    """Whether an emoji ends at `i`: a pictograph, maybe with its emoji style or skin tone."""
    if i >= 0 and (value[i] == _EMOJI_STYLE or 0x1F3FB <= ord(value[i]) <= 0x1F3FF):
        i -= 1
    return i >= 0 and _pictograph(value[i])


def _joins(value: str, i: int) -> bool:
    """Whether the invisible character at `i` is one a script or an emoji needs, where it
    needs it (bb29 F2: 👩‍⚕️, Persian and traditional Mongolian names were refused):
    - a zero-width (non-)joiner after a letter (or its marks) and before a letter of the same
      joining script;
    - a joiner between two emoji; an emoji or text style selector after a pictograph (or a
      keycap's digit);
    - an ideographic variation selector after a Han character (a rare name's glyph);
    - a Mongolian free variation selector after a Mongolian letter, the vowel separator
      between two;
    - the tags of a flag's sequence (🏴 and tags up to the cancel tag).
    Anywhere else (between Han or Latin letters, at either end, after a mark on another
    script's letter) they hide a difference between names that look alike (bb31 F2, F3)."""
    ch = value[i]
    before = value[i - 1] if i > 0 else ""
    after = value[i + 1] if i + 1 < len(value) else ""
    if not before:
        return False
    if ch in (_ZWNJ, _ZWJ):
        base = _base(value, i - 1)
        script = _script(base) if base and unicodedata.category(base)[:1] == "L" else None
        if script is not None and after and unicodedata.category(after)[:1] == "L" \
                and _script(after) == script:
            return True
        return ch == _ZWJ and _emoji_before(value, i - 1) and _pictograph(after)
    if ch in (_TEXT_STYLE, _EMOJI_STYLE):
        return _pictograph(before) or (before in "0123456789#*" and after == "\u20e3")
    if 0xE0100 <= ord(ch) <= 0xE01EF:
        return _in(before, *_HAN)
    if ch in "\u180b\u180c\u180d\u180f":
        return _in(before, _MONGOLIAN_LETTERS)
    if ch == "\u180e":
        return _in(before, _MONGOLIAN_LETTERS) and _in(after, _MONGOLIAN_LETTERS)
    if 0xE0020 <= ord(ch) <= 0xE007F:
        start = end = i
        while start > 0 and 0xE0020 <= ord(value[start - 1]) <= 0xE007E:
            start -= 1
        while end < len(value) and 0xE0020 <= ord(value[end]) <= 0xE007E:
            end += 1
        return (start > 0 and value[start - 1] == _BLACK_FLAG and end > start
                and end < len(value) and value[end] == _CANCEL_TAG)
    return False


def check_length(name: str, value: str, limit: int) -> str:
    """The text, refused (InvalidField naming `name`) if longer than `limit` characters."""
    if len(value) > limit:
        raise InvalidField(f"{name} must be at most {limit} characters (it has {len(value)})",
                           name)
    return value


def _described(ch: str) -> str:
    """U+202E RIGHT-TO-LEFT OVERRIDE: the code point, and its name when it has one."""
    code = f"U+{ord(ch):04X}"
    try:
        return f"{code} {unicodedata.name(ch)}"
    except ValueError:  # control characters and surrogates have no name
        return code


def article(word: str) -> str:
    """"a" or "an" before a word of the catalogue (an organisation, a school)."""
    return "an" if word[:1].lower() in "aeiou" else "a"
