"""What is running: the package version and, when known, the git commit it was built from.

Shown by ``securepay --version``, ``securepay config check``, ``GET /readyz`` and every
JSON log line, so IT (and a PCI assessor) can say which build answered a call.

The commit comes from, in order: a ``BUILD_COMMIT`` file beside this module (the
image's build writes it from its ``GIT_COMMIT`` argument, since an image has no
``.git``), else the git checkout the code runs from, read from ``.git`` directly (no
``git`` binary needed, a worktree's ``.git`` file followed). Neither: no commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["Build", "build"]

PACKAGE = "securepay"
_HERE = Path(__file__).resolve().parent
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Build:
    version: str
    commit: str | None  # the full 40-hex SHA

    @property
    def short_commit(self) -> str | None:
        return self.commit[:12] if self.commit else None

    def describe(self) -> str:
        """``0.2.0 (commit 3cbc568a1b2c)`` or ``0.2.0``."""
        return f"{self.version} (commit {self.short_commit})" if self.commit else self.version


def _package_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def _git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():  # a worktree or submodule: "gitdir: /path/to/git/dir"
            text = dot_git.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text.removeprefix("gitdir:").strip())
                return target if target.is_absolute() else (folder / target).resolve()
            return None
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    # A worktree keeps HEAD apart but shares refs with the main repository (commondir).
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text().strip()).resolve()
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            sha = loose.read_text().strip()
            return sha if _SHA.fullmatch(sha) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(errors="replace").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _SHA.fullmatch(sha):
                return sha
    return None


def git_commit(start: Path = _HERE) -> str | None:
    """The commit checked out in the repository holding ``start``, if any."""
    try:
        git_dir = _git_dir(start)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text().strip()
        if _SHA.fullmatch(head):  # a detached HEAD
            return head
        if head.startswith("ref: "):
            return _resolve_ref(git_dir, head.removeprefix("ref: ").strip())
    except OSError:
        return None
    return None


def _build_file_commit() -> str | None:
    try:
        sha = (_HERE / "BUILD_COMMIT").read_text().strip().lower()
    except OSError:
        return None
    return sha if _SHA.fullmatch(sha) else None


@cache
def build() -> Build:
    """The running build, read once per process."""
    return Build(_package_version(), _build_file_commit() or git_commit())
