"""How idp is served: the ASGI front that runs the WSGI app on granian."""
