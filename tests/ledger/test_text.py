"""Free text: names, titles, reasons and labels show what they hold, and no more."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.errors import InvalidField
from ledger.text import (
    MAX_LABEL,
    MAX_REASON,
    MAX_TEXT,
    _invisible,
    blank,
    check_label,
    check_reason,
    check_text,
)
from tests.factories import ADMIN, CST, make_activity, make_unit, make_volunteer, session_record

# Bidirectional overrides, embeddings and isolates (a "Trojan source" spoof), zero-width
# characters and marks, the byte-order mark, a soft hyphen, the Arabic letter mark.
HIDDEN = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
          "\u2069", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\ufeff",
          "\u00ad", "\u061c",
          # and characters of other kinds that show nothing: the combining grapheme joiner,
          # the Hangul fillers, the blank Braille pattern
          "\u034f", "\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"]
SHOWN = ["阿依古丽·买买提", "买买提・艾力", "列东街道\u3000沙洲社区", "Anna\u00a0Lee", "林 小梅",
         "“学雷锋”志愿服务（第1期）", "B5 – 3·5 学雷锋纪念日"]


@pytest.mark.parametrize("ch", HIDDEN, ids=[f"U+{ord(c):04X}" for c in HIDDEN])
def test_a_name_hiding_a_format_character_is_refused_naming_it(ch: str) -> None:
    with pytest.raises(InvalidField) as refused:
        check_text("name", f"林小梅{ch}李四")
    assert refused.value.field == "name"
    assert f"U+{ord(ch):04X}" in refused.value.message


def test_a_right_to_left_override_is_named_in_words() -> None:
    with pytest.raises(InvalidField, match=r"U\+202E RIGHT-TO-LEFT OVERRIDE"):
        check_text("title", "关爱\u202e老人")


@pytest.mark.parametrize("text", SHOWN)
def test_chinese_spaces_and_the_middle_dot_of_minority_names_are_kept(text: str) -> None:
    assert check_text("name", text) == text
    assert check_reason(text) == text


@pytest.mark.parametrize("text", ["\ufeff列东街道", "列东街道\u200b", "\u202e列东街道 ",
                                  " \u2066列东街道"])
def test_format_characters_at_either_end_are_refused_not_trimmed(text: str) -> None:
    # bb28 F2: trimmed, "\u202eabc" was stored as "abc" and answered as if stored as sent.
    with pytest.raises(InvalidField, match="invisible formatting characters") as refused:
        check_text("name", text)
    assert refused.value.field == "name"


def test_only_spaces_and_line_breaks_are_trimmed() -> None:
    assert check_text("name", " \u3000列东街道\u00a0 ") == "列东街道"
    assert check_reason("\n 录入错误 \t\r\n") == "录入错误"


@pytest.mark.parametrize("ch", ["\u202e", "\u200b", "\ufeff", "\x00", "\x1b", "\x7f"],
                         ids=["rlo", "zwsp", "bom", "nul", "esc", "del"])
def test_a_reason_hiding_a_format_or_control_character_is_refused_naming_it(ch: str) -> None:
    with pytest.raises(InvalidField) as refused:
        check_reason(f"录入错误{ch}更正")
    assert refused.value.field == "reason"
    assert f"U+{ord(ch):04X}" in refused.value.message


def test_a_reason_may_run_over_several_lines_with_tabs() -> None:
    assert check_reason("第一行\r\n第二行\t说明") == "第一行\r\n第二行\t说明"


def test_texts_and_reasons_have_a_longest_length() -> None:
    assert check_text("name", "名" * MAX_TEXT) == "名" * MAX_TEXT
    with pytest.raises(InvalidField, match=f"at most {MAX_TEXT} characters"):
        check_text("name", "名" * (MAX_TEXT + 1))
    with pytest.raises(InvalidField, match=f"at most {MAX_REASON} characters"):
        check_reason("因" * (MAX_REASON + 1))


def test_a_label_may_be_empty_or_blank() -> None:
    assert check_label("") == ""
    assert check_label(" \u3000 ") == ""
    for hidden in (" \u200b ", "\x00", "\x00\u202e"):  # bb28 F2: stored as ""
        with pytest.raises(InvalidField) as refused:
            check_label(hidden)
        assert refused.value.field == "label"


def test_a_label_is_at_most_200_characters_trimmed() -> None:
    assert check_label("  ci  ") == "ci"
    assert check_label("x" * MAX_LABEL) == "x" * MAX_LABEL
    with pytest.raises(InvalidField) as refused:
        check_label("x" * 100_000)
    assert refused.value.field == "label"
    assert f"at most {MAX_LABEL} characters" in refused.value.message


@pytest.mark.parametrize("label", ["evil\nforged", "admin\u202egnal", "a\u200bb"])
def test_a_label_is_one_line_with_nothing_hidden(label: str) -> None:
    with pytest.raises(InvalidField) as refused:
        check_label(label)
    assert refused.value.field == "label"


@pytest.mark.parametrize("text", [
    "护士👩\u200d⚕️志愿服务",  # an emoji sequence: woman, ZWJ, staff of Aesculapius, VS16
    "家庭👨\u200d👩\u200d👧",
    "مهر\u200cناز",  # a Persian name with a zero-width non-joiner
    "ئابدۇ\u200cرېھىم",  # Uyghur (Arabic script)
    "ᠮᠣᠩᠭᠣᠯ\u180eᠠ",  # traditional Mongolian: the vowel separator between two letters
    "ᠪᠠ\u180bᠲᠤ",  # a Mongolian free variation selector after a Mongolian letter
    "क्\u200dष",  # Devanagari: a joiner after a virama
    "👩🏽\u200d⚕️", "❤️志愿", "1\ufe0f\u20e3号",  # skin tone, emoji style, a keycap
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f队",  # a flag (bb31 F7)
    "葛\U000e0100",  # an ideographic variation selector on a Han character
])
def test_joiners_that_a_script_or_an_emoji_needs_are_text(text: str) -> None:
    # bb29 F2: all of these were refused as hidden characters.
    assert check_text("name", text) == text


@pytest.mark.parametrize("text", [
    "张\u200d三", "Li\u200cLei", "志愿\u200c者",  # between Han or Latin letters: hidden
    "\u200d👩护士", "护士👩\u200d", "👩\u200d张",  # at an end, or not joining two pictographs
    "مهر\u200c", "\u180eᠠ", "ᠠ\u180ea",  # not between two letters of the script
    # bb31 F1: selectors and other invisible characters where nothing needs them.
    "Alice\ufe0f", "\u180bAlice", "a\u17b4b", "a\u2065b", "a\ufff0b", "A\U000e0100",
    "\U000e0067\U000e007f队", "🏴\U000e0067队", "x\u00adb",
    # bb31 F2, F3: a mark or selector in front of the joiner, or two scripts around it.
    "Team A\ufe0f\u200d👩", "王\u064e\u200dب", "©\u200d👩", "क\u200dب", "ب\u200dᠠ",
])
def test_joiners_elsewhere_are_still_refused(text: str) -> None:
    with pytest.raises(InvalidField, match="invisible formatting characters"):
        check_text("name", text)


def test_a_source_record_id_or_a_place_of_hidden_characters_is_refused(
        ledger: Ledger) -> None:
    # bb31 F4: "SRC1" and "SRC1\u200b" were two records that look the same; F5: a place of
    # only a zero-width space was stored as no place.
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    result = ledger.record_sessions(ADMIN, [session_record(
        volunteer, activity, source_record_id="SRC1\u200b")])
    error = result.outcomes[0].error
    assert isinstance(error, InvalidField) and error.field == "source_record_id"
    unit = make_unit(ledger)
    with pytest.raises(InvalidField) as refused:
        ledger.plan_activity(ADMIN, "B1", unit, "活动", datetime(2017, 3, 5, 8, tzinfo=CST),
                             datetime(2017, 3, 5, 18, tzinfo=CST), place="\u200b")
    assert refused.value.field == "place"


_PIECES = ["a", "张", "ب", "क", "्", "ᠠ", "\u200d", "\u200c", "\ufe0f", "\u180e", "\u180b", "👩",
           "⚕", "🏽", "\U000e0067", "\U000e007f", "🏴", "\U000e0100", " ", "\u064e", "\u20e3",
           "1", "\u0301"]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.text(max_size=12),
                 st.lists(st.sampled_from(_PIECES), min_size=1, max_size=8).map("".join)))
def test_any_text_is_accepted_or_refused_naming_the_field_never_a_crash(text: str) -> None:
    # A mark with no letter before a joiner made the joiner rule raise TypeError (a 500).
    for check in (lambda t: check_text("name", t), check_reason, check_label):
        try:
            check(text)
        except InvalidField as refused:
            assert refused.field in ("name", "reason", "label")


@given(st.one_of(
    # Mostly characters that show nothing, where the answers can differ.
    st.text(alphabet=st.sampled_from([chr(i) for i in (*range(0x21), 0x7F, 0x41)])),
    st.text(alphabet=st.characters(max_codepoint=0x7F)),
    st.text()))
def test_blank_means_every_character_shows_nothing(value: str) -> None:
    # ASCII text takes a shortcut; it must answer what a look at each character would.
    assert blank(value) == all(_invisible(ch) for ch in value)
