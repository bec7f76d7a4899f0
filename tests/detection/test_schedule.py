"""Learning-rate plans: warmup, cosine, step and the course's exponential decay."""

from __future__ import annotations

import math

import pytest
import torch

from prodet.detection.schedule import COSINE_FLOOR, WARMUP_START, LrPlan, build_scheduler


def test_warmup_then_cosine_reaches_the_floor():
    plan = LrPlan("cosine", steps_per_epoch=10, total_epochs=5, warmup_epochs=1)
    assert plan(0) == pytest.approx(WARMUP_START)
    assert plan(5) == pytest.approx(WARMUP_START + (1 - WARMUP_START) * 0.5)
    assert plan(10) == pytest.approx(1.0)
    assert plan(30) == pytest.approx(COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5)  # halfway
    assert plan(50) == pytest.approx(COSINE_FLOOR)
    assert plan(80) == pytest.approx(COSINE_FLOOR)


def test_step_and_exponential():
    step = LrPlan("step", 10, 30, warmup_epochs=0, step_epochs=10, gamma=0.1)
    assert [step(s) for s in (0, 99, 100, 250)] == pytest.approx([1, 1, 0.1, 0.01])
    exp = LrPlan("exponential", 10, 30, warmup_epochs=0, decay_rate=0.9)
    assert exp(25) == pytest.approx(0.9**2.5)


def test_scheduler_steps_per_iteration_and_resumes():
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(params, lr=0.1)
    sched = build_scheduler(opt, LrPlan("cosine", 4, 3, warmup_epochs=0))
    for _ in range(5):
        opt.step()
        sched.step()
    expected = 0.1 * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * 5 / 12)))
    assert opt.param_groups[0]["lr"] == pytest.approx(expected)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched2 = build_scheduler(opt2, LrPlan("cosine", 4, 3, warmup_epochs=0))
    sched2.load_state_dict(sched.state_dict())
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
