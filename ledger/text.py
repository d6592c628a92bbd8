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

from ledger.errors import InvalidField

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


def blank(value: str | None) -> bool:
    """Whether the text shows nothing at all (None, empty, spaces, zero-width characters)."""
    return value is None or all(_invisible(ch) for ch in value)


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
    bad = next((ch for i, ch in enumerate(value)
                if (unicodedata.category(ch) in _HIDDEN or ch in _BLANK_LETTERS)
                and not _joins(value, i)), None)
    if bad is not None:
        raise InvalidField(f"{name} must not hold invisible formatting characters such as "
                           f"bidirectional overrides or zero-width spaces (it holds "
                           f"{_described(bad)})", name)
    return value


# Scripts whose writing needs the zero-width (non-)joiner between letters: Arabic (Uyghur,
# Persian), Syriac, the Indic scripts, Mongolian. Ranges of code points.
_JOINING_SCRIPTS = ((0x0600, 0x08FF), (0x0900, 0x0DFF), (0x1800, 0x18AF), (0xFB50, 0xFDFF),
                    (0xFE70, 0xFEFF))
_MONGOLIAN_LETTERS = (0x1820, 0x18AF)
_ZWNJ, _ZWJ = "\u200c", "\u200d"
# Format (Cf), unlike the Mongolian free variation selectors (Mn, accepted as marks).
_MONGOLIAN_VOWEL_SEPARATOR = "\u180e"


def _in(ch: str, *ranges: tuple[int, int]) -> bool:
    return any(low <= ord(ch) <= high for low, high in ranges)


def _joining_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LM" and _in(ch, *_JOINING_SCRIPTS)


def _emoji(ch: str) -> bool:
    """A pictograph, or what may follow one inside an emoji sequence (a skin tone, VS16)."""
    return unicodedata.category(ch) == "So" or ch == "\ufe0f" or 0x1F3FB <= ord(ch) <= 0x1F3FF


def _joins(value: str, i: int) -> bool:
    """Whether the format character at `i` is one a script or an emoji needs, where it needs
    it (bb29 F2: 👩‍⚕️, Persian and traditional Mongolian names were refused): a zero-width
    (non-)joiner between two letters of a joining script, a joiner inside an emoji sequence,
    the Mongolian vowel separator between two Mongolian letters. Between Han or Latin
    letters, and at either end, they still hide a difference between names that look alike,
    and stay refused."""
    if i == 0 or i == len(value) - 1:
        return False
    before, ch, after = value[i - 1], value[i], value[i + 1]
    if ch in (_ZWNJ, _ZWJ) and _joining_letter(before) and _joining_letter(after):
        return True
    if ch == _ZWJ:
        return _emoji(before) and unicodedata.category(after) == "So"
    if ch == _MONGOLIAN_VOWEL_SEPARATOR:
        return _in(before, _MONGOLIAN_LETTERS) and _in(after, _MONGOLIAN_LETTERS)
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
