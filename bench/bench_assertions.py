"""token_bench.py's client keys and its pool of pre-signed client assertions (one unique
``jti`` each), signed in parallel before the runs."""

from __future__ import annotations

import math
import os
import secrets
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any
from urllib.parse import quote

from bench_common import ASSERTION_LIFETIME, ASSERTION_TYPE, SCOPE, log

# -- keys and pre-signed assertions ------------------------------------------------


def generate_keys() -> dict[str, Any]:
    from joserfc.jwk import ECKey, RSAKey

    keys = {}
    for alg, key in (("ES256", ECKey.generate_key("P-256")), ("RS256", RSAKey.generate_key(2048))):
        private = key.as_dict(private=True)
        kid = f"bench-{alg.lower()}-{secrets.token_hex(4)}"
        private.update(kid=kid, alg=alg, use="sig")
        public = key.as_dict(private=False)
        public.update(kid=kid, alg=alg, use="sig")
        keys[alg] = {"private": private, "public": public}
    server_key = ECKey.generate_key("P-256").as_dict(private=True)
    server_key.update(kid=f"bench-server-{secrets.token_hex(4)}", alg="ES256", use="sig")
    keys["server"] = server_key
    return keys


def _sign_chunk(task: tuple[str, dict, str, str, str, int, int, int]) -> list[str]:
    """Form bodies for ``count`` client assertions (run in a worker process)."""
    from joserfc import jwt
    from joserfc.jwk import import_key

    alg, jwk, client_id, audience, prefix, start, count, iat = task
    key = import_key(jwk)
    header = {"alg": alg, "kid": jwk["kid"], "typ": "JWT"}
    head = (
        f"grant_type=client_credentials&scope={quote(SCOPE, safe='')}"
        f"&client_assertion_type={quote(ASSERTION_TYPE, safe='')}&client_assertion="
    )
    bodies = []
    for index in range(start, start + count):
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME - 60,
            "jti": f"{prefix}-{index}",
        }
        bodies.append(head + jwt.encode(header, claims, key, algorithms=[alg]))
    return bodies


class AssertionPool:
    """Pre-signed request bodies of one client, each with its own jti, extended on demand.

    Every server has its own cursor into the pool (its own replay store); a server
    whose store is emptied by a restart starts again at 0.
    """

    def __init__(self, alg: str, jwk: dict, client_id: str, audience: str) -> None:
        self.alg, self.jwk, self.client_id, self.audience = alg, jwk, client_id, audience
        self.prefix = secrets.token_hex(6)
        self.bodies: list[str] = []
        self.signed_at = 0
        self.sign_seconds = 0.0

    def ensure(self, size: int) -> None:
        missing = size - len(self.bodies)
        if missing <= 0:
            return
        began = time.perf_counter()
        if not self.signed_at:
            self.signed_at = int(time.time())
        workers = max(1, min(os.cpu_count() or 1, 4))
        chunk = math.ceil(missing / workers)
        tasks = [
            (self.alg, self.jwk["private"], self.client_id, self.audience, self.prefix,
             len(self.bodies) + i * chunk, min(chunk, missing - i * chunk), self.signed_at)
            for i in range(workers) if missing - i * chunk > 0
        ]  # fmt: skip
        with ProcessPoolExecutor(max_workers=len(tasks)) as pool:
            for part in pool.map(_sign_chunk, tasks):
                self.bodies.extend(part)
        took = time.perf_counter() - began
        self.sign_seconds += took
        log(f"signed {missing} {self.alg} assertions in {took:.1f} s (pool {len(self.bodies)})")

    def fresh(self) -> bool:
        """False once the oldest assertions come near their expiry."""
        return not self.signed_at or time.time() < self.signed_at + ASSERTION_LIFETIME - 300
