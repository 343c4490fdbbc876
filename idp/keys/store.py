"""Signing key stores: the rotation rules, shared by every backend, and the file backend.

States: ``next`` (published, never signs) → ``active`` (signs; exactly one) →
``retired`` (published until pruned). Several ``next`` keys may be published at once;
a rotation promotes the oldest. Every change is a read-modify-write under the
backend's exclusive lock, so concurrent operators never leave two active keys.

The file backend keeps one private JWK file per key plus a manifest of states; every
change ends with an atomic replace of the manifest, so readers never see a torn file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from idp.errors import KeyStoreError
from idp.keys.files import exclusive_lock, fsync_dir, write_atomically
from idp.keys.generate import generate_signing_key

KeyState = Literal["next", "active", "retired"]
KEY_STATES: tuple[KeyState, ...] = ("next", "active", "retired")
MANIFEST = "manifest.json"
LOCK = ".lock"


def _now() -> datetime:
    # Whole seconds: what the store keeps is exactly what callers get back.
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

    @property
    def in_service_since(self) -> datetime:
        """When the key started signing (its creation for a store written before
        activation times were kept)."""
        return self.activated_at or self.created_at

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("created_at", "activated_at", "retired_at"):
            data[name] = _iso(data[name])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRecord:
        if data["state"] not in KEY_STATES:
            raise ValueError(f"unknown key state {data['state']!r}")
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


@dataclass
class RotationResult:
    """What a rotation did: ``rotated`` is false when ``older_than`` found the active key
    young enough, and then nothing was written."""

    rotated: bool
    records: list[KeyRecord]
    promoted: KeyRecord | None = None
    retired: KeyRecord | None = None
    created: list[KeyRecord] = field(default_factory=list)
    # Seconds the active key had been signing when the decision was taken.
    active_age: int | None = None


# Makes a new key inside the running change: (alg, now, state) -> its record.
NewKey = Callable[[str, datetime, KeyState], KeyRecord]
Change = Callable[[list[KeyRecord], datetime, NewKey], list[KeyRecord]]


def oldest_next(records: list[KeyRecord]) -> KeyRecord | None:
    # A stable sort: keys created in the same second keep the order they were added in.
    pending = sorted((r for r in records if r.state == "next"), key=lambda r: r.created_at)
    return pending[0] if pending else None


class BaseKeyStore(ABC):
    """The operations and their rules; a backend supplies storage and its lock."""

    # -- what a backend provides ------------------------------------------------

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the keys live, for operators (never a secret)."""

    @abstractmethod
    def records(self) -> list[KeyRecord]:
        """Every key's record; an empty list for an empty store."""

    @abstractmethod
    def private_jwk(self, kid: str) -> dict[str, Any]:
        """The private JWK of one key."""

    @abstractmethod
    def snapshot(self) -> list[tuple[KeyRecord, dict[str, Any]]]:
        """Every key with its private JWK, read as one consistent view."""

    @abstractmethod
    def change_marker(self) -> Hashable | None:
        """Cheap to read and different after every change; None when the store has no
        keys to offer at all."""

    @abstractmethod
    def _update(self, change: Change) -> list[KeyRecord]:
        """Run ``change`` on the current records under the exclusive lock and store its
        result, unless it returned the very list it was given (nothing to write)."""

    def _prepare(self) -> None:  # noqa: B027 -- optional hook
        """Called before ``initialise`` reads: a backend's chance to tidy its storage."""

    # -- operations ---------------------------------------------------------------

    def initialise(self, alg: str) -> list[KeyRecord]:
        """Create one active and one next key when the store is empty; otherwise do nothing."""
        self._prepare()
        existing = self.records()
        if existing:
            return existing  # no lock taken: a file store may be a read-only secret volume

        def change(records: list[KeyRecord], now: datetime, new_key: NewKey) -> list[KeyRecord]:
            if records:
                return records
            active = replace(new_key(alg, now, "active"), activated_at=now)
            return [active, new_key(alg, now, "next")]

        return self._update(change)

    def generate(self, alg: str) -> KeyRecord:
        """Add a ``next`` key: published from now on, signing after a later rotation."""
        created: list[KeyRecord] = []

        def change(records: list[KeyRecord], now: datetime, new_key: NewKey) -> list[KeyRecord]:
            created.append(new_key(alg, now, "next"))
            return [*records, created[0]]

        self._update(change)
        return created[0]

    def rotate(
        self,
        alg: str,
        min_next_age: int,
        force: bool = False,
        older_than: int | None = None,
    ) -> RotationResult:
        """Oldest next → active, active → retired; a new next key when none is left.

        With ``older_than`` (seconds), nothing happens unless the active key has been
        signing for longer than that: what a scheduler runs.
        """
        result = RotationResult(rotated=False, records=[])

        def change(records: list[KeyRecord], now: datetime, new_key: NewKey) -> list[KeyRecord]:
            active = next((r for r in records if r.state == "active"), None)
            if active is not None:
                result.active_age = int((now - active.in_service_since).total_seconds())
            if older_than is not None and active is not None:
                assert result.active_age is not None
                if result.active_age <= older_than:
                    return records
            promoted = oldest_next(records)
            if promoted is None:
                raise KeyStoreError("no next key to promote; run 'idp keys generate' first")
            age = int((now - promoted.created_at).total_seconds())
            if age < min_next_age and not force:
                raise KeyStoreError(
                    f"next key {promoted.kid} was published {age} s ago, less than "
                    f"IDP_JWKS_MAX_AGE ({min_next_age} s): resource servers may not have it "
                    "yet; wait, or pass --force"
                )
            rotated: list[KeyRecord] = []
            for record in records:
                if record.state == "active":
                    record = replace(record, state="retired", retired_at=now)
                    result.retired = record
                elif record.kid == promoted.kid:
                    record = replace(record, state="active", activated_at=now)
                    result.promoted = record
                rotated.append(record)
            if not any(r.state == "next" for r in rotated):
                # Always one key published ahead, so the next rotation needs no wait.
                result.created.append(new_key(alg, now, "next"))
            result.rotated = True
            return [*rotated, *result.created]

        result.records = self._update(change)
        return result

    def prune(self, min_retired_age: int, force: bool = False) -> PruneResult:
        """Remove retired keys retired longer ago than ``min_retired_age`` seconds."""
        result = PruneResult(removed=[], kept_young=[])

        def change(records: list[KeyRecord], now: datetime, new_key: NewKey) -> list[KeyRecord]:
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
            return kept if result.removed else records

        self._update(change)
        self._after_prune(result.removed)
        return result

    def _after_prune(self, removed: list[KeyRecord]) -> None:  # noqa: B027 -- optional hook
        """Clean-up once pruned keys are no longer listed."""


