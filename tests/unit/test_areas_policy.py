"""services.dispatch.areas.policy.parse_areas_csv: every row, or every error with its line and field."""

from __future__ import annotations

import csv

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.areas.models import AreaCreate
from services.dispatch.areas.policy import COLUMNS, CsvError, parse_areas_csv

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)

HEADER = "area_code,area_name,station,street,district"
ROW_011 = "370202-011,八大关警务区,八大关派出所,八大关街道,市南区"
ROW_012 = "370202-012,太平角警务区,八大关派出所,八大关街道,市南区"
ROW_021 = "370202-021,中山路警务区,中山路派出所,中山路街道,市南区"
BOM = b"\xef\xbb\xbf"


def _csv(*lines: str, newline: str = "\n") -> bytes:
    return (newline.join(lines) + newline).encode("utf-8")


def _errors(data: bytes) -> list[tuple[int, str]]:
    _, errors = parse_areas_csv(data)
    return [(e.line, e.field) for e in errors]


# --------------------------------------------------------------------------- valid files


def test_a_valid_file_with_chinese_names_gives_every_row_in_order() -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, ROW_011, ROW_012, ROW_021))
    assert errors == []
    assert rows == [
        AreaCreate(
            area_code="370202-011",
            area_name="八大关警务区",
            station="八大关派出所",
            street="八大关街道",
            district="市南区",
        ),
        AreaCreate(
            area_code="370202-012",
            area_name="太平角警务区",
            station="八大关派出所",
            street="八大关街道",
            district="市南区",
        ),
        AreaCreate(
            area_code="370202-021",
            area_name="中山路警务区",
            station="中山路派出所",
            street="中山路街道",
            district="市南区",
        ),
    ]


def test_a_utf8_bom_is_not_part_of_the_first_column_name() -> None:
    with_bom = parse_areas_csv(BOM + _csv(HEADER, ROW_011, ROW_012))
    without_bom = parse_areas_csv(_csv(HEADER, ROW_011, ROW_012))
    assert with_bom == without_bom
    assert with_bom[1] == []
    assert [r.area_code for r in with_bom[0]] == ["370202-011", "370202-012"]


def test_crlf_line_endings_are_accepted() -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, ROW_011, ROW_012, newline="\r\n"))
    assert errors == []
    assert [r.district for r in rows] == ["市南区", "市南区"]


def test_the_header_may_list_the_columns_in_any_order() -> None:
    rows, errors = parse_areas_csv(
        _csv("district,street,station,area_name,area_code", "市南区,八大关街道,八大关派出所,八大关警务区,370202-011")
    )
    assert errors == []
    assert rows == [
        AreaCreate(
            area_code="370202-011",
            area_name="八大关警务区",
            station="八大关派出所",
            street="八大关街道",
            district="市南区",
        )
    ]


def test_header_names_are_matched_ignoring_case_and_surrounding_spaces() -> None:
    rows, errors = parse_areas_csv(_csv(" Area_Code , AREA_NAME,Station ,street,District", ROW_011))
    assert errors == []
    assert [r.area_code for r in rows] == ["370202-011"]


def test_extra_columns_are_ignored() -> None:
    rows, errors = parse_areas_csv(
        _csv(
            "note,area_code,area_name,phone,station,street,district,lat",
            "海边,370202-011,八大关警务区,0532-1234567,八大关派出所,八大关街道,市南区,36.05",
        )
    )
    assert errors == []
    assert rows == [
        AreaCreate(
            area_code="370202-011",
            area_name="八大关警务区",
            station="八大关派出所",
            street="八大关街道",
            district="市南区",
        )
    ]


def test_blank_lines_are_skipped() -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, "", ROW_011, "   ", ",,,,", "", ROW_012, ""))
    assert errors == []
    assert [r.area_code for r in rows] == ["370202-011", "370202-012"]


def test_values_are_stripped_of_surrounding_spaces() -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, " 370202-011 , 八大关警务区 ,八大关派出所,八大关街道, 市南区 "))
    assert errors == []
    assert rows[0].area_code == "370202-011"
    assert rows[0].area_name == "八大关警务区"
    assert rows[0].district == "市南区"


def test_a_quoted_value_may_contain_a_comma() -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, '370202-011,"八大关警务区, 东",八大关派出所,八大关街道,市南区'))
    assert errors == []
    assert rows[0].area_name == "八大关警务区, 东"


