"""Study storages by URL, trial liveness (heartbeats) and the retry policy for killed trials.

URLs:
    sqlite:///ABS/PATH.db, sqlite:///REL.db   one node (file locks; fine for a few workers)
    journal:///ABS/PATH.log, journal://REL.log Optuna journal file (append-only log on a shared
                                              file system)
    postgresql+psycopg://USER:PW@HOST:PORT/DB many nodes (psycopg v3; the 'postgres' extra)

Liveness: a worker records a heartbeat for its running trial every ``heartbeat_interval`` seconds.
On RDB storages (SQLite, PostgreSQL) that is Optuna's own heartbeat table; the journal has none, so
we keep the equivalent next to it: one file per running trial in ``<journal>.heartbeat/`` whose
modification time is the heartbeat (compared against a freshly touched probe file, so clocks of
different nodes never enter). Any worker that finds a RUNNING trial whose heartbeat is older than
``grace_period`` fails it (an atomic state change: exactly one worker wins) and, by policy,
re-queues it with the same parameters (``max_retry`` times).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpfctl.config.loader import mask_secret
from mlpfctl.console import warn
from mlpfctl.errors import ConfigError, RuntimeFailure

if TYPE_CHECKING:
    import optuna

KINDS = ("sqlite", "journal", "postgresql")
# user attrs that describe retries (shared with the worker and the ASHA scheduler)
ATTR_RETRIES = "mlpfctl.retries"
ATTR_RETRY_OF = "mlpfctl.retry_of"


@dataclass(frozen=True)
class StorageSpec:
    url: str
    kind: str
    path: Path | None = None

    @property
    def masked(self) -> str:
        """The URL with any password replaced by ***, for logs and tables."""
        return mask_secret(self.url) if self.kind == "postgresql" else self.url


def default_url(out_dir: str, study: str) -> str:
    return f"sqlite:///{Path(out_dir).resolve() / 'hpo' / f'{study}.db'}"


def parse_url(url: str) -> StorageSpec:
    """Classify a storage URL; unknown schemes are usage errors that list the supported ones."""
    if url.startswith("sqlite:///"):
        return StorageSpec(url, "sqlite", Path(url[len("sqlite:///") :]))
    if url.startswith("journal://"):
        rest = url[len("journal://") :]
        if not rest:
            raise ConfigError("journal storage URL has no path", "example: journal:///shared/hpo/study.log")
        return StorageSpec(url, "journal", Path(rest))
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        if url.startswith(("postgresql://", "postgres://")):
            # SQLAlchemy's bare postgresql:// means psycopg2, which we do not ship.
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return StorageSpec(url, "postgresql")
    shown = mask_secret(url) if "@" in url else url
    raise ConfigError(
        f"unsupported storage URL '{shown}'",
        "use sqlite:///PATH.db, journal:///PATH.log or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB",
    )


_SQLITE_HEADER = b"SQLite format 3\x00"


def check_location(spec: StorageSpec, *, existing: bool, create_parent: bool = False) -> None:
    """Check a file storage before anything opens it (opening creates the file, the journal its
    directory): a worker, ``status`` and ``report`` need the file to exist, a new study needs its
    directory to exist (``create_parent``: the default location, which mlpfctl may create), and
    an existing file must be of the right kind. Creates nothing."""
    if spec.path is None:
        return
    from mlpfctl.paths import check_output_dir

    path = spec.path
    example = "sqlite:///DIR/study.db" if spec.kind == "sqlite" else "journal:///DIR/study.log"
    if path.is_dir():
        raise ConfigError(f"storage {spec.masked}: {path} is a directory", f"name a file in it: {example}")
    if not path.exists():
        if existing:
            raise ConfigError(
                f"storage file '{path}' does not exist",
                "check --storage, or create the study first ('mlpfctl hpo run' or 'hpo create')",
            )
        if not create_parent and not path.parent.is_dir():
            raise ConfigError(
                f"storage {spec.masked}: the directory {path.parent} does not exist",
                "create it first (mlpfctl does not create directories named in --storage) or fix the path",
            )
        check_output_dir(path.parent, "the storage directory")
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(
            f"storage file '{path}' is not writable (read-only file system, permissions or an immutable "
            "attribute)",
            "copy it somewhere writable, or fix its permissions",
        )
    if spec.kind == "sqlite" and path.stat().st_size:
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
        if header != _SQLITE_HEADER:
            raise ConfigError(
                f"storage file '{path}' is not an SQLite database",
                f"pass the study's database (or a new file name) to --storage, e.g. {example}",
            )


def _scrub(text: str, url: str) -> str:
    """``text`` without the password of ``url`` (nor any other user:password@ in it), one line,
    without SQLAlchemy's link to its error catalogue."""
    text = text.split("(Background on this error at:")[0]
    rest = url.split("://", 1)[-1]
    creds = rest.rpartition("@")[0]
    password = creds.split(":", 1)[1] if ":" in creds else ""
    if password:
        text = text.replace(password, "***")
    text = re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)
    return " ".join(text.split())


class RetryPolicy:
    """Called for each stale trial this process failed: re-queue it with the same parameters."""

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retries = int(trial.user_attrs.get(ATTR_RETRIES, 0))
        if retries >= self.max_retry:
            warn(f"trial {trial.number} was killed and has used its {self.max_retry} retries: left FAILED")
            return
        study.add_trial(retry_copy(trial))
        warn(f"trial {trial.number} lost its worker (no heartbeat): re-queued (retry {retries + 1})")


