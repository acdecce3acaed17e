"""The background worker: updates arrive as signals, stale ones are dropped, cancel is prompt."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from explain.methods import METHODS
from explain.model_file import load_model
from explain.occlusion import OcclusionParams, occlusion
from explain.session import ExplanationRequest, ExplanationSettings, run_session
from tests.model_factory import RegionDetector, SmallCnn, card_for, export_model
from viewer.explain_worker import ExplainController, Job

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(export_model(RegionDetector((4, 12, 20, 30)), card_for(32, 40),
                                   tmp_path_factory.mktemp("worker")), CPU)


@pytest.fixture()
def controller(qtbot):
    controller = ExplainController()
    yield controller
    controller.shutdown()


def request_for(controller, model, x, params=OcclusionParams(4, 2, 0.0), batch_size=None):
    settings = ExplanationSettings(METHODS["occlusion"], params, model, 1, trust=False, batch_size=batch_size)
    return Job(controller.next_generation(), "explanation",
               lambda cancel: run_session(ExplanationRequest(settings, x), cancel))


def test_final_update_arrives_with_the_engines_result(qtbot, controller, model):
    x = torch.ones(1, 32, 40)
    with qtbot.waitSignal(controller.finished, timeout=20000) as finished:
        controller.start(request_for(controller, model, x))
    expected = list(occlusion(model, x, 1, OcclusionParams(4, 2, 0.0)))[-1]
    assert finished.args[0] == "explanation"
    np.testing.assert_array_equal(finished.args[1].heatmap, expected.heatmap)
    qtbot.waitUntil(lambda: not controller.busy)


def test_a_newer_request_drops_the_older_ones_updates(qtbot, controller, model):
    old_input, new_input = torch.ones(1, 32, 40), torch.ones(1, 32, 40) * 2
    finals, progressed = [], []
    controller.finished.connect(lambda stage, update: finals.append(update))
    controller.progressed.connect(lambda stage, update: progressed.append(update))
    controller.start(request_for(controller, model, old_input, OcclusionParams(2, 1, 0.0), batch_size=1))
    with qtbot.waitSignal(controller.finished, timeout=20000):
        controller.start(request_for(controller, model, new_input))
    qtbot.waitUntil(lambda: not controller.busy, timeout=20000)
    expected = list(occlusion(model, new_input, 1, OcclusionParams(4, 2, 0.0)))[-1]
    assert len(finals) == 1
    np.testing.assert_array_equal(finals[0].heatmap, expected.heatmap)
    assert all(update.evaluations <= finals[0].evaluations for update in progressed)


def test_cancel_stops_the_job_and_nothing_final_arrives(qtbot, controller, tmp_path):
    slow = load_model(export_model(SmallCnn(), card_for(64, 64), tmp_path), CPU)
    finals = []
    controller.finished.connect(lambda stage, update: finals.append(update))
    with qtbot.waitSignal(controller.progressed, timeout=20000):
        controller.start(request_for(controller, slow, torch.randn(1, 64, 64), OcclusionParams(2, 1, 0.0), 1))
    with qtbot.waitSignal(controller.idle, timeout=5000):
        controller.cancel()
    assert finals == []


def test_a_failing_model_reports_one_line(qtbot, controller, model):
    too_small = torch.ones(1, 8, 8)  # a 16-pixel window cannot be placed on an 8 x 8 input
    request = request_for(controller, model, too_small, OcclusionParams(16, 8, 0.0))
    with qtbot.waitSignal(controller.failed, timeout=20000) as failed:
        controller.start(request)
    assert failed.args[0].startswith("The explanation failed:") and "\n" not in failed.args[0]


def test_a_job_superseded_while_it_waited_never_runs(qtbot, controller, model):
    holding, release, started = threading.Event(), threading.Event(), []

    def busy(cancel):
        holding.set()
        release.wait(20)  # holds the worker thread while the next jobs queue up behind it
        yield from ()

    def waiting(cancel):
        started.append(True)
        yield from ()

    controller.start(Job(controller.next_generation(), "busy", busy))
    # Once it runs: a job cancelled before the worker takes it up is skipped, and would free the thread.
    assert holding.wait(20)
    controller.start(Job(controller.next_generation(), "probabilities", waiting))
    latest = request_for(controller, model, torch.ones(1, 32, 40))  # supersedes the waiting job
    controller.start(latest)
    with qtbot.waitSignal(controller.finished, timeout=20000) as finished:
        release.set()
    assert finished.args[0] == "explanation" and started == []
