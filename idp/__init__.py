"""idp: an OAuth 2.0 / OpenID Connect authorization server for API platforms."""

__version__ = "0.1.0"
