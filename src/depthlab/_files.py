"""Writing files so that a failure never destroys the last good copy.

Every file depthlab writes (saved networks, metrics.json, report.html, figures, caches) goes
through :func:`atomic_writer`: the bytes go to a temporary file in the target's own folder,
which is flushed, synced to disk and then renamed over the target (``os.replace``, atomic on
POSIX and Windows). A write that fails half-way (a full disk, a size limit, Ctrl-C) removes the
temporary file and leaves the previous file exactly as it was; a reader sees either the old
file or the new one, never a mixture.

This module imports nothing from depthlab's parts, so every part may use it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TEMPORARY_PREFIX = ".depthlab-"
TEMPORARY_SUFFIX = ".partial"


def _new_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:   # Linux: read without changing it
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _target(path) -> Path:
    """Where to write: a symbolic link is followed, so the link itself survives."""
    path = Path(os.fspath(path))
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder, not a file; give a file name inside it", str(path))
    return Path(os.path.realpath(path)) if path.is_symlink() else path


@contextlib.contextmanager
def atomic_writer(path, mode: str = "wb", *, encoding: str | None = None):
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Its folder must exist; a folder at ``path`` is refused
        (``IsADirectoryError``).
    mode : {"wb", "w"}
        Binary or text.
    encoding : str, optional
        For text mode (default UTF-8).

    Yields
    ------
    file
        The open temporary file. If the block raises (including ``KeyboardInterrupt``), the
        temporary file is removed and ``path`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}.")
    target = _target(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(2, f"cannot write {target.name!r}: its folder does not exist", str(target.parent))
    # the name is shortened so that the temporary name fits wherever the target's name does
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f"{TEMPORARY_PREFIX}{target.name[:80]}.",
                                         suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(handle, mode, **({"encoding": encoding or "utf-8", "newline": ""} if mode == "w" else {})) \
                as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        try:
            mode_bits = os.stat(target).st_mode & 0o7777   # an existing file keeps its permissions
        except FileNotFoundError:
            mode_bits = _new_file_mode()                   # mkstemp's 0o600 would hide it from others
        os.chmod(temporary, mode_bits)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a ``Path``."""
    with atomic_writer(path, "wb") as file:
        file.write(data)
    return Path(path)


def write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (newlines written as given); returns ``path``."""
    with atomic_writer(path, "w", encoding=encoding) as file:
        file.write(text)
    return Path(path)
