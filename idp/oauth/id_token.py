"""OpenID Connect ID tokens, signed by the same active key as access tokens."""

from __future__ import annotations

import time
from datetime import datetime

from idp.models import User
from idp.oauth.clients import OAuthClient
from idp.runtime import Runtime


def id_token_for(rt: Runtime, client: OAuthClient, user: User, auth_time: datetime) -> str:
    now = int(time.time())
    claims = {
        "iss": rt.settings.issuer,
        "sub": user.id,
        "aud": client.get_client_id(),
        "exp": now + rt.lifetimes.id_token,
        "iat": now,
        "auth_time": int(auth_time.timestamp()),
        "tenant": user.tenant.name,
    }
    return rt.key_ring.current().sign(claims, typ="JWT")
