"""The study's settings, stored in the study itself so that any worker can join with only the URL.

``mlpfctl hpo run`` writes them once when it creates the study; ``mlpfctl hpo worker --storage URL
--study NAME`` (a SLURM job step on another node) reads them back, so all workers use one search
space, one scheduler and one base training configuration. The storage URL is never stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpfctl.errors import ConfigError
from mlpfctl.hpo.schedulers import PROMOTION, Rungs

if TYPE_CHECKING:
    import optuna

    from mlpfctl.config import Config

SETTINGS_ATTR = "mlpfctl.settings"


@dataclass
class StudySettings:
    space: dict[str, Any]
    sampler: str
    scheduler: str
    trials: int
    ranks_per_trial: int
    max_ranks_per_trial: int
    min_resource: int
    max_resource: int
    reduction_factor: int
    min_early_stopping_rate: int
    seed: int
    directions: list[str]
    metrics: list[str]
    objective: str | None
    on_divergence: str
    heartbeat_interval: float
    grace_period: float
    max_retry: int
    poll_interval: float
    timeout: float | None
    workdir: str
    base_config: dict[str, Any] = field(default_factory=dict)
    # The promotion schedulers' rung spacing (mlpfctl.hpo.schedulers) and promotion rule
    # (mlpfctl.hpo.asha.rung_promotions); studies made before these existed used "eta" and "eager".
    rung_spacing: str = "eta"
    promotion_rule: str = "eager"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def rungs(self) -> Rungs:
        """The ladder in use: the promotion schedulers' own, or the one Optuna's pruners build."""
        return Rungs(
            self.min_resource,
            self.max_resource,
            self.reduction_factor,
            self.min_early_stopping_rate,
            spacing=self.rung_spacing if self.promotion else "eta",
        )

    @property
    def rung_tuple(self) -> tuple[int, int, int, int]:
        return (self.min_resource, self.max_resource, self.reduction_factor, self.min_early_stopping_rate)

    @property
    def promotion(self) -> bool:
        return self.scheduler in PROMOTION

    @property
    def promotion_rule_in_use(self) -> str | None:
        """The promotion rule, or None for Optuna's stop-type pruners (which have none)."""
        return self.promotion_rule if self.promotion else None

    @property
    def maximize(self) -> bool:
        return self.directions[0] == "maximize"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: Config, study: str) -> StudySettings:
        """Settings from the resolved ``[hpo]`` section plus the base training config."""
        from mlpfctl.config.loader import to_dict
        from mlpfctl.hpo import samplers, schedulers
        from mlpfctl.hpo.space import load_space

        hpo = config.hpo
        n_objectives = len(hpo.directions)
        if hpo.objective is None and len(hpo.metrics) != n_objectives:
            raise ConfigError(
                f"hpo.metrics has {len(hpo.metrics)} entries but hpo.directions has {n_objectives}",
                "give one direction per metric, e.g. metrics=val_loss,events_per_s "
                "directions=minimize,maximize",
            )
        samplers.check_name(hpo.sampler, n_objectives)
        schedulers.check_name(hpo.scheduler, n_objectives)
        space = load_space(hpo.space)
        if hpo.objective:
            from mlpfctl.hpo.objective import load_objective

            load_objective(hpo.objective)  # a typo fails here, not in every worker
        workdir = hpo.workdir or str(Path(config.run.out_dir) / "hpo" / study)
        max_resource = hpo.max_resource or config.train.steps
        min_resource = hpo.min_resource or schedulers.derive_min_resource(
            max_resource, hpo.reduction_factor, config.train.val_every
        )
        settings = cls(
            space=space.to_dict(),
            sampler=hpo.sampler,
            scheduler=hpo.scheduler,
            trials=hpo.trials,
            ranks_per_trial=hpo.ranks_per_trial,
            max_ranks_per_trial=max(hpo.max_ranks_per_trial, hpo.ranks_per_trial),
            min_resource=min_resource,
            max_resource=max_resource,
            reduction_factor=hpo.reduction_factor,
            min_early_stopping_rate=hpo.min_early_stopping_rate,
            rung_spacing=hpo.rung_spacing,
            promotion_rule=hpo.promotion_rule,
            seed=hpo.seed,
            directions=list(hpo.directions),
            metrics=list(hpo.metrics),
            objective=hpo.objective,
            on_divergence=hpo.on_divergence,
            heartbeat_interval=hpo.heartbeat_interval,
            grace_period=max(hpo.grace_period, 2 * hpo.heartbeat_interval),
            max_retry=hpo.max_retry,
            poll_interval=hpo.poll_interval,
            timeout=hpo.timeout,
            workdir=str(Path(workdir).resolve()),
            # Secrets (storage URLs with passwords) never enter the study: training needs none.
            base_config={k: v for k, v in to_dict(config, mask_secrets=True).items() if k != "hpo"},
        )
        settings.rungs.budgets  # noqa: B018 - validates r, R, eta, s now rather than in a worker
        if hpo.objective is None:
            _check_mlpf_space(config, space.to_dict()["params"], settings)
        return settings


def _check_mlpf_space(config: Config, params: dict[str, Any], settings: StudySettings) -> None:
    """The MLPF objective samples config keys: unknown keys and off-grid rungs fail up front."""
    import difflib

    from mlpfctl.config.loader import schema_fields

    fields = schema_fields()
    for name in params:
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            raise ConfigError(
                f"search-space parameter '{name}' is not a config key the training objective can set",
                (f"did you mean '{close[0]}'? " if close else "")
                + "name parameters after config keys (mlpfctl config show) "
                "or pass --objective module:function",
            )
    train = getattr(config, "train", None)
    val_every = getattr(train, "val_every", None)
    if isinstance(val_every, int) and val_every > 0 and settings.scheduler != "none":
        settings.rungs.check_multiple_of(val_every, "train.val_every")


def load_settings(study: optuna.Study) -> StudySettings:
    data = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(data, dict):
        raise ConfigError(
            f"study '{study.study_name}' was not created by mlpfctl (no settings stored)",
            "create it with 'mlpfctl hpo run' first",
        )
    return StudySettings.from_dict(data)
