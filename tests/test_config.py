"""Config trees to and from JSON, and overrides merged over published configurations."""

import json

import pytest

from omniperceiver import (
    AttentionSpec,
    ClassificationDecoderConfig,
    EncoderConfig,
    FourierConfig,
    GridDecoderConfig,
    LearnedPositionConfig,
    OmniPerceiverError,
    PerceiverIOConfig,
    QueryDecoderConfig,
)
from omniperceiver.config import encoder_config, merge

CONFIGS = [
    PerceiverIOConfig(input_channels=3, input_axis=2, input_shape=(6, 5),
                      position=FourierConfig(num_bands=3, max_resolution=(6.0, 5.0)),
                      decoder=ClassificationDecoderConfig(num_classes=4, pooling="mean")),
    PerceiverIOConfig(input_channels=2, input_axis=1, position=LearnedPositionConfig(shape=(7,)),
                      encoder=EncoderConfig(num_latents=3, cross_attend=AttentionSpec(heads=2)),
                      decoder=GridDecoderConfig(output_shape=(2, 3), output_channels=5,
                                                query="learned")),
    PerceiverIOConfig(input_channels=4, input_axis=1, position=None,
                      decoder=QueryDecoderConfig(query_channels=6, output_channels=2)),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_a_config_tree_survives_json(config):
    again = PerceiverIOConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_a_field_that_holds_one_of_several_configs_names_its_kind():
    d = CONFIGS[1].to_dict()
    assert d["decoder"]["kind"] == "GridDecoderConfig"
    assert d["position"]["kind"] == "LearnedPositionConfig"
    assert "kind" not in d["encoder"]


def test_unknown_fields_and_kinds_are_user_errors():
    d = CONFIGS[0].to_dict()
    with pytest.raises(OmniPerceiverError, match="no_such_field"):
        PerceiverIOConfig.from_dict({**d, "no_such_field": 1})
    with pytest.raises(OmniPerceiverError, match="kind"):
        PerceiverIOConfig.from_dict({**d, "decoder": {**d["decoder"], "kind": "Nope"}})


def test_overrides_merge_field_by_field():
    published = dict(num_latents=8, cross_attend=dict(heads=1, qk_channels=4))
    assert merge(published, {"cross_attend": {"heads": 2}}) == dict(
        num_latents=8, cross_attend=dict(heads=2, qk_channels=4))
    config = encoder_config(published, {"self_attend": {"heads": 4}}, "gelu_tanh")
    assert config.num_latents == 8
    assert config.cross_attend == AttentionSpec(heads=1, qk_channels=4, activation="gelu_tanh")
    assert config.self_attend == AttentionSpec(heads=4, activation="gelu_tanh")
