"""The reference MLPF (jpata/particleflow, model ``pyg-clic-v1``) from a user's checkout, for timing.

Nothing of the reference is copied into this project: ``load_reference(path)`` puts the checkout
on ``sys.path`` and imports its own model (``mlpf/model/mlpf.py``), configuration
(``MLPFConfig.from_spec`` on the checkout's ``particleflow_spec.yaml``), loss (``mlpf_loss``) and
the prediction/target unpacking its ``model_step`` uses, then runs them as its ``train_step``
does on a CPU: fp32 (its autocast is enabled on CUDA only), AdamW with the spec's learning rate
and weight decay, the training step's host synchronisation (the loss's NaN check) included.

Get a checkout:  git clone https://github.com/jpata/particleflow  (checked at 7e8a710)
What it needs:   torch, pydantic, pyyaml, psutil (all installed with mlpfctl). The reference's
                 module-level imports of comet_ml, pandas and einops are never called by the
                 attention model; where they are not installed, placeholder modules stand in
                 while the reference is imported (calling one raises) and are removed afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_NAME = "pyg-clic-v1"
PRODUCTION = "clic"
UNUSED_IMPORTS = ("comet_ml", "pandas", "einops")


class ReferenceUnavailable(Exception):
    """The checkout cannot be used; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _placeholder(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)

    def attribute(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)

        def unavailable(*_: Any, **__: Any) -> Any:
            raise RuntimeError(f"{name}.{attr} is not installed (placeholder for the reference's import)")

        return unavailable

    module.__getattr__ = attribute  # type: ignore[method-assign]
    return module


@contextlib.contextmanager
def _placeholders(names: tuple[str, ...]) -> Iterator[list[str]]:
    """Stand-ins for uninstalled modules during the import; removed afterwards so that other
    libraries (pyarrow looks for pandas) do not mistake them for the real thing."""
    added = []
    for name in names:
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        sys.modules[name] = _placeholder(name)
        added.append(name)
    try:
        yield added
    finally:
        for name in added:
            sys.modules.pop(name, None)


@dataclass
class ReferenceBatch:
    """What the reference's ``model_step`` reads from its loader's batches."""

    X: Any
    mask: Any
    ytarget: Any


class Reference:
    """The reference model, its optimiser and its train/inference step on mlpfctl batches."""

    def __init__(self, path: Path, device: Any) -> None:
        import torch

        spec_file = path / "particleflow_spec.yaml"
        if not (path / "mlpf" / "model" / "mlpf.py").is_file() or not spec_file.is_file():
            raise ReferenceUnavailable(
                f"{path} is not a jpata/particleflow checkout (no mlpf/model/mlpf.py or its spec)",
                "pass the top directory of `git clone https://github.com/jpata/particleflow`",
            )
        sys.path.insert(0, str(path))
        logging.getLogger("mlpf").setLevel(logging.WARNING)
        try:
            with _placeholders(UNUSED_IMPORTS) as self.placeholders:
                conf = importlib.import_module("mlpf.conf")
                mlpf = importlib.import_module("mlpf.model.mlpf")
                losses = importlib.import_module("mlpf.model.losses")
                utils = importlib.import_module("mlpf.model.utils")
        except ImportError as exc:
            raise ReferenceUnavailable(
                f"cannot import the reference from {path}: {exc}",
                f"install the missing package into this environment (pip install {exc.name})",
            ) from exc
        self.config = conf.MLPFConfig.from_spec(str(spec_file), MODEL_NAME, PRODUCTION)
        self.y_features: list[str] = list(conf.Y_FEATURES)
        self.model = mlpf.MLPF(self.config).to(device)
        self.loss_fn = losses.mlpf_loss
        self.unpack_predictions = utils.unpack_predictions
        self.unpack_target = utils.unpack_target
        self.regression_weights = self.config.regression_loss_weights.model_dump()
        self.device = device
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        # As its train_step: autocast on CUDA only, in the spec's dtype.
        self.autocast_dtype = getattr(torch, self.config.dtype) if device.type == "cuda" else None

    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def prepare(self, batch: Any) -> ReferenceBatch:
        """The reference loader's batch: targets as log(pt / X_pt), eta, sin, cos, log(E / X_E)."""
        import torch

        from mlpfctl.models.targets import regression_targets

        y = torch.zeros(*batch.X.shape[:2], len(self.y_features))
        y[..., 0] = batch.target_cls.float()
        y[..., 1] = batch.target_charge
        y[..., 2:7] = regression_targets(batch.target_p4, batch.X)
        return ReferenceBatch(batch.X.to(self.device), batch.mask.to(self.device), y.to(self.device))

    def _autocast(self) -> Any:
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch: ReferenceBatch) -> None:
        """``train_step`` on one device: model_step (forward, unpack, mlpf_loss), then
        ``optimizer_step`` (grads to None, backward, AdamW; its GradScaler is a no-op in fp32)."""
        self.model.train()
        with self._autocast():
            ypred = self.unpack_predictions(self.model(batch.X, batch.mask))
            ytarget = self.unpack_target(batch.ytarget, self.model)
            loss, _ = self.loss_fn(ytarget, ypred, batch, self.regression_weights)
        for param in self.model.parameters():
            param.grad = None
        loss.backward()
        self.optimizer.step()

    def infer(self, batch: ReferenceBatch) -> None:
        import torch

        self.model.eval()
        with torch.inference_mode(), self._autocast():
            self.model(batch.X, batch.mask)
