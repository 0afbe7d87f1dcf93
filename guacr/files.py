"""Opening output files the way guacd does (recordings, typescripts).

A name that exists gets ``.1`` .. ``.255`` appended unless overwriting is allowed;
the directory may be created on request.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

MAX_SUFFIX = 255


def open_unique(
    directory: str,
    name: str,
    *,
    file_mode: int,
    create_dir: bool = False,
    dir_mode: int = 0o750,
    write_existing: bool = False,
    lock: bool = False,
) -> tuple[int, str]:
    """Create ``directory/name`` (or a suffixed variant); returns (fd, path).

    With ``lock`` the file gets an exclusive ``fcntl`` write lock, as guacd's
    recordings do, so guacenc/guaclog can tell an in-progress file.
    """
    if create_dir:
        with contextlib.suppress(FileExistsError):
            os.makedirs(directory, dir_mode)
    base = os.path.join(directory, name)
    flags = os.O_CREAT | os.O_WRONLY | (os.O_TRUNC if write_existing else os.O_EXCL)
    for i in range(MAX_SUFFIX + 1):
        path = base if i == 0 else f"{base}.{i}"
        try:
            fd = os.open(path, flags, file_mode)
        except FileExistsError:
            continue
        if lock:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                if write_existing:
                    raise
                continue
        return fd, path
    raise FileExistsError(f"no free file name for {base}")
