"""The WSGI application gunicorn serves (``idp.wsgi:app``)."""

from idp.app import create_app

app = create_app()
