"""Every user mistake is a TypeError/ValueError naming what was expected and received."""

import pytest
import torch
from helpers import tiny_io, tiny_perceiver

MODEL = tiny_perceiver()  # (batch, 4, 5, 3) -> (batch, 4)


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"3 channels .* got 4"):
        MODEL(torch.randn(2, 4, 5, 4))


def test_channels_first_hint():
    with pytest.raises(ValueError, match="channels-first"):
        MODEL(torch.randn(2, 3, 16, 16))


def test_wrong_number_of_axes():
    with pytest.raises(ValueError, match=r"4 dimensions .* got 3: \(2, 20, 3\)"):
        MODEL(torch.randn(2, 20, 3))


def test_zero_size_axis():
    with pytest.raises(ValueError, match=r"zero-size axis: shape \(2, 0, 5, 3\)"):
        MODEL(torch.randn(2, 0, 5, 3))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_data(dtype):
    with pytest.raises(TypeError, match=r"x\.float\(\)"):
        MODEL(torch.zeros(2, 4, 5, 3, dtype=dtype))


def test_not_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        MODEL([[1.0, 2.0]])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf(bad):
    x = torch.randn(2, 4, 5, 3)
    x[1, 2, 3, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        MODEL(x)


def test_finite_check_can_be_switched_off():
    model = tiny_perceiver()
    model.input_adapter.check_finite = False
    x = torch.randn(2, 4, 5, 3)
    x[0, 0, 0, 0] = float("nan")
    out = model(x)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()


def test_mask_wrong_dtype():
    with pytest.raises(TypeError, match="torch.bool"):
        MODEL(torch.randn(2, 4, 5, 3), mask=torch.ones(2, 20))


@pytest.mark.parametrize("shape", [(2, 19), (3, 20), (2, 5, 4), (20,)])
def test_mask_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"\(2, 20\) or \(2, 4, 5\)"):
        MODEL(torch.randn(2, 4, 5, 3), mask=torch.ones(shape, dtype=torch.bool))


def test_grid_mask_shape_accepted():
    x = torch.randn(2, 4, 5, 3)
    mask = torch.rand(2, 4, 5) > 0.3
    torch.testing.assert_close(MODEL(x, mask=mask), MODEL(x, mask=mask.reshape(2, 20)))


def test_channels_first_option():
    from omniperceiver.adapters import GridAdapter

    adapter = GridAdapter(input_channels=3, input_axis=2, channels_last=False)
    out = adapter(torch.randn(2, 3, 4, 5))
    assert out.inputs.shape == (2, 20, 3) and out.grid_shape == (4, 5)
    with pytest.raises(ValueError, match="channels-last"):
        adapter(torch.randn(2, 4, 5, 3))


def test_io_model_validates_too():
    model = tiny_io()
    with pytest.raises(ValueError, match=r"5 channels"):
        model(torch.randn(2, 7, 6))
