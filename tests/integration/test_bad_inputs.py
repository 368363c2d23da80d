"""Bad input across every command: exit 2, one ``error:`` and one ``hint:`` line, no traceback,
nothing on stdout, and not one file created, changed or removed.

Each case runs the real CLI in this process (``mlpfctl.cli.app.run``), the way ``mlpfctl`` runs it
minus the interpreter start-up, against a sandbox with a real generated dataset, a real trained
run, crafted files (a checkpoint and a pickle that would call ``os.system``, damaged and foreign
files) and a read-only place (a read-only tmpfs mount: permission bits do not stop root). The
sandbox and the home directory are compared, file by file, before and after each case.
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import io
import os
import pickle
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.xdist_group("bad_inputs")]

FAKE = Path(__file__).parent / "hpo" / "hpo_fake_objectives.py"
TINY = ["--preset", "tiny", "--set", "train.progress=false"]


class Shell:
    """Unpickling this runs a shell command: what an attacker puts into a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Sandbox:
    root: Path
    has_data: bool
    read_only: str | None  # how the read-only place was made, or None when it could not be
    marker: Path

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.root / "home"),
            "XDG_STATE_HOME": str(self.root / "home" / "state"),
            "XDG_CONFIG_HOME": str(self.root / "home" / "config"),
            "MLPFCTL_HPO_NO_DEVICE_PROBE": "1",
        }


def _cli(*argv: str) -> tuple[int, str, str]:
    from mlpfctl.cli.app import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(argv))
    return code, out.getvalue(), err.getvalue()


