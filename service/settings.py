"""Service configuration: one pydantic-settings object read from FLOWSWEEP_* environment variables.

`RAY_ADDRESS` is read under its plain name (Ray's own convention) so `RAY_ADDRESS=... flowsweep serve`
joins a cluster exactly as `ray` tools do.
"""
from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOWSWEEP_", extra="ignore", populate_by_name=True)

    database_url: str = "sqlite:///./flowsweep.db"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # When set, every POST/DELETE needs `Authorization: Bearer <api_token>` (SPEC §4 Auth).
    api_token: str | None = None
    read_token_required: bool = False
    # Bounds stated in the 422 of POST /sweeps.
    max_points: int = Field(100_000, ge=1)
    max_steps: int = Field(10_000_000, ge=1)
    # Migrate an empty database (any backend) or an outdated SQLite file at start-up; an outdated
    # Postgres schema is always refused with a message naming `flowsweep db upgrade`.
    auto_migrate: bool = True
    ray_address: str | None = Field(None, validation_alias=AliasChoices("RAY_ADDRESS", "FLOWSWEEP_RAY_ADDRESS",
                                                                         "ray_address"))
    num_cpus: int | None = Field(None, ge=1)
    # A chunk running longer than this is cancelled and its points failed with a message saying so.
    task_timeout_seconds: float = Field(3600.0, gt=0)
    # The runner lease (several service processes on one database): a standby takes over within this.
    runner_lease_seconds: float = Field(6.0, gt=0)
    log_level: str = "info"

    @field_validator("api_token", "ray_address", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        # `FLOWSWEEP_API_TOKEN=` (empty) means "no token", not "the empty token".
        return None if isinstance(v, str) and not v.strip() else v


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
