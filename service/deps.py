"""Typed FastAPI dependencies: settings, database sessions, the runner, and bearer-token auth."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .settings import Settings

if TYPE_CHECKING:
    from .runner import Runner

_bearer = HTTPBearer(auto_error=False, description="FLOWSWEEP_API_TOKEN")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A read session (on SQLite a deferred BEGIN: readers never wait for the runner's writes)."""
    session = request.app.state.read_session_factory()
    try:
        yield session
    finally:
        session.close()


def get_runner(request: Request) -> Runner | None:
    return getattr(request.app.state, "runner", None)


def _check_token(settings: Settings, creds: HTTPAuthorizationCredentials | None) -> None:
    token = settings.api_token
    if not token:
        return
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token: send 'Authorization: Bearer <FLOWSWEEP_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid bearer token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_write_token(settings: SettingsDep, creds: CredentialsDep) -> None:
    """Every POST/DELETE needs the bearer token when FLOWSWEEP_API_TOKEN is set (SPEC §4 Auth)."""
    _check_token(settings, creds)


def require_read_token(settings: SettingsDep, creds: CredentialsDep) -> None:
    """Reads need it too only when FLOWSWEEP_READ_TOKEN_REQUIRED=1."""
    if settings.read_token_required:
        _check_token(settings, creds)


SessionDep = Annotated[Session, Depends(get_session)]
RunnerDep = Annotated[Any, Depends(get_runner)]  # service.runner.Runner, or None without a runner
WriteAuth = Depends(require_write_token)
ReadAuth = Depends(require_read_token)
