"""The dashboard in a real browser: Playwright driving Debian's chromium against a real uvicorn server
(real Ray, SQLite). One server and one browser for the module.

Each page is checked through what a person does (fill, click, press keys) and what the page then
holds: the Plotly figures' traces and axes are compared with the API's own numbers. A screenshot of
every page is saved: under docs/ with FLOWSWEEP_UPDATE_SCREENSHOTS=1 (the README shows them), in the
test's temporary folder otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 60_000
RUN = uuid.uuid4().hex[:6]  # names unique to this run: the shared server may hold other sweeps
# 3 init scales x 3 seeds; a data_seed of its own so no point is reused from another test's sweep.
SPEC = {
    "name": f"pw-fig1-{RUN}",
    "model": "asymmetric",
    "m": 3,
    "n": 5,
    "eta": 0.005,
    "steps": 1500,
    "record_every": 15,
    "data_seed": 7001,
    "tags": ["browser"],
    "axes": {"init_scale": [0.01, 0.1, 1.0], "k": [20], "seed": {"range": [0, 3]}},
}


# The deep model: 2 init scales x depths 1..3 x 2 seeds of balanced starts (plateau and time to tol).
DEEP = {
    "name": f"pw-deep-{RUN}",
    "model": "deep",
    "init": "balanced",
    "integrator": "flow",
    "m": 3,
    "n": 4,
    "eta": 0.02,
    "steps": 600,
    "record_every": 5,
    "data_seed": 7003,
    "tags": ["browser"],
    "axes": {"init_scale": [0.1, 0.3], "k": [6], "depth": [1, 2, 3], "seed": {"range": [0, 2]}},
}
# Table 2: σ_min(Y) = data_scale (a flat spectrum of 1) x λ₀, 2 seeds.
PHASE = {
    "name": f"pw-phase-{RUN}",
    "model": "asymmetric",
    "init": "spectral",
    "integrator": "flow",
    "m": 2,
    "n": 3,
    "y_singular_values": [1.0, 1.0],
    "eta": 0.05,
    "steps": 300,
    "record_every": 4,
    "data_seed": 7004,
    "tags": ["browser"],
    "axes": {"init_scale": [0.1], "k": [4], "data_scale": [0.3, 0.8], "lambda0": [0.5, 2.0], "seed": {"range": [0, 2]}},
}


def run_sweep(api, spec: dict) -> int:
    """Submit through the API and wait for the end of its event stream."""
    sid = api.post("/sweeps", json=spec).raise_for_status().json()["id"]
    with api.stream("GET", f"/sweeps/{sid}/events", timeout=300) as events:
        for line in events.iter_lines():
            if line.startswith("event: end"):
                break
    assert api.get(f"/sweeps/{sid}").json()["status"] == "done"
    return sid


@pytest.fixture(scope="module")
def server(shared_server):
    srv, _ = shared_server("sqlite")
    return srv


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium; .ci/run does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("FLOWSWEEP_UPDATE_SCREENSHOTS") == "1":
        return REPO / "docs"
    return tmp_path_factory.mktemp("screenshots")


def shot(page: Page, shots: Path, name: str) -> None:
    page.wait_for_timeout(300)  # let Plotly finish its transitions before the picture
    page.evaluate("document.getElementById('toast')?.replaceChildren()")
    page.screenshot(path=str(shots / f"dashboard-{name}.png"), full_page=True)


def plot(page: Page, plot_id: str) -> dict:
    """The data and layout Plotly drew in the element `plot_id`."""
    page.wait_for_function(f"document.getElementById('{plot_id}') && document.getElementById('{plot_id}').data")
    return page.evaluate(f"""() => {{
        const el = document.getElementById('{plot_id}');
        return {{data: el.data.map(t => ({{name: t.name, x: t.x, y: t.y, dash: t.line && t.line.dash,
                                           fill: t.fill || null, visible: t.visible === undefined ? true : t.visible,
                                           legendgroup: t.legendgroup || null,
                                           marker_color: t.marker && Array.isArray(t.marker.color)
                                                         ? t.marker.color : null}})),
                 xaxis: {{title: el.layout.xaxis.title.text, type: el._fullLayout.xaxis.type}},
                 yaxis: {{title: el.layout.yaxis.title.text, type: el._fullLayout.yaxis.type}},
                 shapes: el.layout.shapes || []}};
    }}""")


@pytest.fixture(scope="module")
def submitted(browser, server, api, shots):
    """A sweep submitted through the form; its page followed to 100 % without a reload."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto("/#/submit")
    expect(pg.locator("#estimate")).to_contain_text("points")
    pg.locator("#tab-text").click()
    pg.locator("#spec-text").fill(json.dumps(SPEC, indent=2))
    expect(pg.locator("#n-points")).to_have_text("9 points")
    pg.locator("#tab-form").click()  # the form shows what the text said
    expect(pg.locator("#in-name")).to_have_value(SPEC["name"])
    expect(pg.locator("#in-axes-init_scale")).to_have_value("[0.01,0.1,1]")
    shot(pg, shots, "submit")
    pg.locator("#submit-button").click()
    pg.wait_for_url("**/#/sweeps/*")
    sweep_id = int(pg.url.rsplit("/", 1)[1])
    pg.evaluate("window.__noReload = true")
    expect(pg.locator("h1 .badge")).to_have_text("done")
    expect(pg.locator(".pct").first).to_have_text("100%")
    assert pg.evaluate("window.__noReload") is True  # the page was updated in place (SSE)
    expect(pg.locator("[data-count=done]")).to_have_text("9")
    plot(pg, "fig-speedup")
    shot(pg, shots, "sweep")
    context.close()
    return sweep_id