def _forge(path: Path, obj: Any) -> None:
    """A checkpoint holding ``obj`` with a valid checksum (anyone can compute one)."""
    import torch

    from mlpfctl.train import checkpoint as ckpt

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    path.write_bytes(ckpt.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def _newest_checkpoint(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step-*.ckpt"))[-1]


def _make_read_only(place: Path, fill: Any) -> Iterator[str | None]:
    """``fill(place)``, then make ``place`` read-only: a read-only tmpfs, else chattr +i."""
    place.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(place)], capture_output=True, check=False
        ).returncode
        == 0
        if shutil.which("mount") and os.geteuid() == 0
        else False
    )
    fill(place)
    how: str | None = None
    if mounted:
        remount = ["mount", "-o", "remount,ro", str(place)]
        if subprocess.run(remount, capture_output=True, check=False).returncode == 0:
            how = "read-only tmpfs"
    elif shutil.which("chattr"):
        targets = [place, *[p for p in place.rglob("*") if p.is_dir()]]
        if (
            subprocess.run(["chattr", "+i", *map(str, targets)], capture_output=True, check=False).returncode
            == 0
        ):
            how = "chattr +i"
    if how is not None and os.access(place, os.W_OK):
        how = None  # the system ignored it
    try:
        yield how
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(place)], capture_output=True, check=False)
        elif how == "chattr +i":
            targets = [place, *[p for p in place.rglob("*") if p.is_dir()]]
            subprocess.run(["chattr", "-i", *map(str, targets)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("bad-inputs")
    caches = tmp_path_factory.mktemp("bad-inputs-caches")
    saved = {k: os.environ.get(k) for k in ("HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME")}
    os.environ.update(
        HOME=str(root / "home"), MPLCONFIGDIR=str(caches / "mpl"), XDG_CACHE_HOME=str(caches / "cache")
    )
    for name in ("home", "cwd", "empty", "home/config"):
        (root / name).mkdir(parents=True, exist_ok=True)
    marker = root / "PWNED"
    (root / "file.txt").write_text("just text\n")
    (root / "bin.bin").write_bytes(bytes(range(256)) * 16)
    (root / "binary.toml").write_bytes(b"\xff\xfe\x00\x01 binary")
    (root / "bad.toml").write_text("[train\nsteps = \n")
    (root / "wrongtype.toml").write_text('[train]\nsteps = "many"\n')
    (root / "huge.toml").write_text("[train]\nsteps = 1e23\n")
    (root / "unknown.toml").write_text("[train]\nstepz = 3\n")
    (root / "notable.toml").write_text("train = 3\n")
    (root / "notsqlite.db").write_text("this is not a database\n")
    (root / "bad.pkl.bz2").write_bytes(b"not bz2 at all")
    with (root / "evil.pkl").open("wb") as handle:
        pickle.dump({"X": [Shell(marker)], "ygen": [], "ycand": []}, handle)
    (root / "evil.pkl.bz2").write_bytes(bz2.compress((root / "evil.pkl").read_bytes()))
    _forge(root / "evil.ckpt", {"step": 1, "model": {}, "payload": Shell(marker)})
    bad_profiles = root / "badcfg" / "mlpfctl" / "systems"
    bad_profiles.mkdir(parents=True)
    (bad_profiles / "broken.toml").write_bytes(b"\xff\xfe not toml")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2], "b": [3.0, 4.0]}), root / "foreign.parquet")
    env = {"MLPFCTL_HPO_NO_DEVICE_PROBE": "1"}
    os.environ.update(env)
    code, _, err = _cli(
        "hpo", "create", "--objective", f"{FAKE}:curve", "--space", "quadratic", "--trials", "2",
        "--storage", f"sqlite:///{root / 'study.db'}", "--study", "s",
        "--set", f"hpo.workdir={root / 'work'}",
    )  # fmt: skip
    assert code == 0, err
    has_data = False
    try:
        import pythia8mc  # noqa: F401

        has_data = True
    except ImportError:
        pass
    if has_data:
        data, run = root / "data", root / "run"
        code, _, err = _cli("data", "generate", "--events", "60", "--workers", "1", "--out", str(data))
        assert code == 0, err
        code, _, err = _cli(
            "train", "--data", str(data), "--steps", "2", "--run-dir", str(run), *TINY,
            "--set", "train.val_every=2", "--set", "train.checkpoint_every=2",
        )  # fmt: skip
        assert code == 0, err
        shard = next(data.glob("*.parquet"))
        (root / "trunc.parquet").write_bytes(shard.read_bytes()[:200])
        import torch

        for name in ("evil_run", "wrong_run", "damaged_run", "lost_run"):
            shutil.copytree(run, root / name)
        _forge(_newest_checkpoint(root / "evil_run"), {"step": 2, "model": {}, "x": Shell(marker)})
        from mlpfctl.train import checkpoint as ckpt

        _path, state = ckpt.load_latest(run)
        state["model"] = {k: torch.zeros(3, 3) for k in state["model"]}  # valid checksum, wrong shapes
        _forge(_newest_checkpoint(root / "wrong_run"), state)
        for path in (root / "damaged_run" / "checkpoints").glob("*.ckpt"):
            blob = bytearray(path.read_bytes())
            blob[-20] ^= 0xFF
            path.write_bytes(bytes(blob))
        lost = root / "lost_run"
        (lost / "config.toml").write_text(
            (lost / "config.toml").read_text().replace(str(data), str(root / "gone"))
        )
        (lost / "run.json").write_text('{"format": 1, "data": {"path": "/nowhere", "relative": "../gone"}}')

    def fill(place: Path) -> None:
        (place / "dir").mkdir()
        if has_data:
            shutil.copytree(root / "run", place / "run")

    holder = _make_read_only(root / "ro", fill)
    how = next(holder)
    try:
        yield Sandbox(root, has_data, how, marker)
    finally:
        with contextlib.suppress(StopIteration):
            next(holder)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# (id, argv with {placeholders}, extra environment) -- {R} is the sandbox root.
