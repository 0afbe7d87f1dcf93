#!/bin/sh
# guacr's container entrypoint, doing what guacamole/guacd's does: run in the foreground,
# listen on every address (the container's network is the boundary), log at LOG_LEVEL
# (default info; the deprecated GUACD_LOG_LEVEL still works, with a warning), and pass
# the container's arguments on, so `docker run guacr -L debug` or `-l 4900` work as with
# guacd.
set -eu

if [ -n "${GUACD_LOG_LEVEL:-}" ]; then
    echo "WARNING: GUACD_LOG_LEVEL is deprecated and will stop working in a future" \
        "release; set LOG_LEVEL instead." >&2
fi

# guacr's other doors listen on every address too when they are switched on (a port
# other than 0), unless the operator chose an address: the WebSocket door and the
# metrics and health door. gRPC controls sessions, so it is only opened to the network
# when its authentication (a token or client certificates) is configured.
export GUACR_WEBSOCKET_BIND_HOST="${GUACR_WEBSOCKET_BIND_HOST:-0.0.0.0}"
export GUACR_METRICS_BIND_HOST="${GUACR_METRICS_BIND_HOST:-0.0.0.0}"
if [ -z "${GUACR_GRPC_BIND_HOST:-}" ] \
    && { [ -n "${GUACR_GRPC_TOKEN:-}" ] || [ -n "${GUACR_GRPC_CLIENT_CA:-}" ]; }; then
    export GUACR_GRPC_BIND_HOST=0.0.0.0
fi

exec guacr -f -b 0.0.0.0 -L "${LOG_LEVEL:-${GUACD_LOG_LEVEL:-info}}" "$@"
