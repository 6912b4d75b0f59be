"""One active runner per database: a lease in the database (table runner_lease, revision 0004).

Several service processes may share one database (API replicas on Postgres, two `flowsweep serve`
on one SQLite file). The one holding the 'runner' lease runs the sweeps; it renews the lease every
`ttl / 4` seconds. When its process dies the lease is not renewed and expires after `ttl` seconds;
a standby then takes it (and recovers the dead runner's points). Every change a runner makes to a
point is guarded by the point's `owner` (this lease's owner id), so a runner that lost its lease
without knowing (a long pause) changes nothing, and a standby never touches points running
elsewhere while the lease is held.

Expiry is judged with the clocks of the processes (UTC): replicas on different machines need
their clocks synchronised to well within `ttl`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import store
from .db import session_scope
from .models import utcnow

log = logging.getLogger("flowsweep.runner")

LEASE_NAME = "runner"
LEASE_TTL_SECONDS = 6.0


def new_owner_id() -> str:
    """host:pid:random, unique per runner instance (at most 64 characters)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Leadership:
    """`ensure()` -> whether this process holds (took, or renewed) the runner lease now;
    `held()` -> whether it still holds it by its own clock (renewed within ttl, minus a margin)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        owner: str | None = None,
        ttl: float = LEASE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self.owner = owner or new_owner_id()
        self.ttl = float(ttl)
        self._clock = clock
        self._valid_until = -1.0
        self._renewed_at = -1e18

    def held(self) -> bool:
        # A quarter of the ttl as margin: a standby cannot have taken it before our deadline.
        return self._clock() < self._valid_until

    def due(self) -> bool:
        """Whether it is time to renew (every ttl / 4) or to try again for it."""
        return self._clock() - self._renewed_at >= self.ttl / 4 or not self.held()

    def ensure(self) -> bool:
        t0 = self._clock()
        now = utcnow()
        expires = now + dt.timedelta(seconds=self.ttl)
        try:
            with session_scope(self._session_factory) as s:
                previous = store.take_lease(s, LEASE_NAME, self.owner, now, expires)
            if previous is False:
                self._valid_until = -1.0
                return False
            if previous is not None:
                log.info("runner: lease of %s expired at %s; taking over", previous[0], previous[1].isoformat())
        except IntegrityError:  # another process created it at the same moment
            self._valid_until = -1.0
            return False
        was_held = self.held()
        self._renewed_at = t0
        self._valid_until = t0 + 0.75 * self.ttl
        if not was_held:
            log.info("runner: active (holds the runner lease %s)", self.owner)
        return True

    def release(self) -> None:
        """Give the lease up (a clean stop): a standby takes over at once."""
        if self._valid_until < 0:
            return
        self._valid_until = -1.0
        try:
            with session_scope(self._session_factory) as s:
                store.release_lease(s, LEASE_NAME, self.owner, utcnow() - dt.timedelta(seconds=1))
        except Exception:
            log.warning("runner: could not release the lease (it expires by itself)")