def test_submit_through_the_form_reaches_100_percent_live(submitted, api):
    state = api.get(f"/sweeps/{submitted}").json()
    assert state["name"] == SPEC["name"] and state["status"] == "done" and state["tags"] == ["browser"]
    assert state["spec"]["axes"] == SPEC["axes"]


def test_sweep_figures_draw_the_api_aggregation(page, submitted, api):
    page.goto(f"/#/sweeps/{submitted}")
    err = plot(page, "fig-error")
    curves = api.get(f"/sweeps/{submitted}/curves").json()
    labels = [", ".join(f"{k}={v:g}" for k, v in g["key"].items()) for g in curves["groups"]]
    assert labels == ["init_scale=0.01", "init_scale=0.1", "init_scale=1"]
    lines = [t for t in err["data"] if t["fill"] != "toself"]
    bands = [t for t in err["data"] if t["fill"] == "toself"]
    assert [t["name"] for t in lines] == [f"{lab} · {m}" for lab in labels for m in ("two-layer", "one-layer")]
    assert [t["dash"] for t in lines] == ["solid", "dash"] * 3 and len(bands) == 3
    for g, two, one in zip(curves["groups"], lines[0::2], lines[1::2]):
        np.testing.assert_allclose(two["x"], np.rint(np.array(g["t"]) / SPEC["eta"]))
        np.testing.assert_allclose(two["y"], g["error"]["mean"], rtol=1e-12)
        np.testing.assert_allclose(one["y"], g["error_linear"]["mean"], rtol=1e-12)
    assert err["xaxis"] == {"title": "iterations", "type": "linear"}
    assert err["yaxis"]["type"] == "log" and "‖Y − X(t)‖" in err["yaxis"]["title"]
    # Log/linear from the keyboard: focus the toggle and press Enter.
    toggle = page.locator("section[aria-label^='Fig. 1 · reconstruction'] button[data-axis=y]")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert plot(page, "fig-error")["yaxis"]["type"] == "linear"
    # A click on a legend entry hides that group (both its lines and its band).
    page.locator("#fig-error .legend .traces").first.click()
    page.wait_for_function("document.getElementById('fig-error').data[0].visible === 'legendonly'")
    hidden = [t for t in plot(page, "fig-error")["data"] if t["visible"] == "legendonly"]
    assert {t["legendgroup"] for t in hidden} == {labels[0]} and len(hidden) == 3

    sv = plot(page, "fig-sv")
    assert len(sv["data"]) == 3 * min(SPEC["m"], SPEC["n"])
    first = curves["groups"][0]
    np.testing.assert_allclose(sv["data"][0]["y"], [row[0] for row in first["singular_values"]], rtol=1e-12)
    assert sv["yaxis"]["title"] == "singular values of X(t)"

    speed = plot(page, "fig-speedup")
    summary = api.get(f"/sweeps/{submitted}/summary", params={"by": "init_scale"}).json()["data"]
    assert speed["xaxis"] == {"title": "init_scale", "type": "log"}
    np.testing.assert_allclose(speed["data"][0]["x"], [r["init_scale"] for r in summary])
    got = np.array([np.nan if v is None else v for v in speed["data"][0]["y"]], dtype=float)
    want = np.array([np.nan if r["speedup_mean"] is None else r["speedup_mean"] for r in summary], dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert [s["y0"] for s in speed["shapes"]] == [1]  # the one-layer reference
    expect(page.locator("#figure-notes")).to_contain_text("fit_lambda0")
    # Labels: tags and notes saved with PATCH, read back through the API.
    page.locator("#s-tags").fill("browser, edited")
    page.locator("#s-notes").fill("seen in a browser")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("form.card [role=status]")).to_have_text("saved")
    state = api.get(f"/sweeps/{submitted}").json()
    assert (state["tags"], state["notes"]) == (["browser", "edited"], "seen in a browser")


