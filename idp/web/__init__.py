"""What every HTTP surface of idp shares: bearer authentication (RFC 6750), JSON routes
with one place for input validation, RFC 9457 problem details, and the error format and
the one 503 of each surface. The blueprints themselves live with their capability
(``oauth``, ``users``, ``observability``)."""
