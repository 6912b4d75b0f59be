"""The REST API's routers, one module per resource (SPEC §4)."""

from fastapi import APIRouter

from . import health, points, results, summary, sweeps

router = APIRouter()
router.include_router(sweeps.router)
router.include_router(results.router)
router.include_router(summary.router)
router.include_router(points.router)
router.include_router(health.router)

__all__ = ["router"]
