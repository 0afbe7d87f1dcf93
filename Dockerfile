# guacr: a drop-in replacement for the guacamole/guacd image.
#   docker build -t guacr . && docker run -p 4822:4822 guacr
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc libc6-dev libvterm-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN python3 -m venv /opt/guacr && /opt/guacr/bin/pip install --no-cache-dir /src \
    && /opt/guacr/bin/python -m guacr.terminal.build \
    && /opt/guacr/bin/python -m guacr.handlers.vnc.native \
    && /opt/guacr/bin/python -m guacr.render.palette

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 libvterm0 fonts-dejavu-core fonts-wqy-microhei fontconfig ca-certificates netcat-openbsd \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd -g 1000 guacd && useradd -u 1000 -g guacd -s /usr/sbin/nologin guacd
COPY --from=build /opt/guacr /opt/guacr
ENV LC_ALL=C.UTF-8 PATH=/opt/guacr/bin:$PATH
USER guacd
EXPOSE 4822
HEALTHCHECK --interval=5m --timeout=5s --start-period=15s CMD nc -z 127.0.0.1 4822 || exit 1
ENTRYPOINT ["sh", "-c", "exec guacr -f -b 0.0.0.0 -L ${LOG_LEVEL:-info} \"$@\"", "--"]
