"""``idp purge``: on a database seeded with old rows it removes what no request can need
(dead refresh-token families, revoked and long-used refresh tokens, expired replay and
revocation rows, audit events past retention) and keeps the rest; reuse of a live
family's used token is still detected afterwards; and a token load running meanwhile
sees no error."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import func, insert, select

from idp.admin.purge import BATCH_SIZE, purge
from idp.errors import ConfigurationError
from idp.models import AuditEvent, RefreshToken, ReplayEntry, Revocation, User, db, utcnow
from idp.runtime import runtime
from idp.settings import load_settings
from idp.tokens.refresh_tokens import token_hash
from tests.oauth.helpers import basic, login, make_user, password_client, refresh, register

DAY = timedelta(days=1)


class Seeder:
    """Rows written straight to the tables, as old as a test needs them."""

    def __init__(self, app: Any, client_id: str, user_id: str) -> None:
        self.app = app
        self.client_id = client_id
        self.user_id = user_id
        with app.app_context():
            self.tenant_id = db.session.get(User, user_id).tenant_id

    def family(self, *tokens: dict[str, Any], expires_at: Any = None) -> list[str]:
        """One login's rows; each dict may set used_at / revoked_at. Returns the tokens."""
        family_id = str(uuid.uuid4())
        now = utcnow()
        values, presented = [], []
        for fields in tokens:
            token = f"seeded-{uuid.uuid4()}"
            presented.append(token)
            values.append(
                {
                    "id": str(uuid.uuid4()),
                    "token_hash": token_hash(token),
                    "family_id": family_id,
                    "client_id": self.client_id,
                    "user_id": self.user_id,
                    "tenant_id": self.tenant_id,
                    "scope": "openid",
                    # After the user's password was set, or the session would be over.
                    "auth_time": now,
                    "issued_at": now - 100 * DAY,
                    "expires_at": expires_at,
                    "used_at": None,
                    "revoked_at": None,
                    **fields,
                }
            )
        with self.app.app_context():
            db.session.execute(insert(RefreshToken), values)
            db.session.commit()
        return presented

    def many_dead_families(self, count: int) -> None:
        """``count`` rows of families that expired long ago, in one statement."""
        now = utcnow()
        rows = [
            {
                "id": str(uuid.uuid4()),
                "token_hash": token_hash(f"bulk-{index}-{uuid.uuid4()}"),
                "family_id": f"bulk-{index // 2}",
                "client_id": self.client_id,
                "user_id": self.user_id,
                "tenant_id": self.tenant_id,
                "scope": "openid",
                "auth_time": now - 100 * DAY,
                "issued_at": now - 100 * DAY,
                "expires_at": now - 10 * DAY,
                "used_at": now - 50 * DAY if index % 2 == 0 else None,
                "revoked_at": None,
            }
            for index in range(count)
        ]
        with self.app.app_context():
            db.session.execute(insert(RefreshToken), rows)
            db.session.commit()

    def rows(self, model: Any, values: list[dict[str, Any]]) -> None:
        with self.app.app_context():
            db.session.execute(insert(model), values)
            db.session.commit()


def live_tokens(app: Any, tokens: list[str]) -> list[bool]:
    """Whether each token's row still exists."""
    with app.app_context():
        hashes = set(db.session.scalars(select(RefreshToken.token_hash)))
    return [token_hash(token) in hashes for token in tokens]


def count(app: Any, model: Any) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model)) or 0


def run_purge(app: Any, **kwargs: Any) -> dict[str, Any]:
    with app.app_context():
        return purge(runtime().settings, **kwargs).as_json()


