"""The WSGI application gunicorn serves (``idp.wsgi:app``)."""

from idp.app import create_app
from idp.runtime import runtime

app = create_app()
# Each worker loads its keys as it starts rather than on its first token request: a
# worker that has never loaded any cannot keep "last good keys" through a damaged store.
runtime(app).key_ring.current()
