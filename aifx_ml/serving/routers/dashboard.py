"""`GET /dashboard`: one page with health, training, versions, A/B tests and drift, drawn in
the browser from the monitoring API (inline SVG charts, nothing fetched from elsewhere);
and the monthly Evidently reports it links to."""

from __future__ import annotations

import re
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import FileResponse, HTMLResponse

from aifx_ml.serving.deps import ServicesDep
from aifx_ml.serving.errors import error_responses
from aifx_ml.serving.fields import IDENTIFIER_PATTERN

router = APIRouter(tags=["dashboard"])
MONTH = re.compile(r"^\d{4}-\d{2}$")
VERSION = re.compile(IDENTIFIER_PATTERN)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    """The monitoring page (it calls the JSON endpoints itself)."""
    page = resources.files("aifx_ml.serving").joinpath("static/dashboard.html").read_text("utf-8")
    return HTMLResponse(page)


@router.get(
    "/api/v1/monitoring/reports/{month}/{version}",
    response_class=FileResponse,
    responses=error_responses(404, 422),
)
def report(
    svc: ServicesDep,
    month: Annotated[str, Path(pattern=MONTH.pattern)],
    version: Annotated[str, Path(pattern=VERSION.pattern)],
) -> FileResponse:
    """The Evidently report of a version's monthly evaluation."""
    path = svc.settings.monthly_reports_dir / month / f"{version}.html"
    if not path.is_file():
        raise HTTPException(404, detail=f"no {month} report for {version}")
    return FileResponse(path, media_type="text/html")
