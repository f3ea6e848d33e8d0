"""Files the project reads and writes: never through a symbolic link, never a pipe, never unbounded.

A run folder, an export card or an analysis folder may come from someone else (a tarball, a shared
disk), so what it contains is input, not a promise. Every file mnas writes into one goes through
this module:

- :func:`safe_dir` makes or opens a folder and refuses one that is (or lies under) a symbolic
  link below the folder the user named;
- :func:`write_atomic` writes a new file under a unique temporary name created exclusively
  (``O_CREAT | O_EXCL | O_NOFOLLOW``), syncs it and renames it over the target; a link found at
  the target is refused (and one planted meanwhile is replaced by the rename, never followed);
- :func:`open_append` (and :func:`append_line`) and :func:`open_lock` open with ``O_NOFOLLOW``
  and non-blocking, so a link planted under the name fails instead of being followed, and a pipe
  or a file with other hard links is refused instead of written in place;
- :func:`remove_files` deletes files below a folder without following a link anywhere, and
  :func:`remove_tree` a whole folder mnas made (in the shared temp folder, say), likewise;
- :func:`user_dir` makes a folder the user named (``--out DIR``, ``results_dir``): a link there
  is the user's choice, so it is followed; what mnas makes inside goes through :func:`safe_dir`.

Every file mnas reads from a user or a folder goes through :func:`read_bytes` /
:func:`read_text`: a pipe, a device or a folder is refused without blocking (the open is
non-blocking and the type is checked on the open descriptor), and so is a file over the cap.
Errors are :class:`~nas.errors.UsageError` with one line naming the path.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path

from nas.errors import UsageError

__all__ = ["MiB", "SymlinkError", "safe_dir", "user_dir", "write_atomic", "open_append",
           "append_line", "open_lock", "remove_files", "remove_tree", "read_bytes", "read_text",
           "read_json", "check_no_link", "check_writable_folder"]

MiB = 1 << 20
DEFAULT_CAP = 64 * MiB  # configs, cards, run.json and the like are kilobytes


class SymlinkError(UsageError):
    """A path mnas would write through is a symbolic link."""


def _link_error(path: Path) -> SymlinkError:
    return SymlinkError(f"{path}: is a symbolic link; refusing to write through it (remove the "
                        "link or point mnas at the real folder)")


def check_no_link(path: str | Path) -> None:
    """Raise :class:`SymlinkError` if ``path`` itself is a symbolic link (missing is fine)."""
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise _link_error(Path(path))
    except FileNotFoundError:
        pass


def safe_dir(path: str | Path, *, root: str | Path | None = None, create: bool = True) -> Path:
    """The folder ``path``, made (with its parents below ``root``) when missing.

    No component from ``root`` (exclusive; default: ``path``'s parent) down to ``path`` may be a
    symbolic link or something other than a folder: the user names ``root`` (a symlinked results
    folder is their choice), while what lies inside it is the folder's content.

    Raises:
        SymlinkError: a component is a symbolic link.
        UsageError: a component is not a folder, or cannot be made.
    """
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        raise UsageError(f"{path}: not inside {base}") from None
    current = base
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            if not create:
                return path
            try:
                os.mkdir(current)
            except FileExistsError:  # made meanwhile (or a link made meanwhile): look again
                mode = os.lstat(current).st_mode
            except OSError as exc:
                raise UsageError(f"{current}: cannot create the folder ({exc.strerror})") from None
            else:
                continue
        if stat.S_ISLNK(mode):
            raise _link_error(current)
        if not stat.S_ISDIR(mode):
            raise UsageError(f"{current}: exists and is not a folder")
    return path


def _open_new(path: Path, flags: int, mode: int = 0o666, shown: Path | None = None) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_error(path) from None
        raise UsageError(f"{shown or path}: cannot write ({exc.strerror})") from None


def user_dir(path: str | Path, what: str = "out", *, params: tuple[str, ...] = ()) -> Path:
    """The folder the user named, made with its parents when missing.

    A symbolic link on the way is the user's choice (``--out`` on a link to a bigger disk) and is
    followed; check what mnas makes inside it with :func:`safe_dir`.

    Raises:
        UsageError: it exists and is not a folder, or cannot be made (one line naming ``what``).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{what} {str(path)!r}: exists and is not a folder",
                         params=params) from None
    except OSError as exc:
        raise UsageError(f"{what} {str(path)!r}: cannot create the folder ({exc.strerror})",
                         params=params) from None
    return path


