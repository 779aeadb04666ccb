"""Reading an area registry CSV: pure, all-or-nothing, every error with its line and column."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass

from pydantic import ValidationError

from services.dispatch.areas.models import AreaCreate
from shared.problems import NUL_MESSAGE

COLUMNS = ("area_code", "area_name", "station", "street", "district")


@dataclass(frozen=True)
class CsvError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


def parse_areas_csv(data: bytes) -> tuple[list[AreaCreate], list[CsvError]]:
    """The rows of the file, or the errors that make it unusable (then nothing should be imported)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        return [], [CsvError(0, "(file)", f"is not UTF-8 (byte {offset})")]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return [], [CsvError(1, "(header)", "the file is empty")]
    except csv.Error as exc:
        return [], [CsvError(1, "(header)", str(exc))]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return [], [CsvError(1, "(header)", f"missing column(s): {', '.join(missing)}")]
    index = {c: header.index(c) for c in COLUMNS}
    rows: list[AreaCreate] = []
    errors: list[CsvError] = []
    seen: dict[str, int] = {}
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) <= max(index.values()):
                errors.append(CsvError(line, "(row)", f"has {len(values)} fields, the header has {len(header)}"))
                continue
            nul = [c for c, i in index.items() if "\x00" in values[i]]
            if nul:  # PostgreSQL cannot store it: refuse it here, with its line, not at the INSERT
                errors.extend(CsvError(line, c, NUL_MESSAGE) for c in nul)
                continue
            try:
                area = AreaCreate(**{c: values[i] for c, i in index.items()})
            except ValidationError as exc:
                for e in exc.errors(include_input=False):
                    errors.append(CsvError(line, ".".join(str(p) for p in e["loc"]), e["msg"]))
                continue
            if area.area_code in seen:
                errors.append(CsvError(line, "area_code", f"repeats line {seen[area.area_code]}"))
                continue
            seen[area.area_code] = line
            rows.append(area)
    except csv.Error as exc:
        errors.append(CsvError(reader.line_num, "(row)", str(exc)))
    return rows, errors
