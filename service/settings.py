"""Service configuration: one pydantic-settings object read from FLOWSWEEP_* environment variables.

`RAY_ADDRESS` is read under its plain name (Ray's own convention) so `RAY_ADDRESS=... flowsweep serve`
joins a cluster exactly as `ray` tools do.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator, model_validator
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
    # Cost budget (core.cost's estimates), stated in the 422 of POST /sweeps.
    max_point_cpu_seconds: float = Field(3_600.0, gt=0)
    max_sweep_cpu_seconds: float = Field(86_400.0, gt=0)
    max_point_bytes: float = Field(2e9, gt=0)
    # Largest answer built in memory (GET /points/{id}/state), estimated before building it: 413 beyond.
    max_answer_bytes: int = Field(100_000_000, ge=1)
    # CSV/Parquet exports streaming at once (each holds a database connection); more wait their turn.
    max_concurrent_exports: int = Field(8, ge=1)
    # Largest request body read (streamed, counted as it arrives): 413 beyond.
    max_body_bytes: int = Field(10_000_000, ge=1)
    # Host names the service answers to (Host header; DNS rebinding), comma separated; "*": any.
    # Default: loopback names plus FLOWSWEEP_HOST.
    allowed_hosts: str | None = None
    # Origins allowed to write (POST/PATCH/DELETE with an Origin header), comma separated; same-host
    # origins always are.
    allowed_origins: str = ""
    # Migrate an empty database (any backend) or an outdated SQLite file at start-up; an outdated
    # Postgres schema is always refused with a message naming `flowsweep db upgrade`.
    auto_migrate: bool = True
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("RAY_ADDRESS", "FLOWSWEEP_RAY_ADDRESS", "ray_address")
    )
    num_cpus: int | None = Field(None, ge=1)
    # Server-Sent Events: seconds between progress snapshots (one database read per interval, shared).
    events_interval_seconds: float = Field(1.0, gt=0, le=60)
    # A chunk running longer than this is cancelled and its points failed with a message saying so.
    task_timeout_seconds: float = Field(3600.0, gt=0)
    # The runner lease (several service processes on one database): a standby takes over within this.
    runner_lease_seconds: float = Field(6.0, gt=0)
    log_level: str = "info"

    @field_validator("api_token", "ray_address", "allowed_hosts", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        # `FLOWSWEEP_API_TOKEN=` (empty) means "no token", not "the empty token".
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _read_token_needs_a_token(self) -> Settings:
        # Silently serving reads openly when the operator asked for them to be closed is the bug.
        if self.read_token_required and not self.api_token:
            raise ValueError(
                "FLOWSWEEP_READ_TOKEN_REQUIRED is set but FLOWSWEEP_API_TOKEN is empty: set a token "
                "(reads and writes then need it) or unset FLOWSWEEP_READ_TOKEN_REQUIRED"
            )
        return self

    def trusted_hosts(self) -> set[str] | None:
        """Host names the service answers to (None: any). Loopback names and FLOWSWEEP_HOST, plus
        FLOWSWEEP_ALLOWED_HOSTS; "testserver" is Starlette's TestClient."""
        extra = {h.strip().lower() for h in (self.allowed_hosts or "").split(",") if h.strip()}
        if "*" in extra:
            return None
        base = {"127.0.0.1", "localhost", "::1", "testserver"}
        if self.host not in ("0.0.0.0", "::", ""):
            base.add(self.host.lower().strip("[]"))
        return base | extra

    def write_origins(self) -> set[str]:
        return {o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
