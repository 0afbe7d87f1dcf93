#!/usr/bin/env bash
# Install guacr and its runtime dependencies on Debian (bookworm) as root.
# Idempotent: re-running only refreshes the Python environment.
#   ./scripts/install.sh            -> venv in ./.venv, `guacr` linked into /usr/local/bin
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

need_apt=0
for bin in python3 gcc; do command -v "$bin" >/dev/null || need_apt=1; done
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt=1
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || need_apt=1
[ -e /usr/include/vterm.h ] || need_apt=1
command -v fc-match >/dev/null || need_apt=1
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need_apt=1
if [ "$need_apt" = 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=900 \
        python3 python3-venv python3-dev gcc libc6-dev fonts-dejavu-core fonts-wqy-microhei fontconfig libvterm0 libvterm-dev ca-certificates
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q -e "${1:-.}"
# Build the terminal's C screen layer now rather than on first use.
.venv/bin/python -m guacr.terminal.build
.venv/bin/python -m guacr.handlers.vnc.native || echo "note: ZRLE tiles will be decoded in Python (slower)" >&2
.venv/bin/python -m guacr.render.palette || echo "note: image palettes will be built in Python (slower)" >&2
if [ -w /usr/local/bin ]; then
    ln -sf "$ROOT/.venv/bin/guacr" /usr/local/bin/guacr
fi
echo "guacr installed: $("$ROOT/.venv/bin/guacr" -v)"