def test_results_table_filters_sorts_and_downloads_csv(page, submitted, shots):
    page.goto(f"/#/results?sweep_id={submitted}")
    expect(page.locator("#results-count")).to_have_text("rows 1–9 of 9")
    page.locator("#r-init_scale").fill("0.1")
    page.locator("#r-init_scale").press("Enter")
    expect(page.locator("#results-count")).to_have_text("rows 1–3 of 3")
    header = page.locator("#results th", has_text="final_error").first
    header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    col = [t.strip() for t in page.locator("#results thead th").all_inner_texts()].index("final_error ▲")
    values = [float(v) for v in page.locator(f"#results tbody td:nth-child({col + 1})").all_inner_texts()]
    assert values == sorted(values) and len(values) == 3
    shot(page, shots, "results")
    with page.expect_download() as info:
        page.locator("#download-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert len(rows) == 3 and {r["init_scale"] for r in rows} == {"0.1"}
    assert {r["sweep_id"] for r in rows} == {str(submitted)} and "final_error" in rows[0]
    # A bad filter is named next to the filters, the page does not break.
    page.locator("#r-extra").fill("k_min=abc")
    page.locator("#r-extra").press("Enter")
    expect(page.locator("#err-extra")).to_contain_text("k_min")


def test_point_page_curves_closed_form_and_state(page, submitted, api, shots):
    row = api.get(f"/sweeps/{submitted}/results", params={"order_by": "point_id", "limit": 1}).json()["data"][0]
    pid = row["point_id"]
    page.goto(f"/#/points/{pid}")
    fig = plot(page, "fig-point-error")
    names = [t["name"] for t in fig["data"]]
    assert names == ["two-layer (simulated)", "one-layer (simulated)", "one-layer closed form, eq. (4)"]
    own = api.get(f"/points/{pid}/curves").json()
    np.testing.assert_allclose(fig["data"][0]["y"], own["error"], rtol=1e-12)
    # Eq. (4) for gd: e0 (1 - eta)^i, against the simulated one-layer error.
    i = np.rint(np.array(own["t"]) / SPEC["eta"])
    np.testing.assert_allclose(fig["data"][2]["y"], own["error_linear"][0] * (1 - SPEC["eta"]) ** i, rtol=1e-9)
    np.testing.assert_allclose(fig["data"][2]["y"], own["error_linear"], rtol=1e-6)
    expect(page.locator("#point-fields")).to_contain_text("final_error")
    for field in ("q0_norm", "speedup", "worker", "conservation_drift"):
        expect(page.locator("#point-fields dt", has_text=field).first).to_be_visible()
    shot(page, shots, "point")
    with page.expect_download() as info:
        page.locator("#download-state").click()
    state = json.loads(Path(info.value.path()).read_text())
    assert np.array(state["Y"]).shape == (SPEC["m"], SPEC["n"]) and np.array(state["U0"]).shape == (SPEC["m"], 20)


def test_submit_shows_the_422_next_to_the_field(page, shots):
    page.goto("/#/submit")
    expect(page.locator("#estimate")).to_contain_text("points")
    page.locator("#in-eta").fill("-1")
    expect(page.locator("#err-eta")).to_contain_text("greater than 0")
    expect(page.locator("#in-eta")).to_have_attribute("aria-invalid", "true")
    page.locator("#in-axes-k").fill("[0]")
    expect(page.locator("[id='err-axes.k']")).to_contain_text("must lie in [1,")
    page.locator("#submit-button").click()  # the service answers 422: nothing stored
    expect(page.locator("#estimate")).to_contain_text("rejected")
    shot(page, shots, "submit-error")
    assert page.url.endswith("#/submit")
    page.locator("#in-eta").fill("0.01")
    expect(page.locator("#err-eta")).to_have_text("")
    # YAML in the text editor: converted before sending, its errors listed by field.
    page.locator("#tab-text").click()
    page.locator("#spec-format").select_option("yaml")
    text = page.locator("#spec-text").input_value()
    assert "model: asymmetric" in text and "{" not in text.split("axes:")[0]
    page.locator("#spec-text").fill(text.replace("model: asymmetric", "model: quadratic"))
    expect(page.locator("#general-errors")).to_contain_text("model")


def test_cancel_then_delete_a_running_sweep_from_the_list(page, api, shots):
    big = {
        "name": f"pw-cancel-{RUN}",
        "model": "asymmetric",
        "m": 2,
        "n": 4,
        "eta": 0.01,
        "steps": 100_000,
        "record_every": 1000,
        "data_seed": 7002,
        "tags": ["browser"],
        # k = 1 < m: no point reaches machine precision (no early stop), so the sweep cannot finish
        # before the cancel however fast gd is
        "axes": {"init_scale": [0.3], "k": [1], "seed": {"range": [0, 10000]}},
    }
    sid = api.post("/sweeps", json=big).json()["id"]
    page.goto("/#/?tag=browser")
    row = page.locator(f"#sweeps tr[data-id='{sid}']")
    expect(row.locator(".badge")).to_have_text("running")  # the list follows the runner (SSE)
    page.evaluate("window.__noReload = true")
    shot(page, shots, "sweeps")
    row.get_by_role("button", name="Cancel").click()
    expect(row.locator(".badge")).to_have_text("cancelled")
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.locator(f"#sweeps tr[data-id='{sid}']")).to_have_count(0)
    assert page.evaluate("window.__noReload") is True
    assert api.get(f"/sweeps/{sid}").status_code == 404


