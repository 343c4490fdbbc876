from __future__ import annotations

from pathlib import Path

import pytest
from joserfc import jwt

from idp.keys import KeyStore, ring
from idp.keys.ring import KeyRing


@pytest.fixture(autouse=True)
def check_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ring, "CHECK_INTERVAL", 0.0)


def test_ring_signs_only_with_the_active_key_and_follows_rotation(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    key_ring = KeyRing(store)
    assert key_ring.current().active is None
    store.initialise("ES256")
    first = key_ring.current()
    active_kid = next(r.kid for r in store.records() if r.state == "active")
    assert first.active is not None and first.active.kid == active_kid
    decoded = jwt.decode(first.sign({"sub": "x"}, typ="at+jwt"), first.active, ["ES256"])
    assert decoded.header == {"typ": "at+jwt", "alg": "ES256", "kid": active_kid}
    assert decoded.claims == {"sub": "x"}
    store.rotate("ES256", min_next_age=0)
    second = key_ring.current()
    assert second.etag != first.etag
    assert second.active is not None and second.active.kid != active_kid


def test_ring_keeps_the_last_good_keys_when_the_store_breaks(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.initialise("ES256")
    key_ring = KeyRing(store)
    good = key_ring.current()
    store.manifest_path.write_text("garbage")
    assert key_ring.current() is good
