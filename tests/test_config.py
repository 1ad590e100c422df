"""StylizeConfig: every field validated with a message naming field, range and value."""

from dataclasses import fields

import pytest

from faceblit_core.config import StylizeConfig
from faceblit_core.errors import ConfigError


def test_defaults_are_valid_and_documented():
    cfg = StylizeConfig()
    docs = StylizeConfig.describe()
    assert set(docs) == {f.name for f in fields(cfg)}
    assert all(docs[name] for name in docs)
    assert (cfg.threshold, cfg.lambda_pos, cfg.lambda_app, cfg.levels, cfg.lut_radius) == (50.0, 10.0, 2.0, 6, 30.0)


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"threshold": -1.0}, "threshold: expected a value in [0.0"),
        ({"levels": 12}, "levels: expected a value in [0, 9], got 12"),
        ({"levels": 2.5}, "levels: expected an integer, got 2.5"),
        ({"lambda_app": float("nan")}, "lambda_app: expected a number, got nan"),
        ({"background": 1}, "background: expected true or false, got 1"),
        ({"device": "tpu"}, "device: expected one of auto, cpu, cuda, cuda:N, got 'tpu'"),
        ({"preset": ""}, "preset: expected a non-empty string"),
    ],
)
def test_bad_values_name_field_range_and_value(changes, fragment):
    with pytest.raises(ConfigError) as info:
        StylizeConfig(**changes)
    assert fragment in str(info.value)
    assert info.value.exit_code == 2


def test_replace_validates():
    cfg = StylizeConfig().replace(threshold=24.0, device="cuda:1")
    assert cfg.threshold == 24.0 and cfg.device == "cuda:1"
    with pytest.raises(ConfigError):
        cfg.replace(blend_radius=-1)


@pytest.mark.parametrize(
    "name, value",
    [("lambda_pos", -1.0), ("lut_radius", 0.5), ("levels", 2.5), ("style_max_side", 100), ("synthesis_space", "both"), ("background", 1)],
)
def test_check_field_says_what_the_config_says(name, value):
    with pytest.raises(ConfigError) as whole:
        StylizeConfig(**{name: value})
    with pytest.raises(ConfigError) as one:
        StylizeConfig.check_field(name, value)
    assert str(one.value) == str(whole.value)
    StylizeConfig.check_field(name, getattr(StylizeConfig(), name))  # defaults pass
    with pytest.raises(KeyError):
        StylizeConfig.check_field("no_such_field", 1)