Case = tuple[str, str, dict[str, str]]
NO_ENV: dict[str, str] = {}
D = {"needs": "data"}  # the case needs the generated dataset and the trained run
# Shorthands inside the templates (expanded before the placeholders).
MACROS = {
    "{Q}": "--objective {FAKE}:curve --space quadratic",
    "{ST}": "--storage sqlite:///{R}/study.db --study s",
    "{NEW}": "--storage sqlite:///{R}/cwd/x.db",
}
CASES: list[Case] = [
    # --- root and devices
    ("root-unknown-command", "devicez", NO_ENV),
    ("root-unknown-option", "--nosuch", NO_ENV),
    ("devices-backend", "devices --backend nonsense", NO_ENV),
    ("devices-backend-empty", "devices --backend ''", NO_ENV),
    ("devices-backend-shell", "devices --backend 'cuda; rm -rf /'", NO_ENV),
    ("devices-backend-unicode", "devices --backend ünïcødé", NO_ENV),
    ("devices-option-typo", "devices --jsn", NO_ENV),
    ("devices-extra-arg", "devices cpu", NO_ENV),
    # --- config show
    ("config-missing", "config show --config {R}/missing.toml", NO_ENV),
    ("config-dir", "config show --config {R}/empty", NO_ENV),
    ("config-notdir", "config show --config {R}/file.txt/x.toml", NO_ENV),
    ("config-binary", "config show --config {R}/binary.toml", NO_ENV),
    ("config-syntax", "config show --config {R}/bad.toml", NO_ENV),
    ("config-empty-path", "config show --config ''", NO_ENV),
    ("config-wrong-type", "config show --config {R}/wrongtype.toml", NO_ENV),
    ("config-huge-float-int", "config show --config {R}/huge.toml", NO_ENV),
    ("config-unknown-key", "config show --config {R}/unknown.toml", NO_ENV),
    ("config-section-not-table", "config show --config {R}/notable.toml", NO_ENV),
    ("config-set-negative", "config show --set train.steps=-5", NO_ENV),
    ("config-set-1e23", "config show --set train.steps=1e23", NO_ENV),
    ("config-set-int-overflow", "config show --set train.steps=99999999999999999999999", NO_ENV),
    ("config-set-nan", "config show --set train.lr=nan", NO_ENV),
    ("config-set-inf", "config show --set train.lr=inf", NO_ENV),
    ("config-set-word", "config show --set train.lr=fast", NO_ENV),
    ("config-set-no-equals", "config show --set train.lr", NO_ENV),
    ("config-set-no-key", "config show --set =3", NO_ENV),
    ("config-set-unknown", "config show --set train.nosuch=1", NO_ENV),
    ("config-set-unknown-section", "config show --set trian.steps=1", NO_ENV),
    ("config-set-empty-study", "config show --set hpo.study=", NO_ENV),
    ("config-set-blank-path", "config show --set 'data.path=  '", NO_ENV),
    ("config-set-control-char", "config show --set 'run.out_dir=a\x1bb'", NO_ENV),
    ("config-set-choice", "config show --set model.type=ünïcødé", NO_ENV),
    ("config-set-bool", "config show --set train.amp=maybe", NO_ENV),
    ("config-set-list", "config show --set train.loss_reg_weights=a,b", NO_ENV),
    ("config-set-seed-negative", "config show --set run.seed=-1", NO_ENV),
    ("config-env-word", "config show", {"MLPFCTL_TRAIN__STEPS": "many"}),
    ("config-env-unknown", "config show", {"MLPFCTL_TRAIN__NOSUCH": "1"}),
    ("config-env-nan", "config show", {"MLPFCTL_TRAIN__LR": "nan"}),
    ("config-no-subcommand-option", "config show --sources=yes", NO_ENV),
    # --- data generate
    ("generate-out-empty", "data generate --out '' --events 2", NO_ENV),
    ("generate-out-file", "data generate --out {R}/file.txt --events 2", NO_ENV),
    ("generate-out-under-file", "data generate --out {R}/file.txt/sub --events 2", NO_ENV),
    ("generate-out-read-only", "data generate --out {RO}/new --events 2", NO_ENV),
    ("generate-out-read-only-existing", "data generate --out {RO}/dir --events 2", NO_ENV),
    ("generate-events-zero", "data generate --events 0 --out {R}/cwd/g", NO_ENV),
    ("generate-events-negative", "data generate --events -5 --out {R}/cwd/g", NO_ENV),
    ("generate-events-word", "data generate --events many --out {R}/cwd/g", NO_ENV),
    ("generate-events-float", "data generate --events 1e23 --out {R}/cwd/g", NO_ENV),
    ("generate-events-huge", "data generate --events 99999999999999999999999 --out {R}/cwd/g", NO_ENV),
    ("generate-process", "data generate --process nosuch --out {R}/cwd/g", NO_ENV),
    ("generate-process-empty", "data generate --process '' --out {R}/cwd/g", NO_ENV),
    ("generate-per-shard-zero", "data generate --events-per-shard 0 --out {R}/cwd/g", NO_ENV),
    ("generate-workers-negative", "data generate --workers -1 --out {R}/cwd/g", NO_ENV),
    ("generate-pileup-negative", "data generate --pileup-mu -1 --out {R}/cwd/g", NO_ENV),
    ("generate-pileup-nan", "data generate --pileup-mu nan --out {R}/cwd/g", NO_ENV),
    ("generate-seed-negative", "data generate --seed -1 --out {R}/cwd/g", NO_ENV),
    ("generate-seed-word", "data generate --seed x --out {R}/cwd/g", NO_ENV),
    ("generate-config-binary", "data generate --config {R}/binary.toml", NO_ENV),
    ("generate-set-events-zero", "data generate --set generate.events=0 --out {R}/cwd/g", NO_ENV),
    ("generate-default-out-read-only", "data generate --events 2", {"MLPFCTL_DATA__PATH": "{RO}/d"}),
    # --- data inspect
    ("inspect-missing", "data inspect {R}/missing", NO_ENV),
    ("inspect-empty-path", "data inspect ''", NO_ENV),
    ("inspect-text-file", "data inspect {R}/file.txt", NO_ENV),
    ("inspect-binary-file", "data inspect {R}/bin.bin", NO_ENV),
    ("inspect-empty-dir", "data inspect {R}/empty", NO_ENV),
    ("inspect-under-file", "data inspect {R}/file.txt/x", NO_ENV),
    ("inspect-foreign-parquet", "data inspect {R}/foreign.parquet", NO_ENV),
    ("inspect-truncated-parquet", "data inspect {R}/trunc.parquet", D),
    ("inspect-not-bz2", "data inspect {R}/bad.pkl.bz2", NO_ENV),
    ("inspect-evil-pickle", "data inspect {R}/evil.pkl --format delphes", NO_ENV),
    ("inspect-evil-pickle-bz2", "data inspect {R}/evil.pkl.bz2", NO_ENV),
    ("inspect-format", "data inspect {R}/foreign.parquet --format nosuch", NO_ENV),
    ("inspect-format-mismatch", "data inspect {DATA} --format delphes", D),
    ("inspect-config-dir", "data inspect {R}/run/config.toml", D),
    # --- train
    ("train-existing-run", "train --data {DATA} --steps 1 --run-dir {RUN}", D),
    ("train-run-dir-file", "train --data {DATA} --steps 1 --run-dir {R}/file.txt", D),
    ("train-run-dir-under-file", "train --data {DATA} --steps 1 --run-dir {R}/file.txt/r", D),
    ("train-run-dir-read-only", "train --data {DATA} --steps 1 --run-dir {RO}/r", D),
    ("train-run-dir-empty", "train --data {DATA} --steps 1 --run-dir ''", D),
    ("train-data-missing", "train --data {R}/missing --steps 1", NO_ENV),
    ("train-data-empty", "train --data '' --steps 1", NO_ENV),
    ("train-data-text-file", "train --data {R}/file.txt --steps 1 --run-dir {R}/cwd/r", NO_ENV),
    ("train-data-binary-file", "train --data {R}/bin.bin --steps 1 --run-dir {R}/cwd/r", NO_ENV),
    ("train-data-empty-dir", "train --data {R}/empty --steps 1 --run-dir {R}/cwd/r", NO_ENV),
    ("train-data-foreign", "train --data {R}/foreign.parquet --steps 1 --run-dir {R}/cwd/r", NO_ENV),
    ("train-data-evil-pickle", "train --data {R}/evil.pkl --steps 1 --set data.format=delphes", NO_ENV),
    ("train-steps-zero", "train --data {DATA} --steps 0", D),
    ("train-steps-negative", "train --data {DATA} --steps -1", D),
    ("train-steps-word", "train --data {DATA} --steps ten", D),
    ("train-steps-1e23", "train --data {DATA} --steps 1e23", D),
    ("train-steps-huge", "train --data {DATA} --steps 99999999999999999999999", D),
    ("train-nproc-zero", "train --data {DATA} --nproc 0", D),
    ("train-nproc-negative", "train --data {DATA} --nproc -3", D),
    ("train-backend", "train --data {DATA} --backend nonsense", D),
    ("train-model", "train --data {DATA} --model nonsense", D),
    ("train-preset", "train --data {DATA} --preset nonsense", D),
    ("train-lr-negative", "train --data {DATA} --lr -1", D),
    ("train-lr-nan", "train --data {DATA} --lr nan", D),
    ("train-resume-missing", "train --resume {R}/missing", NO_ENV),
    ("train-resume-empty-dir", "train --resume {R}/empty", NO_ENV),
    ("train-resume-empty-path", "train --resume ''", NO_ENV),
    ("train-resume-text-file", "train --data {DATA} --resume {R}/file.txt --run-dir {R}/cwd/r", D),
    ("train-resume-evil-file", "train --data {DATA} --resume {R}/evil.ckpt --run-dir {R}/cwd/r", D),
    ("train-resume-evil-run", "train --resume {R}/evil_run", D),
    ("train-resume-wrong-contents", "train --resume {R}/wrong_run", D),
    ("train-resume-damaged", "train --resume {R}/damaged_run", D),
    ("train-resume-other-model", "train --resume {RUN} --preset clic", D),
    ("train-resume-lost-data", "train --resume {R}/lost_run", D),
    ("train-resume-read-only", "train --resume {RO}/run", D),
    ("train-config-binary", "train --config {R}/binary.toml", NO_ENV),
    ("train-set-steps-1e23", "train --data {DATA} --set train.steps=1e23", D),
    (
        "train-set-reg-weights",
        "train --data {DATA} --steps 1 --set train.loss_reg_weights=1,2 --run-dir {R}/cwd/r",
        D,
    ),
    ("train-set-empty-data", "train --set data.path=", NO_ENV),
    ("train-dry-run-existing", "train --data {DATA} --run-dir {RUN} --dry-run", D),
    # --- evaluate
    ("evaluate-missing", "evaluate {R}/missing", NO_ENV),
    ("evaluate-empty-path", "evaluate ''", NO_ENV),
    ("evaluate-file", "evaluate {R}/file.txt", NO_ENV),
    ("evaluate-not-a-run", "evaluate {R}/empty", NO_ENV),
    ("evaluate-checkpoint-missing", "evaluate {RUN} --checkpoint {R}/missing.ckpt", D),
    ("evaluate-checkpoint-text", "evaluate {RUN} --checkpoint {R}/file.txt", D),
    ("evaluate-checkpoint-dir", "evaluate {RUN} --checkpoint {R}/empty", D),
    ("evaluate-checkpoint-evil", "evaluate {RUN} --checkpoint {R}/evil.ckpt", D),
    ("evaluate-evil-run", "evaluate {R}/evil_run", D),
    ("evaluate-wrong-contents", "evaluate {R}/wrong_run", D),
    ("evaluate-damaged", "evaluate {R}/damaged_run", D),
    ("evaluate-lost-data", "evaluate {R}/lost_run --no-plots", D),
    ("evaluate-read-only", "evaluate {RO}/run", D),
    ("evaluate-events-zero", "evaluate {RUN} --events 0", D),
    ("evaluate-events-negative", "evaluate {RUN} --events -1", D),
    ("evaluate-data-missing", "evaluate {RUN} --data {R}/missing --no-plots", D),
    ("evaluate-data-text", "evaluate {RUN} --data {R}/file.txt --no-plots", D),
    # --- export
    ("export-missing", "export {R}/missing", NO_ENV),
    ("export-empty-path", "export ''", NO_ENV),
    ("export-file", "export {R}/file.txt", NO_ENV),
    ("export-not-a-run", "export {R}/empty", NO_ENV),
    ("export-out-dir", "export {RUN} --out {R}/empty", D),
    ("export-out-under-file", "export {RUN} --out {R}/file.txt/m.onnx", D),
    ("export-out-read-only", "export {RUN} --out {RO}/m.onnx", D),
    ("export-out-empty", "export {RUN} --out ''", D),
    ("export-read-only-run", "export {RO}/run", D),
    ("export-events-zero", "export {RUN} --events 0", D),
    ("export-atol-negative", "export {RUN} --atol -1", D),
    ("export-atol-nan", "export {RUN} --atol nan --out {R}/cwd/m.onnx", D),
    ("export-atol-word", "export {RUN} --atol small", D),
    ("export-checkpoint-evil", "export {RUN} --checkpoint {R}/evil.ckpt --out {R}/cwd/m.onnx", D),
    ("export-evil-run", "export {R}/evil_run --out {R}/cwd/m.onnx", D),
    ("export-wrong-contents", "export {R}/wrong_run --out {R}/cwd/m.onnx", D),
    ("export-lost-data", "export {R}/lost_run --out {R}/cwd/m.onnx", D),
    # --- hpo run / create
    ("hpo-run-sqlite-missing-dir", "hpo run --storage sqlite:////nonexistent-mlpf/dir/x.db", NO_ENV),
    ("hpo-run-journal-missing-dir", "hpo run --storage journal:////nonexistent-mlpf/j.log", NO_ENV),
    ("hpo-run-sqlite-not-db", "hpo run {Q} --storage sqlite:///{R}/notsqlite.db", NO_ENV),
    ("hpo-run-sqlite-dir", "hpo run {Q} --storage sqlite:///{R}/empty", NO_ENV),
    ("hpo-run-storage-read-only", "hpo run {Q} --storage sqlite:///{RO}/x.db", NO_ENV),
    ("hpo-run-storage-scheme", "hpo run --storage mysql://u:hunter2@h/db", NO_ENV),
    ("hpo-run-storage-shell", "hpo run --storage '$(touch {R}/PWNED)'", NO_ENV),
    ("hpo-run-study-empty", "hpo run --study '' {Q}", NO_ENV),
    ("hpo-run-study-control", "hpo run --study 'a\nb' {Q}", NO_ENV),
    ("hpo-run-trials-zero", "hpo run --trials 0 {Q}", NO_ENV),
    ("hpo-run-trials-word", "hpo run --trials many", NO_ENV),
    ("hpo-run-trials-huge", "hpo run --trials 99999999999999999999999", NO_ENV),
    ("hpo-run-workers-zero", "hpo run --workers 0 {Q}", NO_ENV),
    ("hpo-run-ranks-zero", "hpo run --ranks-per-trial 0 {Q}", NO_ENV),
    ("hpo-run-sampler", "hpo run --sampler hyperopt", NO_ENV),
    ("hpo-run-scheduler", "hpo run --scheduler nosuch", NO_ENV),
    ("hpo-run-space-name", "hpo run --space nosuch", NO_ENV),
    ("hpo-run-space-text", "hpo run --space {R}/file.txt", NO_ENV),
    ("hpo-run-space-binary", "hpo run --space {R}/binary.toml", NO_ENV),
    ("hpo-run-objective-module", "hpo run --objective no_such_module_xyz:f", NO_ENV),
    ("hpo-run-objective-file", "hpo run --objective {R}/file.txt:f", NO_ENV),
    ("hpo-run-objective-function", "hpo run --objective {FAKE}:nosuch --space quadratic", NO_ENV),
    ("hpo-run-eta-one", "hpo run --eta 1 {Q}", NO_ENV),
    ("hpo-run-resources", "hpo run --min-resource 100 --max-resource 10 {Q}", NO_ENV),
    ("hpo-run-report-file", "hpo run --report {R}/file.txt {Q} {NEW}", NO_ENV),
    ("hpo-run-report-read-only", "hpo run --report {RO}/rep {Q} {NEW}", NO_ENV),
    ("hpo-run-no-dataset", "hpo run {NEW}", NO_ENV),
    ("hpo-run-workdir-file", "hpo run {Q} {NEW} --set hpo.workdir={R}/file.txt", NO_ENV),
    ("hpo-run-existing-study", "hpo run {Q} {ST}", NO_ENV),
    ("hpo-create-missing-dir", "hpo create --storage sqlite:////nonexistent-mlpf/dir/x.db", NO_ENV),
    # --- hpo worker / status / report
    ("hpo-worker-journal-missing", "hpo worker --storage journal:////nonexistent-mlpf/j.log", NO_ENV),
    ("hpo-worker-journal-missing-file", "hpo worker --storage journal:///{R}/cwd/j.log", NO_ENV),
    ("hpo-worker-sqlite-missing", "hpo worker {NEW}", NO_ENV),
    ("hpo-worker-sqlite-not-db", "hpo worker --storage sqlite:///{R}/notsqlite.db", NO_ENV),
    ("hpo-worker-no-study", "hpo worker --storage sqlite:///{R}/study.db --study nosuch", NO_ENV),
    ("hpo-worker-index-word", "hpo worker --worker-index x", NO_ENV),
    ("hpo-worker-max-jobs-zero", "hpo worker --max-jobs 0 {ST}", NO_ENV),
    ("hpo-status-missing", "hpo status {NEW}", NO_ENV),
    ("hpo-status-not-db", "hpo status --storage sqlite:///{R}/notsqlite.db", NO_ENV),
    ("hpo-status-journal-text", "hpo status --storage journal:///{R}/file.txt", NO_ENV),
    ("hpo-status-no-study", "hpo status --storage sqlite:///{R}/study.db --study nosuch", NO_ENV),
    ("hpo-status-top-word", "hpo status --top many", NO_ENV),
    ("hpo-status-top-zero", "hpo status --top 0 {ST}", NO_ENV),
    ("hpo-status-scheme", "hpo status --storage 'mysql://u:hunter2@h/db'", NO_ENV),
    ("hpo-report-out-file", "hpo report {ST} --out {R}/file.txt", NO_ENV),
    ("hpo-report-out-read-only", "hpo report {ST} --out {RO}/rep", NO_ENV),
    ("hpo-report-out-empty", "hpo report {ST} --out ''", NO_ENV),
    ("hpo-report-missing", "hpo report {NEW}", NO_ENV),
    ("hpo-report-no-study", "hpo report --storage sqlite:///{R}/study.db --study nosuch", NO_ENV),
    # --- scale-bench
    ("bench-train-out-file", "scale-bench train --out {R}/file.txt --dry-run", NO_ENV),
    ("bench-train-out-read-only", "scale-bench train --out {RO}/b", NO_ENV),
    ("bench-train-out-empty", "scale-bench train --out ''", NO_ENV),
    ("bench-train-world-word", "scale-bench train --world-sizes a,b --out {R}/cwd/b", NO_ENV),
    ("bench-train-world-zero", "scale-bench train --world-sizes 0 --out {R}/cwd/b", NO_ENV),
    ("bench-train-world-empty", "scale-bench train --world-sizes '' --out {R}/cwd/b", NO_ENV),
    ("bench-train-mode", "scale-bench train --mode sideways --out {R}/cwd/b", NO_ENV),
    ("bench-train-steps-zero", "scale-bench train --steps 0 --out {R}/cwd/b", NO_ENV),
    ("bench-train-warmup-negative", "scale-bench train --warmup -1 --out {R}/cwd/b", NO_ENV),
    ("bench-train-config-binary", "scale-bench train --config {R}/binary.toml --out {R}/cwd/b", NO_ENV),
    ("bench-law-too-few", "scale-bench scaling-law --train-events 1,2 --out {R}/cwd/b", NO_ENV),
    ("bench-law-word", "scale-bench scaling-law --train-events x --out {R}/cwd/b", NO_ENV),
    ("bench-law-out-file", "scale-bench scaling-law --train-events 1,2,3,4 --out {R}/file.txt", NO_ENV),
    (
        "bench-law-repeats-zero",
        "scale-bench scaling-law --train-events 1,2,3,4 --repeats 0 --out {R}/cwd/b",
        NO_ENV,
    ),
    ("bench-law-missing", "scale-bench scaling-law --out {R}/cwd/b", NO_ENV),
    ("bench-hpo-workers-word", "scale-bench hpo --workers x --out {R}/cwd/b", NO_ENV),
    ("bench-hpo-workers-zero", "scale-bench hpo --workers 0 --out {R}/cwd/b", NO_ENV),
    ("bench-hpo-banned", "scale-bench hpo --out {R}/cwd/b -- --storage sqlite:///x.db", NO_ENV),
    ("bench-hpo-out-file", "scale-bench hpo --out {R}/file.txt", NO_ENV),
    ("bench-report-missing", "scale-bench report {R}/missing", NO_ENV),
    ("bench-report-file", "scale-bench report {R}/file.txt", NO_ENV),
    ("bench-report-empty-dir", "scale-bench report {R}/empty", NO_ENV),
    ("bench-report-empty-path", "scale-bench report ''", NO_ENV),
    # --- submit
    ("submit-no-job", "submit", NO_ENV),
    ("submit-kind", "submit --dry-run -- nosuchkind", NO_ENV),
    ("submit-system", "submit --dry-run --system nosuch -- train", NO_ENV),
    ("submit-system-path", "submit --dry-run --system ../../etc/passwd -- train", NO_ENV),
    ("submit-nodes-zero", "submit --dry-run --nodes 0 -- train", NO_ENV),
    ("submit-nodes-negative", "submit --dry-run --nodes -1 -- train", NO_ENV),
    ("submit-nodes-word", "submit --dry-run --nodes two -- train", NO_ENV),
    ("submit-time-word", "submit --dry-run --time soon -- train", NO_ENV),
    ("submit-time-empty", "submit --dry-run --time '' -- train", NO_ENV),
    ("submit-gpus-negative", "submit --dry-run --gpus-per-node -1 -- train", NO_ENV),
    ("submit-cpus-zero", "submit --dry-run --cpus-per-task 0 -- train", NO_ENV),
    ("submit-partition", "submit --dry-run --partition nosuch -- train", NO_ENV),
    ("submit-launcher", "submit --dry-run --launcher mpirun -- train", NO_ENV),
    ("submit-job-name-newline", "submit --dry-run --job-name 'a\nrm -rf /' -- train", NO_ENV),
    ("submit-account-newline", "submit --dry-run --account 'x\n#SBATCH --uid=0' -- train", NO_ENV),
    ("submit-config-binary", "submit --dry-run --config {R}/binary.toml -- train", NO_ENV),
    ("submit-job-bad-set", "submit --dry-run -- train --set train.steps=-1", NO_ENV),
    ("submit-job-bad-option", "submit --dry-run -- train --nosuch", NO_ENV),
    ("submit-job-hpo-sampler", "submit --dry-run -- hpo --sampler hyperopt", NO_ENV),
    # --- systems
    ("systems-show-missing", "systems show nosuch", NO_ENV),
    ("systems-show-empty", "systems show ''", NO_ENV),
    ("systems-show-path", "systems show ../../etc/passwd", NO_ENV),
    ("systems-show-script", "systems show local --script nosuch", NO_ENV),
    ("systems-option-typo", "systems --jsn", NO_ENV),
    ("systems-broken-user-profile", "systems", {"XDG_CONFIG_HOME": "{R}/badcfg"}),
    # --- jobs, logs, cancel
    ("jobs-limit-zero", "jobs --limit 0", NO_ENV),
    ("jobs-limit-negative", "jobs --limit -1", NO_ENV),
    ("jobs-limit-word", "jobs --limit all", NO_ENV),
    ("jobs-registry-dir", "jobs --set submit.registry={R}/empty", NO_ENV),
    ("jobs-registry-binary", "jobs --set submit.registry={R}/bin.bin", NO_ENV),
    ("logs-word", "logs abc", NO_ENV),
    ("logs-empty", "logs ''", NO_ENV),
    ("logs-unicode-digits", "logs ١٢٣", NO_ENV),
    ("logs-shell", "logs '1; touch {R}/PWNED'", NO_ENV),
    ("cancel-word", "cancel abc", NO_ENV),
    ("cancel-empty", "cancel ''", NO_ENV),
    ("cancel-negative", "cancel -- -1", NO_ENV),
    ("cancel-shell", "cancel '1;touch {R}/PWNED'", NO_ENV),
    ("cancel-unicode-digits", "cancel ١٢٣", NO_ENV),
]


