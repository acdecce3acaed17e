"""SmoothGrad over integrated gradients equals Captum's NoiseTunnel, streams, repeats and stops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel

from dicom.image import load_frame
from dicom.model_input import model_unit_image
from dicom.series import open_paths
from explain.baselines import baseline_image, broad_blur_sigma
from explain.engine import CancelToken
from explain.integrated_gradients import IntegratedGradientsParams, integrated_gradients
from explain.model_file import load_model
from explain.preprocessing import to_model_input
from tests import dicom_factory as factory
from tests.cli.test_explain import explain
from tests.explain.test_integrated_gradients import captum_integrated_gradients
from tests.model_factory import SmallCnn, TinyDenseNet, card_for, export_model

CPU = torch.device("cpu")


def run(model, x, params, **options):
    return list(integrated_gradients(model, x, 1, params, **options))


def captum_smoothgrad(model, x, target, params):
    """Captum's NoiseTunnel over integrated gradients, its noise drawn from torch's global generator
    seeded with our seed; the standard deviation is our noise level times the input's range."""
    reference = baseline_image(x, params.baseline, blur_sigma=broad_blur_sigma(x))
    stdev = params.noise_level * float(x.max() - x.min())
    tunnel = NoiseTunnel(IntegratedGradients(lambda batch: model.probabilities(batch)))
    with torch.random.fork_rng():
        torch.manual_seed(params.seed)
        result = tunnel.attribute(x[None], nt_type="smoothgrad", nt_samples=params.noise_samples, stdevs=stdev,
                                  baselines=reference[None], target=target, n_steps=params.steps, method=params.rule)
    return result[0].detach().numpy()


def assert_equal_to_float32_rounding(ours, expected):
    """Equal up to float32 rounding of sums that differ only in their order (the mean of the
    copies can cancel to near zero, so the absolute part is a millionth of the map's peak)."""
    assert np.abs(expected).max() > 1e-5
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("rule, baseline", [("gausslegendre", 0.0), ("riemann_trapezoid", "blur"),
                                            ("riemann_middle", -2.0)])
def test_final_attribution_equals_captum_noise_tunnel(cnn, image, rule, baseline):
    params = IntegratedGradientsParams(steps=12, rule=rule, baseline=baseline, noise_samples=4, noise_level=0.2,
                                       seed=3)
    ours = run(cnn, image, params, batch_size=5)[-1]  # batches that span two copies' paths
    assert ours.attribution.dtype == np.float32 and ours.attribution.shape == (1, 40, 56)
    assert_equal_to_float32_rounding(ours.attribution, captum_smoothgrad(cnn, image, 1, params))
    plain = captum_integrated_gradients(cnn, image, 1, params)
    assert np.abs(ours.attribution - plain).max() > 0.05 * np.abs(plain).max(), "the noise changes the map"


def test_gradients_summed_after_the_stem_equal_captum_through_it(tmp_path, image):
    model = load_model(export_model(TinyDenseNet(), card_for(40, 56), tmp_path), CPU)
    params = IntegratedGradientsParams(steps=10, baseline="blur", noise_samples=3, seed=5)
    ours = run(model, image, params, batch_size=4)
    assert_equal_to_float32_rounding(ours[-1].attribution, captum_smoothgrad(model, image, 1, params))


def test_no_noise_samples_is_plain_integrated_gradients(cnn, image):
    plain = run(cnn, image, IntegratedGradientsParams(steps=16), batch_size=4)
    ignored = run(cnn, image, IntegratedGradientsParams(steps=16, noise_level=0.5, seed=9), batch_size=4)
    assert len(plain) == len(ignored) == 4
    for a, b in zip(plain, ignored):
        np.testing.assert_array_equal(a.heatmap, b.heatmap)
        assert a.figures == b.figures and "noisy_score" not in a.figures
    np.testing.assert_allclose(plain[-1].attribution, captum_integrated_gradients(
        cnn, image, 1, IntegratedGradientsParams(steps=16)), rtol=1e-5, atol=1e-9)
    # Noiseless copies average to the plain map.
    silent = run(cnn, image, IntegratedGradientsParams(steps=16, noise_samples=3, noise_level=0.0), batch_size=5)
    np.testing.assert_allclose(silent[-1].attribution, plain[-1].attribution, rtol=1e-5, atol=1e-9)


