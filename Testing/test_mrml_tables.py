"""Result rows appended to a table node across calls, new columns added, types kept."""
import math

import pytest

from slicercad.errors import InputError
from SlicerCADLib.tables import append_rows


def _column(table_node, name):
    array = table_node.GetTable().GetColumnByName(name)
    return array.GetClassName(), [array.GetValue(r) for r in range(array.GetNumberOfTuples())]


def test_rows_are_appended_across_calls_with_types_kept(scene):
    table = append_rows([{"lesion": "L1", "diameter_mm": 12.5, "slice": 4, "malignant": True}], name="Results")
    assert table.GetName() == "Results" and table.GetScene() is scene
    same = append_rows([{"lesion": "L2", "diameter_mm": 8.0, "slice": 9, "malignant": False}], table)
    assert same is table and table.GetNumberOfRows() == 2
    assert _column(table, "lesion") == ("vtkStringArray", ["L1", "L2"])
    assert _column(table, "diameter_mm") == ("vtkDoubleArray", [12.5, 8.0])
    assert _column(table, "slice") == ("vtkIntArray", [4, 9])
    assert _column(table, "malignant") == ("vtkBitArray", [1, 0])


def test_new_columns_and_missing_values(scene):
    table = append_rows([{"lesion": "L1", "slice": 4}])
    append_rows([{"lesion": "L2", "score": 0.75}, {"lesion": "L3", "slice": 7}], table)
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == ["lesion", "slice", "score"]
    kind, slices = _column(table, "slice")
    assert kind == "vtkDoubleArray" and slices[0] == 4.0 and math.isnan(slices[1]) and slices[2] == 7.0
    kind, scores = _column(table, "score")
    assert kind == "vtkDoubleArray" and math.isnan(scores[0]) and scores[1] == 0.75 and math.isnan(scores[2])
    assert _column(table, "lesion")[1] == ["L1", "L2", "L3"]


def test_text_in_a_numeric_column_names_row_and_column(scene):
    table = append_rows([{"size": 3.0}])
    with pytest.raises(InputError, match=r"row 1 column 'size'"):
        append_rows([{"size": "big"}], table)
    assert table.GetNumberOfRows() == 1  # nothing half-written
