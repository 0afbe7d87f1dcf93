#!/usr/bin/env bash
# Install guacr and its runtime dependencies on Debian (bookworm) as root.
# Idempotent: re-running only refreshes the Python environment.
#   ./scripts/install.sh            -> venv in ./.venv, `guacr` linked into /usr/local/bin
#   ./scripts/install.sh ".[test]"  -> the same with the test extras
#   ./scripts/install.sh --link-only -> only the /usr/local/bin/guacr step below
# The command link is created when missing and never silently re-pointed: when it already
# leads to another checkout (or is not a link), it is left alone with a note, unless
# GUACR_LINK=replace. GUACR_LINK=never skips it; GUACR_BIN_DIR moves it (default
# /usr/local/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

link_command() {
    local dir="${GUACR_BIN_DIR:-/usr/local/bin}" mode="${GUACR_LINK:-keep}"
    local link="$dir/guacr" want="$ROOT/.venv/bin/guacr" have
    case "$mode" in
        keep | replace) ;;
        never) return 0 ;;
        *) echo "install.sh: GUACR_LINK must be keep, replace or never, not '$mode'" >&2; return 2 ;;
    esac
    if [ ! -w "$dir" ]; then
        echo "note: $dir is missing or not writable; run guacr as $want" >&2
        return 0
    fi
    if [ -L "$link" ] || [ -e "$link" ]; then
        have=$(readlink -f "$link" 2>/dev/null || true)
        if [ "$have" = "$(readlink -f "$want")" ]; then
            return 0
        fi
        if [ "$mode" != replace ]; then
            if [ -L "$link" ]; then
                echo "note: $link leads to $(readlink "$link") (not this checkout), left as it is;" \
                    "this checkout's guacr is $want (GUACR_LINK=replace to re-point the link)" >&2
            else
                echo "note: $link exists and is not a link, left as it is;" \
                    "this checkout's guacr is $want (GUACR_LINK=replace to replace it)" >&2
            fi
            return 0
        fi
        echo "note: re-pointing $link from $(readlink "$link" || echo "a file") to $want" >&2
    fi
    ln -sfn "$want" "$link"
    echo "linked $link -> $want"
}

if [ "${1:-}" = --link-only ]; then
    link_command
    exit
fi

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
.venv/bin/python -m guacr.render.compose || echo "note: terminal images will be composed with numpy (slower)" >&2
link_command
echo "guacr installed: $("$ROOT/.venv/bin/guacr" -v)"
