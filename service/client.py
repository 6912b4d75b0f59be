"""Python client for the flowsweep REST API (SPEC.md §4), built on httpx.

    from flowsweep.service.client import Client
    c = Client()                                   # $FLOWSWEEP_URL or http://127.0.0.1:8000
    sweep = c.submit("examples/fig1.json")         # {"id", "status", "n_points", "n_cached"}
    c.wait(sweep["id"], progress=print)            # polls GET /sweeps/{id} until it is finished
    df = c.results(sweep["id"], k=50)              # result rows as a pandas DataFrame
    c.summary(sweep["id"], by=["init_scale"])      # mean/std/sem/min/max per group
    c.curves(df.point_id[0])["error"]              # numpy arrays

Every failure is a `FlowsweepError` with a one-line message meant for people (the CLI prints it as is):
`ServerUnavailable` when nothing answers at the URL, `NotFound` for an unknown sweep or point,
`APIError` for any other 4xx/5xx (its message is the server's `detail`).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import numpy as np

from flowsweep.jsonsafe import frame_records
from flowsweep.status import FINISHED_COUNT_KEYS, FINISHED_SWEEP_STATUSES

if TYPE_CHECKING:  # pandas is imported where DataFrames are made: `flowsweep status` starts faster
    import pandas as pd

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "FLOWSWEEP_URL"
TOKEN_ENV = "FLOWSWEEP_API_TOKEN"

SWEEP_FINAL_STATUSES = frozenset(FINISHED_SWEEP_STATUSES)
# A point is finished when it has a result row: SPEC §4 counts; a cached point counts only under `cached`.
FINISHED_COUNTS = FINISHED_COUNT_KEYS
RESULT_PAGE = 1000


_SUMMARY_STATS = ("mean", "std", "sem", "min", "max")


class FlowsweepError(Exception):
    """A failure worth one line to a person; `str(err)` is that line."""


class ServerUnavailable(FlowsweepError):
    pass


class NotFound(FlowsweepError):
    pass


class APIError(FlowsweepError):
    def __init__(self, status_code: int, detail: Any, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


def finished_count(state: Mapping[str, Any]) -> int:
    """Points of a sweep that have a result (done, failed, diverged or reused from cache)."""
    counts = state.get("counts") or {}
    return int(sum(counts.get(k) or 0 for k in FINISHED_COUNTS))


def _detail_text(detail: Any) -> str:
    """FastAPI details are a string or a list of {loc, msg}: make one readable line."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(x) for x in item.get("loc", ()) if x not in ("body", "query"))
                msg = item.get("msg", "")
                parts.append(f"{loc}: {msg}" if loc else str(msg))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return json.dumps(detail)


def _as_float_array(value: Any) -> np.ndarray | None:
    # JSON null stands for a non-finite or absent value: np.array(..., float) maps None to nan.
    if value is None:
        return None
    return np.array(value, dtype=float)