def write_atomic(path: str | Path, data: bytes | str, *, fsync: bool = True) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` all at once: a crash leaves the old file or
    none, and a link planted at ``path`` or at a temporary name is never followed.

    Raises:
        SymlinkError: ``path`` is a symbolic link (one planted after this check is replaced by
            the rename, not followed).
        UsageError: the temporary file cannot be created.
    """
    path = Path(path)
    check_no_link(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    fd = _open_new(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, shown=path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _open_in_place(path: Path, flags: int, mode: int = 0o666) -> int:
    """A descriptor of ``path`` to change in place: opened non-blocking without following a link
    (a pipe without a reader fails at once), then refused unless a regular file with one name."""
    fd = _open_new(path, flags | os.O_NONBLOCK, mode)
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode)
               else "has other hard links" if info.st_nlink > 1 else None)
    if problem is not None:
        os.close(fd)
        raise UsageError(f"{path}: {problem}; refusing to write it in place")
    os.set_blocking(fd, True)
    return fd


def open_append(path: str | Path, *, text: bool = True) -> io.IOBase:
    """``path`` opened for appending (created if missing), never through a link, never a pipe
    or a file with other hard links."""
    fd = _open_in_place(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "a", encoding="utf-8") if text else os.fdopen(fd, "ab")


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (see :func:`open_append`), flushed and synced."""
    with open_append(path) as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def open_lock(path: str | Path) -> int:
    """A read-write descriptor of ``path`` (created if missing), never through a link, never a
    pipe or a file with other hard links."""
    return _open_in_place(Path(path), os.O_RDWR | os.O_CREAT, 0o644)


def remove_files(folder: str | Path, suffix: str) -> int:
    """Delete the files named ``*suffix`` anywhere below ``folder``; returns how many.

    Nothing is followed: the walk holds each folder open and never enters a linked sub-folder,
    and a link named ``*suffix`` is removed itself. A missing folder holds nothing.

    Raises:
        SymlinkError: ``folder`` itself is a symbolic link (nothing is deleted).
    """
    check_no_link(folder)
    if not os.path.isdir(folder):
        return 0
    removed = 0
    for _here, _dirs, files, here_fd in os.fwalk(folder, follow_symlinks=False):
        for name in files:
            if name.endswith(suffix):
                try:
                    os.unlink(name, dir_fd=here_fd)
                except FileNotFoundError:
                    continue
                removed += 1
    return removed


def remove_tree(path: str | Path, *, root: str | Path) -> bool:
    """Delete the folder ``path`` (below ``root``) and everything in it; False if it is missing.

    Nothing is followed: no component from ``root`` (exclusive) down to ``path`` may be a link
    (:func:`safe_dir`), and the walk (``shutil.rmtree``'s descriptor-based one) removes a link
    found inside as a link, never what it points to.

    Raises:
        SymlinkError: ``path`` or a folder on the way is a symbolic link (nothing is deleted).
        UsageError: a component is not a folder.
        OSError: the removal failed part-way (e.g. a file created meanwhile).
    """
    path = Path(path)
    safe_dir(path, root=root, create=False)
    if not os.path.lexists(path):
        return False
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover (not on Linux)
        raise UsageError(f"{path}: this platform cannot remove a folder without following links")
    shutil.rmtree(path)
    return True


def read_bytes(path: str | Path, what: str = "file", *, cap: int = DEFAULT_CAP) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes.

    A pipe, a device, a socket or a folder is refused without blocking; so is a file over ``cap``
    (or one that grows past it while read).

    Raises:
        FileNotFoundError: ``path`` does not exist (callers name it in their own words).
        UsageError: anything else, in one line naming ``what`` and the path.
    """
    shown = f"{what} {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise UsageError(f"{shown}: is {kind} (a pipe, device or socket is never read)")
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > cap:
            raise UsageError(f"{shown}: {info.st_size:,} bytes, over the {cap:,}-byte limit")
        try:
            data = fh.read(cap + 1)
        except OSError as exc:
            raise UsageError(f"{shown}: cannot read ({exc.strerror})") from None
    if len(data) > cap:
        raise UsageError(f"{shown}: over the {cap:,}-byte limit")
    return data


def read_text(path: str | Path, what: str = "file", *, cap: int = DEFAULT_CAP) -> str:
    """The UTF-8 text of a regular file (see :func:`read_bytes`); other encodings are named."""
    data = read_bytes(path, what, cap=cap)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = ("it is UTF-16; save it as UTF-8" if data[:2] in (b"\xff\xfe", b"\xfe\xff")
                else "save it as UTF-8")
        raise UsageError(f"{what} {str(path)!r}: not UTF-8 text (byte {exc.start}); "
                         f"{hint}") from None


def read_json(path: str | Path, what: str = "file", *, cap: int = DEFAULT_CAP) -> object:
    """The JSON value of a regular UTF-8 file (see :func:`read_text`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UsageError: unreadable, not JSON (the line is named) or nested too deeply.
    """
    text = read_text(path, what, cap=cap)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {str(path)!r}: not valid JSON (line {exc.lineno}: "
                         f"{exc.msg})") from None
    except RecursionError:
        raise UsageError(f"{what} {str(path)!r}: nested too deeply to be ours") from None


def check_writable_folder(path: str | Path, key: str) -> None:
    """``path`` is a folder this process can create files in, or can be made as one: its
    nearest existing ancestor is a writable folder. A UsageError naming ``key`` otherwise
    (checked before anything starts, so nothing fails half-way)."""
    path = Path(path)
    probe = path
    while True:
        try:
            info = os.stat(probe)
            break
        except FileNotFoundError:
            if probe.parent == probe:
                raise UsageError(f"{key}={str(path)!r}: no such place") from None
            probe = probe.parent
        except OSError as exc:
            raise UsageError(f"{key}={str(path)!r}: unusable ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        where = "is" if probe == path else f"lies under {str(probe)!r}, which is"
        raise UsageError(f"{key}={str(path)!r}: {where} not a folder")
    try:  # a real probe: permission bits say nothing to root, or on /proc
        fd, name = tempfile.mkstemp(prefix=".mnas-probe-", dir=probe)
    except OSError as exc:
        raise UsageError(f"{key}={str(path)!r}: cannot create files in {str(probe)!r} "
                         f"({exc.strerror})") from None
    os.close(fd)
    os.unlink(name)
