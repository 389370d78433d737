# Messenger API image: the core and the five plugins (the web client at / included), run as a non-root user.
#   docker build -t messenger .
#   docker run -p 8080:8080 -e POSTGRES_HOSTS=db -e AUTH_DISABLED=true messenger     # the API (default)
#   docker run messenger messenger-consumer                                          # the search worker
# deploy/entrypoint waits for PostgreSQL and applies migrations before it execs the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system --gid 10001 messenger \
    && useradd --system --uid 10001 --gid messenger --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin messenger

# Third-party dependencies first, read from the pyproject files alone, so this layer is rebuilt only
# when a dependency list changes, not on every code change.  Our own distributions (messenger-*)
# are left out here and installed from the sources below.
WORKDIR /src
COPY pyproject.toml ./
COPY plugins/messenger_auth/pyproject.toml plugins/messenger_auth/
COPY plugins/messenger_chats/pyproject.toml plugins/messenger_chats/
COPY plugins/messenger_events/pyproject.toml plugins/messenger_events/
COPY plugins/messenger_search/pyproject.toml plugins/messenger_search/
COPY plugins/messenger_throttle/pyproject.toml plugins/messenger_throttle/
COPY plugins/messenger_web/pyproject.toml plugins/messenger_web/
RUN python -c "import sys, tomllib; \
deps = {d for f in sys.argv[1:] for d in tomllib.load(open(f, 'rb'))['project']['dependencies']}; \
print('\n'.join(sorted(d for d in deps if not d.startswith('messenger-'))))" \
        pyproject.toml plugins/*/pyproject.toml > requirements.txt \
    && cat requirements.txt \
    && pip install -r requirements.txt 'setuptools>=68' wheel

# The code: the core and every plugin (entry points "messenger.plugins"), no dependency resolution
# needed any more; pip check proves the set is complete.
COPY messenger_core/ messenger_core/
COPY plugins/ plugins/
RUN pip install --no-deps --no-build-isolation . plugins/messenger_auth plugins/messenger_chats \
        plugins/messenger_events plugins/messenger_search plugins/messenger_throttle plugins/messenger_web \
    && pip check \
    && messenger-api plugins

WORKDIR /app
# deploy/entrypoint keeps its executable bit from git
COPY deploy/entrypoint deploy/entrypoint
USER 10001:10001

ENV PORT=8080
EXPOSE 8080
# /ping answers as soon as the process serves; it never depends on the database.  No curl in the
# slim image: Python's urllib fails (exit 1) on a refused connection or a non-2xx status.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/ping' % os.environ.get('PORT', '8080'), timeout=2)" || exit 1

ENTRYPOINT ["/app/deploy/entrypoint"]
CMD ["messenger-api"]
