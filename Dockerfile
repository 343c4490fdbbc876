# idp: OAuth 2.0 / OpenID Connect authorization server.
#
#   docker build -t idp .
#   docker run -p 8000:8000 -e IDP_ISSUER=http://127.0.0.1:8000 \
#       -v idp-keys:/var/lib/idp/keys -v idp-data:/var/lib/idp/data idp
#
# PORT (default 8000) is where the default command serves and where the health
# check asks: `docker run -p 9000:9000 -e PORT=9000 ... idp`. A command of your
# own that serves elsewhere must set PORT to the same port.
#
# Production: set IDP_ISSUER to the public https URL, IDP_DATABASE_URL to
# postgresql+psycopg://..., IDP_REDIS_URL, and mount the shared key-store volume
# at /var/lib/idp/keys (writable by uid 10001). See README.md, "Production".
# The entrypoint runs `idp init` before the server starts; other commands run
# as given: `docker run ... idp keys rotate`.
# The server is granian (idp.serving): HTTP is parsed in Rust, and a request
# body is read on the event loop, bounded in time and size, before the app runs
# on a thread, so a client that sends its request slowly holds no thread. One
# worker per CPU the container may use (its CPU affinity), unless given:
# `docker run ... idp serve --host 0.0.0.0 --port 8000 --workers 8`.
# gunicorn (the `gunicorn` extra, installed here) serves the same app:
# `docker run ... idp serve --server gunicorn --host 0.0.0.0 --port 8000`.
# With no command, the entrypoint runs `idp serve --host 0.0.0.0 --port "$PORT"`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Install the package (a regular, non-editable install) from a scratch copy of
# the source. No source tree stays in /app, so the installed code is the only
# idp that Python can import.
COPY pyproject.toml README.md LICENSE /tmp/src/
COPY idp/ /tmp/src/idp/
RUN pip install --no-cache-dir "/tmp/src[gunicorn]" \
    && rm -rf /tmp/src

WORKDIR /app
# wsgi.py and config/ serve `gunicorn -c config/gunicorn.conf.py wsgi:app`;
# config/ also holds the entrypoint and the example settings file.
COPY wsgi.py ./
COPY config/ ./config/

# A fixed uid/gid so volumes and secrets can be prepared on the host.
# The key store is private to idp (0700), like the folder idp would create.
RUN groupadd --system --gid 10001 idp \
    && useradd --system --uid 10001 --gid idp --home-dir /var/lib/idp \
        --no-create-home --shell /usr/sbin/nologin idp \
    && mkdir -p /var/lib/idp/keys /var/lib/idp/data \
    && chown -R idp:idp /var/lib/idp \
    && chmod 0750 /var/lib/idp /var/lib/idp/data \
    && chmod 0700 /var/lib/idp/keys \
    && chmod 0755 /app/config/docker-entrypoint.sh

# Absolute paths: a relative one would resolve under the installed package's
# prefix (/usr/local/var), not in the volumes.
ENV PORT=8000 \
    IDP_KEYS_DIR=/var/lib/idp/keys \
    IDP_DATABASE_URL=sqlite:////var/lib/idp/data/idp.sqlite3 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/idp-metrics

# Declared after the chown/chmod above, so new volumes start with that
# ownership and mode.
VOLUME ["/var/lib/idp/keys", "/var/lib/idp/data"]

EXPOSE 8000
USER idp

# Ready = database, Redis (when configured) and an active signing key.
# urlopen raises on a 503, so the check then fails. It asks the port in PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/readyz', timeout=4)"]

# No CMD: an exec-form CMD cannot read PORT, so the entrypoint supplies the default
# command (`idp serve` on $PORT).
ENTRYPOINT ["/app/config/docker-entrypoint.sh"]
