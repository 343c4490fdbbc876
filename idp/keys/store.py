"""The signing key store: one private JWK file per key plus a manifest of states.

States: ``next`` (published, never signs) → ``active`` (signs; exactly one) →
``retired`` (published until pruned). Every change happens under an exclusive
file lock and ends with an atomic replace of the manifest, so concurrent
operators never leave two active keys and readers never see a torn file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from idp.errors import KeyStoreError
from idp.keys.files import exclusive_lock, fsync_dir, write_atomically
from idp.keys.generate import generate_signing_key

KeyState = Literal["next", "active", "retired"]
MANIFEST = "manifest.json"
LOCK = ".lock"


def _now() -> datetime:
    # Whole seconds: what the manifest stores is exactly what callers get back.
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    alg: str
    state: KeyState
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("created_at", "activated_at", "retired_at"):
            data[name] = _iso(data[name])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRecord:
        return cls(
            kid=data["kid"],
            alg=data["alg"],
            state=data["state"],
            created_at=_parse_time(data["created_at"]) or _now(),
            activated_at=_parse_time(data.get("activated_at")),
            retired_at=_parse_time(data.get("retired_at")),
        )


@dataclass(frozen=True)
class PruneResult:
    removed: list[KeyRecord]
    kept_young: list[KeyRecord]


class KeyStore:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    # -- reading ----------------------------------------------------------------

    def records(self) -> list[KeyRecord]:
        try:
            raw = json.loads(self.manifest_path.read_bytes())
            return [KeyRecord.from_json(item) for item in raw["keys"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"key manifest {self.manifest_path} is unreadable: {exc}") from None

    def private_jwk(self, kid: str) -> dict[str, Any]:
        path = self._key_path(kid)
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            raise KeyStoreError(f"key file {path} named in the manifest is missing") from None
        except ValueError as exc:
            raise KeyStoreError(f"key file {path} is not valid JSON: {exc}") from None

    # -- operations -------------------------------------------------------------

    def initialise(self, alg: str) -> list[KeyRecord]:
        """Create one active and one next key when the store is empty; otherwise do nothing."""
        existing = self.records()
        if existing:
            self._make_private()  # a store created before idp tightened the folder
            return existing  # no lock taken: the store may be a read-only secret volume

        def change(records: list[KeyRecord], now: datetime) -> list[KeyRecord]:
            if records:
                return records
            active = replace(self._new_key(alg, now, "active"), activated_at=now)
            return [active, self._new_key(alg, now, "next")]

        return self._update(change)

    def generate(self, alg: str) -> KeyRecord:
        def change(records: list[KeyRecord], now: datetime) -> list[KeyRecord]:
            existing = [r for r in records if r.state == "next"]
            if existing:
                raise KeyStoreError(
                    f"a next key already exists ({existing[0].kid}); "
                    "run 'idp keys rotate' to promote it first"
                )
            return [*records, self._new_key(alg, now, "next")]

        records = self._update(change)
        return next(r for r in records if r.state == "next")

    def rotate(self, alg: str, min_next_age: int, force: bool = False) -> list[KeyRecord]:
        """next → active, active → retired, and a fresh next key."""

        def change(records: list[KeyRecord], now: datetime) -> list[KeyRecord]:
            pending = [r for r in records if r.state == "next"]
            if not pending:
                raise KeyStoreError("no next key to promote; run 'idp keys generate' first")
            promoted = pending[0]
            age = (now - promoted.created_at).total_seconds()
            if age < min_next_age and not force:
                raise KeyStoreError(
                    f"next key {promoted.kid} was published {int(age)} s ago, less than "
                    f"IDP_JWKS_MAX_AGE ({min_next_age} s): resource servers may not have it "
                    "yet; wait, or pass --force"
                )
            rotated = []
            for record in records:
                if record.state == "active":
                    record = replace(record, state="retired", retired_at=now)
                elif record.kid == promoted.kid:
                    record = replace(record, state="active", activated_at=now)
                rotated.append(record)
            return [*rotated, self._new_key(alg, now, "next")]

        return self._update(change)

    def prune(self, min_retired_age: int, force: bool = False) -> PruneResult:
        """Remove retired keys retired longer ago than ``min_retired_age`` seconds."""
        result = PruneResult(removed=[], kept_young=[])

        def change(records: list[KeyRecord], now: datetime) -> list[KeyRecord]:
            cutoff = now - timedelta(seconds=min_retired_age)
            kept = []
            for record in records:
                if record.state != "retired":
                    kept.append(record)
                elif force or (record.retired_at or now) <= cutoff:
                    result.removed.append(record)
                else:
                    result.kept_young.append(record)
                    kept.append(record)
            return kept

        self._update(change)
        for record in result.removed:
            self._key_path(record.kid).unlink(missing_ok=True)
        if result.removed:
            fsync_dir(self.directory)
        return result

    # -- internals --------------------------------------------------------------

    def _key_path(self, kid: str) -> Path:
        if not kid or "/" in kid or kid.startswith("."):
            raise KeyStoreError(f"invalid kid in manifest: {kid!r}")
        return self.directory / f"{kid}.json"

    def _make_private(self) -> None:
        """The folder holds private keys: owner only, also when it already existed
        (a checkout ships ``keys/`` at 0755) and whatever the umask did to mkdir's mode."""
        # A folder idp does not own (a mounted secret volume) keeps the modes its owner set,
        # and a read-only one cannot change: neither stops idp from reading its keys.
        with contextlib.suppress(OSError):
            info = self.directory.stat()
            if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o700:
                self.directory.chmod(0o700)

    def _new_key(self, alg: str, now: datetime, state: KeyState) -> KeyRecord:
        jwk = generate_signing_key(alg)
        write_atomically(self._key_path(jwk["kid"]), json.dumps(jwk).encode())
        return KeyRecord(kid=jwk["kid"], alg=alg, state=state, created_at=now)

    def _update(
        self, change: Callable[[list[KeyRecord], datetime], list[KeyRecord]]
    ) -> list[KeyRecord]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._make_private()
        with exclusive_lock(self.directory / LOCK):
            before = self.records()
            after = change(before, _now())
            if after is not before:
                _check_invariants(after)
                body = {"version": 1, "keys": [r.as_json() for r in after]}
                write_atomically(self.manifest_path, json.dumps(body, indent=2).encode())
            return after


def _check_invariants(records: list[KeyRecord]) -> None:
    active = [r.kid for r in records if r.state == "active"]
    pending = [r.kid for r in records if r.state == "next"]
    if len(active) > 1 or len(pending) > 1:
        raise KeyStoreError(
            f"refusing to write a manifest with {len(active)} active and {len(pending)} next keys"
        )
