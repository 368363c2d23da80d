"""Pythia8 event generation (``pythia8mc`` bindings) into flat numpy particle arrays.

Process cards follow the MLPF production cards (HEP-KBFI/key4hep-sim ``clic/pythia``); see
docs/physics-data.md. The batch API (``nextBatch``) is 2-3x faster than a per-particle loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpfctl.data.sim.processes import MINBIAS as MINBIAS
from mlpfctl.data.sim.processes import PROCESSES as PROCESSES
from mlpfctl.errors import UsageError

_NEUTRINOS = np.array([12, 14, 16])
PYTHIA_MAX_SEED = 900_000_000


def check_process(name: str) -> tuple[str, tuple[str, ...], str]:
    try:
        return PROCESSES[name]
    except KeyError:
        raise UsageError(f"unknown process {name!r}", hint=f"choose one of: {', '.join(PROCESSES)}") from None


@dataclass
class Particles:
    """Final-state (status > 0, no neutrinos) particles of many events, concatenated."""

    event: np.ndarray  # int64 event index within the chunk
    pdg: np.ndarray  # int64
    charge: np.ndarray  # float64 (-1, 0, +1, ...)
    p4: np.ndarray  # [n, 4] px, py, pz, E (GeV)
    mass: np.ndarray  # GeV
    vertex: np.ndarray  # [n, 3] production vertex x, y, z (mm)
    ispu: np.ndarray  # float64 0/1
    n_events: int

    def __len__(self) -> int:
        return len(self.pdg)

    @staticmethod
    def concat(parts: list[Particles], n_events: int) -> Particles:
        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return Particles(
            event=cat("event"),
            pdg=cat("pdg"),
            charge=cat("charge"),
            p4=cat("p4"),
            mass=cat("mass"),
            vertex=cat("vertex"),
            ispu=cat("ispu"),
            n_events=n_events,
        )

    def take(self, idx: np.ndarray) -> Particles:
        return Particles(
            self.event[idx],
            self.pdg[idx],
            self.charge[idx],
            self.p4[idx],
            self.mass[idx],
            self.vertex[idx],
            self.ispu[idx],
            self.n_events,
        )


class Generator:
    """One initialised Pythia instance for one process and seed."""

    def __init__(self, settings: tuple[str, ...], seed: int) -> None:
        import pythia8mc

        from mlpfctl.data.sim.quiet import quiet_stdout

        with quiet_stdout():
            self.pythia = pythia8mc.Pythia("", False)
            for line in (
                "Print:quiet = on",
                "Next:numberCount = 0",
                "Random:setSeed = on",
                f"Random:seed = {seed % PYTHIA_MAX_SEED + 1}",
                *settings,
            ):
                if not self.pythia.readString(line):
                    raise UsageError(f"Pythia rejected the setting {line!r}")
            if not self.pythia.init():
                raise UsageError("Pythia failed to initialise", hint="check the process settings")
        self._charges: dict[int, float] = {}

    def _charge(self, pdg: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(pdg, return_inverse=True)
        table = np.empty(len(uniq))
        for k, code in enumerate(uniq.tolist()):
            q = self._charges.get(code)
            if q is None:
                q = self._charges[code] = float(self.pythia.particleData.charge(code))
            table[k] = q
        return table[inv]

    def generate(self, n: int, max_batch: int = 250) -> Particles:
        """``n`` events as final-state particles (generated in batches to bound memory)."""
        import awkward as ak

        from mlpfctl.data.sim.quiet import quiet_stdout

        parts: list[Particles] = []
        done = 0
        while done < n:
            k = min(max_batch, n - done)
            with quiet_stdout():
                batch = self.pythia.nextBatch(k)
            prt = batch.prt
            counts = ak.to_numpy(ak.num(prt.id, axis=1)).astype(np.int64)

            def flat(x: Any) -> np.ndarray:
                return np.asarray(ak.to_numpy(ak.fill_none(ak.flatten(x), 0)), dtype=np.float64)

            pid = np.asarray(ak.to_numpy(ak.flatten(prt.id)), dtype=np.int64)
            final = (flat(prt.status) > 0) & ~np.isin(np.abs(pid), _NEUTRINOS)
            pdg = pid[final]
            p4 = np.stack([flat(prt.p[c])[final] for c in ("px", "py", "pz", "e")], axis=1)
            vtx = np.stack([flat(prt.vProd[c])[final] for c in ("px", "py", "pz")], axis=1)
            parts.append(
                Particles(
                    event=np.repeat(np.arange(done, done + k), counts)[final],
                    pdg=pdg,
                    charge=self._charge(pdg),
                    p4=p4,
                    mass=flat(prt.m)[final],
                    vertex=vtx,
                    ispu=np.zeros(len(pdg)),
                    n_events=k,
                )
            )
            done += k
        return Particles.concat(parts, n)


def overlay_pileup(hard: Particles, pool: Particles, mu: float, rng: np.random.Generator) -> Particles:
    """Add Poisson(mu) minimum-bias events from ``pool`` to each hard event, each at a fresh z vertex."""
    if mu <= 0 or pool.n_events == 0:
        return hard
    n_pu = rng.poisson(mu, size=hard.n_events)
    picks = rng.integers(0, pool.n_events, size=int(n_pu.sum()))
    owner = np.repeat(np.arange(hard.n_events), n_pu)
    dz = rng.normal(0.0, 50.0, size=len(picks))  # sigma_z = 50 mm (docs/physics-data.md)
    pool_counts = np.bincount(pool.event, minlength=pool.n_events)
    pool_off = np.concatenate([[0], np.cumsum(pool_counts)])
    sizes = pool_counts[picks]
    rows = (
        np.concatenate([np.arange(pool_off[p], pool_off[p + 1]) for p in picks])
        if len(picks)
        else np.zeros(0, np.int64)
    )
    pu = pool.take(rows.astype(np.int64))
    pu.event = np.repeat(owner, sizes)
    pu.vertex = pu.vertex.copy()
    pu.vertex[:, 2] += np.repeat(dz, sizes)
    pu.ispu = np.ones(len(rows))
    merged = Particles.concat([hard, pu], hard.n_events)
    order = np.argsort(merged.event, kind="stable")
    return merged.take(order)
