"""Personal information is protected: phone and id numbers are never shown in full."""

from __future__ import annotations

from datetime import date
from typing import Any

from ledger.sealing import ERASED, HOLDERS

MIN_HIDDEN = 4


def id_birth_digits(number: str) -> str:
    """The YYYYMMDD a resident id number (GB 11643-1999) holds as its date of birth: digits 7
    to 14, or on the 15-digit form 7 to 12 of a year of the 1900s."""
    return number[6:14] if len(number) == 18 else "19" + number[6:12]


def id_birth(number: Any) -> str | None:
    """The date of birth (ISO) a resident id number holds, if it is one and the date is real."""
    if not isinstance(number, str) or len(number) not in (15, 18) or not number[:14].isdigit():
        return None
    digits = id_birth_digits(number)
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:])).isoformat()
    except ValueError:
        return None


def mask(value: str | None, keep_start: int, keep_end: int) -> str | None:
    """Keep at most the first `keep_start` and last `keep_end` digits (or letters) of a value
    and star out the rest, hiding always at least four of them and a third: a 138****5678
    mobile number, but an 8-digit landline as ****2345, not 823*2345.

    Separators (spaces, hyphens, a leading +) stay where they are and are not counted: bb14
    found `1-2-3-4-5-6` shown as `1-2****-5-6`, four of its six digits visible."""
    if value is None or value == ERASED:
        return value
    marks = [i for i, c in enumerate(value) if c.isalnum()]
    count = len(marks)
    hidden = max(MIN_HIDDEN, -(-count // 3))
    visible = max(0, count - hidden)
    keep_end = min(keep_end, visible)
    keep_start = min(keep_start, visible - keep_end)
    starred = set(marks[keep_start:count - keep_end])
    return "".join("*" if i in starred else c for i, c in enumerate(value))


def mask_phone(phone: str | None) -> str | None:
    return mask(phone, 3, 4)


def mask_id_number(id_number: str | None) -> str | None:
    """Its first and last character only. A resident id number is a 6-digit area, the birth
    date, a 3-digit sequence and a check character: shown as 3504**********1234 beside the
    volunteer's birth date, it left two digits of the area unknown, which the district's few
    area codes and the check character settled (bb15 F1)."""
    return mask(id_number, 1, 1)


def masked(personal: dict[str, Any]) -> dict[str, Any]:
    """A copy of personal data with the sensitive fields masked."""
    out = dict(personal)
    if "phone" in out:
        out["phone"] = mask_phone(out["phone"])
    if "id_number" in out:
        out["id_number"] = mask_id_number(out["id_number"])
    return out


def masked_event_data(data: dict[str, Any]) -> dict[str, Any]:
    """Event data with personal fields masked wherever they appear (registration, updates)."""
    out = dict(data)
    for key in HOLDERS:
        if isinstance(out.get(key), dict):
            out[key] = masked(out[key])
    return masked(out)