def test_purge_removes_dead_rows_and_keeps_live_ones(make_app, idp_env, run_idp) -> None:
    app = make_app(IDP_AUDIT_RETENTION_DAYS="90", IDP_REFRESH_REUSE_DETECTION_DAYS="30")
    http = app.test_client()
    client = password_client(app)
    user_id = make_user(app, "alice")
    seed = Seeder(app, client[0], user_id)
    now = utcnow()

    # A real login that refreshed once: its first token is used, its second is live.
    first = login(http, client).get_json()["refresh_token"]
    second = refresh(http, client, first).get_json()["refresh_token"]

    expired = seed.family({"used_at": now - 40 * DAY}, {}, expires_at=now - DAY)
    revoked = seed.family({"used_at": now - 2 * DAY}, {"revoked_at": now - DAY})
    all_used = seed.family({"used_at": now - 3 * DAY}, {"used_at": now - 2 * DAY})
    # Live families: with an absolute lifetime every used row stays until it expires;
    # without one, used rows stay for the reuse-detection window.
    lifetime = seed.family(
        {"used_at": now - 60 * DAY}, {"used_at": now - DAY}, {}, expires_at=now + DAY
    )
    endless = seed.family({"used_at": now - 60 * DAY}, {"used_at": now - 29 * DAY}, {})
    # A retry replaced a successor: the replaced one is revoked, the family lives on.
    retried = seed.family({"used_at": now - DAY}, {"revoked_at": now - DAY}, {})

    seed.rows(
        ReplayEntry,
        [
            {"key": "old-jti", "expires_at": now - timedelta(seconds=1)},
            {"key": "live-jti", "expires_at": now + timedelta(minutes=5)},
        ],
    )
    seed.rows(
        Revocation,
        [
            {"key": "jti:old", "revoked_at_ms": 1, "expires_at": now - timedelta(seconds=1)},
            {"key": "jti:live", "revoked_at_ms": 1, "expires_at": now + timedelta(hours=1)},
        ],
    )
    with app.app_context():
        db.session.query(AuditEvent).delete()
        db.session.commit()
    seed.rows(
        AuditEvent,
        [
            {"event": "ancient", "at": now - 91 * DAY, "detail": {}},
            {"event": "recent", "at": now - 89 * DAY, "detail": {}},
        ],
    )

    expected = {
        "dry_run": True,
        "refresh_tokens": 2 + 2 + 2 + 1 + 1,
        "replay_entries": 1,
        "revocations": 1,
        "audit_events": 1,
    }
    result = run_idp("purge", "--dry-run", "--json", env=_settings_env())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
    assert count(app, RefreshToken) == 2 + 15  # nothing deleted by a dry run

    result = run_idp("purge", "--json", env=_settings_env())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected | {"dry_run": False}

    assert live_tokens(app, [first, second]) == [True, True]
    assert live_tokens(app, expired + revoked + all_used) == [False] * 6
    assert live_tokens(app, lifetime) == [True, True, True]
    assert live_tokens(app, endless) == [False, True, True]
    assert live_tokens(app, retried) == [True, False, True]
    with app.app_context():
        assert list(db.session.scalars(select(ReplayEntry.key))) == ["live-jti"]
        assert list(db.session.scalars(select(Revocation.key))) == ["jti:live"]
        events = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        assert [e.event for e in events] == ["recent", "purged"]
        assert events[-1].detail["deleted"]["refresh_tokens"] == 8

    # The live family's used token is still recognised: reusing it revokes the family.
    reuse = refresh(http, client, first)
    assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
    assert refresh(http, client, second).status_code == 400
    with app.app_context():
        assert db.session.query(AuditEvent).filter_by(event="refresh_reuse_detected").count() == 1
    # A live family whose old used row went is still usable through its live token.
    assert refresh(http, client, endless[2]).status_code == 200

    again = run_idp("purge", env=_settings_env())
    assert again.returncode == 0, again.stderr
    # The family revoked by the reuse above: its two rows go now.
    assert again.stdout.startswith("dry_run=false  refresh_tokens=2  replay_entries=0")


def _settings_env() -> dict[str, str]:
    return {"IDP_AUDIT_RETENTION_DAYS": "90", "IDP_REFRESH_REUSE_DETECTION_DAYS": "30"}