def test_each_update_is_the_mean_over_the_copies_begun(cnn, image):
    params = IntegratedGradientsParams(steps=8, noise_samples=4, seed=1)
    updates = run(cnn, image, params, batch_size=4)
    assert [u.progress for u in updates] == [k / 8 for k in range(1, 9)]
    assert [u.final for u in updates] == [False] * 7 + [True]
    evaluations = [u.evaluations for u in updates]
    assert evaluations == [2 + 4 * k + (k + 1) // 2 for k in range(1, 9)], "each copy is scored once, as it begins"
    final_map = updates[-1].heatmap
    for early in updates[1], updates[3]:  # one copy done; two copies done
        assert 0.5 < np.abs(early.heatmap).sum() / np.abs(final_map).sum() < 2.0
        assert np.corrcoef(early.heatmap.ravel(), final_map.ravel())[0, 1] > 0.7
    assert all({"score", "baseline_score", "noisy_score", "completeness_gap"} <= set(u.figures) for u in updates)


def test_the_completeness_gap_is_against_the_noisy_copies_score(cnn, image):
    final = run(cnn, image, IntegratedGradientsParams(steps=64, rule="riemann_trapezoid", noise_samples=3))[-1]
    figures = final.figures
    assert figures["noisy_score"] != figures["score"]
    assert abs(figures["completeness_gap"]) < 0.05 * abs(figures["noisy_score"] - figures["baseline_score"])


def test_a_seed_repeats_the_run_and_leaves_the_global_generator_alone(cnn, image):
    params = IntegratedGradientsParams(steps=6, noise_samples=2, seed=4)
    state = torch.get_rng_state()
    first, again = (run(cnn, image, params, batch_size=size)[-1].attribution for size in (3, 12))
    other = run(cnn, image, IntegratedGradientsParams(steps=6, noise_samples=2, seed=5))[-1].attribution
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-6 * np.abs(first).max())
    assert np.abs(other - first).max() > 0.05 * np.abs(first).max()


def test_cancel_stops_within_one_batch(cnn, image):
    cancel = CancelToken()
    seen = []
    params = IntegratedGradientsParams(steps=20, noise_samples=5)
    for update in integrated_gradients(cnn, image, 1, params, cancel=cancel, batch_size=4):
        seen.append(update)
        cancel.cancel()
    assert len(seen) == 1 and not seen[0].final and seen[0].evaluations == 2 + 4 + 1


@pytest.mark.parametrize("field, value", [("noise_samples", -1), ("noise_level", -0.1)])
def test_negative_noise_is_refused(field, value):
    with pytest.raises(ValueError, match="zero or more"):
        IntegratedGradientsParams(**{field: value})


def test_the_command_line_takes_the_noise_options(tmp_path):
    model = export_model(SmallCnn(), card_for(48, 64), tmp_path)
    dicom = factory.write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)
    out = tmp_path / "smooth.npz"
    result = explain(str(dicom), "--model", str(model), "--method", "ig", "--steps", "6", "--noise-samples", "3",
                     "--noise-level", "0.1", "--seed", "2", "--no-trust", "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.splitlines()[-1])
    assert final["final"] and final["evaluations"] == 2 + 6 * 3 + 3 and "noisy_score" in final
    loaded = load_model(model, CPU)
    frame = load_frame(open_paths([dicom]).all_series()[0].frames[0])
    x = to_model_input(model_unit_image(frame, loaded.card.window), loaded.card.input)
    params = IntegratedGradientsParams(steps=6, noise_samples=3, noise_level=0.1, seed=2)
    expected = run(loaded, x, params)[-1].attribution
    np.testing.assert_allclose(np.load(out)["attribution"], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_the_noise_is_the_same_on_a_gpu(tmp_path, image):
    path = export_model(TinyDenseNet(), card_for(40, 56), tmp_path)
    params = IntegratedGradientsParams(steps=8, noise_samples=3, seed=2)
    on_cpu, on_gpu = (run(load_model(path, device), image, params)[-1] for device in (CPU, torch.device("cuda")))
    np.testing.assert_allclose(on_gpu.attribution, on_cpu.attribution, rtol=1e-3, atol=1e-6)
