"""shared.personal: phone and ID normalisation, masking and the keyed subject hash (contract §1, §2)."""

from __future__ import annotations

import random
import re
import string
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.personal import (
    id_check_digit,
    mask_address,
    mask_id_number,
    mask_name,
    mask_phone,
    mask_subject,
    normalize_id_number,
    normalize_phone,
    subject_key,
)
from tests.factories import mobile, valid_id_number

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)

KNOWN_ID = "110101199003078515"
CHECK_CHARS = "0123456789X"
NO_STAR = st.characters(exclude_characters="*")


# --------------------------------------------------------------------------- strategies


def _mobile(second: str, rest: int) -> str:
    return f"1{second}{rest:09d}"


mobiles = st.builds(_mobile, st.sampled_from("3456789"), st.integers(0, 999_999_999))


@st.composite
def with_separators(draw: st.DrawFn, digits: str) -> str:
    """`digits` with spaces or dashes (or nothing) drawn into each gap."""
    gaps = draw(st.lists(st.sampled_from(["", " ", "-", "  ", " - "]), min_size=len(digits), max_size=len(digits)))
    return "".join(d + g for d, g in zip(digits, gaps, strict=True)).rstrip(" -")


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=string.digits, min_size=n, max_size=n)


# A fixed line in international form: the area code without its trunk 0 (not starting with 0 or 1,
# e.g. 532 Qingdao, 21 Shanghai, 755 Shenzhen) followed by a local number; 9 to 11 digits in all.
fixed_lines_international = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("23456789"),
    st.integers(8, 10).flatmap(_digits),
)

# A fixed line in domestic form: "0" + a non-zero digit + 8 to 10 more digits (10 to 12 digits in all).
fixed_lines_domestic = st.builds(
    lambda first, rest: "0" + first + rest,
    st.sampled_from("123456789"),
    st.integers(8, 10).flatmap(_digits),
)


def _id_from(area: int, born: date, sequence: int) -> str:
    first17 = f"{area:06d}{born:%Y%m%d}{sequence:03d}"
    return first17 + id_check_digit(first17)


birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31))
id_numbers = st.builds(_id_from, st.integers(0, 999_999), birth_dates, st.integers(0, 999))


@st.composite
def id_numbers_ending_in_x(draw: st.DrawFn) -> str:
    area = draw(st.integers(0, 999_999))
    born = draw(birth_dates)
    start = draw(st.integers(0, 999))
    for offset in range(1000):
        candidate = _id_from(area, born, (start + offset) % 1000)
        if candidate.endswith("X"):
            return candidate
    raise AssertionError("unreachable: some sequence number always gives check digit X")


def _iso7064_valid(id_number: str) -> bool:
    """ISO 7064 MOD 11-2, from its definition: sum(a_i * 2^(18-i)) over all 18 positions == 1 (mod 11)."""
    values = [10 if c == "X" else int(c) for c in id_number]
    return sum(v * pow(2, 17 - i, 11) for i, v in enumerate(values)) % 11 == 1


# --------------------------------------------------------------------------- normalize_phone: mobiles


@PROPERTY
@given(mobiles)
def test_a_valid_mobile_normalises_to_itself(phone: str) -> None:
    assert normalize_phone(phone) == phone


@PROPERTY
@given(mobiles, st.sampled_from(["+86 ", "+86", "86", "86 ", "0086", "0086 ", "+86-", "(+86) "]))
def test_a_mobile_with_a_country_prefix_normalises_to_the_bare_number(phone: str, prefix: str) -> None:
    assert normalize_phone(prefix + phone) == phone


@PROPERTY
@given(st.data(), mobiles, st.sampled_from(["", "+86 ", "86", "0086 "]))
def test_a_mobile_with_spaces_and_dashes_normalises_to_digits_only(
    data: st.DataObject, phone: str, prefix: str
) -> None:
    written = prefix + data.draw(with_separators(phone))
    assert normalize_phone(written) == phone


@pytest.mark.parametrize(
    "written",
    ["+86 138-0013-8000", "+86 138 0013 8000", "86-13800138000", "0086 13800138000", " 138 0013 8000 "],
)
def test_known_mobile_forms_normalise_to_13800138000(written: str) -> None:
    assert normalize_phone(written) == "13800138000"


@PROPERTY
@given(st.sampled_from("012"), _digits(9))
def test_an_11_digit_number_from_1_with_second_digit_0_to_2_is_rejected(second: str, rest: str) -> None:
    with pytest.raises(ValueError, match="neither"):
        normalize_phone("1" + second + rest)


