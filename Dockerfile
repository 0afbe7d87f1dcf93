# guacr: a drop-in replacement for the guacamole/guacd image.
#   docker build -t guacr . && docker run -p 4822:4822 guacr
# Doors: 4822 Guacamole (as guacd), 4823 WebSocket, 50051 gRPC, 9464 metrics and health.
# The entrypoint (docker/entrypoint.sh) runs `guacr -f -b 0.0.0.0 -L $LOG_LEVEL "$@"` as
# guacd's does. tests/image replays this file into a debootstrapped root file system, so
# keep to RUN, COPY, ENV, USER, WORKDIR and metadata instructions.

# ---- build: the Python environment and guacr's three C libraries
FROM debian:bookworm-slim AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc libc6-dev libvterm-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/guacr
COPY pyproject.toml README.md /src/
COPY guacr /src/guacr
# The libraries go into the installed package, readable by every user (native_build.py).
RUN /opt/guacr/bin/pip install --no-cache-dir --disable-pip-version-check /src \
    && /opt/guacr/bin/python -m guacr.terminal.build \
    && /opt/guacr/bin/python -m guacr.handlers.vnc.native \
    && /opt/guacr/bin/python -m guacr.render.palette \
    && /opt/guacr/bin/python -m guacr.render.compose \
    && find /opt/guacr -name '*.so' ! -perm -0444 -exec false {} + \
    && rm -rf /src

# ---- runtime: Python, libvterm, the terminal's fonts, an unprivileged user
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 libvterm0 fontconfig fonts-dejavu-core fonts-wqy-microhei ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd -g 1000 guacd \
    && useradd -u 1000 -g guacd -d /nonexistent -M -s /usr/sbin/nologin guacd
COPY --from=build /opt/guacr /opt/guacr
COPY docker/entrypoint.sh docker/healthcheck.py /opt/guacr/docker/
ENV LC_ALL=C.UTF-8 PATH=/opt/guacr/bin:$PATH
USER guacd
EXPOSE 4822 4823 50051 9464
# GET /health/live on the metrics door (a Guacamole handshake on 4822 when it is off).
HEALTHCHECK --interval=5m --timeout=5s --start-period=15s \
    CMD ["/opt/guacr/bin/python", "/opt/guacr/docker/healthcheck.py"]
ENTRYPOINT ["/opt/guacr/docker/entrypoint.sh"]