def test_list_filters_by_tag_and_is_keyboard_usable(page, submitted, shots):
    page.goto("/#/")
    page.locator("#f-tag").fill("browser")
    page.locator("#f-tag").press("Enter")
    expect(page.locator(f"#sweeps tr[data-id='{submitted}']")).to_be_visible()
    page.goto("/#/?tag=no-such-tag")
    expect(page.locator("#sweeps tbody")).to_contain_text("No sweep matches")
    # From the search box, Tab reaches the sweep's link; Enter opens its page.
    page.goto(f"/#/?name={SPEC['name']}")
    link = page.get_by_role("link", name=SPEC["name"])
    expect(link).to_be_visible()
    page.locator("#f-name").focus()
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == SPEC["name"]:
            break
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/#/sweeps/{submitted}")
    expect(page.locator("h1")).to_contain_text(SPEC["name"])


def test_compare_overlays_two_sweeps(page, submitted, api, shots):
    twin = api.post(
        "/sweeps", json={**SPEC, "name": f"pw-twin-{RUN}", "axes": {**SPEC["axes"], "init_scale": [0.1, 1.0]}}
    ).json()
    assert twin["n_cached"] == twin["n_points"] == 6  # all reused: done at once
    page.goto(f"/#/compare?ids={submitted},{twin['id']}&metric=final_error&x=init_scale")
    fig = plot(page, "fig-compare")
    assert [t["name"] for t in fig["data"]] == [f"{submitted} · {SPEC['name']}", f"{twin['id']} · pw-twin-{RUN}"]
    assert [len(t["x"]) for t in fig["data"]] == [3, 2] and fig["yaxis"]["title"] == "final_error"
    np.testing.assert_allclose(fig["data"][0]["y"][1:], fig["data"][1]["y"], rtol=1e-12)  # same points
    shot(page, shots, "compare")
    # The error curves instead: chosen in the form, one mean line (and band) per sweep and group.
    page.locator("#c-mode").select_option("curve")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url("**mode=curve**")
    page.wait_for_function(
        "document.getElementById('fig-compare') && document.getElementById('fig-compare').data"
        " && document.getElementById('fig-compare').data.some(t => t.name.includes('pw-twin'))"
    )
    curves = {t["name"]: t for t in plot(page, "fig-compare")["data"] if t["fill"] != "toself"}
    assert sorted(curves) == sorted(
        [f"{SPEC['name']}: init_scale={s:g}" for s in (0.01, 0.1, 1.0)]
        + [f"pw-twin-{RUN}: init_scale={s:g}" for s in (0.1, 1.0)]
    )
    np.testing.assert_allclose(
        curves[f"{SPEC['name']}: init_scale=0.1"]["y"],  # the same points' mean
        curves[f"pw-twin-{RUN}: init_scale=0.1"]["y"],
        rtol=1e-12,
    )