def test_a_header_only_file_gives_no_rows_and_no_errors() -> None:
    assert parse_areas_csv(_csv(HEADER)) == ([], [])


area_codes = st.from_regex(r"[0-9A-Za-z][0-9A-Za-z_.\-]{0,31}", fullmatch=True)
names = st.text(
    alphabet=st.sampled_from("八大关太平角警务区派出所街道市南区中山路汇泉湾ABC xyz0123"), min_size=1, max_size=20
).filter(lambda s: s.strip() != "")


@PROPERTY
@given(st.lists(st.tuples(area_codes, names, names, names, names), max_size=12, unique_by=lambda r: r[0]))
def test_any_file_of_distinct_valid_rows_round_trips(rows: list[tuple[str, str, str, str, str]]) -> None:
    data = _csv(HEADER, *(",".join(row) for row in rows))
    parsed, errors = parse_areas_csv(data)
    assert errors == []
    assert [(a.area_code, a.area_name, a.station, a.street, a.district) for a in parsed] == [
        tuple(v.strip() for v in row) for row in rows
    ]


# --------------------------------------------------------------------------- errors of the whole file


def test_a_file_that_is_not_utf8_is_one_error_at_line_0() -> None:
    data = (HEADER + "\n370202-011,").encode() + "八大关警务区".encode("gbk") + b",s,t,d\n"
    rows, errors = parse_areas_csv(data)
    assert rows == []
    assert len(errors) == 1
    assert (errors[0].line, errors[0].field) == (0, "(file)")
    assert "UTF-8" in errors[0].message
    assert f"byte {len(HEADER) + 1 + len('370202-011,')}" in errors[0].message


def test_the_byte_offset_of_a_non_utf8_byte_counts_the_bom() -> None:
    data = BOM + HEADER.encode() + b"\n370202-011,\xff,s,t,d\n"
    offset = data.index(b"\xff")
    _, errors = parse_areas_csv(data)
    assert [e.message for e in errors] == [f"is not UTF-8 (byte {offset})"]


@pytest.mark.parametrize("data", [b"", BOM], ids=["empty", "bom-only"])
def test_an_empty_file_is_an_error_at_line_1(data: bytes) -> None:
    rows, errors = parse_areas_csv(data)
    assert rows == []
    assert errors == [CsvError(1, "(header)", "the file is empty")]


def test_a_header_without_columns_names_every_missing_column() -> None:
    rows, errors = parse_areas_csv(b"\n")
    assert rows == []
    assert [(e.line, e.field) for e in errors] == [(1, "(header)")]
    for column in COLUMNS:
        assert column in errors[0].message


@pytest.mark.parametrize("missing", COLUMNS)
def test_a_missing_column_is_a_header_error_naming_it(missing: str) -> None:
    header = ",".join(c for c in COLUMNS if c != missing)
    rows, errors = parse_areas_csv(_csv(header, "a,b,c,d"))
    assert rows == []
    assert len(errors) == 1
    assert (errors[0].line, errors[0].field) == (1, "(header)")
    assert errors[0].message == f"missing column(s): {missing}"


def test_several_missing_columns_are_named_in_one_error() -> None:
    _, errors = parse_areas_csv(_csv("area_code,station", "370202-011,八大关派出所"))
    assert errors == [CsvError(1, "(header)", "missing column(s): area_name, street, district")]


def test_a_misspelt_column_counts_as_missing() -> None:
    _, errors = parse_areas_csv(_csv("area code,area_name,station,street,district", ROW_011))
    assert errors == [CsvError(1, "(header)", "missing column(s): area_code")]


# --------------------------------------------------------------------------- errors of rows


def test_a_short_row_is_an_error_at_its_line() -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, ROW_011, "370202-012,太平角警务区,八大关派出所", ROW_021))
    assert errors == [CsvError(3, "(row)", "has 3 fields, the header has 5")]
    assert [r.area_code for r in rows] == ["370202-011", "370202-021"]


@pytest.mark.parametrize(
    "code",
    ["370202 011", "-370202", "_a", ".a", "370202/011", "警务区1", "a" * 33, "370202-011;"],
)
def test_an_invalid_area_code_is_an_error_on_the_area_code_field(code: str) -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, ROW_011, f"{code},太平角警务区,八大关派出所,八大关街道,市南区"))
    assert [(e.line, e.field) for e in errors] == [(3, "area_code")]
    assert [r.area_code for r in rows] == ["370202-011"]


