"""Replay a Dockerfile into a Debian root file system, without a Docker engine.

No container engine runs on guacr's test machines, so the image test builds the image
the way Docker would, from parts the machine has: ``debootstrap --variant=minbase``
stands in for ``debian:bookworm-slim`` (from the mirror in the machine's own apt
sources), each ``RUN`` runs in ``chroot`` on an overlayfs mount (so each step leaves one
layer, a directory of what it changed, as Docker's layers are), ``COPY`` copies from the
build context filtered by ``.dockerignore`` (or from an earlier stage), and ``ENV``,
``USER``, ``WORKDIR`` and ``ARG`` change what later steps see. Metadata (``EXPOSE``,
``HEALTHCHECK``, ``ENTRYPOINT``, ``CMD``) is kept for the test to check and use.

Layers are cached outside the repository (``/var/cache/guacr-image-test``, or
``$GUACR_IMAGE_CACHE``) under a key that chains the base, every earlier step, the
step's text and, for ``COPY``, the content of the files it copies: an edit to guacr's
source rebuilds only the steps from its ``COPY`` on, as ``docker build`` would.

Root only (chroot, mount). Every mount is made inside a private mount namespace
(``unshare -m``) that disappears with its process, so nothing leaks onto the host.

    python tests/image/replay.py [--context DIR] [--dockerfile FILE]   # build, time it
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("GUACR_IMAGE_CACHE", "/var/cache/guacr-image-test"))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Base images we can stand in for: image reference -> Debian suite.
BASES = {"debian:bookworm-slim": "bookworm", "debian:bookworm": "bookworm"}
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA = "/tmp/.replay-host-ca.crt"  # where RUN steps see HOST_CA (removed afterwards)
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
KEY_LENGTH = 32  # hex digits of a layer key (overlayfs options must fit in a page)
UNUSED_LAYER_AGE = 86400.0  # seconds before a layer this build did not use is deleted
KEEP_UNUSED = 24  # layers this build did not use that are kept at most


class ReplayError(RuntimeError):
    """A step failed or the Dockerfile uses something this tool cannot replay."""


# ------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Step:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str  # upper case
    args: str
    line: int

    def text(self) -> str:
        return f"{self.keyword} {self.args}"


def parse(text: str) -> list[Step]:
    """Instructions of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    steps: list[Step] = []
    buf: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue  # comments, also inside a continued instruction, as Docker does
        if not buf:
            start = lineno
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        joined = " ".join(part for part in buf if part)
        buf = []
        keyword, _, args = joined.partition(" ")
        steps.append(Step(keyword.upper(), args.strip(), start))
    if buf:
        raise ReplayError("the Dockerfile ends inside a continued line")
    return steps


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """``--from=build --chown=1:1 a b`` -> ({"from": "build", ...}, "a b")."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.strip()
    return flags, rest


def words(args: str) -> list[str]:
    """Arguments in exec (JSON) or shell form."""
    if args.startswith("["):
        parsed = json.loads(args)
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise ReplayError(f"not a JSON list of strings: {args}")
        return list(parsed)
    return shlex.split(args)


def expand(value: str, env: dict[str, str]) -> str:
    """``$VAR``, ``${VAR}`` and ``${VAR:-default}`` as Docker expands them."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        got = env.get(name, "")
        return got if got or m.group(2) is None else m.group(2)

    return re.sub(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))", sub, value)


def parse_env(args: str, env: dict[str, str]) -> dict[str, str]:
    """``ENV a=1 b=$a`` or the legacy ``ENV a 1``; values expanded against ``env``."""
    out: dict[str, str] = {}
    if "=" not in args.split(" ", 1)[0]:
        name, _, value = args.partition(" ")
        out[name] = expand(value.strip(), env)
        return out
    for item in shlex.split(args):
        name, sep, value = item.partition("=")
        if not sep:
            raise ReplayError(f"ENV item without '=': {item}")
        out[name] = expand(value, {**env, **out})
    return out


# ---------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ReplayError(f"bad .dockerignore pattern: {pattern}")
            cls = pattern[i + 1 : end]
            out += "[" + ("^" + cls[1:] if cls.startswith("^") else re.escape(cls)) + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


