"""OAuth errors idp raises beyond Authlib's, each tagged with the rule that failed (for metrics)."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidGrantError, InvalidRequestError

from idp.text import safe_description


class ClientAuthFailed(InvalidClientError):
    """invalid_client with the name of the rule that failed (a bounded metrics label)."""

    def __init__(self, rule: str, description: str) -> None:
        super().__init__(description=safe_description(description), status_code=401)
        self.rule = rule


class GrantRefused(InvalidGrantError):
    """invalid_grant with the rule that failed. ``durable`` asks the endpoint to commit what
    the request wrote before failing: a counted bad password, a revoked family."""

    def __init__(self, rule: str, description: str, durable: bool = False) -> None:
        super().__init__(description=safe_description(description))
        self.rule = rule
        self.durable = durable


class MalformedRequest(InvalidRequestError):
    def __init__(self, rule: str, description: str) -> None:
        super().__init__(description=safe_description(description))
        self.rule = rule


class TemporarilyUnavailable(OAuth2Error):
    """A store needed to check the request is down: fail closed (RFC 6749 §4.1.2.1 code)."""

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, description: str) -> None:
        super().__init__(description=description)
        self.rule = "store_unavailable"
