#!/usr/bin/env bash
# Install everything the guacr test suite needs on Debian bookworm (run as root).
#
# Idempotent: when every package is already installed it skips apt entirely, so a
# re-run costs well under a second. It also creates the throw-away test account
# `guest` (password `guest`) that the real SSH/Telnet/VNC test servers log in as.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps.sh: must run as root" >&2
    exit 1
fi

# One package list per server in scripts/test-deps/*.list (see its README), so issues that
# add a server add a file instead of editing a shared list.
DEPS_DIR="$(cd "$(dirname "$0")" && pwd)/test-deps"
PACKAGES=()
BINARIES=()
for list in "$DEPS_DIR"/*.list; do
    while read -r line; do
        line="${line%%#*}"
        line="$(echo "$line" | xargs)"
        [ -n "$line" ] || continue
        case "$line" in
            bin:*) BINARIES+=("$(echo "${line#bin:}" | xargs)") ;;
            *) PACKAGES+=("$line") ;;
        esac
    done <"$list"
done

# The browser tests need Node >= 20 (playwright-core). Bookworm's own nodejs is 18, so
# keep a newer Node that is already installed (e.g. from NodeSource) and only fall back
# to Debian's packages when there is none. (NodeSource's nodejs bundles npm; Debian's npm
# would pull Debian's nodejs 18 back in, so never mix them.)
node_major() {
    local v
    v="$(node --version 2>/dev/null || true)" # e.g. v20.20.2
    v="${v#v}"
    echo "${v%%.*}"
}
major="$(node_major)"
if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge 20 ]; then
    command -v npm >/dev/null || echo "install-test-deps: warning: node $major has no npm" >&2
else
    PACKAGES+=(nodejs npm)
fi

missing_packages() {
    local p status
    for p in "${PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
        [ "$status" = "installed" ] || echo "$p"
    done
}

all_present() {
    local b
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || return 1
    done
    [ -z "$(missing_packages)" ]
}

if all_present; then
    echo "install-test-deps: all packages present, skipping apt"
else
    # Debian postinst scripts would start sshd etc. on 0.0.0.0 without this.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    cleanup_policy() {
        if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    }
    trap cleanup_policy EXIT

    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update
    apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=900 "${PACKAGES[@]}"

    cleanup_policy
    trap - EXIT
fi

# sshd refuses to start without its privilege-separation directory (no systemd here).
mkdir -p /run/sshd
chmod 755 /run/sshd
# X servers need this socket directory, sticky and world-writable.
mkdir -p /tmp/.X11-unix
chmod 1777 /tmp/.X11-unix

# Test account: guest/guest, bash, short fixed prompt (stable for OCR), no motd noise.
if ! id guest >/dev/null 2>&1; then
    useradd -m -s /bin/bash guest
fi
if [ "$(getent passwd guest | cut -d: -f7)" != /bin/bash ]; then
    usermod -s /bin/bash guest
fi
echo 'guest:guest' | chpasswd # cheap; keeps a tampered password from breaking tests
guest_home="$(getent passwd guest | cut -d: -f6)"
mkdir -p "$guest_home"
chown guest:guest "$guest_home"
if ! grep -q "^PS1='guest@test" "$guest_home/.bashrc" 2>/dev/null; then
    printf "%s\n" "PS1='guest@test:\\w\\\$ '" >>"$guest_home/.bashrc"
    chown guest:guest "$guest_home/.bashrc"
fi
if [ ! -e "$guest_home/.hushlogin" ]; then
    touch "$guest_home/.hushlogin"
    chown guest:guest "$guest_home/.hushlogin"
fi

echo "install-test-deps: done"
