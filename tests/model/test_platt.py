"""Platt scaling: the fit recovers a known map, folding it into the network makes every score
the calibrated one, and the calibrated thresholds pass exactly the windows the raw ones did."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.model.network import WINDOW_SAMPLES, build_network
from detector.model.platt import Platt, fit_platt, fold_into, logit
from detector.stream.events import Thresholds


def test_fit_recovers_the_map_that_drew_the_labels() -> None:
    rng = np.random.default_rng(0)
    raw_logits = rng.normal(3.0, 3.0, 200_000)  # scores squeezed towards 1, as shipped
    truth = Platt(0.4, -2.0)
    labels = rng.random(len(raw_logits)) < 1 / (1 + np.exp(-(0.4 * raw_logits - 2.0)))
    fit = fit_platt(1 / (1 + np.exp(-raw_logits)), labels.astype(np.int64))
    assert fit.scale == pytest.approx(truth.scale, abs=0.02)
    assert fit.bias == pytest.approx(truth.bias, abs=0.05)


def test_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="both positive and negative"):
        fit_platt(np.array([0.2, 0.9]), np.array([0, 0]))


def test_folded_network_scores_calibrated_everywhere_and_thresholds_pick_the_same() -> None:
    torch.manual_seed(0)
    net = build_network("contrast", 4).eval()
    audio = torch.randn(1, WINDOW_SAMPLES * 6)
    windows = audio[0].unfold(0, WINDOW_SAMPLES, 500)
    with torch.no_grad():
        raw = net(windows)[:, 0].double().numpy()
        raw_span = net.score_span(audio, 500)[0, :, 0].double().numpy()
    platt = Platt(0.5, -1.5)
    fold_into(net, platt)
    scripted = torch.jit.script(net)
    with torch.no_grad():
        cooked = scripted(windows)[:, 0].double().numpy()
        cooked_span = scripted.score_span(audio, 500)[0, :, 0].double().numpy()
    expected = np.array([platt.probability(float(r)) for r in raw])
    np.testing.assert_allclose(cooked, expected, atol=2e-6)
    np.testing.assert_allclose(cooked_span, [platt.probability(float(r)) for r in raw_span],
                               atol=2e-6)
    ranked = np.sort(raw)  # thresholds between two windows' scores, as a grid's would be
    raw_thresholds = Thresholds(on=float(ranked[5:7].mean()), off=float(ranked[2:4].mean()))
    mapped = platt.thresholds(raw_thresholds)
    assert mapped.on == pytest.approx(platt.probability(raw_thresholds.on))
    assert ((raw >= raw_thresholds.on) == (cooked >= mapped.on)).all()
    assert logit(mapped.on) == pytest.approx(0.5 * logit(raw_thresholds.on) - 1.5)


def test_unfolded_state_is_the_raw_network_again() -> None:
    """Fine-tuning starts from the raw network and folds the parent's map back in: a round
    trip with no training gives the calibrated parent's scores exactly."""
    from detector.model.platt import of_metadata, unfolded

    torch.manual_seed(1)
    raw = build_network("contrast", 4).eval()
    windows = torch.randn(5, WINDOW_SAMPLES)
    platt = of_metadata({"calibration": {"scale": 1.35, "bias": -4.5, "method": "platt"}})
    assert platt == Platt(1.35, -4.5)
    assert of_metadata({}) is None
    with torch.no_grad():
        before = raw(windows).clone()
        fold_into(raw, platt)
        calibrated = raw(windows).clone()
        raw.load_state_dict(unfolded(raw.state_dict(), platt))
        np.testing.assert_allclose(raw(windows).numpy(), before.numpy(), atol=1e-6)
        fold_into(raw, platt)
        np.testing.assert_allclose(raw(windows).numpy(), calibrated.numpy(), atol=1e-6)


def test_inspect_tells_a_raw_threshold_above_0_999_from_1() -> None:
    """A confident network's raw on-threshold (0.99966) is printed with its digits, not as
    1.000, wherever `whaled inspect` shows it."""
    from detector.model.inspection import calibration_note, out_of_fold_lines

    note = calibration_note({"scale": 0.727, "bias": -4.217, "fitted_on": "windows",
                             "raw_thresholds": {"on": 0.99966, "off": 0.800}})
    assert "raw on 0.99966, off 0.800" in note
    at = {"recall": 0.5, "n_found": 1, "n_annotations": 2, "n_false_alarms": 0, "hours": 1.0}
    lines = out_of_fold_lines({"cross_validation": {
        "by": "day", "on": 0.99966, "pooled": {"at_threshold": at},
        "held_out": [{"group": "2009-03-29", "clip_roc_auc": 0.99, "at_threshold": at,
                      "nested": {"on": 0.999904, "held_out_at_on": at}}]}})
    assert lines[0].startswith("out of fold by day, at on 0.99966: recall 0.500 (1/2)")
    assert "at 0.99966: recall" in lines[1] and "nested on 0.999904: recall" in lines[1]
