"""``generate_dataset``: Pythia8 events -> parametric detector -> targets, baseline PF, jets -> shards.

Each shard has its own seed derived from (seed, shard index, process), so the output depends only
on the seed and the shard layout, not on the number of worker processes. A finished shard is
recorded in a small ``<shard>.meta.json`` next to it; a rerun keeps every shard whose metadata
and checksum still match (resume after an interruption).

Across a cluster (``mlpfctl submit --array n -- data generate``), task ``i`` of ``n`` generates
the ``i``-th of ``n`` contiguous blocks of shards (``task=(i, n)``) and writes no manifest; a
final step (``manifest_only``) checks every shard and writes the manifest. The shards are the
same bytes as a single-node run's, and so is the manifest apart from its run record
(``Manifest.content``).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mlpfctl.atomic import atomic_write_text
from mlpfctl.data.manifest import SCHEMA_VERSION, Manifest, sha256_of
from mlpfctl.errors import DataError, RuntimeFailure, UsageError

DEFAULT_EVENTS_PER_SHARD = 1000
MINBIAS_POOL_MIN = 200


@dataclass(frozen=True)
class ShardSpec:
    index: int
    events: int
    seed: int
    process: str
    pileup_mu: float
    file: str

    def key(self) -> dict[str, Any]:
        return {**asdict(self), "schema_version": SCHEMA_VERSION}


def shard_seed(seed: int, index: int, process: str) -> int:
    state = np.random.SeedSequence([seed, index, zlib.crc32(process.encode())]).generate_state(1)
    return int(state[0]) % 899_999_999


def plan_shards(
    process: str, events: int, seed: int, events_per_shard: int, pileup_mu: float
) -> list[ShardSpec]:
    n = -(-events // events_per_shard)
    specs = []
    for i in range(n):
        k = min(events_per_shard, events - i * events_per_shard)
        specs.append(
            ShardSpec(i, k, shard_seed(seed, i, process), process, pileup_mu, f"{process}_{i:05d}.parquet")
        )
    return specs


def task_shards(n_shards: int, index: int, count: int) -> range:
    """The shards task ``index`` of ``count`` generates: one contiguous block, sizes within one."""
    return range(n_shards * index // count, n_shards * (index + 1) // count)


def _detector_description() -> dict[str, Any]:
    from mlpfctl.data.sim.params import DetectorParams

    return DetectorParams().description().to_dict()


def _meta_path(out_dir: Path, spec: ShardSpec) -> Path:
    return out_dir / (spec.file.removesuffix(".parquet") + ".meta.json")


def _valid_existing(out_dir: Path, spec: ShardSpec) -> dict[str, Any] | None:
    meta_path = _meta_path(out_dir, spec)
    shard = out_dir / spec.file
    if not (meta_path.is_file() and shard.is_file()):
        return None
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("spec") != spec.key() or meta.get("sha256") != sha256_of(shard):
        return None
    return meta


def _group_counts(event: np.ndarray, n_events: int) -> np.ndarray:
    return np.bincount(event, minlength=n_events).astype(np.int64)


def simulate_shard(spec: ShardSpec, out_dir: str) -> dict[str, Any]:
    """Generate, simulate and write one shard; returns its metadata (runs in a worker)."""
    from mlpfctl.data.sim.detector import simulate
    from mlpfctl.data.sim.jets import cluster_jets, jet_definition
    from mlpfctl.data.sim.params import DetectorParams
    from mlpfctl.data.sim.pfbaseline import reconstruct
    from mlpfctl.data.sim.pythia_source import MINBIAS, Generator, check_process, overlay_pileup
    from mlpfctl.data.sim.targets import assign_targets
    from mlpfctl.data.writer import write_shard

    collider, settings, _ = check_process(spec.process)
    t0 = time.perf_counter()
    parts = Generator(settings, spec.seed).generate(spec.events)
    rng = np.random.default_rng(spec.seed)
    if spec.pileup_mu > 0:
        pool_size = max(MINBIAS_POOL_MIN, int(4 * spec.pileup_mu))
        pool = Generator(MINBIAS, spec.seed + 1).generate(pool_size)
        parts = overlay_pileup(parts, pool, spec.pileup_mu, rng)
    t1 = time.perf_counter()
    params = DetectorParams()
    det = simulate(parts, params, rng)
    yt_trk, yt_cl = assign_targets(parts, det)
    yc_trk, yc_cl = reconstruct(det, params)
    n_ev = parts.n_events
    n_trk = _group_counts(det.tracks.event, n_ev)
    n_cl = _group_counts(det.clusters.event, n_ev)
    t2 = time.perf_counter()
    jetdef = jet_definition(collider)
    hard = parts.ispu == 0
    gen_p4 = parts.p4[hard]
    genmet = np.hypot(
        np.bincount(parts.event[hard], gen_p4[:, 0], n_ev), np.bincount(parts.event[hard], gen_p4[:, 1], n_ev)
    )
    # target particles from tracks and clusters together, grouped by event
    y_all = np.concatenate([yt_trk, yt_cl])
    ev_all = np.concatenate([det.tracks.event, det.clusters.event])
    real = np.flatnonzero(y_all[:, 0] != 0)
    real = real[np.argsort(ev_all[real], kind="stable")]
    y = y_all[real].astype(np.float64)
    pt, eta, phi, e = y[:, 2], y[:, 3], np.arctan2(y[:, 4], y[:, 5]), y[:, 6]
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), e], 1)
    # one FastJet call for both: generator-level events first, then target-level ones
    gen_counts = _group_counts(parts.event[hard], n_ev)
    tgt_counts = _group_counts(ev_all[real], n_ev)
    jets, n_jets, jet_of = cluster_jets(
        np.concatenate([gen_p4, p4]), np.concatenate([gen_counts, tgt_counts]), jetdef
    )
    n_genjets, n_tjets = n_jets[:n_ev], n_jets[n_ev:]
    genjets, targetjets = jets[: n_genjets.sum()], jets[n_genjets.sum() :]
    y_all[real, 12] = jet_of[len(gen_p4) :]
    yt_trk, yt_cl = y_all[: len(yt_trk)], y_all[len(yt_trk) :]
    t3 = time.perf_counter()
    # drop events without any element (nothing to learn from; readers skip them too)
    keep = (n_trk + n_cl) > 0
    trk_keep, cl_keep = keep[det.tracks.event], keep[det.clusters.event]
    gj_keep = np.repeat(keep, n_genjets)
    tj_keep = np.repeat(keep, n_tjets)
    columns = {
        "X_track": (det.tracks.features[trk_keep], n_trk[keep]),
        "X_cluster": (det.clusters.features[cl_keep], n_cl[keep]),
        "ytarget_track": (yt_trk[trk_keep], n_trk[keep]),
        "ytarget_cluster": (yt_cl[cl_keep], n_cl[keep]),
        "ycand_track": (yc_trk[trk_keep], n_trk[keep]),
        "ycand_cluster": (yc_cl[cl_keep], n_cl[keep]),
        "genjet": (genjets[gj_keep], n_genjets[keep]),
        "targetjet": (targetjets[tj_keep], n_tjets[keep]),
    }
    out = Path(out_dir)
    shard = out / spec.file
    write_shard(shard, columns, genmet[keep])
    t4 = time.perf_counter()
    lengths = (n_trk + n_cl)[keep]
    meta = {
        "file": spec.file,
        "index": spec.index,
        "events": int(keep.sum()),
        "generated_events": spec.events,
        "seed": spec.seed,
        "lengths": lengths.tolist(),
        "elements": int(lengths.sum()),
        "tracks": int(n_trk[keep].sum()),
        "clusters": int(n_cl[keep].sum()),
        "particles": len(parts),
        "bytes": shard.stat().st_size,
        "sha256": sha256_of(shard),
        "seconds": {"generation": t1 - t0, "detector": t2 - t1, "jets": t3 - t2, "write": t4 - t3},
        "spec": spec.key(),
    }
    atomic_write_text(_meta_path(out, spec), json.dumps(meta) + "\n")
    return meta


def _silence_worker() -> None:
    # Workers never print data; keep C++ libraries' stdout chatter away from --json output.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("mlpfctl", "pythia8mc", "fastjet", "awkward", "numpy", "scipy", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _check_physics_extra() -> None:
    missing = []
    for mod in ("pythia8mc", "fastjet", "awkward"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise UsageError(
            f"data generation needs {', '.join(missing)} (the 'physics' extra)",
            hint="pip install 'mlpfctl[physics]' (or run 'make venv')",
        )


def generate_dataset(
    out_dir: str | Path,
    process: str = "ee_ttbar",
    events: int = 2000,
    seed: int = 0,
    events_per_shard: int = DEFAULT_EVENTS_PER_SHARD,
    workers: int | None = None,
    pileup_mu: float = 0.0,
    *,
    force: bool = False,
    progress: bool = False,
    task: tuple[int, int] | None = None,
    manifest_only: bool = False,
) -> Manifest:
    """Generate ``events`` events of ``process`` into ``out_dir`` (Parquet shards + manifest.json).

    ``task=(i, n)``: only task ``i`` of ``n``'s block of shards; the returned manifest describes
    them and is not written. ``manifest_only``: generate nothing, check that every shard is there
    and complete (a ``DataError`` names the missing ones), and write the manifest.
    """
    from mlpfctl.data.sim.pythia_source import PROCESSES, check_process

    collider, _, description = check_process(process)
    if events < 1 or events_per_shard < 1:
        raise UsageError(f"events ({events}) and events per shard ({events_per_shard}) must be positive")
    if task is not None and (manifest_only or not 0 <= task[0] < task[1]):
        raise UsageError(
            f"task {task[0]} of {task[1]} is not a generation task",
            hint="give 0 <= --task-index < --task-count, and no --manifest-only",
        )
    if pileup_mu < 0 or (pileup_mu > 0 and collider != "pp"):
        raise UsageError(
            f"pile-up mu={pileup_mu} is only supported for pp processes (mu >= 0)",
            hint=f"use one of {[p for p, v in PROCESSES.items() if v[0] == 'pp']} or --pileup-mu 0",
        )
    _check_physics_extra()
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    if manifest_path.is_file() and not force:
        try:
            old = Manifest.read(out)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(
                f"{manifest_path}: unreadable manifest ({exc})", hint="use --force to overwrite"
            ) from exc
        if (old.process, old.seed, old.events, old.events_per_shard, old.pileup_mu) != (
            process,
            seed,
            events,
            events_per_shard,
            pileup_mu,
        ):
            raise UsageError(
                f"{out} already holds a different dataset "
                f"({old.process}, {old.events} events, seed {old.seed})",
                hint="choose another --out directory or pass --force to replace it",
            )
    specs = plan_shards(process, events, seed, events_per_shard, pileup_mu)
    if task is not None:
        specs = [specs[i] for i in task_shards(len(specs), *task)]
    metas: dict[int, dict[str, Any]] = {}
    todo: list[ShardSpec] = []
    for spec in specs:
        existing = None if force and not manifest_only else _valid_existing(out, spec)
        if existing is not None:
            metas[spec.index] = existing
        else:
            todo.append(spec)
    if manifest_only and todo:
        names = ", ".join(s.file for s in todo[:5]) + (", ..." if len(todo) > 5 else "")
        raise DataError(
            f"{out}: {len(todo)} of {len(specs)} shards are missing or incomplete ({names})",
            hint="run the same generation again (or resubmit it): finished shards are kept, "
            "only these are generated",
        )
    n_workers = max(1, min(workers or (os.cpu_count() or 1), len(todo) or 1))
    started = time.perf_counter()
    _run(
        todo,
        out,
        n_workers,
        metas,
        progress,
        done_events=sum(m["generated_events"] for m in metas.values()),
        total=sum(s.events for s in specs),
    )
    wall = time.perf_counter() - started
    shards = [{k: v for k, v in metas[s.index].items() if k != "spec"} for s in specs]
    total_events = sum(int(s["events"]) for s in shards)
    total_bytes = sum(int(s["bytes"]) for s in shards)
    manifest = Manifest(
        process=process,
        description=description,
        collider=collider,
        events=events,
        seed=seed,
        events_per_shard=events_per_shard,
        pileup_mu=pileup_mu,
        shards=shards,
        versions=_versions(),
        detector_description=_detector_description(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        totals={
            "events": total_events,
            "elements": sum(int(s["elements"]) for s in shards),
            "tracks": sum(int(s["tracks"]) for s in shards),
            "clusters": sum(int(s["clusters"]) for s in shards),
            "bytes": total_bytes,
            "bytes_per_event": total_bytes / max(total_events, 1),
            "wall_seconds": wall,
            "generated_shards": len(todo),
            "kept_shards": len(specs) - len(todo),
            "workers": n_workers,
        },
    )
    if task is None:
        manifest.write(out)
    return manifest


def _shard_failed(spec: ShardSpec, exc: Exception) -> RuntimeFailure:
    return RuntimeFailure(
        f"shard {spec.file} failed: {type(exc).__name__}: {exc}",
        hint="rerun the same command to resume; finished shards are kept",
    )


def _simulate_or_fail(spec: ShardSpec, out: Path) -> dict[str, Any]:
    try:
        return simulate_shard(spec, str(out))
    except (UsageError, RuntimeFailure):
        raise
    except Exception as exc:
        raise _shard_failed(spec, exc) from exc


def _run(
    todo: list[ShardSpec],
    out: Path,
    n_workers: int,
    metas: dict[int, dict[str, Any]],
    progress: bool,
    done_events: int,
    total: int,
) -> None:
    from contextlib import nullcontext

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mlpfctl.console import err
    from mlpfctl.data.sim.quiet import quiet_stdout

    bar = (
        Progress(
            TextColumn("generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        if progress
        else None
    )
    with bar if bar is not None else nullcontext():
        task = bar.add_task("events", total=total, completed=done_events) if bar is not None else None
        if not todo:
            return
        if n_workers == 1:
            for spec in todo:
                with quiet_stdout():
                    metas[spec.index] = _simulate_or_fail(spec, out)
                if bar is not None and task is not None:
                    bar.advance(task, spec.events)
            return
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_silence_worker) as pool:
            futures: dict[Future[dict[str, Any]], ShardSpec] = {
                pool.submit(simulate_shard, spec, str(out)): spec for spec in todo
            }
            pending = set(futures)
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        spec = futures[fut]
                        try:
                            metas[spec.index] = fut.result()
                        except (UsageError, RuntimeFailure):
                            raise
                        except Exception as exc:
                            raise _shard_failed(spec, exc) from exc
                        if bar is not None and task is not None:
                            bar.advance(task, spec.events)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