@PROPERTY
@given(mobiles, st.sampled_from([-1, 1]))
def test_a_mobile_one_digit_too_short_or_too_long_is_rejected(phone: str, change: int) -> None:
    written = phone[:-1] if change < 0 else phone + "0"
    with pytest.raises(ValueError):
        normalize_phone(written)


@PROPERTY
@given(mobiles, st.integers(0, 10), st.sampled_from(string.ascii_letters + "#*.+/"))
def test_a_mobile_with_a_letter_or_symbol_inside_is_rejected(phone: str, at: int, junk: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(phone[:at] + junk + phone[at:])


@pytest.mark.parametrize("written", ["+1 415 555 0100", "+44 20 7946 0958", "+852 2345 6789"])
def test_a_foreign_country_code_is_rejected_with_a_message_naming_86(written: str) -> None:
    with pytest.raises(ValueError, match=r"\+86"):
        normalize_phone(written)


@pytest.mark.parametrize(
    "written",
    [
        "",
        "   ",
        "-",
        "+86",
        "abc",
        "1380013800O",  # a letter O instead of a zero
        "１３８００１３８０００",  # full-width digits
        "138٠٠١٣٨٠٠٠",  # Arabic-Indic digits
        "13800138000\x00",
        "00532123456789",  # "00" is neither a trunk prefix nor 0086
    ],
)
def test_text_that_is_not_a_phone_number_is_rejected(written: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(written)


# --------------------------------------------------------------------------- normalize_phone: fixed lines


@PROPERTY
@given(fixed_lines_domestic)
def test_a_fixed_line_with_trunk_0_and_area_code_normalises_to_itself(phone: str) -> None:
    assert normalize_phone(phone) == phone


@PROPERTY
@given(st.data(), fixed_lines_domestic)
def test_a_fixed_line_with_separators_normalises_to_its_digits(data: st.DataObject, phone: str) -> None:
    assert normalize_phone(data.draw(with_separators(phone))) == phone


@PROPERTY
@given(fixed_lines_international, st.sampled_from(["+86 ", "+86", "0086 ", "0086", "86 ", "86"]))
def test_a_fixed_line_in_international_form_gets_its_trunk_0_back(national: str, prefix: str) -> None:
    assert normalize_phone(prefix + national) == "0" + national


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("0532-12345678", "053212345678"),
        ("(0532) 1234 5678", "053212345678"),
        ("010-12345678", "01012345678"),
        ("021 6123 4567", "02161234567"),
        ("+86 532 12345678", "053212345678"),
        ("+86 0532 12345678", "053212345678"),
        ("0086 21 61234567", "02161234567"),
        ("0755-1234567", "07551234567"),
    ],
)
def test_known_fixed_line_forms(written: str, expected: str) -> None:
    assert normalize_phone(written) == expected


@pytest.mark.parametrize("written", ["+86 10 1234 5678", "0086 10 12345678", "86 10 12345678"])
def test_a_beijing_fixed_line_in_international_form_is_accepted(written: str) -> None:
    assert normalize_phone(written) == "01012345678"