@dataclass
class DockerIgnore:
    """Docker's rules: patterns in order, the last that matches a path or one of its
    parent directories decides; ``!`` re-includes."""

    rules: list[tuple[bool, re.Pattern[str]]] = field(default_factory=list)

    @classmethod
    def load(cls, context: Path) -> DockerIgnore:
        rules: list[tuple[bool, re.Pattern[str]]] = []
        path = context / ".dockerignore"
        lines = path.read_text().splitlines() if path.exists() else []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
            rules.append((negate, _pattern_regex(pattern)))
        return cls(rules)

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, rx in self.rules:
            if any(rx.match(p) for p in prefixes):
                result = not negate
        return result

    def files(self, context: Path, source: str) -> list[tuple[str, Path]]:
        """(path relative to ``source``, absolute path) of every file ``COPY source``
        takes from the context, sorted."""
        root = (context / source).resolve()
        if not root.is_relative_to(context.resolve()):
            raise ReplayError(f"COPY source outside the context: {source}")
        if any(c in source for c in "*?["):
            raise ReplayError(f"COPY with wildcards is not supported: {source}")
        if root.is_file() or root.is_symlink():
            rel = root.relative_to(context.resolve()).as_posix()
            return [] if self.excluded(rel) else [(root.name, root)]
        if not root.is_dir():
            raise ReplayError(f"COPY source not in the context: {source}")
        found: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                rel = p.relative_to(context.resolve()).as_posix()
                if not self.excluded(rel):
                    found.append((p.relative_to(root).as_posix(), p))
        if not found and self.excluded(root.relative_to(context.resolve()).as_posix()):
            raise ReplayError(f"COPY source excluded by .dockerignore: {source}")
        return found


# ------------------------------------------------------------------------- image


@dataclass
class Image:
    """A replayed stage: its layers (lowest first) and the configuration it ended with."""

    layers: list[Path]
    env: dict[str, str]
    user: str = "root"
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)  # ["CMD", ...] or ["CMD-SHELL", s]
    healthcheck_options: dict[str, str] = field(default_factory=dict)

    def lowerdir(self) -> str:
        return ":".join(str(p) for p in reversed(self.layers))

    def read_file(self, path: str) -> bytes:
        """A file as the image sees it (top layer first; no whiteout handling needed
        for the files we read: /etc/passwd and /etc/group)."""
        for layer in reversed(self.layers):
            p = layer / path.lstrip("/")
            if p.is_file():
                return p.read_bytes()
        raise FileNotFoundError(path)

    def ids(self, user: str | None = None) -> tuple[int, int, str]:
        """(uid, gid, home) of ``user`` (default: the image's USER) in the image."""
        spec = user or self.user
        name, _, group = spec.partition(":")
        uid = gid = -1
        home = "/"
        for line in self.read_file("/etc/passwd").decode().splitlines():
            f = line.split(":")
            if len(f) >= 7 and (f[0] == name or f[2] == name):
                uid, gid, home = int(f[2]), int(f[3]), f[5]
        if uid < 0:
            if not name.isdigit():
                raise ReplayError(f"user {name!r} not in the image's /etc/passwd")
            uid, gid = int(name), int(name)
        if group:
            gid = int(group) if group.isdigit() else self._group(group)
        return uid, gid, home

    def _group(self, name: str) -> int:
        for line in self.read_file("/etc/group").decode().splitlines():
            f = line.split(":")
            if len(f) >= 3 and f[0] == name:
                return int(f[2])
        raise ReplayError(f"group {name!r} not in the image's /etc/group")

    def run_command(
        self,
        argv: list[str],
        scratch: Path,
        env: dict[str, str] | None = None,
        user: str | None = None,
        isolated_network: bool = False,
        read_only: bool = False,
    ) -> list[str]:
        """A host command line that runs ``argv`` in a throw-away container of this image:
        its own mount namespace, the layers under a fresh upper directory in
        ``scratch``, /proc and /dev, the image's user, ENV (plus ``env``) and WORKDIR.
        With ``isolated_network`` it also gets a network namespace of its own with only
        a loopback interface (so it may bind 0.0.0.0 and touch nothing else); with
        ``read_only`` the root file system is read-only and /tmp a tmpfs."""
        upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
        for d in (upper, work, merged):
            d.mkdir(parents=True, exist_ok=True)
        uid, gid, home = self.ids(user)
        full_env = {"HOME": home, "HOSTNAME": "guacr-image-test", **self.env, **(env or {})}
        inner = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in full_env.items())]
        script = _mount_script(self.lowerdir(), upper, work, merged, read_only) + (
            f"cd {shlex.quote(str(merged))}\n"
            f"exec chroot --userspec={uid}:{gid} --groups={gid} {shlex.quote(str(merged))} "
            f'/bin/sh -c \'cd "$0" && exec "$@"\' {shlex.quote(self.workdir)} '
            + " ".join(shlex.quote(a) for a in inner + argv)
        )
        if isolated_network:
            script = "ip link set lo up\n" + script
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            *(["--net"] if isolated_network else []),
            "sh",
            "-ec",
            script,
        ]

    def entrypoint_argv(self, args: list[str] | None = None) -> list[str]:
        """What ``docker run IMAGE args...`` runs."""
        return [*self.entrypoint, *(self.cmd if args is None else args)]

    def healthcheck_argv(self) -> list[str]:
        if not self.healthcheck or self.healthcheck[0] == "NONE":
            raise ReplayError("the image has no HEALTHCHECK")
        if self.healthcheck[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", self.healthcheck[1]]
        return self.healthcheck[1:]


def _build_env() -> dict[str, str]:
    """What RUN steps get from the machine but the image does not keep, as ``docker
    build`` passes proxy settings: the proxies, and the machine's CA bundle (a network
    that inspects TLS needs its own certificate authority trusted)."""
    env = {k: v for k, v in os.environ.items() if k.lower() in _PROXY_VARIABLES}
    if HOST_CA.is_file():
        env.update(SSL_CERT_FILE=BUILD_CA, PIP_CERT=BUILD_CA, REQUESTS_CA_BUNDLE=BUILD_CA)
    return env


def _mount_script(
    lowerdir: str, upper: Path, work: Path, merged: Path, read_only: bool = False
) -> str:
    """Mount the layers at ``merged`` (writable through ``upper``, or read-only with a
    tmpfs on /tmp, as Kubernetes' readOnlyRootFilesystem plus an emptyDir)."""
    m = shlex.quote(str(merged))
    if read_only:
        opts = shlex.quote(f"ro,lowerdir={lowerdir}")
        tmp = f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {m}/tmp\n"
    else:
        opts = shlex.quote(f"lowerdir={lowerdir},upperdir={upper},workdir={work}")
        tmp = ""
    return (
        f"mount -t overlay overlay -o {opts} {m}\n" + tmp + f"mount -t proc proc {m}/proc\n"
        f"mount --rbind /dev {m}/dev\n"
        f"if [ -f {m}/etc/resolv.conf ] && [ -e /etc/resolv.conf ]; then\n"
        f"  mount --bind /etc/resolv.conf {m}/etc/resolv.conf\nfi\n"
    )


# ------------------------------------------------------------------------ build


def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:KEY_LENGTH]


