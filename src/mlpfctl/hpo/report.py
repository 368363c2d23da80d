"""``mlpfctl hpo status`` / ``report``: state counts, best trials, importances, plots, best config.

The report reads only the study storage (it works while workers run, from any node, and next to
optuna-dashboard on the same storage). For ASHA/RASDA studies a *configuration* spans several
trials (one per rung); tables show each configuration once, at the highest rung it reached, and
rank configurations by (highest rung reached, value there): a configuration that survived to the top
rung beats any that did not, as in the ASHA paper's incumbent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.hpo.asha import ATTR_CONFIG, ATTR_KIND, ATTR_OUTCOME, ATTR_RUNG, queue_name, rung_value
from mlpfctl.hpo.settings import StudySettings, load_settings

if TYPE_CHECKING:
    import optuna


@dataclass
class ConfigRow:
    config: int
    trial: int
    state: str
    rung: int | None
    budget: int | None
    values: list[float] | None
    params: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "trial": self.trial,
            "state": self.state,
            "rung": self.rung,
            "budget": self.budget,
            "values": self.values,
            "params": self.params,
        }


def load(storage_url: str, study_name: str) -> tuple[optuna.Study, StudySettings]:
    import optuna

    from mlpfctl.hpo.storage import check_location, open_storage, parse_url

    spec = parse_url(storage_url)
    check_location(spec, existing=True)
    storage = open_storage(spec, heartbeat_interval=60, grace_period=120, max_retry=0)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise UsageError(
            f"no study '{study_name}' in {spec.masked}", f"studies there: {', '.join(names) or '(none)'}"
        ) from None
    return study, load_settings(study)


def config_rows(study: optuna.Study, settings: StudySettings) -> list[ConfigRow]:
    """One row per configuration (its furthest job), best first."""
    import optuna

    budgets = settings.rungs.budgets
    sign = -1.0 if settings.maximize else 1.0
    best: dict[int, tuple[tuple[float, ...], ConfigRow]] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        config = int(trial.user_attrs.get(ATTR_CONFIG, trial.number))
        if settings.promotion:
            value = rung_value(trial)
            if value is None:
                continue
            rung = int(trial.user_attrs.get(ATTR_RUNG, 0))
            values: list[float] | None = [value]
            budget: int | None = budgets[rung]
            key: tuple[float, ...] = (-rung, sign * value)
        else:
            rung = None
            if trial.state == optuna.trial.TrialState.COMPLETE and trial.values is not None:
                values = list(trial.values)
                budget = settings.max_resource
                key = (0.0, *(sign * v if i == 0 else 0.0 for i, v in enumerate(values)))
            else:
                step = trial.last_step
                values = [trial.intermediate_values[step]] if step is not None else None
                budget = step
                key = (1.0, -(step or 0), sign * (values[0] if values else math.inf))
        row = ConfigRow(config, trial.number, trial.state.name, rung, budget, values, dict(trial.params))
        if config not in best or key < best[config][0]:
            best[config] = (key, row)
    return [row for _, row in sorted(best.values(), key=lambda kv: (kv[0], kv[1].config))]


# Jobs that never were a configuration's result: a rejected duplicate proposal, a promotion whose
# ticket a reaper had already handed to another worker.
_NOT_A_RESULT = ("duplicate", "superseded")


def config_states(study: optuna.Study, settings: StudySettings) -> dict[str, int]:
    """How many configurations are in which state (each counted once, whatever its jobs).

    ``queued`` (not started), ``running`` (first job running), ``promoted`` (a later job running or
    queued again after a kill), ``paused@k`` (stopped at rung k, may still be promoted), ``finished``
    (top rung or full budget), ``pruned`` (stopped by a pruner, or diverged with on_divergence =
    prune), ``failed``.
    """
    import optuna

    from mlpfctl.hpo.storage import ATTR_RETRY_OF

    S = optuna.trial.TrialState
    jobs: dict[int, list[optuna.trial.FrozenTrial]] = {}
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(ATTR_OUTCOME) in _NOT_A_RESULT:
            continue
        if trial.state == S.WAITING and ATTR_RETRY_OF not in trial.user_attrs:
            if trial.user_attrs.get(ATTR_KIND, "new") == "new":
                counts["queued"] = counts.get("queued", 0) + 1
            continue
        config = int(trial.user_attrs.get(ATTR_CONFIG, trial.number))
        jobs.setdefault(config, []).append(trial)
    for config_jobs in jobs.values():
        # The furthest job decides; at equal rung the latest (a retry after its killed original).
        last = max(config_jobs, key=lambda t: (int(t.user_attrs.get(ATTR_RUNG, 0)), t.number))
        outcome = last.user_attrs.get(ATTR_OUTCOME)
        rung = int(last.user_attrs.get(ATTR_RUNG, 0))
        if last.state in (S.RUNNING, S.WAITING):
            state = "promoted" if rung > 0 else "running"
        elif outcome == "paused":
            state = f"paused@{rung}"
        elif last.state == S.COMPLETE:
            state = "finished"
        elif last.state == S.PRUNED:
            state = "pruned"
        else:
            state = "failed"
        counts[state] = counts.get(state, 0) + 1
    return dict(sorted(counts.items()))


def open_tickets(study: optuna.Study) -> int:
    """WAITING promotion tickets (paused configurations ASHA may still promote)."""
    import optuna

    try:
        queue = optuna.load_study(study_name=queue_name(study.study_name), storage=_storage_of(study))
    except KeyError:
        return 0
    return len(queue.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def _storage_of(study: optuna.Study) -> Any:
    from mlpfctl.hpo import optuna_api

    return optuna_api.storage(study)


def summary(study: optuna.Study, settings: StudySettings) -> dict[str, Any]:
    states: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    per_rung: dict[int, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
        outcome = trial.user_attrs.get(ATTR_OUTCOME)
        if outcome:
            outcomes[str(outcome)] = outcomes.get(str(outcome), 0) + 1
        if settings.promotion and outcome in ("paused", "top"):
            rung = int(trial.user_attrs.get(ATTR_RUNG, 0))
            per_rung[rung] = per_rung.get(rung, 0) + 1
    rows = config_rows(study, settings)
    return {
        "study": study.study_name,
        "sampler": settings.sampler,
        "scheduler": settings.scheduler,
        "trials_planned": settings.trials,
        "configurations": config_states(study, settings),
        "promotion_tickets": open_tickets(study) if settings.promotion else 0,
        "states": states,
        "outcomes": outcomes,
        "rungs": settings.rungs.budgets,
        "promotion_rule": settings.promotion_rule_in_use,
        "jobs_per_rung": {str(k): v for k, v in sorted(per_rung.items())},
        "steps_consumed": steps_consumed(study, settings),
        "best": rows[0].as_dict() if rows else None,
    }


def steps_consumed(study: optuna.Study, settings: StudySettings) -> int:
    """Training steps spent so far (each job charged from its start step to where it stopped)."""
    from mlpfctl.hpo.asha import ATTR_BUDGET, ATTR_START

    total = 0
    for trial in study.get_trials(deepcopy=False):
        if not trial.state.is_finished():
            continue
        end = trial.last_step or 0
        if settings.promotion:
            if trial.user_attrs.get(ATTR_OUTCOME) in ("paused", "top"):
                end = int(trial.user_attrs.get(ATTR_BUDGET, end))
            total += max(0, end - int(trial.user_attrs.get(ATTR_START, 0)))
        else:
            total += settings.max_resource if trial.state.name == "COMPLETE" else end
    return total


def importances(study: optuna.Study, settings: StudySettings) -> dict[str, float]:
    """fANOVA importances over every configuration at the rung all of them reached."""
    import optuna

    rows = config_rows(study, settings)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    proxy = optuna.create_study(direction="maximize" if settings.maximize else "minimize")
    added = 0
    for trial in trials.values():
        value: float | None
        if settings.promotion:
            value = rung_value(trial) if int(trial.user_attrs.get(ATTR_RUNG, -1)) == 0 else None
        elif rows and trial.state == optuna.trial.TrialState.COMPLETE and trial.values:
            value = trial.values[0]
        else:
            value = None
        if value is None or not trial.distributions:
            continue
        proxy.add_trial(
            optuna.trial.create_trial(params=trial.params, distributions=trial.distributions, value=value)
        )
        added += 1
    if added < 3:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(proxy))
    except (RuntimeError, ValueError):  # e.g. a single distinct configuration
        return {}


def write_plots(study: optuna.Study, settings: StudySettings, out_dir: Path) -> list[Path]:
    """History, intermediate values (rungs marked) and parallel coordinates as PNG files."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    from mlpfctl.atomic import atomic_open

    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no complete trials" is reported by us
    written: list[Path] = []
    plots: list[tuple[str, Any]] = []
    single = len(settings.directions) == 1
    if single:
        plots.append(
            ("history.png", lambda: optuna.visualization.matplotlib.plot_optimization_history(study))
        )
        plots.append(("intermediate_values.png", lambda: _plot_rungs(study, settings)))
        plots.append(
            (
                "parallel_coordinates.png",
                lambda: optuna.visualization.matplotlib.plot_parallel_coordinate(study),
            )
        )
    else:
        plots.append(("pareto_front.png", lambda: optuna.visualization.matplotlib.plot_pareto_front(study)))
    for name, make in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = make()
            except (ValueError, RuntimeError, IndexError, KeyError) as exc:
                from mlpfctl.console import warn

                warn(f"plot {name} skipped: {exc}")
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        path = out_dir / name
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _plot_rungs(study: optuna.Study, settings: StudySettings) -> Any:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7, 4.5))
    for trial in study.get_trials(deepcopy=False):
        if not trial.intermediate_values:
            continue
        steps = sorted(trial.intermediate_values)
        ax.plot(steps, [trial.intermediate_values[s] for s in steps], lw=0.8, alpha=0.6, marker=".", ms=3)
    if settings.scheduler != "none":
        for budget in settings.rungs.budgets:
            ax.axvline(budget, color="grey", ls="--", lw=0.7)
    ax.set_xlabel("training step (dashed: rung budgets)")
    ax.set_ylabel(settings.metrics[0] if settings.objective is None else "objective")
    ax.set_title(f"Intermediate values per trial ({settings.scheduler})")
    return ax