def test_batches_are_bounded_and_add_up(make_app) -> None:
    app = make_app(IDP_AUDIT_RETENTION_DAYS="0")
    client = password_client(app)
    seed = Seeder(app, client[0], make_user(app, "bob"))
    seed.many_dead_families(25)
    seed.rows(
        AuditEvent,
        [{"event": "ancient", "at": utcnow() - 5000 * DAY, "detail": {}} for _ in range(5)],
    )
    batches: list[tuple[str, int]] = []
    counted = run_purge(app, dry_run=True, batch_size=4)
    assert counted["refresh_tokens"] == 25 and counted["audit_events"] == 0
    done = run_purge(app, batch_size=4, on_batch=lambda table, rows: batches.append((table, rows)))
    assert done["refresh_tokens"] == 25
    assert [rows for table, rows in batches if table == "refresh_tokens"] == [4] * 6 + [1]
    assert count(app, RefreshToken) == 0
    # Retention 0 keeps every event: the 5, client_created, user_created and purged.
    assert count(app, AuditEvent) == 5 + 2 + 1


def test_nothing_to_do_records_nothing(app, run_idp) -> None:
    before = count(app, AuditEvent)
    result = run_idp("purge")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "dry_run=false  refresh_tokens=0  replay_entries=0  revocations=0  audit_events=0"
    )
    assert count(app, AuditEvent) == before


def test_a_token_load_sees_no_error_while_purge_runs(app, idp_env, live_server, run_idp) -> None:
    base_url = live_server(idp_env, workers=2)
    cc_id, cc_secret = register(app, auth_method="client_secret_basic")
    client = password_client(app)
    user_id = make_user(app, "carol")
    seed = Seeder(app, client[0], user_id)
    seed.many_dead_families(6 * BATCH_SIZE)
    old = utcnow() - 1000 * DAY
    seed.rows(AuditEvent, [{"event": "ancient", "at": old, "detail": {}}] * (3 * BATCH_SIZE))
    seed.rows(
        Revocation,
        [
            {"key": f"jti:{index}", "revoked_at_ms": 1, "expires_at": old}
            for index in range(2 * BATCH_SIZE)
        ],
    )
    form = {"grant_type": "password", "username": "carol", "password": "Correct-Horse-9"}
    session = requests.post(
        f"{base_url}/oidc/token", data=form, headers=basic(*client), timeout=30
    ).json()
    statuses: Counter[str] = Counter()
    stop = threading.Event()

    def hammer() -> None:
        token = session["refresh_token"]
        while not stop.is_set():
            issued = requests.post(
                f"{base_url}/oidc/token",
                data={"grant_type": "client_credentials"},
                headers=basic(cc_id, cc_secret),
                timeout=30,
            )
            statuses[f"client_credentials {issued.status_code}"] += 1
            refreshed = requests.post(
                f"{base_url}/oidc/token",
                data={"grant_type": "refresh_token", "refresh_token": token},
                headers=basic(*client),
                timeout=30,
            )
            statuses[f"refresh_token {refreshed.status_code}"] += 1
            if refreshed.status_code == 200:
                token = refreshed.json()["refresh_token"]

    threads = [threading.Thread(target=hammer) for _ in range(1)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    result = run_idp("purge", "--json")
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["refresh_tokens"] == 6 * BATCH_SIZE
    assert report["audit_events"] == 3 * BATCH_SIZE
    assert report["revocations"] == 2 * BATCH_SIZE
    print(f"purge took {elapsed:.1f} s; token requests meanwhile: {dict(statuses)}")
    assert set(statuses) == {"client_credentials 200", "refresh_token 200"}, statuses
    assert statuses["refresh_token 200"] >= 5


def test_retention_settings() -> None:
    defaults = load_settings({})
    assert (defaults.audit_retention_days, defaults.refresh_reuse_detection_days) == (365, 30)
    assert load_settings({"IDP_AUDIT_RETENTION_DAYS": "0"}).audit_retention_days == 0
    for name, value, message in [
        ("IDP_AUDIT_RETENTION_DAYS", "-1", "at least 0"),
        ("IDP_AUDIT_RETENTION_DAYS", "a year", "must be an integer"),
        ("IDP_REFRESH_REUSE_DETECTION_DAYS", "0", "at least 1"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            load_settings({name: value})