def retry_copy(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """A WAITING copy of a trial whose worker died: same parameters (and enqueued fixed ones),
    its retry count plus one and the number of the trial it retries."""
    import optuna

    retries = int(trial.user_attrs.get(ATTR_RETRIES, 0))
    attrs = {**trial.user_attrs, ATTR_RETRIES: retries + 1, ATTR_RETRY_OF: trial.number}
    system_attrs: dict[str, Any] = {}
    if "fixed_params" in trial.system_attrs:
        system_attrs["fixed_params"] = trial.system_attrs["fixed_params"]
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=attrs,
        system_attrs=system_attrs,
    )


def open_storage(
    spec: StorageSpec, *, heartbeat_interval: float, grace_period: float, max_retry: int
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``spec`` with heartbeats enabled where the backend supports them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.kind == "journal":
        assert spec.path is not None
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(spec.path)))
    engine_kwargs: dict[str, Any]
    if spec.kind == "sqlite":
        assert spec.path is not None
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        # Writers wait for the file lock instead of failing at once ("database is locked").
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 4}
    try:
        with warnings.catch_warnings():
            # heartbeat_interval is "experimental" since Optuna 2.x; we rely on it knowingly.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                spec.url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=max(1, round(heartbeat_interval)),
                grace_period=max(1, round(grace_period)),
                heartbeat_stale_trial_callback=RetryPolicy(max_retry),
            )
    except Exception as exc:  # SQLAlchemy/driver errors: unreachable server, bad credentials
        detail = f"{type(exc).__name__}: {_scrub(str(exc), spec.url)}"
        if spec.kind == "sqlite":  # a file the user named: not a database, locked, unreadable
            raise ConfigError(
                f"cannot open the study storage {spec.masked}: {detail}",
                "check the path in --storage: an SQLite database file (or a new file name)",
            ) from None
        raise RuntimeFailure(
            f"cannot open the study storage {spec.masked}: {detail}",
            "check the URL, that the server is running and reachable, and the credentials",
        ) from None
    if spec.kind == "sqlite":
        _serialise_sqlite_transactions(storage)
    return storage


def _serialise_sqlite_transactions(storage: optuna.storages.RDBStorage) -> None:
    """Make every SQLite transaction take the write lock at BEGIN (``BEGIN IMMEDIATE``).

    Optuna's state changes are read-check-write transactions (``SELECT ... FOR UPDATE`` on
    PostgreSQL). SQLite ignores FOR UPDATE, and Python's sqlite3 module runs the SELECT outside any
    transaction, so two workers could both read WAITING and both claim one trial (measured: a trial
    run twice with 4 workers). With BEGIN IMMEDIATE the whole read-check-write holds the database
    lock, so a claim or a stale-trial failure is a true compare-and-set across processes.
    """
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened during RDBStorage's set-up predate the listeners


def _heartbeat_dir(spec: StorageSpec) -> Path:
    assert spec.path is not None
    return spec.path.with_name(spec.path.name + ".heartbeat")


class Liveness:
    """Heartbeats for running trials and the reaping of stale ones, per storage kind."""

    def __init__(
        self, spec: StorageSpec, heartbeat_interval: float, grace_period: float, max_retry: int
    ) -> None:
        self.spec = spec
        self.interval = heartbeat_interval
        self.grace = grace_period
        self.retry = RetryPolicy(max_retry)

    def beat(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        if self.spec.kind == "journal":
            directory = _heartbeat_dir(self.spec)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / str(trial_id)).touch()
        elif hasattr(storage, "record_heartbeat"):  # not Optuna's in-memory storage (simulations)
            storage.record_heartbeat(trial_id)

    def forget(self, trial_id: int) -> None:
        if self.spec.kind == "journal":
            with contextlib.suppress(FileNotFoundError):
                (_heartbeat_dir(self.spec) / str(trial_id)).unlink()

    @contextlib.contextmanager
    def beating(self, storage: optuna.storages.BaseStorage, trial_id: int) -> Iterator[None]:
        """Record heartbeats for ``trial_id`` in a background thread while the block runs."""
        self.beat(storage, trial_id)
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval):
                try:
                    self.beat(storage, trial_id)
                except Exception as exc:  # a storage hiccup must not kill the trial
                    warn(f"heartbeat for trial id {trial_id} failed: {exc}")

        thread = threading.Thread(target=loop, name=f"heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.forget(trial_id)

    def reap(self, study: optuna.Study) -> None:
        """Fail (and re-queue by policy) every stale RUNNING trial; cheap when there is none."""
        import optuna

        if self.spec.kind != "journal":
            # Optuna's heartbeat table: the callback given to RDBStorage (RetryPolicy) re-queues
            # the trials that this process failed.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            return
        self._reap_journal(study)

    def _reap_journal(self, study: optuna.Study) -> list[int]:
        import optuna

        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if not running:
            return []
        directory = _heartbeat_dir(self.spec)
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".now-{os.getpid()}"
        probe.touch()
        now = probe.stat().st_mtime
        probe.unlink()
        from mlpfctl.hpo import optuna_api as api

        failed: list[int] = []
        for trial in running:
            ident = api.trial_id(trial)
            beat = directory / str(ident)
            try:
                last = beat.stat().st_mtime
            except FileNotFoundError:
                # Claimed but never beaten (killed within microseconds), or started by a process
                # that does not beat (a plain study.optimize): fall back to the start time.
                start = trial.datetime_start
                last = start.timestamp() if start is not None else now
            if now - last <= self.grace:
                continue
            # False when another worker (or the owner, just in time) finished it first.
            if api.finish(study, ident, optuna.trial.TrialState.FAIL):
                failed.append(ident)
                self.forget(ident)
                self.retry(study, api.get(study, ident))
        return failed


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass (for tests and the driver)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
