"""Starting, joining and cleaning up Ray for a search.

Embedded default: a local Ray started by the search (``address="local"``, so a dead cluster from a
killed run is never joined) with the dashboard off, in a temp folder unique to the run folder, so
Ray processes orphaned by a killed driver can be found and stopped when the run is resumed. Every
socket of that Ray listens on 127.0.0.1 only (see :func:`_loopback_only`). Once that Ray has shut
down, :meth:`RaySession.stop` removes what it left in the temp folder (its session folder), and
the temp folder itself when nothing else is left in it (a killed driver's session stays, with
Ray's logs for a post-mortem, and so does the folder then).

``--address``, the config's ``ray.address`` or ``RAY_ADDRESS`` connect to an existing cluster
instead (which we never stop). The address is probed first, so an unreachable or refusing one is a
one-line :class:`UsageError` within seconds instead of Ray's ~14 minutes of retries, and what Ray
prints while connecting (its C++ warnings included) goes to the ``nas.runner.session`` log
(``nas -v``), not the terminal; a token-authentication refusal becomes a UsageError naming the fix.
Ray's token authentication stays at its default (on).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from nas._fs import remove_tree, safe_dir
from nas.errors import UsageError
from nas.runner.strays import MARKER

__all__ = ["MARKER", "RaySession", "start_ray", "ray_temp_dir", "LOOPBACK", "scoped_env",
           "remove_ray_session", "remove_activity_dir"]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PROBE_TIMEOUT_S = 5.0  # TCP connect to the cluster's address before Ray tries (and retries)
# how many times (about 1 s each) Ray tries the GCS when joining; its default is 20
JOIN_ATTEMPTS = 10
_ATTEMPTS_VAR = "RAY_gcs_server_port_wait_time_s"  # read by ray._private.node on each connect
# Ray 2.60's switch for "no multi-node clusters" (its macOS/Windows default); off, Ray keeps the
# node on the loopback address instead of rewriting 127.0.0.1 to the machine's LAN address
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_AUTH_FIX = ("set RAY_AUTH_MODE=token and the cluster's token on this machine (RAY_AUTH_TOKEN=..., "
             "or a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token; `ray get-auth-token` "
             "on the head prints it)")


@dataclass
class RaySession:
    """What :func:`start_ray` did: ``local`` (we own the cluster) or joined ``address``.

    ``node_ip`` is the address of the node this driver runs on (``127.0.0.1`` for a local Ray).
    ``began`` is the driver's clock taken just before Ray started
    (:func:`nas.runner.strays.segment_clock`), set by the driver. ``session_dir`` is the folder
    the local Ray made in ``temp_dir`` (None: joined, or already removed). ``warming`` holds the
    tasks that warm the workers up (``search.executor: tasks``), set by the driver.
    """

    local: bool
    address: str | None
    temp_dir: str | None
    startup_s: float
    node_ip: str | None = None
    began: dict[str, Any] | None = None
    session_dir: str | None = None
    warming: list[Any] | None = None

    def stop(self) -> None:
        """Disconnect; a local cluster we started is shut down with it, and what it left in
        its temp folder is removed (:func:`remove_ray_session`)."""
        if ray.is_initialized():
            ray.shutdown()
        if self.local and self.temp_dir and self.session_dir:
            session, self.session_dir = self.session_dir, None
            remove_ray_session(self.temp_dir, session)


def remove_ray_session(temp_dir: str, session_dir: str) -> None:
    """After its Ray shut down: remove ``session_dir`` (inside ``temp_dir``), the
    ``session_latest`` link when it names it, and ``temp_dir`` when that leaves it empty.

    Only what that Ray made goes: another Ray's session in the same folder (a second driver of the
    same run path, refused later by the run's lock; a killed driver's) stays, and so does the
    folder. Never through a link (:func:`nas._fs.remove_tree`); a failure is logged, never raised
    (a finished search does not fail on its clean-up)."""
    temp = Path(temp_dir)
    session = Path(session_dir)
    if session.parent != temp:
        log.warning("not removing Ray's session folder %s: not inside %s", session, temp)
        return
    shared = tempfile.gettempdir()
    try:
        for attempt in (1, 2):  # a dying Ray process may add a log file during the first walk
            try:
                remove_tree(session, root=shared)
                break
            except OSError:
                if attempt == 2:
                    raise
        latest = temp / "session_latest"
        if latest.is_symlink() and Path(os.readlink(latest)).name == session.name:
            latest.unlink()
        os.rmdir(temp)  # only when empty; our own folder is never a link (checked at start)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT):
            log.warning("could not remove Ray's temp folder %s: %s", temp, exc)
    except UsageError as exc:  # a link planted meanwhile: left alone
        log.warning("not removing Ray's temp folder: %s", exc)


def remove_activity_dir(run_path: Path) -> None:
    """Remove this node's quiet-window folder of a run (:func:`nas.latency.conditions.
    activity_dir`) once nothing of the run measures or trains here (the run's lock held, its Ray
    stopped); never through a link, a failure logged."""
    from nas.latency.conditions import activity_dir

    try:
        remove_tree(activity_dir(run_tag(run_path)), root=tempfile.gettempdir())
    except (OSError, UsageError) as exc:
        log.warning("could not remove the run's activity folder: %s", exc)


def run_tag(run_path: Path) -> str:
    """A short tag unique to a run folder (its resolved path, hashed)."""
    return hashlib.sha1(str(Path(run_path).resolve()).encode()).hexdigest()[:10]


def ray_temp_dir(run_path: Path) -> str:
    """A short temp folder unique to a run (Ray's socket paths must stay under ~100 bytes)."""
    return os.path.join(tempfile.gettempdir(), f"mnas-ray-{run_tag(run_path)}")


def start_ray(settings: Any, *, address: str | None, run_path: Path,
              env: dict[str, str] | None = None,
              resources: dict[str, float] | None = None) -> RaySession:
    """Join ``address`` (or ``settings.address`` or ``RAY_ADDRESS``), else start a local Ray.

    ``resources`` are custom resources the local Ray must offer (on top of ``settings.resources``).

    Raises:
        UsageError: the cluster cannot be reached, refuses the connection, or refuses this
            driver's authentication token (one line, with the fix).
    """
    env = dict(os.environ if env is None else env)
    target = address or settings.address or env.get("RAY_ADDRESS") or None
    started = time.perf_counter()
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                              "configure_logging": True}
    if target and target != "local":
        _join(target, common)
        return RaySession(False, target, None, time.perf_counter() - started, _node_ip())
    temp_dir = ray_temp_dir(run_path)
    safe_dir(temp_dir, root=tempfile.gettempdir(), create=False)  # shared: no planted link
    # inherited by the Ray processes started below; the driver sets its own token first, and
    # left-over processes are found by it (nas.runner.strays), never by a command line
    os.environ.setdefault(MARKER, temp_dir)
    dashboard: dict[str, Any] = {"include_dashboard": bool(settings.dashboard)}
    if settings.dashboard:
        dashboard["dashboard_host"] = LOOPBACK
    custom = {**(settings.resources or {}), **(resources or {})}
    with _loopback_only():
        ray.init(address="local", num_cpus=settings.num_cpus, num_gpus=settings.num_gpus,
                 resources=custom or None, _temp_dir=temp_dir, **dashboard, **common)
    node_ip = _node_ip()
    if node_ip != LOOPBACK:
        log.warning("the local Ray runs on %s, not %s: its sockets listen on every interface",
                    node_ip, LOOPBACK)
    return RaySession(True, None, temp_dir, time.perf_counter() - started, node_ip,
                      session_dir=_session_dir())


@contextmanager
def _loopback_only() -> Iterator[None]:
    """Start the local Ray on 127.0.0.1, so that every socket of it listens there only.

    Ray 2.60 binds its C++ gRPC servers (GCS, raylet node and object managers, each worker) to
    127.0.0.1 when the node's IP is 127.0.0.1 and to every interface otherwise; its Python agents
    bind the node IP. But on Linux it rewrites a node IP of 127.0.0.1 (``_node_ip_address``,
    ``--node-ip-address``) to the machine's LAN address (``services.resolve_ip_for_localhost``)
    unless multi-node clusters are switched off, which is read once at import
    (``ray_constants.ENABLE_RAY_CLUSTER``). So: off for this ``ray.init`` (and, through the
    environment, for the Ray processes it starts), back as it was afterwards.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with scoped_env(_CLUSTER_SWITCH, "0"):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextmanager
def scoped_env(name: str, value: str, keep: bool = False) -> Iterator[None]:
    """``os.environ[name] = value`` meanwhile (``keep``: unless the user set it already)."""
    saved = os.environ.get(name)
    if not (keep and saved is not None):
        os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _node_ip() -> str | None:
    node = getattr(ray._private.worker, "_global_node", None)
    return getattr(node, "node_ip_address", None)


def _session_dir() -> str | None:
    """The session folder the local Ray made in its temp folder."""
    node = getattr(ray._private.worker, "_global_node", None)
    getter = getattr(node, "get_session_dir_path", None)
    return str(getter()) if getter is not None else None


def _join(target: str, common: dict[str, Any]) -> None:
    """``ray.init(address=target)``, with Ray's output sent to the log and failures as one line."""
    where = f"Ray cluster at {target!r}"
    dial = _dial_address(target, where)
    if dial is not None:
        _probe(dial, target, where)
    with _captured_output() as captured, scoped_env(_ATTEMPTS_VAR, str(JOIN_ATTEMPTS), keep=True):
        try:
            ray.init(address=target, **common)
            error: BaseException | None = None
        except Exception as exc:  # sorted into a one-line UsageError below
            error = exc
    output = captured[0] if captured else ""
    for line in output.splitlines():
        if line.strip():
            log.info("ray: %s", line)
    if error is None:
        return
    if ray.is_initialized():
        ray.shutdown()
    raise UsageError(_join_failure(where, error, output)) from None


def _dial_address(target: str, where: str) -> tuple[str, int] | None:
    """The host and port Ray will connect to for ``target`` (None: let Ray find it, "auto")."""
    if target == "auto" or target.startswith("ray://"):
        return None
    from ray._private import services

    try:
        canonical = services.canonicalize_bootstrap_address(target)
        host, _, port = str(canonical).rpartition(":")
        return host.strip("[]"), int(port)
    except (ValueError, TypeError):
        raise UsageError(f"{where}: expected HOST:PORT, e.g. 10.0.0.5:6379 (the address "
                         "`ray start --head` prints)") from None


def _probe(dial: tuple[str, int], target: str, where: str) -> None:
    """One TCP connect, so a dead or wrong address fails in seconds (Ray: 20 tries of ~40 s)."""
    host, port = dial
    via = "" if f"{host}:{port}" == target else f" (Ray dials {host}:{port})"
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except ConnectionRefusedError:
        raise UsageError(f"{where}{via}: connection refused, nothing listens there; start the "
                         f"head with `ray start --head --port {port}` or fix the address") from None
    except TimeoutError:
        raise UsageError(f"{where}{via}: no answer within {PROBE_TIMEOUT_S:g} s; check the "
                         "address and that this machine can reach it") from None
    except OSError as exc:  # unknown host, network unreachable, ...
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UsageError(f"{where}{via}: cannot connect ({reason})") from None


def _join_failure(where: str, error: BaseException, output: str) -> str:
    text = f"{error}\n{output}"
    if ("Unauthenticated" in text or "InvalidAuthToken" in text
            or type(error).__name__ == "AuthenticationError"):
        mode = os.environ.get("RAY_AUTH_MODE")
        note = "" if mode == "token" else f" (RAY_AUTH_MODE is {mode or 'unset'} here)"
        return f"{where} refused this driver's authentication token{note}: {_AUTH_FIX}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{where}: cannot connect ({first}); run `nas -v ...` for Ray's own messages"


@contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Send file descriptors 1 and 2 (Python's and Ray's C++ output) to a temp file meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    box: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield box
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            box.append(tmp.read().decode(errors="replace"))
