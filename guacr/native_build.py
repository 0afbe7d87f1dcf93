"""Build and load a plain C shared library (no Python headers) for use with ctypes.

guacr writes C only where Python measurably falls short; such a file is compiled
with ``cc -O2 -fPIC -shared`` at install time (``python -m <loader module>``), or
on first use when missing: into the package directory, or ``$XDG_CACHE_HOME/guacr``
when that is not writable. The library's name carries a hash of its source, so an
edited source is never served by a stale build.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CLibrary", "NativeLibraryError"]

_FLAGS = ("-O2", "-fPIC", "-shared")


class NativeLibraryError(RuntimeError):
    """A native library could not be built or loaded; the message says why."""


@dataclass(frozen=True)
class CLibrary:
    """One C source compiled to ``<stem>-<source hash>.so`` next to it (or in the cache)."""

    source: Path
    what: str  # for messages: "guacr's <what>"
    link: tuple[str, ...] = ()  # extra linker arguments, e.g. ("-lvterm",)
    packages: tuple[str, ...] = ("gcc",)  # Debian packages the build needs
    # (text in the compiler's errors, what to tell the user), e.g. ("vterm.h", "install ...")
    hints: tuple[tuple[str, str], ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def tag(self) -> str:
        return hashlib.sha256(self.source.read_bytes()).hexdigest()[:12]

    def candidates(self) -> list[Path]:
        """Places the built library may live, in search order."""
        name = f"{self.source.stem}-{self.tag()}.so"
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "guacr"
        return [self.source.with_name(name), cache / name]

    def built(self) -> Path | None:
        """The built library for the current source, if any."""
        return next((p for p in self.candidates() if p.exists()), None)

    def build(self, dest: Path | None = None, flags: tuple[str, ...] = _FLAGS) -> Path:
        """Compile the source; returns the library path. ``dest`` and ``flags`` are for
        special builds (tests under AddressSanitizer): those leave other builds alone."""
        cc = _compiler()
        if cc is None:
            names = " and ".join(f"'{p}'" for p in self.packages)
            raise NativeLibraryError(
                f"cannot build guacr's {self.what}: no C compiler found (install the "
                f"Debian packages {names})"
            )
        errors: list[str] = []
        for target in [dest] if dest is not None else self.candidates():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
                os.close(fd)
            except OSError as exc:
                errors.append(f"{target.parent}: {exc}")
                continue
            cmd = [cc, *flags, "-o", tmp, str(self.source), *self.link]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                os.unlink(tmp)
                hint = next((f" ({h})" for text, h in self.hints if text in proc.stderr), "")
                detail = " | ".join(proc.stderr.strip().splitlines()[-5:])
                raise NativeLibraryError(f"building guacr's {self.what} failed{hint}: {detail}")
            # mkstemp made the file 0600 and the linker only adds execute bits (0711):
            # other users, such as the non-root user of a container image, could not
            # load a library built by root. Give it the mode any new file would get.
            os.chmod(tmp, 0o755 & ~_umask())
            os.replace(tmp, target)  # atomic: concurrent builders are harmless
            if dest is None:
                for stale in target.parent.glob(f"{self.source.stem}-*.so"):
                    if stale != target:
                        stale.unlink(missing_ok=True)  # builds of older sources
            return target
        raise NativeLibraryError(f"no writable place for guacr's {self.what}: " + "; ".join(errors))

    def load(self) -> ctypes.CDLL:
        """Load the library, building it first if needed."""
        with self._lock:
            try:
                path = self.built() or self.build()
            except OSError as exc:  # e.g. the source is not installed
                raise NativeLibraryError(f"cannot build guacr's {self.what}: {exc}") from exc
            try:
                return ctypes.CDLL(str(path))
            except OSError as exc:
                raise NativeLibraryError(f"cannot load {path}: {exc}") from exc

    def main(self) -> int:
        """Entry point for ``python -m <loader>``: build now, print the path."""
        try:
            path = self.build()
        except NativeLibraryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(path)
        return 0


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would, for a moment,
    for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None
