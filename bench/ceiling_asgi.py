"""The ceiling app behind idp's own ASGI bridge, so granian serves it as it serves idp.

``granian --interface asgi ... ceiling_asgi:app`` (token_bench.py passes the flags of
``idp.serving.servers.granian_argv``) then runs bench/ceiling_app.py on the same path
as ``idp serve``: body read on the event loop, the Flask app on the bridge's threads.

``idp.serving.asgi`` builds idp's whole app when it is imported (its module-level
``app``), which the ceiling must not carry. So its source is compiled here without
that one assignment: the same ``WsgiBridge`` class, never a copy of it.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import sys
import types

from ceiling_app import app as ceiling_flask_app

# The ceiling's largest body; a token request is a few hundred bytes.
MAX_BODY = 65536


def bridge_module() -> types.ModuleType:
    """``idp.serving.asgi`` without its module-level ``app = _build()``."""
    spec = importlib.util.find_spec("idp.serving.asgi")
    if spec is None or spec.origin is None:
        raise ImportError("idp.serving.asgi not found")
    with open(spec.origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), spec.origin)
    tree.body = [
        node
        for node in tree.body
        if not (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "app" for t in node.targets)
        )
    ]
    module = types.ModuleType("ceiling_bridge")
    module.__file__ = spec.origin
    # Its classes name it as their module; typing and pickle look modules up here.
    sys.modules[module.__name__] = module
    exec(compile(tree, spec.origin, "exec"), module.__dict__)  # noqa: S102 -- idp's own source
    return module


app = bridge_module().WsgiBridge(ceiling_flask_app, MAX_BODY)
# As idp.serving.asgi does for idp: startup objects are left out of later collections.
gc.collect()
gc.freeze()
