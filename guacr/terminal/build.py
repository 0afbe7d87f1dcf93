"""``python -m guacr.terminal.build``: compile the terminal's C screen layer.

Run it at install time (needs the Debian packages ``gcc`` and ``libvterm-dev``) so
servers never compile at run time; prints the path of the built library.
"""

from __future__ import annotations

import sys

from guacr.terminal.native import NativeLibraryError, build


def main() -> int:
    try:
        path = build()
    except NativeLibraryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
