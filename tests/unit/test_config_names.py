"""One list of names: the configuration's choices are what the registries export, and reading
them imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlpfctl.config.loader import schema_fields


def _registries() -> dict[str, list[str]]:
    from mlpfctl.backends.registry import PRIORITY, get_backend
    from mlpfctl.data.readers import FORMATS, reader_for
    from mlpfctl.data.sim.pythia_source import PROCESSES, check_process
    from mlpfctl.hpo import samplers, schedulers
    from mlpfctl.models.registry import MODELS

    for name in PRIORITY:  # every exported name really resolves in its registry
        assert get_backend(name).name == name
    for fmt in FORMATS:
        assert callable(reader_for(fmt))
    for process in PROCESSES:
        check_process(process)
    return {
        "run.backend": ["auto", *PRIORITY],
        "data.format": ["auto", *FORMATS],
        "generate.process": list(PROCESSES),
        "model.type": list(MODELS),
        "hpo.sampler": list(samplers.NAMES),
        "hpo.scheduler": list(schedulers.NAMES),
        "hpo.rung_spacing": list(schedulers.SPACINGS),
        "hpo.promotion_rule": list(schedulers.PROMOTION_RULES),
    }


@pytest.mark.parametrize("key", sorted(_registries()))
def test_choices_are_the_registry_names(key: str) -> None:
    info = schema_fields()[key]
    names = _registries()[key]
    assert list(info.meta["choices"]) == names
    for name in names:  # the documentation a user reads names every choice
        assert name in info.doc, (key, name)


def test_the_schema_imports_no_torch_optuna_or_numpy() -> None:
    code = (
        "import sys, mlpfctl.config.schema\n"
        "print(','.join(m for m in ('torch', 'optuna', 'numpy', 'pyarrow') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", proc.stdout