def host_debian_sources(suite: str) -> tuple[str, str]:
    """(mirror URL for debootstrap, deb822 sources for the image) from the machine's own
    apt sources: every Debian entry for ``suite`` and its -updates/-security suites."""
    stanzas: list[dict[str, str]] = []
    src = Path("/etc/apt")
    for f in sorted(src.glob("sources.list.d/*.sources")):
        for block in f.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if line.strip().startswith("#") or ":" not in line:
                    continue
                k, _, v = line.partition(":")
                fields[k.strip()] = v.strip()
            if fields.get("Enabled", "yes") != "no" and "deb" in fields.get("Types", "").split():
                stanzas.append(fields)
    for f in [src / "sources.list", *sorted(src.glob("sources.list.d/*.list"))]:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            w = line.split("#", 1)[0].split()
            if len(w) >= 4 and w[0] == "deb" and not w[1].startswith("["):
                stanzas.append(
                    {"Types": "deb", "URIs": w[1], "Suites": w[2], "Components": " ".join(w[3:])}
                )
    chosen = [
        s
        for s in stanzas
        if any(x == suite or x.startswith(suite + "-") for x in s.get("Suites", "").split())
    ]
    mirror = next(
        (s["URIs"].split()[0] for s in chosen if suite in s.get("Suites", "").split()), None
    )
    if mirror is None:
        raise ReplayError(f"no Debian {suite} entry in the machine's apt sources")
    text = "\n".join(
        "".join(
            f"{k}: {v}\n"
            for k, v in s.items()
            if k in ("Types", "URIs", "Suites", "Components", "Signed-By")
        )
        for s in chosen
    )
    return mirror, text


