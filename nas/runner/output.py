"""Ray's and Tune's own output goes to the run's log file, ours stays on the terminal.

While a search runs, :class:`RayOutput` points file descriptors 1 and 2 (where Ray's C++ parts and
the Python log handlers Ray and Tune installed write) at ``RUN/ray.log``, and gives Python's
``sys.stdout``/``sys.stderr`` (our progress, our messages) the terminal back through duplicates
of the original descriptors. A stream that is not a real descriptor (a notebook, a test's capture)
is left as it is. Before the run folder exists the output collects in a temporary file, which
:meth:`RayOutput.move_to` appends to the run's log.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from nas._fs import open_append

__all__ = ["RayOutput", "LOG_NAME"]

LOG_NAME = "ray.log"


def _fd_stream(stream: Any) -> int | None:
    """The descriptor behind ``stream`` when it is 1 or 2 (the ones redirected), else None."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd if fd in (1, 2) else None


class RayOutput:
    """Descriptors 1 and 2 into a log file meanwhile; ``sys.stdout``/``sys.stderr`` unchanged.

    Use as a context manager; ``enabled=False`` makes it do nothing (e.g. ``search.progress:
    none`` with a user who wants Ray's output).
    """

    def __init__(self, path: str | Path | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(path) if path is not None else None
        self._temp: str | None = None
        self._saved_fds: list[int] = []
        self._saved_streams: tuple[TextIO, TextIO] | None = None
        self._handlers: list[tuple[logging.StreamHandler, Any]] = []

    def __enter__(self) -> RayOutput:
        if not self.enabled:
            return self
        if self.path is None:
            fd, self._temp = tempfile.mkstemp(prefix="mnas-ray-", suffix=".log")
            os.close(fd)
        # opened first: a link (or pipe) planted at the log is refused before anything moves
        with open_append(self.path or Path(self._temp), text=False) as log:
            sys.stdout.flush()
            sys.stderr.flush()
            self._saved_fds = [os.dup(1), os.dup(2)]
            self._saved_streams = (sys.stdout, sys.stderr)
            sys.stdout = self._terminal(sys.stdout, 0)
            sys.stderr = self._terminal(sys.stderr, 1)
            self._keep_our_handlers()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        return self

    def _terminal(self, stream: TextIO, index: int) -> TextIO:
        """A stream on the saved descriptor for a stream that wrote to 1 or 2, else itself."""
        if _fd_stream(stream) is None:
            return stream
        return open(os.dup(self._saved_fds[index]), "w", buffering=1, encoding="utf-8",
                    errors="replace", closefd=True)

    def _keep_our_handlers(self) -> None:
        """Root log handlers (ours, e.g. the CLI's) keep writing to the terminal."""
        old_out, old_err = self._saved_streams or (None, None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (old_out, old_err):
                new = sys.stderr if handler.stream is old_err else sys.stdout
                self._handlers.append((handler, handler.setStream(new)))

    def _point_at(self, target: Path) -> None:
        with open_append(target, text=False) as log:  # never through a link
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)

    def move_to(self, path: str | Path) -> None:
        """Continue in ``path`` (the run's log), appending what was collected so far."""
        self.path = Path(path)
        if not self.enabled or self._temp is None:
            return
        with open(self._temp, "rb") as src, open_append(self.path, text=False) as dst:
            shutil.copyfileobj(src, dst)
        self._point_at(self.path)
        os.unlink(self._temp)
        self._temp = None

    def __exit__(self, *exc: Any) -> None:
        if not self.enabled or not self._saved_fds:
            return
        for handler, old in self._handlers:
            handler.setStream(old)
        if self._saved_streams is not None:
            for current, saved in zip((sys.stdout, sys.stderr), self._saved_streams, strict=True):
                if current is not saved:
                    current.flush()
                    current.close()
            sys.stdout, sys.stderr = self._saved_streams
        os.dup2(self._saved_fds[0], 1)
        os.dup2(self._saved_fds[1], 2)
        for fd in self._saved_fds:
            os.close(fd)
        self._saved_fds = []
        if self._temp is not None:
            os.unlink(self._temp)
            self._temp = None
