"""All-or-nothing output folders: a run's files appear together or not at all, and earlier runs are kept.

Layout for `--out runs/req`:

    runs/req -> .req.generations/g0002        a symbolic link, swapped atomically (rename over it)
    runs/.req.generations/g0001/              an earlier generation, never deleted
    runs/.req.generations/g0002/manifest.json the SHA-256 of every file of the generation, and its predecessor

A writer builds the new generation in a temporary folder beside the others, writes its manifest, fsyncs, renames
the folder to its final name, then points the link at it with one `rename`. A kill at any moment or a full disk
therefore leaves the link on a whole generation: the old one until the final rename, the new one after it. An
existing folder at `runs/req` (written before generations existed) is moved to `.req.generations/legacy-*`;
an intent file makes the next access finish that swap if a kill falls between the two renames. Temporary
folders of writers that died are removed by the next writer. Readers (`verify_output`) check every file against
the manifest and refuse, with one line, a folder that does not match. Needs symbolic links (POSIX).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import _pid_alive, sha256_file, write_json_atomic

FORMAT = "lotus-unlearn-output/1"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
_INTENT = ".swap"
# what a run wrote into a plain folder before generations existed: such a folder is moved aside by --overwrite
RUN_FILES = {
    MANIFEST,
    "model.safetensors",
    "model.json",
    "split.json",
    "report.json",
    "report.md",
    "report.html",
}


def generations_dir(out: str | Path) -> Path:
    """The hidden folder beside `out` that holds its generations."""
    out = Path(out)
    return out.parent / f".{out.name}.generations"


def check_output(out: str | Path, overwrite: bool = False) -> None:
    """Refuse, before any work, an `out` that cannot become an output folder: a file (or a path through a file),
    or a folder that already holds files unless `overwrite` (the earlier output is then kept, never deleted)."""
    out = Path(out)
    recover(out)
    _check_parents(out)
    if out.name in ("", ".", ".."):
        raise UserError(f"output folder {out} names no folder of its own; pass e.g. --out runs/request-1")
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} is a file, not a folder; choose another --out")
    if out.is_dir() and not out.is_symlink():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.startswith("."))
        if foreign:
            raise UserError(
                f"output folder {out} holds files that no lotus-unlearn run wrote (e.g. {foreign[0]!r}); "
                "choose another --out"
            )
    if not overwrite and (out.is_symlink() or (out.is_dir() and any(out.iterdir()))):
        raise UserError(
            f"output folder {out} already holds a run; pass --overwrite (the earlier run is kept in "
            f"{generations_dir(out)}) or choose another --out"
        )


def _check_parents(out: Path) -> None:
    """The folder of `out` must be creatable: no part of its path may be a file."""
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"output path {out} cannot be created: {parent} is a file; choose another --out")
            break


def check_output_file(files: Sequence[str | Path], overwrite: bool = False) -> None:
    """Refuse, before any work, an output file `files[0]` (with its companions `files[1:]`, e.g. a checkpoint's
    sidecar) that cannot be written: a path through a file, a folder in the way, or an existing file unless
    `overwrite` (the earlier files are then kept by `keep_previous`, never deleted)."""
    paths = [Path(f) for f in files]
    _check_parents(paths[0])
    for path in paths:
        if path.is_dir():
            raise UserError(f"output path {path} is a folder, not a file; choose another --out")
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise UserError(
            f"{existing[0]} already exists; pass --overwrite (the earlier file is kept as "
            f"{_sibling(existing[0], _free_number(paths))}) or choose another --out"
        )


def keep_previous(files: Sequence[str | Path]) -> list[Path]:
    """Before `files` (a file and its companions) are replaced: keep those that exist under the first number N
    free for all of them, `NAME.prev-N.SUFFIX` beside each (hard links, so the files are never absent from their
    own names). Returns the kept paths (none when nothing existed)."""
    paths = [Path(f) for f in files]
    number = _free_number(paths)
    kept = []
    for path in paths:
        if path.is_file():
            _link_or_copy(path, _sibling(path, number))
            kept.append(_sibling(path, number))
    if kept:
        _fsync_dir(paths[0].parent)
    return kept


def _sibling(path: Path, number: int) -> Path:
    return path.with_name(f"{path.stem}.prev-{number}{path.suffix}")


def _free_number(paths: list[Path]) -> int:
    number = 1
    while any(_sibling(p, number).exists() or _sibling(p, number).is_symlink() for p in paths):
        number += 1
    return number


@dataclass(frozen=True)
class Generation:
    """A generation being written: write its files under `path`; once published they are under `final`."""

    path: Path
    final: Path


@contextlib.contextmanager
def new_generation(out: str | Path, overwrite: bool = False, base: str | Path | None = None) -> Iterator[Generation]:
    """Yield a `Generation` whose `path` is an empty temporary folder to write a run into (or one holding links
    to `base`'s files); when the block succeeds, publish it as `out`'s new generation `final` (manifest, rename,
    link swap). On an error nothing changes at `out` and the temporary folder is removed."""
    out = Path(out)
    check_output(out, overwrite)
    gens = generations_dir(out)
    try:
        gens.mkdir(parents=True, exist_ok=True)
        _sweep_stale(gens)
        tmp = gens / f"{_tmp_prefix()}{secrets.token_hex(4)}"
        tmp.mkdir()
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror or exc}; choose another --out") from exc
    number = 1 + max((_number(p.name) for p in gens.iterdir()), default=0)
    gen = Generation(tmp, gens.resolve() / f"g{number:04d}")
    try:
        if base is not None:
            for name in _files(Path(base)):
                if name != MANIFEST:
                    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(Path(base) / name, tmp / name)
        yield gen
        _publish(out, gens, tmp, number)
    except OSError as exc:
        _discard(tmp)
        raise UserError(
            f"cannot write output folder {out}: {exc.strerror or exc}; free space or choose another --out"
        ) from exc
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    """Remove a generation that was not published, and the generations folder if nothing else is in it."""
    shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):
        tmp.parent.rmdir()


def _publish(out: Path, gens: Path, tmp: Path, number: int) -> None:
    """Manifest, fsync, rename into place, move a legacy folder aside, swap the link (the commit point)."""
    name = f"g{number:04d}"
    if (gens / name).exists():
        raise UserError(f"another run was written to {out} meanwhile (as {name}); write this one again")
    previous: dict[str, Any] | None = None
    legacy = None
    if out.is_symlink():
        current = out.resolve()
        where = current.name if current.parent == gens.resolve() else str(current)
        previous = {"path": where, "manifest_sha256": _manifest_sha(current)}
    elif out.is_dir() and any(out.iterdir()):
        legacy = gens / f"legacy-{name}"
        previous = {"path": legacy.name, "manifest_sha256": None}
    manifest = {
        "format": FORMAT,
        "generation": number,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {rel: sha256_file(tmp / rel) for rel in _files(tmp) if rel != MANIFEST},
        "previous": previous,
    }
    write_json_atomic(tmp / MANIFEST, manifest)
    _fsync_dir(tmp)
    os.rename(tmp, gens / name)
    _fsync_dir(gens)
    write_json_atomic(gens / _INTENT, {"target": name})  # lets the next access finish the swap after a kill
    if legacy is not None:
        os.rename(out, legacy)
    elif out.is_dir() and not out.is_symlink():
        out.rmdir()  # an empty folder: nothing to keep
    _point(out, gens, name)
    (gens / _INTENT).unlink(missing_ok=True)


def _point(out: Path, gens: Path, name: str) -> None:
    """Make `out` a link to generation `name` with one atomic rename."""
    link = out.parent / f".{out.name}.link-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(Path(gens.name) / name, link)
    os.replace(link, out)
    _fsync_dir(out.parent)


def recover(out: str | Path) -> None:
    """Finish a swap that a kill interrupted (the intent file names the generation `out` must point to)."""
    out = Path(out)
    gens = generations_dir(out)
    intent = gens / _INTENT
    if not intent.is_file():
        return
    try:
        target = json.loads(intent.read_text())["target"]
    except (OSError, ValueError, KeyError, TypeError):
        target = None
    if (
        isinstance(target, str)
        and _number(target)
        and (gens / target).is_dir()
        and not out.exists()
        and not out.is_symlink()
    ):
        _point(out, gens, target)
    intent.unlink(missing_ok=True)


_VERIFIED: dict[tuple[Any, ...], dict[str, Any]] = {}  # folders already checked, keyed by every file's stat


def verify_output(folder: str | Path) -> dict[str, Any] | None:
    """Check `folder` against its manifest: every listed file present with its SHA-256, no other file. Returns
    the manifest, or None for a folder without one (written before manifests existed); a mismatch is one line."""
    folder = Path(folder)
    recover(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return None
    stat = path.stat()
    present = set(_files(folder)) - {MANIFEST}
    key = (str(folder.resolve()), *((rel, *_stat(folder / rel)) for rel in sorted(present | {MANIFEST})))
    if key in _VERIFIED:
        return _VERIFIED[key]
    hint = "it was changed or only partly written; restore it, or point to an earlier generation in"
    try:
        if stat.st_size > MAX_MANIFEST_BYTES:
            raise ValueError("too large")
        manifest = json.loads(path.read_text())
        listed = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(listed, dict):
            raise ValueError("not a manifest")
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise UserError(
            f"output folder {folder} has an unreadable {MANIFEST} ({exc}); {hint} {generations_dir(folder)}"
        ) from exc
    for rel in sorted(present | set(listed)):
        if rel not in listed:
            problem = f"{rel} is not in its manifest"
        elif rel not in present:
            problem = f"{rel} is missing"
        elif sha256_file(folder / rel) != listed[rel]:
            problem = f"{rel} does not match its manifest"
        else:
            continue
        raise UserError(f"output folder {folder} is not whole: {problem}; {hint} {generations_dir(folder)}")
    _VERIFIED[key] = manifest
    return manifest


def verify_checkpoint_folder(checkpoint: str | Path) -> None:
    """A checkpoint (or split.json, report.json) inside an output folder with a manifest: check the whole folder
    (weights, sidecar, report and split are read together) before trusting any of it."""
    folder = Path(checkpoint).parent
    if (folder / MANIFEST).is_file():
        verify_output(folder)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _manifest_sha(folder: Path) -> str | None:
    return sha256_file(folder / MANIFEST) if (folder / MANIFEST).is_file() else None


def _number(name: str) -> int:
    return int(name[1:]) if len(name) == 5 and name[0] == "g" and name[1:].isdigit() else 0


def _link_or_copy(src: Path, dst: Path) -> None:
    """Files are only ever replaced by rename, never edited in place, so a hard link is a safe copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_prefix(pid: int | None = None) -> str:
    host = "".join(c for c in platform.node() if c.isalnum() or c == "-")[:32] or "host"
    return f".tmp-{host}-{os.getpid() if pid is None else pid}-"


def _sweep_stale(gens: Path) -> None:
    """Remove the temporary folders of this host's writers that died (a kill -9, a power loss)."""
    mine = _tmp_prefix(0)[: -len("0-")]  # ".tmp-HOST-"
    for tmp in gens.glob(".tmp-*"):
        pid = tmp.name[len(mine) :].split("-", 1)[0] if tmp.name.startswith(mine) else ""
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
