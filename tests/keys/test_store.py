from __future__ import annotations

import json
import multiprocessing
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from idp.errors import KeyStoreError
from idp.keys import KeyStore

MAX_AGE = 300


def states(store: KeyStore) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {"next": [], "active": [], "retired": []}
    for record in store.records():
        result[record.state].append(record.kid)
    return result


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


def test_initialise_creates_one_active_and_one_next_and_is_idempotent(store: KeyStore) -> None:
    first = store.initialise("ES256")
    assert sorted(r.state for r in first) == ["active", "next"]
    assert store.initialise("ES256") == first
    for record in first:
        path = store.directory / f"{record.kid}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        jwk = json.loads(path.read_text())
        assert jwk["kid"] == record.kid and jwk["alg"] == "ES256" and "d" in jwk
    assert stat.S_IMODE(store.manifest_path.stat().st_mode) == 0o600
    assert not list(store.directory.glob("*.tmp"))


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_every_signing_alg_can_be_generated(store: KeyStore, alg: str) -> None:
    store.initialise(alg)
    assert {r.alg for r in store.records()} == {alg}


def test_rotate_refuses_a_next_key_younger_than_the_jwks_max_age(store: KeyStore) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
    before = states(store)
    with freeze_time("2026-01-01 00:04:59"), pytest.raises(KeyStoreError) as caught:
        store.rotate("ES256", min_next_age=MAX_AGE)
    assert "less than IDP_JWKS_MAX_AGE (300 s)" in str(caught.value)
    assert "--force" in str(caught.value)
    assert states(store) == before


def test_rotate_moves_next_to_active_active_to_retired_and_adds_next(store: KeyStore) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
    before = states(store)
    with freeze_time("2026-01-01 00:05:00"):
        store.rotate("ES256", min_next_age=MAX_AGE)
    after = states(store)
    assert after["active"] == before["next"]
    assert after["retired"] == before["active"]
    assert len(after["next"]) == 1 and after["next"][0] not in before["next"] + before["active"]
    retired = next(r for r in store.records() if r.state == "retired")
    assert retired.retired_at is not None and retired.retired_at.minute == 5


def test_force_rotates_a_young_next_key(store: KeyStore) -> None:
    store.initialise("ES256")
    before = states(store)
    store.rotate("ES256", min_next_age=MAX_AGE, force=True)
    assert states(store)["active"] == before["next"]


def test_rotate_without_a_next_key_is_refused(store: KeyStore) -> None:
    store.initialise("ES256")
    store.rotate("ES256", min_next_age=0)
    manifest = json.loads(store.manifest_path.read_text())
    manifest["keys"] = [k for k in manifest["keys"] if k["state"] != "next"]
    store.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(KeyStoreError, match="no next key"):
        store.rotate("ES256", min_next_age=0)
    # The refusal wrote nothing: no key was lost.
    assert json.loads(store.manifest_path.read_text()) == manifest


def test_generate_on_an_empty_store_adds_a_next_key_that_rotate_promotes(store: KeyStore) -> None:
    record = store.generate("EdDSA")
    assert record.state == "next" and record.alg == "EdDSA"
    store.rotate("ES256", min_next_age=0)
    assert states(store)["active"] == [record.kid]


def test_generate_works_right_after_initialise_and_adds_another_next_key(store: KeyStore) -> None:
    store.initialise("ES256")
    before = states(store)
    added = store.generate("RS256")
    after = states(store)
    assert after["active"] == before["active"]
    assert after["next"] == [*before["next"], added.kid]
    assert store.generate("ES256").kid not in after["next"]
    assert len(states(store)["next"]) == 3


def test_rotate_promotes_the_oldest_next_key_and_adds_none_while_others_wait(
    store: KeyStore,
) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
    oldest = states(store)["next"][0]
    with freeze_time("2026-01-01 00:10:00"):
        younger = store.generate("ES256")
    with freeze_time("2026-01-01 00:10:01"):
        result = store.rotate("ES256", min_next_age=MAX_AGE)
    assert result.rotated and result.promoted is not None and result.promoted.kid == oldest
    assert result.created == []
    assert states(store)["active"] == [oldest]
    assert states(store)["next"] == [younger.kid]
    # The waiting key is younger than max-age: promoting it now is refused.
    with freeze_time("2026-01-01 00:14:59"), pytest.raises(KeyStoreError, match="IDP_JWKS_MAX_AGE"):
        store.rotate("ES256", min_next_age=MAX_AGE)
    with freeze_time("2026-01-01 00:15:00"):
        result = store.rotate("ES256", min_next_age=MAX_AGE)
    assert states(store)["active"] == [younger.kid]
    # None waited any more: a fresh one is published at once.
    assert len(result.created) == 1 and states(store)["next"] == [result.created[0].kid]


