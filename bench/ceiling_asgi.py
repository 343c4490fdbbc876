"""The ceiling app behind idp's own ASGI bridge, so granian serves it as it serves idp.

``granian --interface asgi ... ceiling_asgi:app`` (token_bench.py passes the flags of
``idp.serving.servers.granian_argv``) then runs bench/ceiling_app.py on the same path
as ``idp serve``: body read on the event loop, the Flask app run as idp's is
(idp.serving.asgi.WsgiBridge.run_app).
"""

from __future__ import annotations

import gc

from ceiling_app import app as ceiling_flask_app

from idp.serving.asgi import WsgiBridge

# The ceiling's largest body; a token request is a few hundred bytes.
MAX_BODY = 65536

app = WsgiBridge(ceiling_flask_app, MAX_BODY)
# As idp.serving.app does for idp: startup objects are left out of later collections.
gc.collect()
gc.freeze()