def _snapshot(*roots: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``roots``: kind, size and a content hash (mtimes may not change either)."""
    entries: dict[str, tuple[str, int, str]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if path.is_symlink():
                entries[str(path)] = ("link", 0, os.readlink(path))
            elif path.is_dir():
                entries[str(path)] = ("dir", 0, "")
            else:
                st = path.stat()
                digest = hashlib.sha1(path.read_bytes()).hexdigest() if st.st_size < 2**22 else ""
                entries[str(path)] = ("file", st.st_size, f"{digest}:{st.st_mtime_ns}")
    return entries


def _argv(template: str, box: Sandbox) -> list[str]:
    import shlex

    values = {
        "R": str(box.root),
        "RO": str(box.root / "ro"),
        "RUN": str(box.root / "run"),
        "DATA": str(box.root / "data"),
        "FAKE": str(FAKE),
    }
    for macro, text in MACROS.items():
        template = template.replace(macro, text)
    return [word.format(**values) for word in shlex.split(template)]


def test_there_are_enough_cases_across_all_commands() -> None:
    assert len(CASES) >= 150
    assert len({case[0] for case in CASES}) == len(CASES)
    heads = {case[1].split()[0] for case in CASES} | {" ".join(case[1].split()[:2]) for case in CASES}
    for command in (
        "devices", "config show", "data generate", "data inspect", "train", "evaluate", "export",
        "hpo run", "hpo worker", "hpo status", "hpo report", "scale-bench train", "scale-bench scaling-law",
        "scale-bench hpo", "scale-bench report", "submit", "systems", "jobs", "logs", "cancel",
    ):  # fmt: skip
        assert command in heads, command


@pytest.mark.parametrize(("name", "template", "env"), CASES, ids=[case[0] for case in CASES])
def test_bad_input(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, name: str, template: str, env: dict[str, str]
) -> None:
    env = dict(env)
    needs = env.pop("needs", "")
    if (needs == "data" or "{RUN}" in template or "{DATA}" in template) and not sandbox.has_data:
        pytest.skip("needs a generated dataset and run: the physics extra (pythia8mc) is not installed")
    if ("{RO}" in template or "{RO}" in str(env.values())) and sandbox.read_only is None:
        pytest.skip("cannot make a read-only place here (no tmpfs mount, no chattr +i)")
    for key, value in {**sandbox.env(), **env}.items():
        monkeypatch.setenv(key, value.format(R=sandbox.root, RO=sandbox.root / "ro"))
    monkeypatch.chdir(sandbox.root / "cwd")
    argv = _argv(template, sandbox)
    watched = (sandbox.root, Path("/nonexistent-mlpf"))
    before = _snapshot(*(p for p in watched if p.exists()))
    code, out, err = _cli(*argv)
    after = _snapshot(*(p for p in watched if p.exists()))
    # A warning about the surroundings may come first (submit without a reachable slurmctld falls
    # back to the profile's partitions); the answer to the bad input itself is error + hint.
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert "Traceback" not in err, err
    assert code == 2, (code, err, out[-500:])
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), err
    assert out == "", out[-500:]
    assert not sandbox.marker.exists(), "a crafted file ran code"
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files changed: {changed}"
    if "hunter2" in template:
        assert "hunter2" not in err
