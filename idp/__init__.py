"""idp: an OAuth 2.0 / OpenID Connect authorization server for API platforms.

One unit of work per request and per CLI command: services add their changes to the
database session, and the view or command that called them commits once, or rolls back.
"""

__version__ = "0.1.0"
