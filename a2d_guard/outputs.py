"""Output folders: a command deletes or replaces only what it wrote itself, never a user's file.

The rule (every command that writes a folder follows it: ``train``, ``compress``, ``demo``,
and the coming ``push --dry-run``, ``merge`` and ``eval`` must use this module too; nothing
in a2d-guard calls ``shutil.rmtree`` on a folder the user named):

1. Before creating anything at the top level of its output folder, a command *claims* the
   names it will create (``claim``): they are recorded in a small manifest file,
   ``.a2d-guard-output.json``, inside that folder, written atomically. A crash mid-run
   therefore still leaves a manifest that covers everything the run created.
2. A command may replace a folder (``--overwrite``, the demo's re-runs) only when every
   entry in it is listed in its manifest (``check_replaceable``); otherwise it refuses,
   naming the entries it did not write. A folder without a manifest is replaceable only
   when it is empty. Then it removes the listed entries (``remove_written``), never the
   folder itself.
3. A command whose output is one whole folder (``compress``; ``merge``, ``push --dry-run``)
   builds it with ``write_folder``: written under a temporary name next to the destination,
   claimed, then moved in by ``install``: an existing destination is checked as in 2, moved
   aside, and only its listed entries are removed once the new folder is in place.

Granularity is the top level: a subfolder the command created (``checkpoints/``,
``adapter/``) is wholly its own. Leftovers of an interrupted atomic write of a claimed
name (``.tmp-NAME-*``, ``.old-NAME-*``, see ``training.checkpoint.write_atomically``)
count as the command's too.

Files are written with the mode the user's umask gives (``follow_umask``): safetensors
and ``tempfile`` create owner-only (0600/0700) files, which other users of a shared model
folder then cannot read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from a2d_guard.errors import A2DGuardError

MANIFEST = ".a2d-guard-output.json"
FORMAT = 1
_LEFTOVER_PREFIXES = (".tmp-", ".old-")  # write_atomically's temporary names: PREFIX + NAME + "-" + pid
_SHOWN = 5  # foreign entries named in an error message


def read_manifest(folder: str | Path) -> dict | None:
    """The folder's manifest (``{"command": ..., "written": [...]}``), or None if it has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable: treat the folder as not ours
    if not isinstance(data, dict) or not isinstance(data.get("written"), list):
        return None
    return data


def _is_listed(name: str, written: set[str]) -> bool:
    ours = written | {MANIFEST}
    return name in ours or any(name.startswith(f"{prefix}{w}-") for prefix in _LEFTOVER_PREFIXES for w in ours)


def foreign_entries(folder: str | Path) -> list[str]:
    """Names at the top of ``folder`` that its manifest does not list (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    manifest = read_manifest(folder)
    written = set(manifest["written"]) if manifest else set()
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not _is_listed(p.name, written))


def check_replaceable(folder: str | Path, action: str, command: str | None = None, fix: str = "") -> None:
    """Raise unless every entry of ``folder`` was written by a2d-guard (``command``, if given).

    ``action`` says what the user asked for (``"--overwrite"``); ``fix`` is appended to the
    message (default: move the files or pick another folder). A missing folder is fine.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise A2DGuardError(f"{str(folder)!r} is a file, not a folder; pass a folder")
    fix = fix or "move those files elsewhere, or pick a new or empty folder"
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:_SHOWN]) + (f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else "")
        why = "" if read_manifest(folder) else f" (it has no {MANIFEST})"
        raise A2DGuardError(f"refusing to {action} {str(folder)!r}: a2d-guard did not write {shown} there{why}; {fix}")
    manifest = read_manifest(folder)
    if command and manifest and manifest.get("command") not in (None, command):
        raise A2DGuardError(
            f"refusing to {action} {str(folder)!r}: it holds the output of `a2d-guard {manifest['command']}`, "
            f"not of `a2d-guard {command}`; {fix}"
        )


def remove_written(folder: str | Path, action: str, command: str | None = None) -> None:
    """Delete what the manifest lists (and the manifest), after ``check_replaceable``; keep the folder."""
    folder = Path(folder)
    check_replaceable(folder, action, command)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():  # every entry is listed: check_replaceable just said so
        if entry.name == MANIFEST:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (folder / MANIFEST).unlink(missing_ok=True)


def claim(folder: str | Path, command: str, names: Iterable[str]) -> Path:
    """Record that ``command`` creates ``names`` at the top of ``folder`` (created if missing).

    Call it *before* creating them. Names already claimed stay claimed (a resumed run).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder) or {}
    written = sorted(set(manifest.get("written", [])) | set(names))
    write_text_atomically(folder / MANIFEST,
                          json.dumps({"format": FORMAT, "command": command, "written": written}, indent=2) + "\n")
    return folder


def install(tmp: str | Path, final: str | Path, action: str, command: str) -> Path:
    """Move the complete folder ``tmp`` (holding its own manifest) to ``final``.

    An existing ``final`` must pass ``check_replaceable``; it is moved aside first so that
    one whole version exists at every moment, then only its listed entries are removed.
    """
    tmp, final = Path(tmp), Path(final)
    if not final.exists():
        tmp.rename(final)
        return final
    check_replaceable(final, action, command)
    aside = final.parent / f".{final.name}.old-{os.getpid()}"
    final.rename(aside)
    try:
        tmp.rename(final)
    except BaseException:
        aside.rename(final)
        raise
    remove_written(aside, action, command)
    aside.rmdir()
    return final


def write_folder(final: str | Path, writer: Callable[[Path], None], action: str, command: str) -> Path:
    """Build a whole output folder: ``writer(tmp)`` fills a fresh folder next to ``final``,
    whose entries are then claimed for ``command`` and which is moved in with ``install``.

    A half-written folder never appears at ``final``; a failed ``writer`` leaves nothing.
    """
    final = Path(final)
    check_replaceable(final, action, command)  # before the work, and again in install
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        writer(tmp)
        claim(tmp, command, [p.name for p in tmp.iterdir()])
        follow_umask(tmp)  # mkdtemp makes it owner-only
        return install(tmp, final, action, command)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # our own temporary folder, never the user's
        raise


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary name next to ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def follow_umask(path: str | Path) -> Path:
    """Give ``path`` the mode a plain ``open()``/``mkdir()`` would have (0666/0777 less the umask)."""
    path = Path(path)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~_umask())
    return path


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets as it reads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def save_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` with the usual file mode (it writes 0600 through a temp file)."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    return follow_umask(path)