@pytest.mark.parametrize(
    "written",
    [
        "0532123",  # far too short
        "053212345",  # 0 + 8 digits
        "0532123456789",  # 0 + 12 digits
        "0012345678",  # no area code starts with 0
    ],
)
def test_a_fixed_line_of_the_wrong_length_or_shape_is_rejected(written: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(written)


@PROPERTY
@given(st.text(alphabet=string.digits + " -+()x", max_size=20))
def test_normalize_phone_returns_a_mobile_or_a_0_fixed_line_or_raises_value_error(written: str) -> None:
    try:
        phone = normalize_phone(written)
    except ValueError:
        return
    assert phone.isascii()
    assert phone.isdigit()
    is_mobile = len(phone) == 11 and phone[0] == "1" and phone[1] in "3456789"
    is_fixed = phone[0] == "0" and phone[1] != "0" and 10 <= len(phone) <= 12
    assert is_mobile or is_fixed
    assert normalize_phone(phone) == phone  # idempotent


# --------------------------------------------------------------------------- normalize_id_number


def test_the_known_id_number_is_valid() -> None:
    assert normalize_id_number(KNOWN_ID) == KNOWN_ID
    assert id_check_digit(KNOWN_ID[:17]) == "5"


def test_the_textbook_id_number_with_check_digit_x_is_valid() -> None:
    assert id_check_digit("11010519491231002") == "X"
    assert normalize_id_number("11010519491231002X") == "11010519491231002X"
    assert normalize_id_number("11010519491231002x") == "11010519491231002X"


@PROPERTY
@given(id_numbers)
def test_17_digits_with_a_valid_date_and_the_computed_check_digit_are_accepted(id_number: str) -> None:
    assert normalize_id_number(id_number) == id_number


@PROPERTY
@given(id_numbers)
def test_id_check_digit_satisfies_iso_7064_mod_11_2(id_number: str) -> None:
    assert id_number[17] in CHECK_CHARS
    assert _iso7064_valid(id_number)


@PROPERTY
@given(id_numbers, st.sampled_from(CHECK_CHARS))
def test_any_other_check_digit_is_rejected(id_number: str, other: str) -> None:
    if other == id_number[17]:
        other = CHECK_CHARS[(CHECK_CHARS.index(other) + 1) % len(CHECK_CHARS)]
    with pytest.raises(ValueError, match="check digit"):
        normalize_id_number(id_number[:17] + other)


@PROPERTY
@given(id_numbers, st.integers(0, 16), st.integers(1, 9))
def test_changing_any_one_of_the_first_17_digits_is_detected(id_number: str, at: int, delta: int) -> None:
    changed = str((int(id_number[at]) + delta) % 10)
    tampered = id_number[:at] + changed + id_number[at + 1 :]
    with pytest.raises(ValueError):
        normalize_id_number(tampered)


@PROPERTY
@given(id_numbers_ending_in_x())
def test_a_lowercase_x_check_digit_is_accepted_and_normalised_to_uppercase(id_number: str) -> None:
    assert normalize_id_number(id_number[:17] + "x") == id_number
    assert normalize_id_number(id_number) == id_number


@PROPERTY
@given(id_numbers, st.sampled_from([" ", "\t", "\n", "  "]))
def test_surrounding_whitespace_is_ignored(id_number: str, space: str) -> None:
    assert normalize_id_number(space + id_number + space) == id_number


@PROPERTY
@given(st.text(alphabet=string.digits, max_size=30).filter(lambda s: len(s) != 18))
def test_a_digit_string_of_any_length_but_18_is_rejected(digits: str) -> None:
    with pytest.raises(ValueError, match="18 characters"):
        normalize_id_number(digits)


@PROPERTY
@given(id_numbers, st.integers(0, 16), st.sampled_from(string.ascii_letters + "-_.*"))
def test_a_letter_or_symbol_among_the_first_17_is_rejected(id_number: str, at: int, junk: str) -> None:
    with pytest.raises(ValueError, match="17 digits"):
        normalize_id_number(id_number[:at] + junk + id_number[at + 1 :])


@PROPERTY
@given(id_numbers, st.sampled_from("ABYZyz-*_"))
def test_a_check_character_other_than_a_digit_or_x_is_rejected(id_number: str, junk: str) -> None:
    with pytest.raises(ValueError, match="digit or X"):
        normalize_id_number(id_number[:17] + junk)


def test_full_width_digits_are_rejected() -> None:
    full_width = KNOWN_ID[:17].translate(str.maketrans(string.digits, "０１２３４５６７８９")) + "5"
    with pytest.raises(ValueError):
        normalize_id_number(full_width)


def _with_birth_digits(yyyymmdd: str) -> str:
    first17 = "110101" + yyyymmdd + "123"
    return first17 + id_check_digit(first17)


@pytest.mark.parametrize(
    "yyyymmdd",
    [
        "19900230",  # 30 February
        "20000230",
        "19900229",  # 29 February in a common year
        "19000229",  # 1900 is not a leap year
        "19900431",  # 31 April
        "19901301",  # month 13
        "19900001",  # month 00
        "19900100",  # day 00
        "19900132",  # day 32
        "18991231",  # before 1900
        "00000101",
    ],
)
def test_an_impossible_birth_date_is_rejected_even_with_a_correct_check_digit(yyyymmdd: str) -> None:
    with pytest.raises(ValueError, match="birth date"):
        normalize_id_number(_with_birth_digits(yyyymmdd))


def test_29_february_of_a_leap_year_is_accepted() -> None:
    id_number = _with_birth_digits("20000229")
    assert normalize_id_number(id_number) == id_number


def _is_calendar_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


@PROPERTY
@given(
    st.tuples(st.integers(1900, 2025), st.integers(0, 99), st.integers(0, 99)).filter(
        lambda ymd: not _is_calendar_date(*ymd)
    )
)
def test_any_non_calendar_birth_date_is_rejected(ymd: tuple[int, int, int]) -> None:
    year, month, day = ymd
    with pytest.raises(ValueError, match="birth date"):
        normalize_id_number(_with_birth_digits(f"{year:04d}{month:02d}{day:02d}"))


def test_factory_id_numbers_are_valid() -> None:
    rng = random.Random(20261121)
    for _ in range(200):
        id_number = valid_id_number(rng)
        assert normalize_id_number(id_number) == id_number


# --------------------------------------------------------------------------- masking


def test_mask_phone_of_a_mobile_keeps_the_first_3_and_last_4_digits() -> None:
    assert mask_phone("13800138000") == "138****8000"


def test_mask_phone_of_a_fixed_line_keeps_the_first_3_and_last_4_digits() -> None:
    assert mask_phone("053212345678") == "053*****5678"


@pytest.mark.parametrize("empty", [None, ""])
def test_mask_phone_passes_none_and_empty_through(empty: str | None) -> None:
    assert mask_phone(empty) == empty


@pytest.mark.parametrize("short", ["1", "12", "1234567"])
def test_mask_phone_of_7_characters_or_fewer_reveals_nothing(short: str) -> None:
    assert mask_phone(short) == "*" * len(short)


@PROPERTY
@given(mobiles)
def test_a_masked_mobile_shows_only_its_first_3_and_last_4_digits(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked == phone[:3] + "****" + phone[-4:]
    assert masked != phone


@PROPERTY
@given(st.one_of(mobiles, fixed_lines_domestic, st.text(alphabet=string.digits, min_size=1, max_size=24)))
def test_mask_phone_never_reveals_more_than_the_first_3_and_last_4_characters(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked is not None
    assert len(masked) == len(phone)
    assert masked != phone
    for i, shown in enumerate(masked):
        if shown != "*":
            assert i < 3 or i >= len(phone) - 4
            assert shown == phone[i]
    assert sum(c != "*" for c in masked) <= 7


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三", "张*"), ("欧阳娜娜", "欧***"), ("张", "张*"), ("Li", "L*"), (None, None), ("", "")],
)
def test_mask_name_keeps_only_the_first_character(name: str | None, masked: str | None) -> None:
    assert mask_name(name) == masked


@PROPERTY
@given(st.text(alphabet=NO_STAR, min_size=1, max_size=20))
def test_a_masked_name_is_never_the_name(name: str) -> None:
    masked = mask_name(name)
    assert masked is not None
    assert masked != name
    assert masked[0] == name[0]
    assert set(masked[1:]) == {"*"}


def test_mask_id_number_keeps_the_first_2_and_last_2_characters() -> None:
    assert mask_id_number(KNOWN_ID) == "11" + "*" * 14 + "15"


@pytest.mark.parametrize("empty", [None, ""])
def test_mask_id_number_passes_none_and_empty_through(empty: str | None) -> None:
    assert mask_id_number(empty) == empty


@PROPERTY
@given(id_numbers)
def test_a_masked_id_number_hides_the_birth_date_and_sequence(id_number: str) -> None:
    masked = mask_id_number(id_number)
    assert masked is not None
    assert len(masked) == 18
    assert masked[2:16] == "*" * 14
    assert masked[:2] == id_number[:2]
    assert masked[-2:] == id_number[-2:]
    assert masked != id_number


@pytest.mark.parametrize(
    ("address", "masked"),
    [("XX路12号", "XX****"), ("青岛市市南区太平角一路8号", "青岛****"), ("甲", "甲****"), (None, None), ("", "")],
)
def test_mask_address_keeps_at_most_the_first_2_characters(address: str | None, masked: str | None) -> None:
    assert mask_address(address) == masked


@PROPERTY
@given(st.text(min_size=3, max_size=60))
def test_a_masked_address_reveals_no_character_after_the_second(address: str) -> None:
    masked = mask_address(address)
    assert masked == address[:2] + "****"


def test_mask_subject_masks_the_four_personal_fields_and_keeps_the_rest() -> None:
    subject = {
        "phone": "13800138000",
        "name": "张三",
        "id_number": KNOWN_ID,
        "address": "XX路12号",
        "residency": "resident",
    }
    assert mask_subject(subject) == {
        "phone": "138****8000",
        "name": "张*",
        "id_number": "11**************15",
        "address": "XX****",
        "residency": "resident",
    }


def test_mask_subject_does_not_change_its_argument() -> None:
    subject = {"phone": "13800138000", "name": "张三", "id_number": KNOWN_ID, "address": "XX路12号"}
    before = dict(subject)
    mask_subject(subject)
    assert subject == before


def test_mask_subject_with_missing_fields_gives_none_for_them() -> None:
    assert mask_subject({"phone": "13800138000", "residency": "unknown"}) == {
        "phone": "138****8000",
        "name": None,
        "id_number": None,
        "address": None,
        "residency": "unknown",
    }


@PROPERTY
@given(
    mobiles,
    id_numbers,
    st.text(alphabet=NO_STAR, min_size=2, max_size=8),
    st.text(alphabet=NO_STAR, min_size=3, max_size=30),
)
def test_a_masked_subject_contains_no_full_personal_value(phone: str, id_number: str, name: str, address: str) -> None:
    masked = mask_subject({"phone": phone, "name": name, "id_number": id_number, "address": address})
    assert masked["phone"] != phone
    assert masked["id_number"] != id_number
    assert masked["name"] != name
    assert masked["address"] != address
    assert phone not in str(masked.values())
    assert id_number[6:14] not in str(masked.values())  # the birth date


# --------------------------------------------------------------------------- subject_key


def test_subject_key_is_a_stable_keyed_hash() -> None:
    # Pinned: the key is stored and used as the Kafka key; changing it would split every subject's history.
    assert subject_key("test-subject-secret", phone="13800138000", id_number=None) == (
        "d28d37c741296abfc4c97657c6cce74b"
    )
    assert subject_key("test-subject-secret", phone=None, id_number=KNOWN_ID) == ("7e0fc89ff155739064d4530d7b806ecf")


@PROPERTY
@given(mobiles, st.one_of(st.none(), id_numbers))
def test_subject_key_is_deterministic_32_hex_and_does_not_contain_the_phone(phone: str, id_number: str | None) -> None:
    key = subject_key("secret", phone=phone, id_number=id_number)
    assert key == subject_key("secret", phone=phone, id_number=id_number)
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert phone not in key


@PROPERTY
@given(mobiles, st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_subject_key_differs_with_the_secret(phone: str, secret: str, other: str) -> None:
    if secret == other:
        other = secret + "x"
    assert subject_key(secret, phone=phone, id_number=None) != subject_key(other, phone=phone, id_number=None)


@PROPERTY
@given(mobiles, mobiles)
def test_different_phones_have_different_subject_keys(phone: str, other: str) -> None:
    if phone == other:
        return
    assert subject_key("s", phone=phone, id_number=None) != subject_key("s", phone=other, id_number=None)


@PROPERTY
@given(mobiles, id_numbers, id_numbers)
def test_subject_key_uses_the_phone_when_there_is_one_whatever_the_id_number(
    phone: str, id_number: str, other_id: str
) -> None:
    assert subject_key("s", phone=phone, id_number=id_number) == subject_key("s", phone=phone, id_number=other_id)
    assert subject_key("s", phone=phone, id_number=id_number) == subject_key("s", phone=phone, id_number=None)


@PROPERTY
@given(id_numbers, st.sampled_from([None, ""]))
def test_subject_key_falls_back_to_the_id_number_without_a_phone(id_number: str, no_phone: str | None) -> None:
    key = subject_key("s", phone=no_phone, id_number=id_number)
    assert key == subject_key("s", phone=None, id_number=id_number)
    assert id_number not in key


@PROPERTY
@given(id_numbers, id_numbers)
def test_different_id_numbers_have_different_subject_keys(id_number: str, other: str) -> None:
    if id_number == other:
        return
    assert subject_key("s", phone=None, id_number=id_number) != subject_key("s", phone=None, id_number=other)


def test_a_phone_and_an_id_number_with_the_same_text_have_different_keys() -> None:
    value = "13800138000"
    assert subject_key("s", phone=value, id_number=None) != subject_key("s", phone=None, id_number=value)


def test_factory_mobiles_normalise_to_themselves() -> None:
    rng = random.Random(8000)
    for _ in range(200):
        phone = mobile(rng)
        assert normalize_phone(phone) == phone


@pytest.mark.parametrize("written", ["53212345678", "1012345678"])
def test_a_fixed_line_without_trunk_zero_needs_the_international_prefix(written: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(written)


def test_an_86_prefix_before_a_trunk_zero_is_accepted() -> None:
    assert normalize_phone("86 0532 12345678") == "053212345678"


def test_a_birth_date_after_today_is_impossible() -> None:
    first17 = "11010120990307851"
    future = first17 + id_check_digit(first17)
    with pytest.raises(ValueError, match="birth date"):
        normalize_id_number(future)
    assert normalize_id_number(future, today=date(2100, 1, 1)) == future


@pytest.mark.parametrize("short", ["1", "12", "1234"])
def test_a_short_id_number_is_masked_entirely(short: str) -> None:
    assert mask_id_number(short) == "*" * len(short)
