"""Whatever happens to a saved model folder (a file cut short, bytes overwritten, a file
deleted), ``from_pretrained`` either loads a model or raises :class:`ModelFileError` naming
the damaged file: never a raw error from safetensors, json or torch."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from omniperceiver import create_model, from_pretrained, save_pretrained
from omniperceiver.errors import ModelFileError

FILES = ("model.safetensors", "config.json")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "model"
    model = create_model("mnist-perceiver", image_shape=(4, 4), num_bands=2, encoder=dict(
        num_latents=4, latent_dim=8, num_blocks=1, self_attends_per_block=1,
        num_cross_attends=1, self_attend={"heads": 2}))
    save_pretrained(model, folder, extra={"classes": list("0123456789")})
    return folder


def truncate(data: bytes, fraction: float) -> bytes:
    return data[:int(fraction * len(data))]


def overwrite(data: bytes, changes: list[tuple[float, int]]) -> bytes:
    out = bytearray(data)
    for where, value in changes:
        out[min(int(where * len(out)), len(out) - 1)] = value
    return bytes(out)


damage = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(FILES),
              st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("overwrite"), st.sampled_from(FILES),
              st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                       min_size=1, max_size=3)),
    st.tuples(st.just("delete"), st.sampled_from(FILES), st.none()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage=damage)
def test_a_damaged_model_folder_loads_or_raises_model_file_error(saved, damage):
    kind, name, how = damage
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(saved, Path(tmp) / "model"))
        file = folder / name
        if kind == "delete":
            file.unlink()
        else:
            data = file.read_bytes()
            file.write_bytes(truncate(data, how) if kind == "truncate" else overwrite(data, how))
        try:
            model = from_pretrained(folder)
        except ModelFileError as error:
            assert str(file) in str(error), str(error)
        else:
            assert isinstance(model, nn.Module)


@pytest.mark.parametrize("name", FILES)
def test_a_truncated_file_names_itself(saved, tmp_path, name):
    folder = Path(shutil.copytree(saved, tmp_path / "model"))
    (folder / name).write_bytes((folder / name).read_bytes()[:20])
    with pytest.raises(ModelFileError, match=rf"{folder / name}: not "):
        from_pretrained(folder)


def test_weights_of_another_model_name_the_weights_file(saved, tmp_path):
    folder = Path(shutil.copytree(saved, tmp_path / "model"))
    other = create_model("mnist-perceiver", image_shape=(4, 4), num_bands=2, encoder=dict(
        num_latents=5, latent_dim=8, num_blocks=1, self_attends_per_block=1,
        num_cross_attends=1, self_attend={"heads": 2}))
    save_pretrained(other, tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ModelFileError, match=rf"model.safetensors: the weights do not fit the "
                                             rf"model that {folder / 'config.json'} describes"):
        from_pretrained(folder)


def test_a_file_or_missing_folder_is_not_a_model_folder(saved, tmp_path):
    with pytest.raises(ModelFileError, match="is a file; from_pretrained takes the folder"):
        from_pretrained(saved / "model.safetensors")
    with pytest.raises(ModelFileError, match="no such folder"):
        from_pretrained(tmp_path / "nothing")