class Builder:
    """Replays one Dockerfile with a layer cache in ``cache``."""

    def __init__(
        self, context: Path, dockerfile: Path | None = None, cache: Path = CACHE, log: bool = False
    ) -> None:
        self.context = context.resolve()
        self.dockerfile = dockerfile or self.context / "Dockerfile"
        self.cache = cache
        self.layers = cache / "layers"
        self.ignore = DockerIgnore.load(self.context)
        self.log = log
        self.used: set[str] = set()
        self.timings: list[tuple[str, float, bool]] = []  # (step, seconds, from cache)

    def say(self, msg: str) -> None:
        if self.log:
            print(msg, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.layers.mkdir(parents=True, exist_ok=True)
        with open(self.cache / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time per cache
            yield

    def build(self) -> Image:
        """Replay every stage; return the last one (the image)."""
        if os.geteuid() != 0:
            raise ReplayError("replaying a Dockerfile needs root (chroot, mount)")
        with self._locked():
            stages: dict[str, Image] = {}
            image: Image | None = None
            for name, steps in self._stages():
                image = self._stage(steps, stages)
                if name:
                    stages[name] = image
            if image is None:
                raise ReplayError("the Dockerfile has no FROM")
            self._prune()
            return image

    def _stages(self) -> list[tuple[str, list[Step]]]:
        stages: list[tuple[str, list[Step]]] = []
        for step in parse(self.dockerfile.read_text()):
            if step.keyword == "FROM":
                w = step.args.split()
                name = w[2] if len(w) == 3 and w[1].upper() == "AS" else ""
                stages.append((name, [step]))
            elif not stages:
                if step.keyword != "ARG":
                    raise ReplayError(f"line {step.line}: {step.keyword} before FROM")
            else:
                stages[-1][1].append(step)
        return stages

    def _stage(self, steps: list[Step], stages: dict[str, Image]) -> Image:
        base = steps[0].args.split()[0]
        if base in stages:
            prev = stages[base]
            image = Image(list(prev.layers), dict(prev.env), prev.user, prev.workdir)
            key = _hash("stage", *(p.name for p in prev.layers), json.dumps(prev.env))
        else:
            layer = self._base(base)
            image = Image([layer], {"PATH": DEFAULT_PATH})
            key = layer.name
        for step in steps[1:]:
            key = self._step(step, image, key, stages)
        return image

    def _base(self, ref: str) -> Path:
        suite = BASES.get(ref)
        if suite is None:
            raise ReplayError(f"base image {ref!r} unknown (known: {', '.join(BASES)})")
        mirror, sources = host_debian_sources(suite)
        key = _hash("debootstrap", "minbase", suite, mirror, sources)
        target = self.layers / key
        self.used.add(key)
        if target.exists():
            self.timings.append((f"FROM {ref}", 0.0, True))
            return target
        self.say(f"FROM {ref}: debootstrap --variant=minbase {suite} {mirror}")
        t0 = time.monotonic()
        tmp = self.layers / f"{key}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(tmp), mirror],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            shutil.rmtree(tmp, ignore_errors=True)
            raise ReplayError(f"debootstrap failed:\n{tail}")
        # As the Docker image: the machine's Debian sources (with -updates and -security),
        # no package lists left behind.
        (tmp / "etc/apt/sources.list").unlink(missing_ok=True)
        (tmp / "etc/apt/sources.list.d/debian.sources").write_text(sources)
        shutil.rmtree(tmp / "var/lib/apt/lists", ignore_errors=True)
        (tmp / "var/lib/apt/lists/partial").mkdir(parents=True)
        shutil.rmtree(tmp / "var/cache/apt/archives", ignore_errors=True)
        (tmp / "var/cache/apt/archives/partial").mkdir(parents=True)
        tmp.rename(target)
        self.timings.append((f"FROM {ref}", time.monotonic() - t0, False))
        return target

    def _step(self, step: Step, image: Image, key: str, stages: dict[str, Image]) -> str:
        kw = step.keyword
        state = json.dumps([image.env, image.user, image.workdir], sort_keys=True)
        if kw == "ENV":
            image.env.update(parse_env(step.args, image.env))
            return _hash(key, step.text())
        if kw == "ARG":
            name, _, default = step.args.partition("=")
            if default and name not in image.env:
                image.env[name] = default  # build-time only in Docker; fine for replay
            return _hash(key, step.text())
        if kw == "USER":
            image.user = expand(step.args, image.env)
            return _hash(key, step.text())
        if kw == "EXPOSE":
            image.exposed += [expand(p, image.env) for p in step.args.split()]
            return key
        if kw == "ENTRYPOINT":
            image.entrypoint = (
                words(step.args) if step.args.startswith("[") else ["/bin/sh", "-c", step.args]
            )
            return key
        if kw == "CMD":
            image.cmd = (
                words(step.args) if step.args.startswith("[") else ["/bin/sh", "-c", step.args]
            )
            return key
        if kw == "HEALTHCHECK":
            flags, rest = split_flags(step.args)
            image.healthcheck_options = flags
            head, _, cmd = rest.partition(" ")
            if head.upper() == "NONE":
                image.healthcheck = ["NONE"]
            elif cmd.startswith("["):
                image.healthcheck = ["CMD", *words(cmd)]
            else:
                image.healthcheck = ["CMD-SHELL", cmd]
            return key
        if kw in ("LABEL", "STOPSIGNAL", "VOLUME", "SHELL", "ONBUILD", "MAINTAINER"):
            if kw == "SHELL":
                raise ReplayError(f"line {step.line}: SHELL is not supported")
            return key
        if kw == "WORKDIR":
            path = expand(step.args, image.env)
            image.workdir = path if path.startswith("/") else f"{image.workdir}/{path}"
            return self._layer(
                _hash(key, state, step.text()),
                step,
                image,
                run=f"mkdir -p {shlex.quote(image.workdir)}",
                user="root",
            )
        if kw == "RUN":
            cmd = step.args
            if cmd.startswith("["):
                cmd = " ".join(shlex.quote(w) for w in words(cmd))
            return self._layer(
                _hash(key, state, step.text()), step, image, run=cmd, user=image.user
            )
        if kw in ("COPY", "ADD"):
            return self._copy(step, image, key, state, stages)
        raise ReplayError(f"line {step.line}: {kw} is not supported")

    def _copy(
        self, step: Step, image: Image, key: str, state: str, stages: dict[str, Image]
    ) -> str:
        flags, rest = split_flags(step.args)
        if step.keyword == "ADD" or set(flags) - {"from", "chown", "chmod"}:
            raise ReplayError(f"line {step.line}: only plain COPY [--from] [--chown] is replayed")
        args = [expand(a, image.env) for a in words(rest)]
        if len(args) < 2:
            raise ReplayError(f"line {step.line}: COPY needs a source and a destination")
        *sources, dest = args
        if not dest.startswith("/"):
            dest = f"{image.workdir.rstrip('/')}/{dest}"
        into_dir = dest.endswith("/") or len(sources) > 1
        chown = flags.get("chown", "")
        owner = image.ids(chown) if chown else (0, 0, "/")
        if "from" in flags:
            src_image = stages.get(flags["from"])
            if src_image is None:
                raise ReplayError(f"line {step.line}: no earlier stage {flags['from']!r}")
            k = _hash(key, state, step.text(), *(p.name for p in src_image.layers))
            return self._layer(k, step, image, copy_from=(src_image, sources, dest, into_dir))
        plan: list[tuple[Path, str]] = []  # (host file, path in the image)
        digest = hashlib.sha256()
        for source in sources:
            files = self.ignore.files(self.context, source)
            single = (self.context / source).is_file()
            for rel, path in files:
                if single:
                    target = f"{dest.rstrip('/')}/{rel}" if into_dir else dest
                else:
                    target = f"{dest.rstrip('/')}/{rel}"
                plan.append((path, target))
                digest.update(f"{target}\0{path.stat().st_mode & 0o7777:o}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        k = _hash(key, state, step.text(), digest.hexdigest(), f"{owner[0]}:{owner[1]}")
        return self._layer(k, step, image, copy_plan=(plan, owner[0], owner[1]))

    def _layer(
        self,
        key: str,
        step: Step,
        image: Image,
        run: str | None = None,
        user: str = "root",
        copy_plan: tuple[list[tuple[Path, str]], int, int] | None = None,
        copy_from: tuple[Image, list[str], str, bool] | None = None,
    ) -> str:
        target = self.layers / key
        self.used.add(key)
        label = f"{step.keyword} {step.args}"[:70]
        if target.exists():
            image.layers.append(target)
            self.timings.append((label, 0.0, True))
            return key
        self.say(f"{label} ...")
        t0 = time.monotonic()
        tmp = self.layers / f"{key}.partial"
        scratch = self.layers / f"{key}.scratch"
        for d in (tmp, scratch):
            shutil.rmtree(d, ignore_errors=True)
        tmp.mkdir()
        try:
            if copy_plan is not None:
                plan, uid, gid = copy_plan
                for src, dst in plan:
                    out = tmp / dst.lstrip("/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, out, follow_symlinks=False)
                    os.lchown(out, uid, gid)
            elif copy_from is not None:
                src_image, sources, dest, into_dir = copy_from
                self._copy_from(src_image, sources, dest, into_dir, tmp, scratch)
            elif run is not None:
                self._run(image, run, user, tmp, scratch)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        tmp.rename(target)
        image.layers.append(target)
        self.timings.append((label, time.monotonic() - t0, False))
        return key

    def _run(self, image: Image, cmd: str, user: str, upper: Path, scratch: Path) -> None:
        work, merged = scratch / "work", scratch / "merged"
        work.mkdir(parents=True)
        merged.mkdir()
        uid, gid, home = image.ids(user)
        env = {"HOME": home, **image.env, **_build_env()}
        m = shlex.quote(str(merged))
        ca = f"{m}{BUILD_CA}"
        script = _mount_script(image.lowerdir(), upper, work, merged)
        if "SSL_CERT_FILE" in env:  # the machine's TLS trust, for this step only
            script += f"touch {ca}\nmount --bind {HOST_CA} {ca}\n"
        script += (
            f"status=0\nchroot --userspec={uid}:{gid} --groups={gid} {m} /usr/bin/env -i "
            + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
            + ' /bin/sh -c \'cd "$0" && exec /bin/sh -c "$1"\' '
            + f"{shlex.quote(image.workdir)} {shlex.quote(cmd)} || status=$?\n"
        )
        if "SSL_CERT_FILE" in env:
            script += f"umount {ca}\nrm -f {ca}\n"
        script += "exit $status\n"
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        (self.cache / "logs").mkdir(exist_ok=True)
        (self.cache / "logs" / f"{upper.name.split('.')[0]}.log").write_text(proc.stdout)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-25:])
            raise ReplayError(f"RUN failed with status {proc.returncode}: {cmd}\n{tail}")

    def _copy_from(
        self, src: Image, sources: list[str], dest: str, into_dir: bool, upper: Path, scratch: Path
    ) -> None:
        merged = scratch / "from"
        merged.mkdir(parents=True)
        m = shlex.quote(str(merged))
        lines = [f"mount -t overlay overlay -o ro,lowerdir={shlex.quote(src.lowerdir())} {m}"]
        for source in sources:
            s = f"{m}/{source.lstrip('/')}"
            d = f"{upper}/{dest.lstrip('/')}"
            # A directory's contents go to dest; a file goes to dest (or into it).
            lines.append(
                f"if [ -d {shlex.quote(s)} ]; then mkdir -p {shlex.quote(d)} && "
                f"cp -a {shlex.quote(s)}/. {shlex.quote(d)}/; "
                f"else mkdir -p {shlex.quote(d if into_dir else os.path.dirname(d))} && "
                f"cp -a {shlex.quote(s)} {shlex.quote(d if not into_dir else d + '/')}; fi"
            )
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", "\n".join(lines)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ReplayError(f"COPY --from failed: {proc.stderr.strip()}")

    def _prune(self) -> None:
        """Bound the cache: layers this build did not use go once they are a day old, or
        beyond the newest KEEP_UNUSED of them (other checkouts share the cache, so their
        recent layers stay; every source edit leaves a few hundred MB behind)."""
        now = time.time()
        unused: list[tuple[float, Path]] = []
        for d in self.layers.iterdir():
            if d.name in self.used:
                os.utime(d)
            elif d.name.endswith((".partial", ".scratch")):
                shutil.rmtree(d, ignore_errors=True)
            else:
                unused.append((d.stat().st_mtime, d))
        unused.sort(reverse=True)
        for i, (mtime, d) in enumerate(unused):
            if i >= KEEP_UNUSED or now - mtime > UNUSED_LAYER_AGE:
                shutil.rmtree(d, ignore_errors=True)
                (self.cache / "logs" / f"{d.name}.log").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--context", type=Path, default=Path(__file__).resolve().parents[2])
    p.add_argument("--dockerfile", type=Path)
    p.add_argument("--cache", type=Path, default=CACHE)
    ns = p.parse_args(argv)
    t0 = time.monotonic()
    builder = Builder(ns.context, ns.dockerfile, ns.cache, log=True)
    try:
        image = builder.build()
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for label, seconds, cached in builder.timings:
        print(f"{'cached' if cached else f'{seconds:6.1f}s'}  {label}")
    print(
        f"total {time.monotonic() - t0:.1f}s; {len(image.layers)} layers; user {image.user}; "
        f"entrypoint {image.entrypoint}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
