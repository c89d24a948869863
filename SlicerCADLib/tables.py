"""Result rows -> a table node: rows are appended, never overwritten; column types are kept.

Types follow the values: str -> string column, bool -> bit column, int -> int column,
float -> double column. As in pandas, an int column that meets a float or a missing value becomes a
double column (NaN where missing); a bool column that meets a missing value becomes double
(1.0/0.0/NaN); a missing string is ''. A number given to a string column is stored as its text; a
string given to a numeric column is an error naming the row and column.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from vtkmodules.vtkCommonCore import vtkBitArray, vtkDoubleArray, vtkIntArray, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkTable

from slicercad.errors import InputError

from .app import ensure_scene

_ARRAYS = {"str": vtkStringArray, "bool": vtkBitArray, "int": vtkIntArray, "float": vtkDoubleArray}
_INT32 = np.iinfo(np.int32)


def _kind_of_value(value, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        if not _INT32.min <= int(value) <= _INT32.max:
            raise InputError(f"integer {value} does not fit a 32-bit table column; pass it as float", source)
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, str):
        return "str"
    raise InputError(f"table cells must be str, bool, int, float or None, got {type(value).__name__}", source)


def _kind_of_array(array) -> str:
    if array.IsA("vtkStringArray"):
        return "str"
    if array.IsA("vtkBitArray"):
        return "bool"
    return "float" if array.IsA("vtkFloatArray") or array.IsA("vtkDoubleArray") else "int"


def _merge_kind(kind: str | None, value_kind: str | None, has_missing: bool, source: str) -> str | None:
    """The column kind after adding a value of ``value_kind`` (None = missing)."""
    if kind is None:
        kind = value_kind
    elif value_kind is not None and value_kind != kind:
        if kind == "str":
            return "str"
        if value_kind == "str":
            raise InputError("text in a numeric column", source)
        kind = "float"
    if has_missing and kind in ("int", "bool"):
        kind = "float"
    return kind


def _read_columns(table) -> dict:
    columns = {}
    for c in range(table.GetNumberOfColumns()):
        array = table.GetColumn(c)
        kind = _kind_of_array(array)
        values = [array.GetValue(r) for r in range(array.GetNumberOfTuples())]
        if kind == "float":
            values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
        columns[array.GetName()] = {"kind": kind, "values": values}
    return columns


def _cell(kind: str, value):
    if kind == "str":
        return "" if value is None else str(value)
    if kind == "float":
        return math.nan if value is None else float(value)
    return bool(value) if kind == "bool" else int(value)


def append_rows(rows: list[dict], table_node=None, name: str = "Results", scene=None):
    """Append ``rows`` (dicts column -> value) to ``table_node`` (a new table node when None).

    New columns are added as they appear; existing rows get a missing value there.
    Returns the table node.
    """
    if isinstance(rows, dict) or not all(isinstance(row, dict) for row in rows):
        raise InputError("rows must be a list of dicts (column name -> value)", name)
    if table_node is None:
        table_node = ensure_scene(scene).AddNewNodeByClass("vtkMRMLTableNode", name)
    source = table_node.GetName()
    columns = _read_columns(table_node.GetTable())
    old_count = max((len(col["values"]) for col in columns.values()), default=0)
    for row in rows:
        for key in row:
            if not isinstance(key, str) or not key:
                raise InputError(f"column names must be non-empty strings, got {key!r}", source)
            columns.setdefault(key, {"kind": None, "values": [None] * old_count})
        for key, col in columns.items():
            value = row.get(key)
            where = f"{source} row {len(col['values'])} column {key!r}={value!r}"
            has_missing = value is None or None in col["values"]
            col["kind"] = _merge_kind(col["kind"], _kind_of_value(value, where), has_missing, where)
            col["values"].append(value)
        old_count += 1
    table = vtkTable()
    for key, col in columns.items():
        kind = col["kind"] or "str"
        array = _ARRAYS[kind]()
        array.SetName(key)
        array.SetNumberOfValues(len(col["values"]))
        for r, value in enumerate(col["values"]):
            array.SetValue(r, _cell(kind, value))
        table.AddColumn(array)
    table_node.SetAndObserveTable(table)
    return table_node