def test_an_area_code_of_32_characters_is_accepted() -> None:
    code = "A" + "1" * 31
    rows, errors = parse_areas_csv(_csv(HEADER, f"{code},n,s,t,d"))
    assert errors == []
    assert [r.area_code for r in rows] == [code]


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("blank", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_field_is_an_error_naming_the_field(column: str, blank: str) -> None:
    values = dict(zip(COLUMNS, ROW_011.split(","), strict=True))
    values[column] = blank
    errors = _errors(_csv(HEADER, ROW_012, ",".join(values[c] for c in COLUMNS)))
    assert errors == [(3, column)]


def test_a_name_over_100_characters_is_an_error_naming_the_field() -> None:
    assert _errors(_csv(HEADER, f"370202-011,{'长' * 101},s,t,d")) == [(2, "area_name")]


def test_several_bad_fields_in_one_row_are_each_reported_at_that_line() -> None:
    errors = _errors(_csv(HEADER, ROW_011, "bad code,,八大关派出所,,市南区"))
    assert sorted(errors) == [(3, "area_code"), (3, "area_name"), (3, "street")]


def test_a_repeated_area_code_is_an_error_naming_the_earlier_line() -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, ROW_011, ROW_012, ROW_011.replace("八大关警务区", "另一个")))
    assert errors == [CsvError(4, "area_code", "repeats line 2")]
    assert [r.area_code for r in rows] == ["370202-011", "370202-012"]


def test_line_numbers_count_blank_lines() -> None:
    _, errors = parse_areas_csv(_csv(HEADER, "", ROW_011, "", "", ROW_011))
    assert errors == [CsvError(6, "area_code", "repeats line 3")]


def test_a_repeat_after_surrounding_spaces_is_still_a_repeat() -> None:
    _, errors = parse_areas_csv(_csv(HEADER, ROW_011, " " + ROW_011))
    assert errors == [CsvError(3, "area_code", "repeats line 2")]


def test_a_third_occurrence_names_the_first_line() -> None:
    _, errors = parse_areas_csv(_csv(HEADER, ROW_011, ROW_012, ROW_011, ROW_011))
    assert errors == [CsvError(4, "area_code", "repeats line 2"), CsvError(5, "area_code", "repeats line 2")]


def test_every_bad_line_is_reported_not_only_the_first() -> None:
    errors = _errors(
        _csv(
            HEADER,
            ROW_011,
            "x",  # line 3: short
            "bad code,n,s,t,d",  # line 4: area_code
            ROW_012,
            "370202-013,n,,t,d",  # line 6: station
            ROW_011,  # line 7: repeat
        )
    )
    assert errors == [(3, "(row)"), (4, "area_code"), (6, "station"), (7, "area_code")]


def test_a_field_over_the_csv_size_limit_is_a_row_error_not_an_exception() -> None:
    huge = "x" * (csv.field_size_limit() + 1)
    errors = _errors(_csv(HEADER, ROW_011, f"370202-012,{huge},s,t,d"))
    assert errors == [(3, "(row)")]


def test_csv_error_reads_as_line_field_message() -> None:
    assert str(CsvError(4, "area_code", "repeats line 2")) == "line 4: area_code: repeats line 2"


@PROPERTY
@given(st.lists(st.sampled_from([ROW_011, ROW_012, ROW_021, "", "bad code,n,s,t,d", "x,y"]), min_size=1, max_size=15))
def test_every_error_names_a_line_of_the_file_and_every_valid_row_is_imported_once(lines: list[str]) -> None:
    rows, errors = parse_areas_csv(_csv(HEADER, *lines))
    line_count = 1 + len(lines)
    assert all(2 <= e.line <= line_count for e in errors)
    good = [line for line in lines if line in (ROW_011, ROW_012, ROW_021)]
    assert [r.area_code for r in rows] == list(dict.fromkeys(line.split(",")[0] for line in good))
    bad_lines = {i + 2 for i, line in enumerate(lines) if line in ("bad code,n,s,t,d", "x,y")}
    assert bad_lines <= {e.line for e in errors}


def test_a_row_may_leave_out_trailing_columns_the_registry_does_not_read() -> None:
    data = (HEADER + ",note\n370202-011,甲,站,街,区\n").encode()
    rows, errors = parse_areas_csv(data)
    assert errors == []
    assert [r.area_code for r in rows] == ["370202-011"]
