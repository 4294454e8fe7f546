"""kgrec.config: defaults, TOML file, KGREC_* environment, errors, secrets."""

from __future__ import annotations

import pytest
from kgrec.kg.errors import ConfigError

from kgrec.config import load_config


def test_defaults_without_file_or_environment(tmp_path):
    config = load_config(env={"KGREC_CONFIG": str(tmp_path / "absent.toml")})
    assert config.store.backend == "local"
    assert config.train.model == "gat" and config.train.dim == 64
    assert config.train.out_dir == ".kgrec/runs"
    assert config.fusion.search_alpha == pytest.approx(0.3)
    assert config.fusion.text_fields[:2] == ["title", "brand"]


def test_file_then_environment_override_with_types(tmp_path):
    path = tmp_path / "kgrec.toml"
    path.write_text('[store]\nbackend = "neo4j"\n[train]\nmodel = "gat"\nepochs = 12\n'
                    '[neo4j]\nuri = "bolt://127.0.0.1:7999"\n')
    env = {"KGREC_TRAIN_EPOCHS": "30", "KGREC_FUSION_SEARCH_ALPHA": "0.4",
           "KGREC_FUSION_TEXT_FIELDS": "title,description",
           "KGREC_FUSION_PROFILE_HALF_LIVES": "2, 0",
           "KGREC_TRAIN_MAX_BATCHES": "5", "KGREC_NEO4J_PASSWORD": "s3cret"}
    config = load_config(path, env=env)
    assert (config.store.backend, config.train.model) == ("neo4j", "gat")
    assert config.train.epochs == 30  # environment beats the file
    assert config.fusion.search_alpha == pytest.approx(0.4)
    assert config.fusion.text_fields == ["title", "description"]
    assert config.fusion.profile_half_lives == [2.0, 0.0]  # numbers, not strings
    assert config.train.max_batches == 5 and isinstance(config.train.max_batches, int)
    assert config.neo4j.uri == "bolt://127.0.0.1:7999"
    assert config.redacted()["neo4j"]["password"] == "***"
    assert config.neo4j.password == "s3cret"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[train]\nepoch = 3\n", {}, "unknown setting 'epoch'"),
        ("[trian]\nepochs = 3\n", {}, "unknown section [trian]"),
        ("", {"KGREC_TRAIN_EPOCHS": "many"}, "cannot read 'many' as int"),
        ("", {"KGREC_FUSION_PROFILE_HALF_LIVES": "1,soon"}, "cannot read 'soon' as float"),
        ("[train\n", {}, "kgrec.toml"),
    ],
)
def test_bad_settings_are_named(tmp_path, text, env, message):
    path = tmp_path / "kgrec.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env)
    assert message in str(err.value)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