def best_config_toml(study: optuna.Study, settings: StudySettings) -> str:
    """The best configuration as a full training config (``mlpfctl train --config`` accepts it)."""
    import tomli_w

    rows = config_rows(study, settings)
    if not rows:
        raise RuntimeFailure(
            f"study '{study.study_name}' has no finished trial yet", "wait for a trial to finish"
        )
    best = rows[0]
    data: dict[str, dict[str, Any]] = {
        section: {k: v for k, v in body.items() if v is not None}
        for section, body in settings.base_config.items()
    }
    loose: dict[str, Any] = {}
    for key, value in best.params.items():
        section, dot, name = key.partition(".")
        if dot and section in data:
            data[section][name] = value
        else:
            loose[key] = value
    if "train" in data:
        data["train"]["steps"] = settings.max_resource
        if "schedule_steps" in data["train"]:
            data["train"]["schedule_steps"] = settings.max_resource
    header = (
        f"# Best configuration of HPO study '{study.study_name}': config {best.config} (trial {best.trial}),"
        f" value {best.values}\n# Use it with: mlpfctl train --config THIS_FILE\n"
    )
    if loose:
        header += "# Parameters that are not config keys (generic objective):\n" + "".join(
            f"#   {k} = {v!r}\n" for k, v in loose.items()
        )
    return header + tomli_w.dumps(data)


