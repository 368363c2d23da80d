from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mlpfctl.bench.fit import fit_power_law
from mlpfctl.bench.records import BenchRecord, load_records
from mlpfctl.bench.report import build_tables, render_tables, write_report
from mlpfctl.bench.timing import StepTimes, percentile
from mlpfctl.errors import UsageError


def test_step_times_exclude_warmup_and_split_data() -> None:
    times = StepTimes(warmup=2)
    times.record(10.0, 10.0, 1, 1)  # warm-up: ignored
    times.record(10.0, 10.0, 1, 1)
    for _ in range(4):
        times.record(0.1, 0.9, 8, 800)
    summary = times.summary()
    assert summary["steps"] == 4
    assert summary["step_s_p50"] == pytest.approx(1.0)
    assert summary["data_share"] == pytest.approx(0.1)
    assert summary["events_per_s"] == pytest.approx(8.0)
    assert summary["elements_per_s"] == pytest.approx(800.0)


def test_percentile() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([1, 2], 90) == pytest.approx(1.9)


def test_power_law_fit_recovers_parameters() -> None:
    sizes = [250, 500, 1000, 2000, 4000, 8000]
    truth = (5.0, 0.5, 0.8)
    losses = [truth[0] * d ** -truth[1] + truth[2] for d in sizes]
    fit = fit_power_law(sizes, losses)
    assert fit.a == pytest.approx(5.0, rel=1e-3)
    assert fit.b == pytest.approx(0.5, rel=1e-3)
    assert fit.c == pytest.approx(0.8, abs=1e-3)
    assert fit.predict(16000) == pytest.approx(5.0 * 16000**-0.5 + 0.8, rel=1e-3)
    assert fit.predict_err(16000) >= 0.0


def test_power_law_fit_with_noise_has_uncertainties() -> None:
    sizes = [250, 500, 1000, 2000]
    losses = [1.40, 1.22, 1.11, 1.04]
    fit = fit_power_law(sizes, losses, errors=[0.02] * 4)
    assert fit.b > 0 and fit.b_err > 0 and fit.chi2_per_dof is not None


def test_power_law_needs_four_sizes() -> None:
    with pytest.raises(UsageError, match="4 distinct"):
        fit_power_law([1, 2, 3], [3.0, 2.0, 1.0])


def _record(kind: str, point: dict[str, int], metrics: dict[str, float]) -> BenchRecord:
    return BenchRecord(kind=kind, point=point, metrics=metrics, backend="cpu", device="test-cpu")


def test_report_tables_csv_and_png(tmp_path: Path) -> None:
    _record("train-strong", {"world_size": 1}, {"world_size": 1, "events_per_s": 100.0}).write(tmp_path)
    _record("train-strong", {"world_size": 2}, {"world_size": 2, "events_per_s": 150.0}).write(tmp_path)
    _record("hpo", {"workers": 1}, {"workers": 1, "wall_s": 100.0}).write(tmp_path)
    _record("hpo", {"workers": 2}, {"workers": 2, "wall_s": 40.0}).write(tmp_path)
    for d, loss in ((250, 1.4), (500, 1.22), (1000, 1.11), (2000, 1.04)):
        _record("scaling-law", {"train_events": d}, {"train_events": d, "val_loss": loss}).write(tmp_path)
    (tmp_path / "scaling-law-fit.json").write_text(
        json.dumps(fit_power_law([250, 500, 1000, 2000], [1.4, 1.22, 1.11, 1.04]).as_dict())
    )

    tables = {t.kind: t for t in build_tables(load_records(tmp_path))}
    strong = tables["train-strong"].rows
    assert strong[1]["speedup"] == pytest.approx(1.5) and strong[1]["efficiency"] == pytest.approx(0.75)
    hpo = tables["hpo"].rows
    assert hpo[1]["speedup"] == pytest.approx(2.5) and hpo[1]["efficiency"] == pytest.approx(
        1.25
    )  # superlinear

    tables_list, written = write_report(tmp_path)
    names = {p.name for p in written}
    assert {
        "train-strong.csv",
        "train-strong.png",
        "hpo.csv",
        "hpo.png",
        "scaling-law.csv",
        "scaling-law.png",
    } <= names
    assert (tmp_path / "hpo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((tmp_path / "train-strong.csv").open()))
    assert [float(r["speedup"]) for r in rows] == pytest.approx([1.0, 1.5])
    assert render_tables(tables_list) is not None


def test_records_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no benchmark records"):
        load_records(tmp_path)
    (tmp_path / "x.json").write_text("{not json")
    from mlpfctl.errors import DataError

    with pytest.raises(DataError, match=r"x\.json"):
        load_records(tmp_path)
