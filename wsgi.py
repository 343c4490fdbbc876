"""Top-level entry for a plain ``gunicorn wsgi:app``: the same app ``idp serve`` runs."""

from idp.wsgi import app

__all__ = ["app"]
