"""Certificate subject names as registered for ``tls_client_auth`` (RFC 8705 §2.1.2)."""

from __future__ import annotations

from cryptography import x509

from idp.errors import IdpError


def parse_subject_dn(text: str) -> x509.Name:
    """An RFC 4514 string as a distinguished name: matched by attribute types and values,
    never as text, so that spacing, escaping or attribute-type spelling cannot matter."""
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise IdpError(f"not an RFC 4514 distinguished name: {exc}") from None
    if not list(name):
        raise IdpError("a subject DN needs at least one attribute")
    return name


def normal_subject_dn(text: str) -> str:
    """The registered form of a subject DN: parsed, then written back out."""
    return parse_subject_dn(text).rfc4514_string()
