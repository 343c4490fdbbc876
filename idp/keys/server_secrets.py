"""Random secrets kept in the database (``server_secrets``), shared by every worker and
host with nothing to configure: for instance the key that signs list cursors."""

from __future__ import annotations

import secrets

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from idp.models import utcnow
from idp.models.users import ServerSecret


class ServerSecrets:
    """Each secret read once per process, since it never changes once written."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read: dict[str, bytes] = {}

    def get(self, name: str) -> bytes:
        secret = self._read.get(name)
        if secret is None:
            secret = self._read[name] = bytes.fromhex(self._load_or_create(name))
        return secret

    def _load_or_create(self, name: str) -> str:
        query = select(ServerSecret.value).where(ServerSecret.name == name)
        # Its own connection: the request's session stays untouched by this one-time write.
        with self.engine.begin() as connection:
            value = connection.scalar(query)
            if value is not None:
                return str(value)
        # A database made without the migration's row (created by hand or emptied): the
        # first worker to get here writes one; a racing worker reads the winner's.
        try:
            with self.engine.begin() as connection:
                row = {"name": name, "value": secrets.token_hex(32), "created_at": utcnow()}
                connection.execute(insert(ServerSecret).values(row))
        except IntegrityError:
            pass
        with self.engine.begin() as connection:
            return str(connection.scalar(query))
