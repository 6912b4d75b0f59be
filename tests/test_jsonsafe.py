"""flowsweep.jsonsafe: the one NaN -> null cleaner (SPEC §4: never NaN in JSON)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from flowsweep.jsonsafe import finite_or_none, frame_records, json_safe


@pytest.mark.parametrize(
    "value,expected",
    [
        (float("nan"), None),
        (float("inf"), None),
        (-float("inf"), None),
        (np.float64("nan"), None),
        (np.float32("inf"), None),
        (1.5, 1.5),
        (np.float64(2.5), 2.5),
        (np.int64(7), 7),
        (3, 3),
        (True, True),
        (np.bool_(False), False),
        (None, None),
        ("done", "done"),
    ],
)
def test_finite_or_none(value, expected):
    got = finite_or_none(value)
    assert got == expected and type(got) is type(expected)


def test_json_safe_cleans_nested_structures_and_arrays():
    obj = {
        "a": [1.0, float("nan"), {"b": (np.inf, np.int32(2))}],
        "curve": np.array([[0.0, np.nan], [np.inf, 1.0]]),
        "fine": np.array([0.5, 1.5]),
        "ints": np.array([1, 2]),
        "s": "x",
    }
    out = json_safe(obj)
    assert out == {
        "a": [1.0, None, {"b": [None, 2]}],
        "curve": [[0.0, None], [None, 1.0]],
        "fine": [0.5, 1.5],
        "ints": [1, 2],
        "s": "x",
    }
    json.dumps(out, allow_nan=False)  # strict JSON: raises on any NaN left


def test_frame_records_exact_values_and_nulls():
    third = 1 / 3  # pandas' to_json would round this to 10 digits
    df = pd.DataFrame({"x": [third, np.nan], "k": pd.array([1, None], dtype="Int64"), "s": ["a", None]})
    rows = frame_records(df)
    assert rows == [{"x": third, "k": 1, "s": "a"}, {"x": None, "k": None, "s": None}]
    assert type(rows[0]["k"]) is int and math.isclose(rows[0]["x"], third, rel_tol=0, abs_tol=0)
