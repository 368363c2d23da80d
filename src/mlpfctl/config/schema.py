"""The typed configuration schema: one dataclass per section, a documented field per setting.

Resolution order (lowest to highest precedence; see ``mlpfctl.config.loader``):
    defaults here < TOML file (``--config``, else ``./mlpfctl.toml``)
    < environment ``MLPFCTL_<SECTION>__<KEY>`` < command flags and ``--set section.key=value``.

The choices of named things (backends, readers, processes, models, samplers, schedulers) are the
names their registries export; those modules import no torch, optuna or numpy, so resolving a
configuration stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mlpfctl.backends.registry import available_names as _backend_names
from mlpfctl.config.fields import setting
from mlpfctl.data.readers import FORMATS as _READER_FORMATS
from mlpfctl.data.sim.processes import PROCESSES as _PROCESSES
from mlpfctl.durations import parse_duration
from mlpfctl.hpo.samplers import NAMES as _SAMPLERS
from mlpfctl.hpo.schedulers import NAMES as _SCHEDULERS
from mlpfctl.models.registry import NAMES as _MODEL_TYPES


def _either(names: Sequence[str]) -> str:
    """``a, b or c``"""
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


BACKENDS = _backend_names()
FORMATS = ["auto", *_READER_FORMATS]
GENERATE_PROCESSES = list(_PROCESSES)
MODEL_TYPES = list(_MODEL_TYPES)
SAMPLERS = list(_SAMPLERS)
SCHEDULERS = list(_SCHEDULERS)


@dataclass
class RunSection:
    """Where and how a run executes."""

    backend: str = setting(
        "auto",
        f"Device backend: {_either(BACKENDS)} ('auto' picks by priority).",
        choices=BACKENDS,
    )
    seed: int = setting(0, "Global random seed (data order, initialisation, sampling).", ge=0)
    out_dir: str = setting("runs", "Parent directory of run directories.")
    name: str | None = setting(None, "Run name (default: <command>-<timestamp>).")
    force_process_group: bool = setting(
        False,
        "Create a torch.distributed process group (and DDP) even for a single process, so that "
        "the collectives really run through the backend's library (NCCL/RCCL/HCCL/XCCL); used by "
        "scripts/gpu-check.sh.",
    )


@dataclass
class DataSection:
    """Dataset location, splits and batching."""

    path: str = setting("data/ee_ttbar", "Dataset directory or file (Parquet shards, .pkl.bz2, ...).")
    format: str = setting(
        "auto",
        f"Input format: {_either(FORMATS)} (key4hep: CLIC/CLD Parquet; delphes: .pkl.bz2).",
        choices=FORMATS,
    )
    max_elements_per_batch: int = setting(
        8192, "Bucketed batching: upper bound on padded elements (events x longest event) per batch.", ge=1
    )
    num_workers: int = setting(
        0, "DataLoader worker processes per rank (streaming: each reads its own shards).", ge=0
    )
    loader: str = setting(
        "auto",
        "How training and validation read events: stream (shards in windows that fit cache_mb, "
        "each read once per epoch per rank, shuffled and bucketed within a window), random (a "
        "global shuffle; decoded shards stay cached) or auto (random while the decoded dataset "
        "fits one worker's share of cache_mb, else stream).",
        choices=["auto", "stream", "random"],
    )
    valid_fraction: float = setting(0.1, "Fraction of events held out for validation.", gt=0.0, lt=1.0)
    test_fraction: float = setting(0.1, "Fraction of events held out for the test split.", ge=0.0, lt=1.0)
    cache_mb: int = setting(
        1024,
        "Memory for decoded events per rank (MiB), shared by its DataLoader workers: the streaming "
        "window plus one shard read ahead, or the random-access cache.",
        ge=1,
    )
    max_train_events: int | None = setting(
        None,
        "Train on only the first N events of the training split (nested subsets for scaling-law "
        "studies; the validation and test splits stay the same). None = all.",
        ge=1,
    )


@dataclass
class GenerateSection:
    """Embedded dataset generation (Pythia8 + parametric CLIC-like detector)."""

    process: str = setting(
        "ee_ttbar", f"Physics process to generate: {_either(GENERATE_PROCESSES)}.", choices=GENERATE_PROCESSES
    )
    events: int = setting(2000, "Number of events to generate.", ge=1)
    events_per_shard: int = setting(
        1000, "Events per Parquet shard (the unit of parallelism and resume).", ge=1
    )
    workers: int = setting(0, "Worker processes (0 = one per CPU core, at most one per shard).", ge=0)
    pileup_mu: float = setting(
        0.0, "Mean pile-up (Poisson) overlaid on pp processes from a minimum-bias pool.", ge=0.0
    )


@dataclass
class SubmitSection:
    """SLURM submission defaults for ``mlpfctl submit`` (flags override them)."""

    system: str = setting("local", "System profile name (mlpfctl systems lists them).")
    account: str | None = setting(
        None, "SLURM account/project to charge (--account); required on most sites."
    )
    partition: str | None = setting(None, "Partition (or QOS pool) of the profile; default: the profile's.")
    qos: str | None = setting(None, "SLURM QOS (--qos); default: the partition's QOS, if any.")
    nodes: int = setting(1, "Number of nodes.", ge=1)
    time: str | None = setting(
        None,
        "Wall time (SLURM format: MM, HH:MM:SS, D-HH:MM:SS); default: 1 hour, or the partition's "
        "limit when that is shorter.",
    )
    gpus_per_node: int | None = setting(
        None, "GPUs per node (default: all GPUs of a partition node; 0 for a CPU job).", ge=0
    )
    cpus_per_task: int | None = setting(
        None, "CPUs per task (default: the node's CPUs divided by its tasks).", ge=1
    )
    tasks_per_node: int | None = setting(
        None, "Processes per node for CPU jobs (GPU jobs: one per GPU).", ge=1
    )
    job_name: str | None = setting(None, "SLURM job name (default: mlpf-<kind>).")
    launcher: str = setting(
        "auto",
        "Training launch: srun (one task per GPU), torchrun (one per node) or auto (the profile's).",
        choices=["auto", "srun", "torchrun"],
    )
    venv: str | None = setting(
        None, "Python environment whose bin/python runs mlpfctl in the job (default: the current one)."
    )
    container: str | None = setting(
        None,
        "Container image the job runs in (default: the profile's, if any); its own python runs mlpfctl "
        "unless submit.venv names a venv built inside it (mlpfctl container recipe writes such an image).",
    )
    container_binds: list[str] = setting(  # noqa: RUF009 (setting() returns a default_factory field)
        [],
        "Extra host paths bound into the container (data, caches); the run directory, the directory "
        "submit ran in and submit.venv are bound anyway.",
    )
    warning_seconds: int = setting(
        300, "Seconds before the time limit at which SLURM signals the job to checkpoint.", ge=60
    )
    max_requeues: int = setting(10, "How often a job may requeue itself after checkpointing.", ge=0)
    hpo_workers: int | None = setting(None, "HPO worker steps (default: one per GPU, or per node).", ge=1)
    hpo_storage: str | None = setting(
        None,
        "Optuna storage URL for HPO jobs (default: a journal file in the run directory).",
        secret=True,
    )
    hpo_study: str = setting("mlpf", "Optuna study name for HPO jobs.")
    scale_points: list[int] = setting(  # noqa: RUF009 (setting() returns a default_factory field)
        [], "World sizes a scale-bench job measures (default: 1, 2, 4, ... up to all GPUs).", ge=1
    )
    registry: str | None = setting(None, "Jobs registry file (default: $XDG_STATE_HOME/mlpfctl/jobs.jsonl).")
    array: str | None = setting(
        None,
        "Array job: N tasks, or N%M with at most M running at once (hpo: the study is created at "
        "submission, each task runs hpo worker steps on its share of a node).",
    )
    after: list[str] = setting(  # noqa: RUF009 (setting() returns a default_factory field)
        [],
        "Start after these jobs: JOB or JOB:ok (it succeeded), JOB:any (it ended); a parent that "
        "failed cancels a JOB:ok dependant.",
    )
    sbatch_args: list[str] = setting(  # noqa: RUF009 (setting() returns a default_factory field)
        [],
        "Site options passed to sbatch (--reservation=R, --mail-type=END, --qos=Q, ...); the options "
        "the profile and mlpfctl control are refused with the reason.",
    )


@dataclass
class ModelSection:
    """The MLPF network. ``None`` means "take the value from the preset"."""

    type: str = setting(
        "attention",
        f"Model type: {_either(MODEL_TYPES)} (attention: the MLPF transformer).",
        choices=MODEL_TYPES,
    )
    preset: str = setting(
        "clic",
        "Hyperparameter preset: clic (the reference pyg-clic-v1, layer by layer: attention 3 layers x "
        "16 heads x 16, width 256, ELU, raw inputs, reference outputs; gnnlsh width 128, 2 layers, "
        "bins of 100), small (the CPU physics recipe: scaled inputs, link features, corrections) or "
        "tiny (tests, smoke runs; physics inputs and outputs like small).",
        choices=["clic", "small", "tiny"],
    )
    num_layers: int | None = setting(
        None, "Backbone layers (attention blocks or GNN-LSH layers).", ge=1, le=64
    )
    num_heads: int | None = setting(None, "Attention heads per layer (attention model).", ge=1, le=128)
    head_dim: int | None = setting(
        None, "Dimension per attention head; model width = heads x head_dim.", ge=1, le=512
    )
    width: int | None = setting(
        None,
        "Hidden width of the encoder, readout and head FFNs (and the GNN-LSH model width).",
        ge=1,
        le=8192,
    )
    activation: str | None = setting(
        None,
        "Activation: elu, relu, relu6, leakyrelu, gelu or silu.",
        choices=["elu", "relu", "relu6", "leakyrelu", "gelu", "silu"],
    )
    dropout: float | None = setting(None, "Dropout probability in FFNs and attention.", ge=0.0, lt=1.0)
    input_encoding: str = setting(
        "split",
        "Input encoding: split (one FFN slice per element type, the reference default) or joint.",
        choices=["split", "joint"],
    )
    bin_size: int | None = setting(None, "GNN-LSH: elements per LSH bin.", ge=2, le=4096)
    distance_dim: int | None = setting(
        None, "GNN-LSH: dimension of the learned distance embedding.", ge=2, le=1024
    )
    attention_mask: bool = setting(
        True,
        "Pass the key padding mask to scaled_dot_product_attention in the backbone (false = the "
        "reference behaviour: padded keys enter the softmax; the readouts are always masked).",
    )
    input_scaling: str | None = setting(
        None,
        "Input features: none (raw, the reference), log (sign(x) log(1 + |x|) on every feature but "
        "the element type: positions in mm and hit counts no longer swamp the encoder) or standard "
        "(log, then centred and scaled per element type and feature by the training data's median "
        "and IQR, so small-valued features such as the track curvature become visible).",
        choices=["none", "log", "standard"],
    )
    link_features: str | None = setting(
        None,
        "Track-cluster link features from the detector description (helix to the calorimeter front, "
        "nearest cluster, sum of linked track momenta, E/p, E - sum p and its significance): auto "
        "(when the dataset carries a detector description), on (error without one) or off.",
        choices=["auto", "on", "off"],
    )
    detector: str | None = setting(
        None,
        "Detector description for the link features: clic, cld, cms (documented defaults) or none; "
        "unset = the dataset's own (the manifest of generated data, the reader's default for real files).",
        choices=["clic", "cld", "cms", "none"],
    )
    outputs: str | None = setting(
        None,
        "Output parameterisation: reference (pt per element type, angles orig*a+b, energy from the "
        "predicted momentum plus a positive correction) or corrections (every regression is a "
        "correction of the element's own value starting at zero; a cluster linked to tracks starts "
        "from its energy excess over them).",
        choices=["reference", "corrections"],
    )
    track_momentum: str | None = setting(
        None,
        "Charged particles on a track: regress (learn a pT correction) or keep (the track pT as "
        "measured; needs outputs = corrections).",
        choices=["regress", "keep"],
    )
    head_features: bool | None = setting(
        None, "Feed the (scaled) input features to the output heads next to the readout embedding."
    )


@dataclass
class TrainSection:
    """The training loop, optimiser, schedule, loss weights and checkpoints."""

    steps: int = setting(1000, "Optimizer steps to train for (where training stops).", ge=1)
    schedule_steps: int | None = setting(
        None,
        "LR-schedule horizon in steps (None = steps); lets a run stop early and resume on the same schedule.",
        ge=1,
    )
    val_every: int = setting(100, "Validate every N steps (and at the last step).", ge=1)
    val_max_events: int | None = setting(
        None, "Validate on at most this many events (None = whole split).", ge=1
    )
    val_jets: bool = setting(
        True,
        "Validation also clusters jets (fastjet, ~1 ms per event) for jet_response_iqr/median, "
        "jet_match_fraction and the MET residual: physics metrics HPO can optimise.",
    )
    log_every: int = setting(10, "Write a training-loss record to metrics.jsonl every N steps.", ge=1)
    checkpoint_every: int = setting(100, "Write a checkpoint every N steps (and at the end).", ge=1)
    keep_checkpoints: int = setting(3, "Keep the newest K checkpoints.", ge=1)
    max_time: str | None = setting(
        None,
        "Wall-clock budget of the run (90s, 25m, 1.5h, 1h30m; a plain number is seconds): all ranks "
        "stop together before it is spent, with a final validation and checkpoint, and exit 0 "
        "(result.json: status time_limit). None = no budget.",
        check=parse_duration,
    )
    batch_events: int | None = setting(
        None,
        "Events per rank per step with pad-to-the-longest batches (None = length-bucketed batches of at "
        "most data.max_elements_per_batch padded elements).",
        ge=1,
    )
    grad_accum: int = setting(
        1,
        "Micro-batches whose gradients add up to one optimiser step (gradient accumulation): the "
        "global batch is ranks x per-rank batch x grad_accum, also for lr_scaling.",
        ge=1,
    )
    shuffle: bool = setting(
        True, "Shuffle the training events every epoch (off only for reproducibility checks)."
    )
    optimizer: str = setting("adamw", "Optimizer: adamw, lamb or sgd.", choices=["adamw", "lamb", "sgd"])
    lr: float = setting(
        5e-4, "Peak learning rate at the reference batch (before LR scaling).", gt=0.0, le=10.0
    )
    weight_decay: float = setting(0.01, "Decoupled weight decay (AdamW, LAMB) or L2 (SGD).", ge=0.0, le=1.0)
    momentum: float = setting(0.9, "SGD momentum.", ge=0.0, lt=1.0)
    schedule: str = setting(
        "cosine",
        "LR schedule: cosine (decays to min_lr_ratio x lr), onecycle (pct_start 0.3) or constant.",
        choices=["cosine", "onecycle", "constant"],
    )
    warmup_steps: int = setting(0, "Linear warm-up steps (cosine and constant schedules).", ge=0)
    min_lr_ratio: float = setting(
        0.1, "Cosine: final LR as a fraction of the peak (reference: 0.1).", ge=0.0, le=1.0
    )
    grad_clip: float = setting(1.0, "Clip the global gradient norm to this value (0 = off).", ge=0.0)
    lr_scaling: str = setting(
        "none",
        "Scale the LR with the global batch: none, linear or sqrt of (global batch / reference batch).",
        choices=["none", "linear", "sqrt"],
    )
    reference_batch: int | None = setting(
        None,
        "Reference batch for lr_scaling, in the per-rank batch unit (events with batch_events, else "
        "padded elements); None = one rank's batch, so the factor is the number of ranks.",
        ge=1,
    )
    amp: bool = setting(
        True,
        "Mixed precision in the backend's autocast dtype (CPUs: bf16 where they have AMX, else fp32); "
        "false = fp32 everywhere.",
    )
    compile: bool = setting(
        False,
        "torch.compile the model (dynamic shapes): faster steps after a one-off compile of minutes "
        "(once for training, once for validation); pays off in long runs (README, Training).",
    )
    loss_binary_weight: float = setting(10.0, "Weight of the particle/no-particle cross entropy.", ge=0.0)
    loss_cls_weight: float = setting(1.0, "Weight of the particle-class focal loss.", ge=0.0)
    loss_class_weights: list[float] | None = setting(  # noqa: RUF009 (setting() builds a default_factory)
        None,
        "Per-class weights of the focal loss, in the dataset's class order (CLIC: none, ch.had, n.had, "
        "gamma, e, mu); None = all 1.",
        ge=0.0,
    )
    focal_gamma: float = setting(2.0, "Focal-loss gamma of the class term (0 = cross entropy).", ge=0.0)
    loss_reg_weights: list[float] = setting(  # noqa: RUF009 (setting() builds a default_factory)
        [1.0, 0.01, 0.01, 0.01, 1.0],
        "Regression weights for log(pt ratio), eta, sin_phi, cos_phi, log(E ratio).",
        ge=0.0,
    )
    sqrt_pt_weighting: bool = setting(
        True, "Weight the pt and energy terms by sqrt(target pt) (reference #383)."
    )
    explode_factor: float = setting(
        1000.0, "Stop as diverged when the loss exceeds this factor times its early median.", gt=1.0
    )
    progress: bool = setting(True, "Show a progress bar on stderr (rank 0).")


@dataclass
class HpoSection:
    """Hyperparameter optimisation (``mlpfctl hpo``): study, search, scheduling and execution."""

    storage: str | None = setting(
        None,
        "Study storage URL: sqlite:///PATH.db (one node), journal:///PATH.log (Optuna journal file on a "
        "shared file system) or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB (many nodes). "
        "Default: sqlite:///<run.out_dir>/hpo/<study>.db.",
        secret=True,
    )
    study: str = setting("mlpf-hpo", "Study name inside the storage.")
    space: str = setting(
        "mlpf", "Search space: a built-in preset name (mlpf, tiny) or the path of a TOML search-space file."
    )
    sampler: str = setting(
        "tpe",
        f"Search algorithm: {_either(SAMPLERS)} (nsga2: multi-objective).",
        choices=SAMPLERS,
    )
    scheduler: str = setting(
        "asha",
        "Adaptive evaluation: none, median, sha, hyperband (Optuna pruners; stopping type), asha "
        "(promotion-type asynchronous successive halving, resumes checkpoints) or rasda (asha whose "
        "promoted trials get reduction_factor times more ranks).",
        choices=SCHEDULERS,
    )
    trials: int = setting(
        16, "Number of configurations to evaluate (ASHA promotions continue these, not new ones).", ge=1
    )
    workers: int = setting(1, "Local worker processes started by 'mlpfctl hpo run'.", ge=1)
    ranks_per_trial: int = setting(
        1, "Data-parallel ranks per trial (each trial a K-rank DDP run; devices split between workers).", ge=1
    )
    max_ranks_per_trial: int = setting(
        8, "rasda: upper bound on the ranks a promoted trial may grow to.", ge=1
    )
    min_resource: int | None = setting(
        None,
        "Bottom-rung budget r in training steps (a multiple of train.val_every). None = derived: the "
        "smallest multiple of train.val_every from which eta-fold rungs climb to max_resource "
        "(docs/hpo.md, Rungs).",
        ge=1,
    )
    max_resource: int | None = setting(
        None,
        "Top-rung budget R in training steps: the full training length of a surviving trial "
        "(None = train.steps).",
        ge=1,
    )
    reduction_factor: int = setting(3, "Successive-halving reduction factor eta (keep the top 1/eta).", ge=2)
    rung_spacing: str = setting(
        "geometric",
        "Rungs of asha/rasda: 'geometric' = spaced evenly in log from r to R, one rung fewer than "
        "eta-fold steps allow (R = 90, r = 1: 1, 3, 9, 29, 90); 'eta' = r * eta**k below R, then R "
        "(1, 3, 9, 27, 81, 90), the ladder Optuna's pruners use. With the quota promotion rule a "
        "configuration reaches R after eta**K bottom-rung results, not eta**(K+1) (docs/hpo.md, Rungs).",
        choices=["geometric", "eta"],
    )
    promotion_rule: str = setting(
        "quota",
        "When asha/rasda promote: 'quota' = a paused trial in the top 1/eta of its rung, while fewer "
        "than 1/eta of the rung were promoted (the budget per rung ASHA intends); 'eager' = whenever "
        "it is in the top 1/eta so far (the ASHA paper; with an improving sampler far more than "
        "1/eta climb and fewer configurations are tried; docs/hpo.md, Promotion rule).",
        choices=["quota", "eager"],
    )
    min_early_stopping_rate: int = setting(
        0, "Successive halving s: the bottom rung is min_resource * eta**s.", ge=0
    )
    seed: int = setting(0, "Sampler seed; worker i uses seed + 1000*i for model-based samplers.", ge=0)
    directions: list[str] = setting(  # noqa: RUF009 - setting() builds the field itself
        ["minimize"],
        "Optimisation direction per objective value (two or more for multi-objective, e.g. "
        "minimize,maximize for loss vs throughput).",
        choices=["minimize", "maximize"],
    )
    metrics: list[str] = setting(  # noqa: RUF009 - setting() builds the field itself
        ["val_loss"],
        "MLPF objective: the training metric behind each objective value: val_loss, events_per_s, or "
        "a validation physics metric such as jet_iqr (jet-response IQR, minimise), met_iqr, "
        "fake_pt_fraction, eff/n.had; e.g. metrics=val_loss,jet_iqr for the multi-objective trade-off.",
    )
    objective: str | None = setting(
        None,
        "Generic objective 'module:function' or 'path/file.py:function' (default: the MLPF training "
        "objective).",
    )
    on_divergence: str = setting(
        "prune",
        "What a diverging trial (NaN/exploding loss) becomes: prune or fail; the study continues either way.",
        choices=["prune", "fail"],
    )
    heartbeat_interval: float = setting(
        10.0, "Seconds between heartbeats of a running trial (RDB and journal storages).", gt=0.0
    )
    grace_period: float = setting(
        60.0,
        "A RUNNING trial without a heartbeat for this many seconds is stale: failed and retried.",
        gt=0.0,
    )
    max_retry: int = setting(
        2, "How often a stale (killed) trial is re-run with the same parameters; 0 = only fail it.", ge=0
    )
    poll_interval: float = setting(0.5, "Seconds an idle worker waits before looking for work again.", gt=0.0)
    timeout: float | None = setting(
        None, "Stop starting new trials after this many seconds (per worker); None = no limit.", gt=0.0
    )
    workdir: str | None = setting(
        None, "Directory for trial run directories and checkpoints (default: <run.out_dir>/hpo/<study>)."
    )


@dataclass
class Config:
    """The whole configuration. Each command reads the sections it needs."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
    submit: SubmitSection = field(default_factory=SubmitSection)
    hpo: HpoSection = field(default_factory=HpoSection)
