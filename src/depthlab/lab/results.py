"""Results files of sweeps: JSON lines, one record per point, checked, locked and appended.

A results file is shared by every run of one sweep: each run skips the points the file holds
and appends the rest. So that it stays a file every run can resume:

- **One sweep at a time.** :class:`ResultsFile` holds an advisory lock on the file (the
  kernel's ``flock``, released even when the process is killed) from before it reads the
  file until the sweep ends; a second sweep into the same file is refused at once with
  :class:`ResultsFileBusy` instead of recording every point twice. (A file system that
  cannot lock — some parallel ones — gets a :class:`NoLock` warning, and the sweep runs.)
  (``filelock`` serves where ``fcntl`` is missing, with a ``FILE.lock`` beside the file: it
  cannot lock the results file itself, which it would empty.)
- **Only regular files.** A FIFO, a device, a socket or a directory is refused before it is
  opened (opening a FIFO blocks until someone reads it); so is a path below a file.
- **Every line checked.** A line that is not a record, or whose fields have the wrong type
  (see :data:`FIELDS`), is refused with the file's name and the line's number; the file is
  left as it is.
- **A crash mid-line is repaired.** A last line cut short (the writing process was killed,
  the disk filled) is skipped by :func:`read_results` and removed by the next sweep, which
  holds the lock: that point runs again. Lines are written whole (one ``write`` each, then
  ``fsync``), so only the last line can be cut.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: filelock below
    fcntl = None

# field -> (the JSON types it may hold, their name for messages)
FIELDS = {
    "experiment": ((str,), "a string"),
    "point": ((dict,), "an object"),
    "fixed": ((dict,), "an object"),
    "config": ((dict,), "an object"),
    "metrics": ((dict,), "an object"),
    "seconds": ((int, float, type(None)), "a number or null"),
    "status": ((str,), "a string"),
    "error": ((str,), "a string"),
    "traceback": ((str,), "a string"),
}
REQUIRED = ("experiment", "point", "config", "metrics", "status")
STATUSES = ("ok", "failed")
RECORD_START = b'{"experiment": '        # how every record this module writes begins
SPECIAL_FILES = (                         # (test, name) for what cannot hold results
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class ResultsFileBusy(ValueError):
    """Another sweep (another process) holds the lock of the results file."""


class ResultsFileWarning(UserWarning):
    """Something about a results file the user should know, though the sweep goes on."""


class TornLastLine(ResultsFileWarning):
    """The last line of a results file was cut short by a crash; it is skipped (and removed by the next sweep)."""


class NoLock(ResultsFileWarning):
    """The file system of a results file cannot lock it (some network and parallel file systems)."""


NO_LOCK_ERRNOS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}   # flock unsupported there
READ_ONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}                     # readable, perhaps, not writable


# ============================================================================= checking

def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _record_error(path, number: int, problem: str) -> ValueError:
    return ValueError(f"{path}, line {number}: {problem}. The file is left as it is; fix or delete that line, "
                      "or write to another file.")


def check_record(record, path, number: int) -> dict:
    """``record`` if it is a sweep record (see :data:`FIELDS`), else a ``ValueError`` naming the line."""
    if not isinstance(record, dict):
        raise _record_error(path, number, f"is JSON but {_type_name(record)}, not a sweep record (an object with "
                                          f"{', '.join(map(repr, REQUIRED))})")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise _record_error(path, number, f"is not a sweep record: it lacks {', '.join(map(repr, missing))}")
    for key, (types, expected) in FIELDS.items():
        if key in record and (not isinstance(record[key], types) or isinstance(record[key], bool)):
            raise _record_error(path, number, f"field {key!r} is {_type_name(record[key])} "
                                              f"({json.dumps(record[key])[:40]}), expected {expected}")
    if record["status"] not in STATUSES:
        raise _record_error(path, number, f"field 'status' is {record['status']!r}, expected one of "
                                          f"{', '.join(map(repr, STATUSES))}")
    return record


def check_regular(path: Path) -> bool:
    """Whether ``path`` exists; ``ValueError`` when it (or what it links to) is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise ValueError(f"results file {str(path)!r} cannot exist: {_file_above(path)} is a file, not a folder; "
                         "give a path in a folder.") from None
    for test, name in SPECIAL_FILES:
        if test(mode):
            hint = path / "results.jsonl" if test is stat.S_ISDIR else "results.jsonl"
            raise ValueError(f"results file {str(path)!r} is {name}, not a regular file; sweeps append records to a "
                             f"file and read it back to resume. Give a file path such as {str(hint)!r}.")
    return True


def _file_above(path: Path) -> str:
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            return repr(str(parent))
    return "a part of the path"