class Client:
    """A thin, typed wrapper over the REST API. Use as a context manager or call `close()`."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    # -- plumbing -------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, *, what: str | None = None, **kw) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as e:
            raise ServerUnavailable(
                f"cannot reach the flowsweep server at {self.url} ({type(e).__name__}); "
                f"start it with `flowsweep serve` or pass --url / set {URL_ENV}"
            ) from None
        except httpx.TimeoutException:
            raise ServerUnavailable(f"the flowsweep server at {self.url} did not answer in time") from None
        except httpx.HTTPError as e:
            raise ServerUnavailable(f"request to {self.url}{path} failed: {e}") from None
        if resp.is_success:
            return resp
        self._raise(resp, path, what)

    def _raise(self, resp: httpx.Response, path: str, what: str | None) -> NoReturn:
        try:
            detail = resp.json().get("detail", resp.text)
        except (ValueError, AttributeError):
            detail = resp.text or resp.reason_phrase
        text = _detail_text(detail)
        if resp.status_code == 404 and what:
            extra = text and text != "Not Found" and f"{what} not found" not in text
            raise NotFound(f"{what} not found on {self.url}" + (f" ({text})" if extra else ""))
        if resp.status_code == 404:
            raise NotFound(f"{path} not found on {self.url}: {text}")
        if resp.status_code == 401:
            raise APIError(401, detail, f"unauthorized ({text}): set {TOKEN_ENV} to the server's token")
        raise APIError(resp.status_code, detail, f"server answered {resp.status_code}: {text}")

    def _get_json(self, path: str, *, what: str | None = None, **kw) -> Any:
        return self._request("GET", path, what=what, **kw).json()

    # -- service --------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """GET /healthz: {"status", "database", "ray": {"nodes", "cpus"}}."""
        return self._get_json("/healthz")

    # -- sweeps ---------------------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
        """POST /sweeps with a sweep dict or the path of a JSON sweep file; returns the 201 body."""
        if not isinstance(spec, Mapping):
            spec = load_spec(spec)
        return self._request("POST", "/sweeps", json=dict(spec)).json()

    def sweeps(
        self,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        tag: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """GET /sweeps: {"data": [sweep...], "count"}, newest first; `status` e.g. "running", `tag`
        (any of, comma separated), `name` (contains, case-insensitive)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        for key, value in (("status", status), ("tag", tag), ("name", name)):
            if value:
                params[key] = value
        return self._get_json("/sweeps", params=params)

    def sweep(self, sweep_id: int) -> dict[str, Any]:
        """GET /sweeps/{id}: status, counts, progress, eta_seconds, spec..."""
        return self._get_json(f"/sweeps/{int(sweep_id)}", what=f"sweep {sweep_id}")

    status = sweep

    def cancel(self, sweep_id: int) -> dict[str, Any]:
        resp = self._request("POST", f"/sweeps/{int(sweep_id)}/cancel", what=f"sweep {sweep_id}")
        return resp.json() if resp.content else {}

    def wait(
        self,
        sweep_id: int,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the sweep is done, failed or cancelled; call `progress(state)` after each poll.

        Returns the final state. Raises TimeoutError after `timeout` seconds (the sweep keeps running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.sweep(sweep_id)
            if progress is not None:
                progress(state)
            if state.get("status") in SWEEP_FINAL_STATUSES:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} still {state.get('status')} after {timeout} s")
            time.sleep(poll)

    # -- results --------------------------------------------------------------------------------
    def result_rows(
        self,
        sweep_id: int | None = None,
        filters: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        order_by: str | None = None,
        page_size: int = RESULT_PAGE,
    ) -> list[dict[str, Any]]:
        """Result rows as dicts, following `limit`/`offset` pages until `limit` rows (None: all)."""
        path = "/results" if sweep_id is None else f"/sweeps/{int(sweep_id)}/results"
        what = None if sweep_id is None else f"sweep {sweep_id}"
        params: dict[str, Any] = {k: _param(v) for k, v in (filters or {}).items() if v is not None}
        if order_by:
            params["order_by"] = order_by
        rows: list[dict[str, Any]] = []
        # Keyset pages (after=<last point_id>) when rows come in point_id order: an export taken while
        # a sweep is running has no duplicates or gaps (offsets shift as rows are added).
        keyset = offset == 0 and order_by in (None, "", "point_id")
        while limit is None or len(rows) < limit:
            want = page_size if limit is None else min(page_size, limit - len(rows))
            page_params = {**params, "limit": want}
            if keyset:
                page_params["after"] = rows[-1]["point_id"] if rows else 0
            else:
                page_params["offset"] = offset + len(rows)
            body = self._get_json(path, what=what, params=page_params)
            page = body.get("data", [])
            rows.extend(page)
            if keyset:
                # with `after`, `count` is the number of matching rows past it: this page was the last
                remaining = body.get("count")
                if (
                    not page
                    or (remaining is not None and len(page) >= remaining)
                    or (remaining is None and len(page) < want)
                ):
                    break
                continue
            count = body.get("count")
            # `count` is the number of matching rows; a server may cap the page size below `want`,
            # so a short page alone does not mean the end.
            if not page or (count is not None and offset + len(rows) >= count) or (count is None and len(page) < want):
                break
        return rows

    def results(
        self,
        sweep_id: int | None = None,
        filters: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        order_by: str | None = None,
        **more_filters: Any,
    ) -> pd.DataFrame:
        """Result rows as a DataFrame (one row per point; SPEC §4 columns). Filters as the API takes
        them, e.g. `results(3, k=50, init_scale_min=0.1, status="done")`."""
        import pandas as pd

        rows = self.result_rows(
            sweep_id, {**(filters or {}), **more_filters}, limit=limit, offset=offset, order_by=order_by
        )
        return pd.DataFrame.from_records(rows)

    def export(
        self,
        path: str | os.PathLike,
        fmt: str | None = None,
        sweep_id: int | None = None,
        filters: Mapping[str, Any] | None = None,
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> tuple[Path, int]:
        """Write result rows to `path` as csv, parquet or json (from the suffix when `fmt` is None).

        Rows are fetched page by page as JSON and written by pandas, so the file has every matching
        row whatever page size the server allows. Returns (path, number of rows).
        """
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
        df = self.results(sweep_id, filters, order_by=order_by, limit=limit)
        write_frame(df, path, fmt)
        return path, len(df)

    def summary(self, sweep_id: int, by: Iterable[str] | str | None = None) -> pd.DataFrame:
        """GET /sweeps/{id}/summary?by=...: one row per group with `<metric>_mean/_std/_sem/_min/_max`."""
        if isinstance(by, str):
            by = [b for b in by.split(",") if b]
        params = {"by": ",".join(by)} if by else {}
        body = self._get_json(f"/sweeps/{int(sweep_id)}/summary", what=f"sweep {sweep_id}", params=params)
        import pandas as pd

        rows = body.get("data", body) if isinstance(body, Mapping) else body
        df = pd.DataFrame.from_records(rows)
        # a statistic that is null in every group (e.g. lambda0_fit when not fitted) arrives as None: NaN instead
        stats = [c for c in df.columns if c == "count" or c.rsplit("_", 1)[-1] in _SUMMARY_STATS]
        df[stats] = df[stats].apply(pd.to_numeric, errors="coerce")
        df.attrs["by"] = list(body.get("by") or by or []) if isinstance(body, Mapping) else list(by or [])
        return df

    def phase(self, sweep_id: int) -> dict[str, Any]:
        """GET /sweeps/{id}/phase: Table 2's cells over (σ, λ₀) ({"metric", "reference", "sigma_source",
        "cells", "boundary"})."""
        return self._get_json(f"/sweeps/{int(sweep_id)}/phase", what=f"sweep {sweep_id}")

    def group_curves(
        self, sweep_id: int, by: Iterable[str] | str | None = None, max_seeds: int = 100
    ) -> dict[str, Any]:
        """GET /sweeps/{id}/curves: {"by", "groups": [...]}, each group's `t` and `singular_values` as
        arrays and `error`, `error_linear`, `error_regularized_fit` as {"mean", "std", "n"} arrays (or
        None); JSON nulls become nan."""
        if isinstance(by, str):
            by = [b for b in by.split(",") if b]
        params: dict[str, Any] = {"max_seeds": max_seeds}
        if by:
            params["by"] = ",".join(by)
        body = self._get_json(f"/sweeps/{int(sweep_id)}/curves", what=f"sweep {sweep_id}", params=params)
        for g in body.get("groups", []):
            g["t"] = _as_float_array(g["t"])
            g["singular_values"] = _as_float_array(g.get("singular_values"))
            for key in ("error", "error_linear", "error_regularized_fit"):
                if g.get(key) is not None:
                    g[key] = {k: _as_float_array(v) for k, v in g[key].items()}
        return body

    def events(self, sweep_id: int) -> Iterator[dict[str, Any]]:
        """GET /sweeps/{id}/events: the sweep's progress snapshots as they change (Server-Sent
        Events), ending with the terminal one. No polling: one open connection."""
        last = None
        try:
            with self._http.stream(
                "GET", f"/sweeps/{int(sweep_id)}/events", timeout=httpx.Timeout(self._http.timeout.connect, read=None)
            ) as resp:
                if not resp.is_success:
                    resp.read()
                    self._raise(resp, f"/sweeps/{int(sweep_id)}/events", f"sweep {sweep_id}")
                event = "message"
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:])
                        if event == "end":
                            if data.get("deleted"):
                                raise NotFound(f"sweep {sweep_id} was deleted")
                            if data != last:
                                yield data
                            return
                        last = data
                        yield data
                        event = "message"
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as e:
            raise ServerUnavailable(
                f"lost the event stream of sweep {sweep_id} at {self.url} ({type(e).__name__})"
            ) from None

    def patch(self, sweep_id: int, **fields: Any) -> dict[str, Any]:
        """PATCH /sweeps/{id}: `name`, `tags` (a list, replaces them) and/or `notes`."""
        return self._request("PATCH", f"/sweeps/{int(sweep_id)}", what=f"sweep {sweep_id}", json=fields).json()

    def delete(self, sweep_id: int) -> None:
        """DELETE /sweeps/{id}: a finished or cancelled sweep with its points, results and curves."""
        self._request("DELETE", f"/sweeps/{int(sweep_id)}", what=f"sweep {sweep_id}")

    def resolve(self, ref: int | str) -> int:
        """A sweep id from an id or a sweep's exact name (the newest sweep of that name)."""
        text = str(ref).strip()
        if text.isdigit():
            return int(text)
        body = self._get_json("/sweeps", params={"name": text, "limit": 1000})
        exact = [s for s in body.get("data", []) if s.get("name") == text]
        if not exact:
            raise NotFound(f"no sweep named {text!r} on {self.url}")
        return int(exact[0]["id"])

    def cross_summary(self, by: Iterable[str] | str | None = None, **filters: Any) -> pd.DataFrame:
        """GET /summary: statistics per group across sweeps, e.g. cross_summary("sweep_id,lambda0", tag="table2")."""
        import pandas as pd

        if isinstance(by, (list, tuple)):
            by = ",".join(by)
        params = {k: _param(v) for k, v in filters.items() if v is not None}
        if by:
            params["by"] = by
        body = self._get_json("/summary", params=params)
        df = pd.DataFrame.from_records(body.get("data", []))
        df.attrs["by"] = list(body.get("by") or [])
        return df

    # -- points ---------------------------------------------------------------------------------
    def point(self, point_id: int) -> dict[str, Any]:
        return self._get_json(f"/points/{int(point_id)}", what=f"point {point_id}")

    def curves(self, point_id: int) -> dict[str, np.ndarray | None]:
        """GET /points/{id}/curves as float arrays: t, error, error_linear (T,), singular_values
        (T, min(m, n)), error_regularized_fit (T,) or None. JSON nulls become nan."""
        body = self._get_json(f"/points/{int(point_id)}/curves", what=f"curves of point {point_id}")
        return {k: _as_float_array(v) for k, v in body.items()}

    def state(self, point_id: int) -> dict[str, np.ndarray]:
        """GET /points/{id}/state: the exact initial state {"Y", "U0", "V0"[, "A", "W0"]} as arrays."""
        # npz: exact, a third of the JSON's size, and within the server's answer limit for 3x larger states
        r = self._request(
            "GET", f"/points/{int(point_id)}/state", what=f"state of point {point_id}", params={"format": "npz"}
        )
        with np.load(io.BytesIO(r.content), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _param(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


SWEEP_FILE_SUFFIXES = (".json", ".yaml", ".yml", ".toml")


def _parse_sweep_text(text: str, path: str) -> Any:
    """JSON, YAML or TOML by the file's suffix; standard input (`-`) is JSON or YAML (YAML reads JSON too)."""
    suffix = Path(path).suffix.lower() if path != "-" else ""
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise FlowsweepError(f"{path} is not valid TOML: {e}") from None
    if suffix in (".yaml", ".yml") or (suffix == "" and not text.lstrip().startswith(("{", "["))):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise FlowsweepError(f"{path} is not valid YAML: {getattr(e, 'problem', None) or e}{where}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FlowsweepError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def load_sweeps(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a sweep file (JSON, YAML or TOML by its suffix; `-` is standard input): one sweep (SPEC §3),
    a list of sweeps (e.g. the two initialisations of the paper's Fig. 3, which a single sweep's axes
    cannot vary), or {"tags": [...], "sweeps": [...]} — TOML's `[[sweeps]]` — whose tags label every
    sweep of the file."""
    import sys

    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    except OSError as e:
        raise FlowsweepError(f"cannot read sweep file {path}: {e.strerror}") from None
    spec = _parse_sweep_text(text, str(path))
    common_tags: list = []
    if isinstance(spec, dict) and "sweeps" in spec:
        extra = set(spec) - {"sweeps", "tags"}
        if extra:
            raise FlowsweepError(
                f"{path}: a file of sweeps holds `sweeps` and optional `tags`, not {', '.join(sorted(extra))}"
            )
        common_tags = list(spec.get("tags") or [])
        spec = spec["sweeps"]
    sweeps = spec if isinstance(spec, list) else [spec]
    if not sweeps or not all(isinstance(s, dict) for s in sweeps):
        raise FlowsweepError(f"{path} must hold a sweep (SPEC §3), a list of them, or `sweeps` (and `tags`)")
    if common_tags:
        for s in sweeps:
            s["tags"] = list(dict.fromkeys([*(s.get("tags") or []), *common_tags]))
    return sweeps


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file that holds exactly one sweep."""
    sweeps = load_sweeps(path)
    if len(sweeps) != 1:
        raise FlowsweepError(
            f"{path} holds {len(sweeps)} sweeps: submit them one by one (the CLI's `flowsweep submit` does)"
        )
    return sweeps[0]


EXPORT_FORMATS = ("csv", "parquet", "json")


def frame_json(df: pd.DataFrame) -> str:
    return json.dumps(frame_records(df), indent=1, default=str) + "\n"


def write_frame(df: pd.DataFrame, path: Path, fmt: str) -> None:
    """CSV with a header row, Parquet, or JSON records (nulls, never NaN)."""
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    elif fmt == "json":
        path.write_text(frame_json(df))
    else:
        raise FlowsweepError(f"unknown format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
