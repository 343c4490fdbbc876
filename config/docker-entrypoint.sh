#!/bin/sh
# Entrypoint of the idp image (see Dockerfile).
#
# Starting the server (with no command, `idp serve` on $PORT; or `idp serve ...`,
# `gunicorn ...`):
# run `idp init` (migrations, the default tenant, first keys; a no-op when
# already done), empty the Prometheus multiprocess folder, then exec the server
# so it runs as PID 1 and receives docker's SIGTERM directly.
# Any other command runs as given, e.g. `docker run IMAGE idp keys rotate`.
set -eu

# prometheus_client writes per-process files to this folder as soon as idp is
# imported, by any idp command, and fails if the folder is missing.
: "${PROMETHEUS_MULTIPROC_DIR:=/tmp/idp-metrics}"
export PROMETHEUS_MULTIPROC_DIR
mkdir -p -m 0700 "$PROMETHEUS_MULTIPROC_DIR"

# The default command; the image's health check asks the same PORT.
if [ "$#" -eq 0 ]; then
    set -- idp serve --host 0.0.0.0 --port "${PORT:-8000}"
fi

starts_server=false
case "$1" in
    gunicorn) starts_server=true ;;
    idp) if [ "${2:-}" = serve ]; then starts_server=true; fi ;;
esac

if [ "$starts_server" = true ]; then
    idp init
    # The server's workers pool their metrics in this folder. Files left by an
    # earlier run of this container (or by `idp init` just now) would be
    # counted again.
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -type f -name '*.db' -delete
fi

exec "$@"
