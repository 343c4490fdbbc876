"""idp.text: the one cleaner of error descriptions, behind the OAuth JSON body (RFC 6749
§5.2) and the Bearer challenge header (RFC 6750 §3) alike."""

from __future__ import annotations

from idp.oauth.errors import ClientAuthFailed, GrantRefused
from idp.text import MAX_DESCRIPTION_LENGTH, safe_description
from idp.web.bearer import BearerError

HOSTILE = 'a "quote", a back\\slash,\na new line and \u00e9'
CLEANED = "a 'quote', a back'slash,'a new line and '"


def test_the_oauth_body_and_the_bearer_header_clean_a_description_alike() -> None:
    assert GrantRefused("rule", HOSTILE).description == CLEANED
    assert ClientAuthFailed("rule", HOSTILE).description == CLEANED
    challenge = BearerError(401, "invalid_token", HOSTILE).challenge
    assert challenge.endswith(f'error_description="{CLEANED}"')


def test_a_plain_description_passes_unchanged_and_a_long_one_is_cut() -> None:
    plain = "assertion 'iss' is not a trusted issuer of this tenant"
    assert GrantRefused("rule", plain).description == plain
    assert BearerError(401, "invalid_token", plain).challenge.endswith(f'"{plain}"')
    assert safe_description("x" * 1000) == "x" * MAX_DESCRIPTION_LENGTH
