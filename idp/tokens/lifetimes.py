"""How long things live, in one policy: access, refresh and ID tokens (with per-client
overrides), the refresh retry grace, and the windows derived from them (how long a
retired key or a revocation must be kept)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from idp.models import Client
from idp.models.clients import ClientRegistration
from idp.settings import Settings
from idp.stores.base import SessionLike

ID_TOKEN_TTL = 3600


@dataclass(frozen=True)
class Lifetimes:
    settings: Settings

    def access_token(self, client: Client | ClientRegistration) -> int:
        return client.access_token_ttl or self.settings.access_token_ttl

    def refresh_token(self, client: Client | ClientRegistration) -> int:
        """Absolute lifetime of a login's refresh tokens in seconds; 0 means none."""
        override = client.refresh_token_ttl
        return self.settings.refresh_token_ttl if override is None else override

    def refresh_reuse_grace(self, client: Client | ClientRegistration) -> int:
        override = client.refresh_reuse_grace
        return self.settings.refresh_reuse_grace if override is None else override

    @property
    def id_token(self) -> int:
        return ID_TOKEN_TTL

    def longest_access_token(self, session: SessionLike) -> int:
        """The longest lifetime any access token can have now (settings or a client's)."""
        longest_client = session.scalar(select(func.max(Client.access_token_ttl))) or 0
        return max(self.settings.access_token_ttl, longest_client)

    def outlived_by_every_token(self, session: SessionLike) -> int:
        """Seconds after which no access token issued now is still accepted: how long a
        retired key stays published and a revocation is kept."""
        return self.longest_access_token(session) + self.settings.clock_skew
