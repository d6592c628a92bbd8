"""Masking hides enough of every phone or id number, whatever its length."""

from __future__ import annotations

import pytest

from ledger.privacy import mask_id_number, mask_phone


@pytest.mark.parametrize(("phone", "shown"), [
    ("13812345678", "138****5678"),   # a mobile number, as Chinese services show it
    ("82312345", "****2345"),         # a landline: 4 of 8 hidden, not 1
    ("+8613812345678", "+861******5678"),  # 13 digits: 6 hidden, the + is not one of them
    ("1-2-3-4-5-6", "*-*-*-*-5-6"),  # bb14 F3: separators are not digits
    ("138 1234 5678", "138 **** 5678"),
    ("010-8231-2345", "010-****-2345"),  # 11 digits, as a mobile number
    ("12345", "****5"),
    ("1234", "****"),
    ("", ""),
    (None, None),
])
def test_a_phone_keeps_at_most_its_head_and_tail_and_hides_a_third(
        phone: str | None, shown: str | None) -> None:
    assert mask_phone(phone) == shown


def test_an_id_number_shows_its_first_and_last_character_only() -> None:
    """Neither the birth date (shown beside it) nor the sequence digits: with those, the area
    code's few candidates and the check character give the whole number away (bb15 F1)."""
    assert mask_id_number("110101199003074514") == "1****************4"
    assert mask_id_number("11010119900307451X") == "1****************X"
    assert mask_id_number("110101900307451") == "1*************1"  # the old 15 digits


@pytest.mark.parametrize("length", range(0, 30))
def test_at_least_four_characters_and_a_third_are_always_hidden(length: int) -> None:
    value = "".join(str(i % 10) for i in range(length))
    for masked in (mask_phone(value), mask_id_number(value)):
        assert masked is not None and len(masked) == length
        assert masked.count("*") >= min(length, max(4, -(-length // 3)))