def check_invariants(records: list[KeyRecord]) -> None:
    active = [r.kid for r in records if r.state == "active"]
    if len(active) > 1:
        raise KeyStoreError(f"refusing to store {len(active)} active keys; exactly one may sign")
    kids = [r.kid for r in records]
    if len(set(kids)) != len(kids):
        raise KeyStoreError("refusing to store two keys with the same kid")


class FileKeyStore(BaseKeyStore):
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    @property
    def location(self) -> str:
        return str(self.directory)

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
            jwk = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise KeyStoreError(f"key file {path} named in the manifest is missing") from None
        except ValueError as exc:
            raise KeyStoreError(f"key file {path} is not valid JSON: {exc}") from None
        if not isinstance(jwk, dict):
            raise KeyStoreError(f"key file {path} does not hold a JWK object")
        return jwk

    def snapshot(self) -> list[tuple[KeyRecord, dict[str, Any]]]:
        return [(record, self.private_jwk(record.kid)) for record in self.records()]

    def change_marker(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.manifest_path)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    # -- internals --------------------------------------------------------------

    def _prepare(self) -> None:
        self._make_private()  # a store created before idp tightened the folder

    def _after_prune(self, removed: list[KeyRecord]) -> None:
        for record in removed:
            self._key_path(record.kid).unlink(missing_ok=True)
        if removed:
            fsync_dir(self.directory)

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
        # The key file lands before the manifest names it: a reader never meets a
        # manifest entry without its file.
        write_atomically(self._key_path(jwk["kid"]), json.dumps(jwk).encode())
        return KeyRecord(kid=jwk["kid"], alg=alg, state=state, created_at=now)

    def _update(self, change: Change) -> list[KeyRecord]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._make_private()
        with exclusive_lock(self.directory / LOCK):
            before = self.records()
            after = change(before, _now(), self._new_key)
            if after is not before:
                check_invariants(after)
                body = {"version": 1, "keys": [r.as_json() for r in after]}
                write_atomically(self.manifest_path, json.dumps(body, indent=2).encode())
            return after


# The file store was the only backend once; callers that name a folder keep this name.
KeyStore = FileKeyStore
