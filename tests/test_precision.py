"""``trainer.precision: auto``: bf16 where bf16 matrix products are measurably faster."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from omniperceiver.training import precision as P

FAST = P.MatmulRates(float32=100.0, bfloat16=300.0, capability="AVX512", size=256)
SLOW = P.MatmulRates(float32=130.0, bfloat16=0.3, capability="AVX2", size=256)
EVEN = P.MatmulRates(float32=100.0, bfloat16=120.0, capability="AVX512", size=256)


@pytest.fixture
def cpu_rates(monkeypatch):
    """Pretend to be a CPU with the given rates, and no CUDA device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    P._warn_slow_bf16.cache_clear()

    def use(rates: P.MatmulRates) -> None:
        monkeypatch.setattr(P, "cpu_matmul_rates", lambda size=256: rates)
    return use


@pytest.mark.parametrize("rates, expected", [(FAST, "bf16-mixed"), (SLOW, "32-true"),
                                             (EVEN, "32-true")])
def test_auto_follows_the_measured_cpu_rates(cpu_rates, rates, expected):
    cpu_rates(rates)
    assert P.resolve_precision("auto") == expected
    assert P.resolve_precision("AUTO", "cpu") == expected


@pytest.mark.parametrize("value", ["32-true", "16-mixed", 32, None, "64-true"])
def test_other_values_pass_through(cpu_rates, value):
    cpu_rates(SLOW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.resolve_precision(value) == value


def test_explicit_bf16_on_a_slow_cpu_warns_once_with_the_rates(cpu_rates):
    cpu_rates(SLOW)
    with pytest.warns(UserWarning, match=r"bf16 0.3 GFLOP/s vs float32 130.0 GFLOP/s"):
        assert P.resolve_precision("bf16-mixed") == "bf16-mixed"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second request is quiet
        P.resolve_precision("bf16-mixed")


def test_explicit_bf16_on_a_fast_cpu_is_quiet(cpu_rates):
    cpu_rates(FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.resolve_precision("bf16-mixed") == "bf16-mixed"


@pytest.mark.parametrize("supported, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_cuda_asks_the_device(monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    monkeypatch.setattr(P, "cpu_matmul_rates", lambda size=256: pytest.fail("CPU timed"))
    assert P.resolve_precision("auto", "gpu") == expected
    assert P.resolve_precision("auto") == expected
    # an explicit CPU accelerator times the CPU even where CUDA exists
    monkeypatch.setattr(P, "cpu_matmul_rates", lambda size=256: SLOW)
    assert P.resolve_precision("auto", "cpu") == "32-true"


def test_the_measurement_itself():
    rates = P.cpu_matmul_rates.__wrapped__(64)
    assert rates.size == 64 and rates.capability == torch.backends.cpu.get_cpu_capability()
    for value in (rates.float32, rates.bfloat16):
        assert math.isfinite(value) and value > 0
    assert "one thread of this CPU" in rates.describe()
    assert torch.get_num_threads() >= 1  # restored after timing on one thread


def test_the_trainer_accepts_auto(cpu_rates, tmp_path):
    from omniperceiver.training.lightning_cli import parse

    for rates, expected in ((FAST, "bf16-mixed"), (SLOW, "32-true")):
        cpu_rates(rates)
        cli = parse(["--trainer.precision", "auto", "--trainer.default_root_dir",
                     str(tmp_path), "--trainer.logger", "false"])
        assert cli.trainer.precision == expected


def test_a_wrong_precision_names_auto_among_the_choices(tmp_path, capsys):
    from omniperceiver.cli import main

    assert main(["fit", "--trainer.precision", "bf8", "--trainer.default_root_dir",
                 str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "bf8" in err and "'auto'" in err and "Traceback" not in err
