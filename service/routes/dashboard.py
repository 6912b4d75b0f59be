"""The web dashboard at `/` and the API docs at `/docs`, served by the API's own process.

Everything the browser loads comes from installed packages, nothing from the internet: the dashboard's
files (service/dashboard), Plotly.js from the `plotly` wheel's package_data, Swagger UI's assets from
the `swagger-ui-py` wheel. The dashboard is a static page that talks to the REST API like any client.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"

router = APIRouter(include_in_schema=False)


def _package_dir(package: str, sub: str = "") -> Path:
    return Path(str(resources.files(package))) / sub


@router.get("/", response_class=HTMLResponse)
def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/examples.json")
def examples() -> JSONResponse:
    """The example sweep files (examples/*.json), one entry per sweep, for the submit page's editor."""
    out = []
    try:
        folder = resources.files("flowsweep.examples")
        # the paper's experiments first (fig1 prefills the editor), then the others by name
        files = sorted(
            (f for f in folder.iterdir() if f.name.endswith(".json")),
            key=lambda f: (not f.name.startswith(("fig", "table")), f.name),
        )
    except (ModuleNotFoundError, FileNotFoundError):
        files = []
    for f in files:
        try:
            body = json.loads(f.read_text())
        except ValueError:
            continue
        sweeps = body if isinstance(body, list) else [body]
        for i, spec in enumerate(sweeps):
            label = f.name.removesuffix(".json") + (f" ({i + 1}/{len(sweeps)})" if len(sweeps) > 1 else "")
            out.append({"file": f.name, "label": f"{label}: {spec.get('name', '')}", "spec": spec})
    return JSONResponse(out)


@router.get("/docs", response_class=HTMLResponse)
def swagger_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="flowsweep API",
        swagger_js_url="/docs/static/swagger-ui-bundle.js",
        swagger_css_url="/docs/static/swagger-ui.css",
        swagger_favicon_url="/docs/static/favicon-32x32.png",
    )


def mount(app: FastAPI) -> None:
    """The dashboard's routes and its static folders (call once, on an app made with docs_url=None)."""
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=DASHBOARD_DIR), name="dashboard")
    app.mount("/dashboard/plotly", StaticFiles(directory=_package_dir("plotly", "package_data")), name="plotly")
    app.mount("/docs/static", StaticFiles(directory=_package_dir("swagger_ui", "static")), name="swagger")
