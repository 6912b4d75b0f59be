"""docs/ is checked against the code: the sweep format against SweepSpec, the result fields against
RESULT_FIELDS and the point/curves fields, the REST API against the app's routes and the result
query's parameters. A field or route added to the code without its line in docs/ fails here, and so
does a documented one that no longer exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from flowsweep.core.types import PARAM_FIELDS, Curves
from flowsweep.service import queries
from flowsweep.service.app import create_app
from flowsweep.service.expand import expand
from flowsweep.service.models import CURVES_FORMAT, LIST_PARAM_FIELDS, Curve
from flowsweep.service.runner import encode_curves
from flowsweep.service.schemas import RESULT_FIELDS, Axes, SweepSpec
from flowsweep.service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
ROUTE = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`]*)` \|", re.M)


def section(doc: str, heading: str) -> str:
    """The text of a `## heading` (or `### heading`) up to the next heading of the same or a higher level."""
    text = (DOCS / doc).read_text()
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert m, f"{doc} has no section {heading!r}"
    level = len(m.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, m.end())
    return text[m.end() : end.start() if end else len(text)]


def table_names(doc: str, heading: str) -> list[str]:
    """The backticked names in the first column of the section's tables."""
    return re.findall(r"^\| `([a-z_0-9]+)` \|", section(doc, heading), re.M)


def test_result_rows_document_exactly_the_result_fields():
    names = table_names("results.md", "Result rows")
    assert len(names) == len(set(names)), "a field is documented twice"
    assert set(names) == set(RESULT_FIELDS), (
        f"undocumented: {sorted(set(RESULT_FIELDS) - set(names))}; "
        f"documented but not a field: {sorted(set(names) - set(RESULT_FIELDS))}"
    )
    assert set(PARAM_FIELDS) <= set(names) | set(table_names("results.md", "Point fields"))


def test_point_fields_and_curves_are_documented():
    assert set(table_names("results.md", "Point fields")) == set(queries.POINT_EXTRA_FIELDS)
    t = np.linspace(0.0, 1.0, 3)
    blob = encode_curves(
        Curves(
            t=t,
            error=np.exp(-t),
            error_linear=np.exp(-t),
            singular_values=np.ones((3, 2)),
            error_regularized_fit=np.exp(-t),
        )
    )
    keys = queries.decode_curves(Curve(point_id=1, format=CURVES_FORMAT, blob=blob)).keys()
    assert set(table_names("results.md", "Curves")) == set(keys)


def test_sweep_format_documents_every_field_and_axis():
    assert set(table_names("sweep-format.md", "Fields")) == set(SweepSpec.model_fields)
    assert set(table_names("sweep-format.md", "Axes")) == set(Axes.model_fields)
    forms = set(re.findall(r'^\| `\{"(\w+)"', section("sweep-format.md", "Axes"), re.M))
    assert forms == {"range", "linspace", "logspace"}


def test_the_documented_sweep_is_valid():
    (example,) = re.findall(r"```json\n(.*?)```", (DOCS / "sweep-format.md").read_text(), re.S)
    spec = SweepSpec.model_validate(json.loads(example), context={"max_points": 100_000})
    assert len(expand(spec)) == 3 * 100


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'docs.db'}"
    return create_app(Settings(database_url=url), start_runner=False, start_ray=False)


def test_api_lists_exactly_the_apps_routes(app):
    documented = set(ROUTE.findall(section("api.md", "Routes")))
    served = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    assert documented == served, (
        f"undocumented: {sorted(served - documented)}; documented but not served: {sorted(documented - served)}"
    )


def test_api_documents_the_result_query(app):
    text = section("api.md", "Querying result rows")
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    fields = set(queries.ResultQuery.model_fields) | set(queries.SummaryQuery.model_fields)
    filters = {f for f in fields if f.removesuffix("_min").removesuffix("_max") in queries._PARAM_TYPES}
    # the generic rows `<parameter>=v`, `<parameter>_min`/`_max` stand for every filter: each
    # parameter and id has its equality filter
    # (a list parameter, e.g. y_singular_values, is part of a point's identity, not a filter)
    assert set(queries._PARAM_TYPES) == set(PARAM_FIELDS) - set(LIST_PARAM_FIELDS) | {"sweep_id", "point_id"}
    assert set(queries._PARAM_TYPES) <= filters
    assert listed == fields - filters, (listed, fields - filters)


def test_readme_links_the_docs_and_cites_no_outside_file():
    readme = (REPO / "README.md").read_text()
    for doc in ("docs/sweep-format.md", "docs/results.md", "docs/api.md"):
        assert f"]({doc})" in readme, doc
    assert "shared folder" not in readme and "SPEC.md" not in readme
