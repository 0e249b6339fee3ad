"""Leases: which process is running which piece of work, until when (the ``descend_claims`` table).

A lease lasts ``lease`` seconds (:data:`LEASE`) and is renewed by a heartbeat thread every ``lease / 4`` seconds
while its holder works; work whose lease has expired is taken over by anyone, whatever host or pid held it (a
holder on this host whose pid is gone is taken over at once).  Hosts sharing a database need clocks that agree
to well within a lease (NTP).  Every family's runner (:mod:`descend.results.runner`) claims its work here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .db import StorageError, owner_alive, owner_id

__all__ = ["LEASE", "Leases", "claims_table"]

#: Seconds a claim lives without a heartbeat (the heartbeat renews it every ``LEASE / 4`` seconds).
LEASE = 120.0


def claims_table(meta: sa.MetaData) -> sa.Table:
    """``descend_claims`` (key → owner, last heartbeat, expiry) on ``meta``."""
    return sa.Table(
        "descend_claims", meta,
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),  # last renewal (time.time() of the holder)
        sa.Column("expires", sa.Float, nullable=False),  # the lease: free for anyone after this time
    )


def check_lease(lease: float) -> float:
    if isinstance(lease, bool) or not (isinstance(lease, (int, float)) and math.isfinite(lease) and lease > 0):
        raise ValueError(f"lease must be a finite number of seconds > 0, got {lease!r}")
    return float(lease)


class Leases:
    """The leases of one database: ``table`` (a :func:`claims_table`) on ``engine``.

    ``errors(what)`` turns database failures into one-line :class:`StorageError` (the owning store's
    ``_errors``); ``lease``: seconds a claim lives without a heartbeat.
    """

    def __init__(self, engine: sa.Engine, table: sa.Table, errors: Callable[[str], AbstractContextManager[None]],
                 lease: float = LEASE) -> None:
        self.engine, self.table, self._errors = engine, table, errors
        self.lease = check_lease(lease)
        self._held: dict[str, tuple[str, Callable[[], None] | None]] = {}
        self._lock = threading.Lock()
        self._beat: threading.Thread | None = None

    def claim(self, key: str, owner: str | None = None, *, on_beat: Callable[[], None] | None = None) -> bool:
        """Take the lease on a piece of work: succeeds if it is free, ours, expired, or held by a pid of this
        host that is gone.  While held, a heartbeat thread renews it (and calls ``on_beat``) until
        :meth:`release`."""
        owner = owner or owner_id()
        now, c = time.time(), self.table.c
        try:
            with self._errors("claim work"), self.engine.begin() as conn:
                row = conn.execute(sa.select(c.owner, c.expires).where(c.key == key)).first()
                if row is None:
                    conn.execute(self.table.insert().values(key=key, owner=owner, heartbeat=now,
                                                            expires=now + self.lease))
                else:
                    holder, expires = row
                    if holder != owner and expires > now and owner_alive(holder) is not False:
                        return False
                    # compare-and-swap: of two processes taking over the same expired lease, one wins
                    taken = conn.execute(self.table.update().where(c.key == key, c.owner == holder,
                                                                   c.expires == expires)
                                         .values(owner=owner, heartbeat=now, expires=now + self.lease))
                    if taken.rowcount != 1:
                        return False
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # inserted by another process just now
                return False
            raise
        if on_beat is not None:
            on_beat()  # the first heartbeat, at once (short work ends before the thread's first beat)
        with self._lock:
            self._held[key] = (owner, on_beat)
            if self._beat is None:
                self._beat = threading.Thread(target=self._heartbeat, name="descend-lease", daemon=True)
                self._beat.start()
        return True

    def release(self, key: str, owner: str | None = None) -> None:
        owner = owner or owner_id()
        with self._lock:
            if self._held.get(key, (None,))[0] == owner:
                del self._held[key]
        c = self.table.c
        with self._errors("release work"), self.engine.begin() as conn:
            conn.execute(self.table.delete().where(c.key == key, c.owner == owner))

    def leases(self, prefix: str = "") -> dict[str, tuple[str, float]]:
        """``key -> (owner, expires)`` of the stored leases whose key starts with ``prefix``."""
        c = self.table.c
        q = sa.select(c.key, c.owner, c.expires)
        if prefix:
            q = q.where(c.key.startswith(prefix, autoescape=True))
        with self._errors("read the leases"), self.engine.connect() as conn:
            return {k: (o, e) for k, o, e in conn.execute(q).all()}

    def holds(self, key: str, owner: str | None = None) -> bool:
        """Whether the stored lease on ``key`` is still ``owner``'s (default: the calling thread's)."""
        q = sa.select(self.table.c.owner).where(self.table.c.key == key)
        with self._errors("read the leases"), self.engine.connect() as conn:
            return conn.execute(q).scalar() == (owner or owner_id())

    def lease_live(self, lease: tuple[str, float] | None, now: float | None = None) -> bool:
        """Whether a lease from :meth:`leases` still binds others (unexpired, and not a gone pid of this host)."""
        if lease is None:
            return False
        holder, expires = lease
        return expires > (time.time() if now is None else now) and owner_alive(holder) is not False

    def _heartbeat(self) -> None:
        """Renew this process's leases every ``lease / 4`` s; ends when none is held (restarted by claim)."""
        c = self.table.c
        while True:
            time.sleep(self.lease / 4)
            with self._lock:
                held = dict(self._held)
                if not held:
                    self._beat = None
                    return
            now = time.time()
            for key, (owner, on_beat) in held.items():
                try:
                    with self.engine.begin() as conn:
                        renewed = conn.execute(self.table.update().where(c.key == key, c.owner == owner)
                                               .values(heartbeat=now, expires=now + self.lease)).rowcount
                    if on_beat is not None:
                        on_beat()
                except Exception:  # a locked or unreachable database: retry at the next beat
                    continue
                if not renewed:  # taken over (we were stalled longer than the lease) or released meanwhile
                    with self._lock:
                        if self._held.get(key, (None,))[0] == owner:
                            del self._held[key]

    @contextmanager
    def claimed(self, key: str, *, on_beat: Callable[[], None] | None = None) -> Iterator[bool]:
        """``with leases.claimed(key) as ok:`` — the lease for the block (``ok`` False: someone else holds it)."""
        ok = self.claim(key, on_beat=on_beat)
        try:
            yield ok
        finally:
            if ok:
                self.release(key)