# ============================================================================= reading

def parse(data: bytes, path, experiment: str | None = None) -> tuple[list[dict], int | None]:
    """Records of a results file's bytes, and the offset of a torn last line (None if none).

    Blank lines are ignored; a UTF-8 byte order mark at the start (an editor's) too. A last
    line without its newline that does not parse but begins like a record is torn (cut short
    by a crash): it is left out and its offset returned. Anything else that is not a record
    is a ``ValueError`` naming the file and line.
    """
    records, offset, torn = [], 0, None
    if data.startswith(b"\xef\xbb\xbf"):
        offset = 3
    lines = data[offset:].split(b"\n")
    for number, raw in enumerate(lines, start=1):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        last_without_newline = number == len(lines)
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            fragment = raw.lstrip()
            if last_without_newline and (fragment.startswith(RECORD_START) or RECORD_START.startswith(fragment)):
                torn = start
                continue
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
            raise _record_error(path, number, f"is not a JSON record ({reason})") from None
        check_record(record, path, number)
        if experiment is not None and record["experiment"] != experiment:
            raise ValueError(
                f"{path} holds results of {record['experiment']!r} (line {number}), not of {experiment!r}; "
                "a results file serves one experiment. Write to another file (--out).")
        records.append(record)
    return records, torn


def read_results(path, experiment: str | None = None) -> list[dict]:
    """The records of a sweep's results file, in file order.

    Parameters
    ----------
    path : str or Path
        A JSON-lines file written by a sweep (blank lines are ignored).
    experiment : str, optional
        Refuse a file that holds records of another experiment.

    Warns
    -----
    TornLastLine
        The last line was cut short by a crash: it is skipped (the next sweep into the file
        removes it and runs that point again).

    Raises
    ------
    ValueError
        Not a regular file; a line that is not a JSON sweep record, or a field of the wrong
        type (the file and line number are given); a record of another experiment. The file
        is never modified.
    """
    path = Path(path)
    if not check_regular(path):
        raise FileNotFoundError(errno.ENOENT, "no such results file", str(path))
    with open(path, "rb") as handle:
        data = handle.read()
    records, torn = parse(data, path, experiment)
    if torn is not None:
        _warn_torn(path, data, torn, removed=False)
    return records


def _warn_torn(path, data: bytes, torn: int, removed: bool) -> None:
    number = data.count(b"\n", 0, torn) + 1
    what = "removed it; that point runs again" if removed else "skipped it (the next sweep into the file removes it)"
    warnings.warn(f"{path}, line {number}: the last record was cut short ({len(data) - torn} bytes, a crash while "
                  f"writing?); {what}.", TornLastLine, stacklevel=3)


# ============================================================================= the locked file of a sweep