def test_phone_width_and_local_api_docs(browser, server, submitted, shots):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server.url)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(f"/#/sweeps/{submitted}")
    plot(pg, "fig-speedup")
    # Nothing wider than the screen: tables scroll in their own box, figures resize.
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    shot(pg, shots, "sweep-phone")
    # /docs loads every asset from this server (nothing from the internet).
    hosts = set()
    pg.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    pg.set_viewport_size({"width": 1280, "height": 800})
    pg.goto("/docs")
    expect(pg.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(pg.locator(".swagger-ui")).to_contain_text("/sweeps/{sweep_id}/events")
    assert hosts == {server.url.split("/")[2]}
    shot(pg, shots, "api-docs")
    context.close()


def test_deep_sweep_draws_time_to_tol_and_plateau_against_depth(page, api, shots):
    sid = run_sweep(api, DEEP)
    page.goto(f"/#/sweeps/{sid}")
    depth = plot(page, "fig-depth")
    summary = api.get(f"/sweeps/{sid}/summary", params={"by": "depth,init_scale"}).json()["data"]
    assert [t["name"] for t in depth["data"]] == ["init_scale=0.1", "init_scale=0.3"]
    assert depth["xaxis"] == {"title": "depth", "type": "linear"} and depth["yaxis"]["title"] == "time_to_tol"
    for trace, scale in zip(depth["data"], (0.1, 0.3)):
        rows = sorted((r for r in summary if r["init_scale"] == scale), key=lambda r: r["depth"])
        assert trace["x"] == [1, 2, 3]
        np.testing.assert_allclose(
            np.array(trace["y"], dtype=float), np.array([r["time_to_tol_mean"] for r in rows], dtype=float), rtol=1e-12
        )
    # The plateau: recomputed here from each point's own curve (first t with e(t) <= 0.9 e(0)).
    plateau = plot(page, "fig-plateau")
    assert plateau["xaxis"] == {"title": "depth", "type": "linear"} and "0.9·e(0)" in plateau["yaxis"]["title"]
    results = api.get(f"/sweeps/{sid}/results", params={"limit": 100}).json()["data"]
    own = {}
    for r in results:
        c = api.get(f"/points/{r['point_id']}/curves").json()
        t, e = np.array(c["t"]), np.array(c["error"], dtype=float)
        own.setdefault((r["init_scale"], r["depth"]), []).append(t[np.flatnonzero(e <= 0.9 * e[0])[0]])
    assert [t["name"] for t in plateau["data"]] == ["init_scale=0.1", "init_scale=0.3"]
    for trace, scale in zip(plateau["data"], (0.1, 0.3)):
        assert trace["x"] == [1, 2, 3]
        np.testing.assert_allclose(trace["y"], [np.mean(own[(scale, L)]) for L in (1, 2, 3)], rtol=1e-12)
    # L >= 2: a smaller start stays longer on the plateau, and a deeper one too (Saxe et al.); L = 1 has none
    small, large = (np.array(t["y"]) for t in plateau["data"])
    assert (small[1:] > large[1:]).all() and small[0] < small[1] < small[2]
    shot(page, shots, "sweep-deep")


def test_phase_sweep_draws_table2_cells_and_the_boundary(page, api, shots):
    sid = run_sweep(api, PHASE)
    page.goto(f"/#/sweeps/{sid}")
    fig = plot(page, "fig-phase")
    assert fig["xaxis"]["title"] == "σ = σ_min(Y)" and fig["yaxis"]["title"] == "λ₀"
    cells = fig["data"][0]
    # σ_min(Y) = data_scale · min(y_singular_values) = data_scale; medians from the result rows.
    rows = api.get(f"/sweeps/{sid}/results", params={"limit": 100}).json()["data"]
    want = {}
    for r in rows:
        want.setdefault((r["data_scale"], r["lambda0"]), []).append(r["rate_fit"])
    assert sorted(zip(cells["x"], cells["y"])) == sorted(want) and len(cells["x"]) == 4
    for x, y, colour in zip(cells["x"], cells["y"], cells["marker_color"]):
        assert colour == pytest.approx(np.log2(np.median(want[(x, y)])), rel=1e-12)
    (boundary,) = [t for t in fig["data"] if t["name"] == "4σ² + λ₀² = 1"]
    np.testing.assert_allclose(4 * np.array(boundary["x"]) ** 2 + np.array(boundary["y"]) ** 2, 1.0, atol=1e-12)
    assert boundary["dash"] == "dash"
    # red = faster than the one-layer rate (log2 > 0), blue = slower
    low, high = page.evaluate("""() => { const cs = document.getElementById('fig-phase')._fullData[0].marker.colorscale;
        return [cs[0][1], cs[cs.length - 1][1]]; }""")
    rgb = lambda c: [int(v) for v in c[c.index("(") + 1 : -1].split(",")]  # noqa: E731
    assert rgb(high)[0] > rgb(high)[2] and rgb(low)[2] > rgb(low)[0]
    shot(page, shots, "sweep-phase")
    # the log-σ toggle and a legend click that hides the boundary
    page.locator("section[aria-label^='Table 2'] button[data-axis=x]").click()
    assert plot(page, "fig-phase")["xaxis"]["type"] == "log"
    page.locator("section[aria-label^='Table 2'] button[data-axis=x]").click()
    page.locator("#fig-phase .legend .traces", has_text="4σ²").click()
    page.wait_for_function("document.getElementById('fig-phase').data.some(t => t.visible === 'legendonly')")