def write_report(study: optuna.Study, settings: StudySettings, out_dir: Path) -> dict[str, Any]:
    import json

    from mlpfctl.atomic import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    info = summary(study, settings)
    info["importances"] = importances(study, settings)
    info["plots"] = [str(p) for p in write_plots(study, settings, out_dir)]
    rows = config_rows(study, settings)
    info["top"] = [r.as_dict() for r in rows[:10]]
    if rows:
        best_path = out_dir / "best_config.toml"
        atomic_write_text(best_path, best_config_toml(study, settings))
        info["best_config"] = str(best_path)
    atomic_write_text(out_dir / "report.json", json.dumps(info, indent=2, default=str) + "\n")
    return info


def print_summary(info: dict[str, Any], rows: list[ConfigRow], top: int) -> None:
    from rich.table import Table

    from mlpfctl.console import out

    configs = ", ".join(f"{k} {v}" for k, v in info["configurations"].items())
    states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(info["states"].items()))
    if info["outcomes"]:
        states += "; outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(info["outcomes"].items()))
    out.print(
        f"study [bold]{info['study']}[/]: {info['sampler']} + {info['scheduler']}, rungs {info['rungs']}; "
        f"steps consumed {info['steps_consumed']}\n"
        f"configurations ({info['trials_planned']} planned): {configs or 'none yet'}\n"
        f"jobs (Optuna trials, one per configuration and rung): {states or 'none'}"
    )
    table = Table(title=f"best configurations (top {top})")
    for column in ("#", "config", "trial", "rung", "steps", "value", "parameters"):
        table.add_column(column, justify="right" if column not in ("parameters",) else "left")
    for i, row in enumerate(rows[:top], 1):
        values = ", ".join(f"{v:.5g}" for v in row.values) if row.values else "-"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in row.params.items())
        table.add_row(
            str(i),
            str(row.config),
            str(row.trial),
            "-" if row.rung is None else str(row.rung),
            str(row.budget or "-"),
            values,
            params,
        )
    out.print(table)
    if info.get("importances"):
        imp = Table(title="parameter importances (fANOVA)")
        imp.add_column("parameter")
        imp.add_column("importance", justify="right")
        for name, value in info["importances"].items():
            imp.add_row(name, f"{value:.3f}")
        out.print(imp)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