class ResultsFile:
    """A sweep's results file, open and locked: :meth:`records` to resume, :meth:`append` for each point.

    Created (with its folders) when missing, and removed again at :meth:`close` when the
    sweep wrote nothing into it. Use as a context manager, or call :meth:`close`.

    A file that exists but may not be written (permissions, a read-only file system) is
    opened to read, under a shared lock: :meth:`records` works, :meth:`check_writable`
    raises the reason it cannot be written.

    Raises
    ------
    ValueError
        ``path`` is not a regular file (a FIFO, a device, a socket, a directory), lies below
        a file, or names a folder (ends with a separator).
    ResultsFileBusy
        Another sweep holds the file.
    OSError
        It cannot be created or opened (permissions, a read-only file system...).
    """

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"out must be a file path (str or Path) or None, got {type(path).__name__} {path!r}.")
        text = os.fspath(path)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if "\0" in text:
            raise ValueError(f"results file {text!r} holds a NUL character, which no file name can; give a file path "
                             "such as 'results.jsonl'.")
        if text.endswith(("/", os.sep)):
            raise ValueError(f"results file {text!r} ends with a separator, as a folder does; give a file path "
                             f"such as {os.path.join(text, 'results.jsonl')!r}.")
        self.path = Path(text)
        self.fd = self.lock = self.read_only = None
        self.created, self.folders = False, []
        self._open()

    # ----------------------------------------------------------------- opening and locking
    def _make_folders(self) -> None:
        missing = [parent for parent in self.path.parents if not parent.exists()]
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            except NotADirectoryError:
                raise ValueError(f"results file {str(self.path)!r} cannot be created: {_file_above(self.path)} is a "
                                 "file, not a folder; give a path in a folder.") from None
            self.folders.append(folder)

    def _open(self) -> None:
        for _ in range(5):   # the file may be removed between opening and locking (a sweep that wrote nothing)
            existed = check_regular(self.path)
            if not existed:
                self._make_folders()
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:
                if os.path.islink(self.path):
                    raise ValueError(f"results file {str(self.path)!r} is a symbolic link to "
                                     f"{os.readlink(self.path)!r}, which cannot be created: its folder does not "
                                     "exist.") from None
                continue
            except NotADirectoryError:
                raise ValueError(f"results file {str(self.path)!r} cannot be created: {_file_above(self.path)} is a "
                                 "file, not a folder; give a path in a folder.") from None
            except OSError as error:   # a file we may not write (permissions, a read-only file system) can be read
                if not (existed and error.errno in READ_ONLY_ERRNOS):
                    raise
                fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
                self.read_only = error
            if not stat.S_ISREG(os.fstat(fd).st_mode):   # it changed between the look and the open
                os.close(fd)
                check_regular(self.path)
                raise ValueError(f"results file {str(self.path)!r} is not a regular file.")
            self.fd, self.created = fd, self.created or not existed
            self._lock()
            if self._still_there():
                return
            self._release()
        raise OSError(errno.EAGAIN, "the file kept disappearing while it was being opened", str(self.path))

    def _lock(self) -> None:
        busy = ResultsFileBusy(
            f"results file {str(self.path)!r} is in use: another sweep holds its lock (it is still running, on this "
            "machine or another). Wait for it to finish, or write to another file (--out).")
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, (fcntl.LOCK_SH if self.read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                self._release()
                raise busy from None
            except OSError as error:
                if error.errno not in NO_LOCK_ERRNOS:
                    self._release()
                    raise
                warnings.warn(f"the file system of {str(self.path)!r} cannot lock it ({error.strerror}); the sweep "
                              "goes on unlocked: make sure no other sweep writes to this file meanwhile.", NoLock,
                              stacklevel=4)
            return
        try:
            import filelock
        except ImportError:
            self._release()
            raise ImportError("locking a results file where fcntl is missing (Windows) needs filelock: "
                              "pip install 'depthlab[lab]'") from None
        lock = filelock.FileLock(f"{self.path}.lock", timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            self._release()
            raise busy from None
        self.lock = lock

    def _still_there(self) -> bool:
        try:
            now, ours = os.stat(self.path), os.fstat(self.fd)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino)

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.fd is not None:
            os.close(self.fd)   # closing the descriptor releases the flock
            self.fd = None

    # ----------------------------------------------------------------- reading and writing
    def _read_all(self) -> bytes:
        size = os.fstat(self.fd).st_size
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(self.fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def records(self, experiment: str | None = None) -> list[dict]:
        """The records already in the file (see :func:`parse`); repairs its end for appending:
        removes a torn last line (with a :class:`TornLastLine` warning) and ends a complete
        last record that lacks its newline."""
        data = self._read_all()
        records, torn = parse(data, self.path, experiment)
        if self.read_only:   # nothing to repair with: the next sweep that may write does it
            if torn is not None:
                _warn_torn(self.path, data, torn, removed=False)
            return records
        if torn is not None:
            os.ftruncate(self.fd, torn)
            os.fsync(self.fd)
            _warn_torn(self.path, data, torn, removed=True)
            data = data[:torn]
        if data.strip() and not data.endswith(b"\n"):
            self._write(b"\n")
        return records

    def check_writable(self) -> None:
        """Raise the error that opening for writing gave, if the file could only be opened to read
        (a sweep whose points are all recorded still reads a read-only file back)."""
        if self.read_only is not None:
            raise self.read_only

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        os.fsync(self.fd)

    def append(self, record: dict) -> None:
        """Write ``record`` as one line (one write, then fsync).

        Raises ``FileNotFoundError`` when the file was deleted or replaced since the sweep
        opened it: the record would go to a file no one can see any more.
        """
        if not self._still_there():
            raise FileNotFoundError(errno.ENOENT, "it was deleted or replaced while the sweep ran, so new records had "
                                    "nowhere to go; run the same sweep again to continue", str(self.path))
        self._write((json.dumps(record, allow_nan=False) + "\n").encode("utf-8"))

    def close(self) -> None:
        """Release the lock; remove the file (and the folders made for it) if the sweep wrote nothing."""
        if self.fd is None:
            return
        empty = self.created and os.fstat(self.fd).st_size == 0
        if empty and self._still_there():
            try:
                os.unlink(os.path.realpath(self.path))   # what we created: the file, not a link to it
            except OSError:
                pass
        self._release()
        if empty:
            for folder in reversed(self.folders):
                try:
                    folder.rmdir()
                except OSError:   # something else was put there meanwhile
                    break

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