def test_rotate_picks_the_oldest_by_creation_not_by_manifest_order(store: KeyStore) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
    with freeze_time("2025-12-01 00:00:00"):
        older = store.generate("ES256")  # listed last, created first
    store.rotate("ES256", min_next_age=MAX_AGE)
    assert states(store)["active"] == [older.kid]


def test_if_older_than_is_a_no_op_on_a_young_active_key(store: KeyStore) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
    before = store.manifest_path.read_bytes()
    with freeze_time("2026-03-31 23:59:59"):  # 89 days, 23:59:59 later
        result = store.rotate("ES256", min_next_age=MAX_AGE, older_than=90 * 86400)
    assert not result.rotated and result.promoted is None
    assert result.active_age == 90 * 86400 - 1
    assert store.manifest_path.read_bytes() == before


def test_if_older_than_rotates_an_old_active_key_once(store: KeyStore) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
    before = states(store)
    with freeze_time("2026-04-01 00:00:01"):
        result = store.rotate("ES256", min_next_age=MAX_AGE, older_than=90 * 86400)
        assert result.rotated
        assert states(store)["active"] == before["next"]
        # The scheduler's next run finds a key that has just started signing.
        again = store.rotate("ES256", min_next_age=MAX_AGE, older_than=90 * 86400)
    assert not again.rotated and again.active_age == 0


def test_if_older_than_counts_from_activation_not_creation(store: KeyStore) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
    with freeze_time("2026-03-01 00:00:00"):
        store.rotate("ES256", min_next_age=MAX_AGE)  # a next key created in January
    with freeze_time("2026-04-15 00:00:00"):
        result = store.rotate("ES256", min_next_age=MAX_AGE, older_than=90 * 86400)
    assert not result.rotated


def test_prune_keeps_young_retired_keys_and_removes_old_ones(store: KeyStore) -> None:
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
        store.rotate("ES256", min_next_age=0)
    retired = states(store)["retired"][0]
    window = 3600 + 30
    with freeze_time("2026-01-01 01:00:00"):
        result = store.prune(min_retired_age=window)
    assert [r.kid for r in result.kept_young] == [retired] and result.removed == []
    assert (store.directory / f"{retired}.json").exists()
    with freeze_time("2026-01-01 00:00:00") as frozen:
        frozen.tick(timedelta(seconds=window))
        result = store.prune(min_retired_age=window)
    assert [r.kid for r in result.removed] == [retired]
    assert states(store)["retired"] == []
    assert not (store.directory / f"{retired}.json").exists()


def test_prune_force_removes_young_retired_keys(store: KeyStore) -> None:
    store.initialise("ES256")
    store.rotate("ES256", min_next_age=0)
    result = store.prune(min_retired_age=3600, force=True)
    assert len(result.removed) == 1 and states(store)["retired"] == []


def test_unreadable_manifest_is_a_clear_error(store: KeyStore) -> None:
    store.directory.mkdir()
    store.manifest_path.write_text("{not json")
    with pytest.raises(KeyStoreError, match="unreadable"):
        store.records()


def _rotate_many(directory: str, rounds: int) -> None:
    store = KeyStore(directory)
    for _ in range(rounds):
        store.rotate("ES256", min_next_age=0)


def test_racing_rotations_never_leave_two_active_keys(store: KeyStore) -> None:
    store.initialise("ES256")
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_rotate_many, args=(str(store.directory), 8)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    final = states(store)
    assert len(final["active"]) == 1
    assert len(final["next"]) == 1
    # Every rotation happened exactly once: 24 retirements, none lost to a race.
    assert len(final["retired"]) == 24
    for record in store.records():
        assert (store.directory / f"{record.kid}.json").exists()


def test_initialise_on_a_populated_store_writes_nothing(store: KeyStore) -> None:
    store.initialise("ES256")
    (store.directory / ".lock").unlink()
    manifest_before = store.manifest_path.stat().st_mtime_ns
    store.initialise("ES256")
    # A read-only secret volume works: no lock file, no manifest write.
    assert not (store.directory / ".lock").exists()
    assert store.manifest_path.stat().st_mtime_ns == manifest_before


def test_a_manifest_with_an_unknown_state_is_unreadable(store: KeyStore) -> None:
    store.initialise("ES256")
    manifest = json.loads(store.manifest_path.read_text())
    manifest["keys"][0]["state"] = "paused"
    store.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(KeyStoreError, match="unreadable"):
        store.records()
