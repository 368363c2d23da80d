"""benchmarks.physics: medians over seeds, paired ratios and the issue-#18 target checks."""

from __future__ import annotations

from typing import Any

import pytest
from benchmarks.physics import (
    ABLATION_BASE,
    RECIPE,
    headline,
    overrides_for,
    same_settings,
    targets,
)


def summary(jet_iqr: float, met_iqr: float, nhad_eff: float, nhad_fake: float) -> dict[str, Any]:
    return {
        "jet_response_iqr": jet_iqr,
        "met_residual_iqr": met_iqr,
        "efficiency": {"n.had": nhad_eff},
        "fake_rate": {"n.had": nhad_fake},
    }


def record(mlpf: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    return {"mlpf": mlpf, "baseline": baseline}


def test_headline_takes_medians_and_pairs_each_seed_with_its_own_baseline() -> None:
    runs = [
        record(summary(0.06, 7.0, 0.90, 0.3), summary(0.090, 10.0, 0.88, 0.65)),
        record(summary(0.07, 8.0, 0.85, 0.2), summary(0.100, 11.0, 0.86, 0.66)),
        record(summary(0.08, 6.0, 0.95, 0.4), summary(0.080, 10.5, 0.87, 0.64)),
    ]
    head = headline(runs)
    assert head["mlpf"]["jet_response_iqr"] == pytest.approx(0.07)
    assert head["baseline"]["jet_response_iqr"] == pytest.approx(0.09)
    assert head["mlpf"]["eff/n.had"] == pytest.approx(0.90)
    # seed ratios 0.667, 0.7, 1.0: the median of the ratios, not the ratio of the medians (0.778)
    assert head["paired"]["jet_iqr_ratio"] == pytest.approx(0.7)


def test_targets_pass_and_fail_on_each_condition() -> None:
    good = headline([record(summary(0.06, 8.0, 0.90, 0.3), summary(0.09, 10.0, 0.88, 0.65))])
    no_links = headline([record(summary(0.12, 15.0, 0.2, 0.4), summary(0.09, 10.0, 0.88, 0.65))])
    checks = targets(good, no_links)
    assert checks["jet_iqr_30pct_better"] and checks["met_iqr_better"]
    assert checks["nhad_eff_at_least_baseline"] and checks["nhad_fake_lower"]
    assert checks["no_links_jet_iqr_at_most_baseline"] is False
    bad = headline([record(summary(0.07, 11.0, 0.80, 0.7), summary(0.09, 10.0, 0.88, 0.65))])
    checks = targets(bad, None)
    assert not any(checks[k] for k in ("jet_iqr_30pct_better", "met_iqr_better", "nhad_fake_lower"))
    assert "no_links_jet_iqr_at_most_baseline" not in checks


def test_variants_change_their_base_and_reruns_match_however_values_were_spelled() -> None:
    assert overrides_for("recipe", {}) == RECIPE
    no_weights = overrides_for("no-class-weights", {})
    assert "train.loss_class_weights" not in no_weights  # None: the config default
    ablation = overrides_for("no-links", {}, ABLATION_BASE)
    assert ablation["model.preset"] == "tiny" and ablation["model.link_features"] == "off"
    assert same_settings({"train.steps": "2000", "train.lr": 0.002}, {"train.steps": 2000, "train.lr": 2e-3})
    assert not same_settings({"train.steps": "2000"}, {"train.steps": 3000})
