"""kgrec.config: defaults, TOML file, KGREC_* environment, errors, secrets."""

from __future__ import annotations

import json

import pytest

from kgrec.cli import build_parser, main
from kgrec.config import RULES, Config, cli_config, load_config
from kgrec.errors import ConfigError


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


def test_precedence_file_env_set_with_sources(tmp_path):
    path = tmp_path / "kgrec.toml"
    path.write_text("[train]\nepochs = 11\nlr = 0.02\n[score]\ntop_k = 7\n")
    env = {"KGREC_TRAIN_EPOCHS": "22", "KGREC_TRAIN_LR": "0.03"}
    config = load_config(path, env=env, sets=["train.epochs=33"])
    assert (config.score.top_k, config.train.lr, config.train.epochs) == (7, 0.03, 33)
    assert config.source_of("score.top_k") == f"file {path}"
    assert config.source_of("train.lr") == "env KGREC_TRAIN_LR"
    assert config.source_of("train.epochs") == "--set"
    assert config.source_of("train.dim") == "default" and config.train.dim == 64


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["score.top_k=0"], "score.top_k = 0 (--set): must be an integer >= 1"),
        (["fusion.normalise=minmax"], "fusion.normalise = 'minmax' (--set): must be one of "
                                      "zscore, rank"),
        (["fusion.text_precision=half"], "fusion.text_precision = 'half' (--set): must be one "
                                         "of auto, float32, bfloat16"),
        (["train.lr=-1"], "train.lr = -1.0 (--set): must be > 0"),
        (["train.kg_dropout=1"], "train.kg_dropout = 1.0 (--set): must be in [0, 1)"),
        (["train.model=bert"], "train.model = 'bert' (--set): must be one of pop, mf"),
        (["train.device=gpu"], "must be auto, cpu, cuda or cuda:N"),
        (["train.split=weekly"], "train.split = 'weekly' (--set): must be one of auto,"),
        (["train.event_weights=BOUGHT=1"], "train.event_weights = {'BOUGHT': 1.0}"),
        (["fusion.text_fields=title,colour"], "fusion.text_fields = ['title', 'colour']"),
        (["train.epochs=1.5"], "--set: train.epochs: cannot read '1.5' as int"),
        (["train.nope=1"], "unknown setting 'nope' in [train] (train.nope); known: batch_size,"),
        (["nope.epochs=1"], "unknown section [nope] (nope.epochs); known: store, neo4j, data,"),
        (["train.epochs"], "--set expects SECTION.KEY=VALUE, got 'train.epochs'"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(tmp_path, sets, message):
    with pytest.raises(ConfigError) as err:
        load_config(env={"KGREC_CONFIG": str(tmp_path / "absent.toml")}, sets=sets)
    assert message in str(err.value)


def test_wrong_type_in_the_file_names_key_and_file(tmp_path):
    path = tmp_path / "kgrec.toml"
    path.write_text('[train]\nbatch_size = "many"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == f"file {path}: train.batch_size: cannot read 'many' as int"
    path.write_text("[train]\ntext_features = 1\n")
    with pytest.raises(ConfigError, match="train.text_features: cannot read 1 as bool"):
        load_config(path, env={})


def test_a_later_layer_may_repair_a_bad_value(tmp_path):
    path = tmp_path / "kgrec.toml"
    path.write_text("[score]\ntop_k = 0\n")
    assert load_config(path, env={"KGREC_SCORE_TOP_K": "5"}).score.top_k == 5


@pytest.mark.parametrize("text", ['{"RATED": 1, "view": 0.5}', "RATED=1, view=0.5"])
def test_dict_settings_from_the_environment_are_parsed(text):
    config = load_config(env={"KGREC_CONFIG": "/absent.toml", "KGREC_TRAIN_EVENT_WEIGHTS": text})
    assert config.train.event_weights == {"RATED": 1.0, "view": 0.5}
    assert config.source_of("train.event_weights") == "env KGREC_TRAIN_EVENT_WEIGHTS"


def test_every_number_and_choice_setting_has_a_rule():
    # A new numeric setting must say what it allows (names and paths take any string).
    numeric = {key for key, value in Config().items()
               if isinstance(value, int | float) and not isinstance(value, bool)}
    assert numeric <= set(RULES), sorted(numeric - set(RULES))
    assert set(RULES) <= {key for key, _ in Config().items()}  # no rule for a gone setting
    Config().validate()  # the defaults are legal


def test_config_show_prints_value_and_source_and_masks_the_password(tmp_path, monkeypatch,
                                                                   capsys):
    path = tmp_path / "kgrec.toml"
    path.write_text('[neo4j]\npassword = "s3cret"\n[train]\nepochs = 11\n')
    monkeypatch.setenv("KGREC_TRAIN_EPOCHS", "22")
    monkeypatch.setenv("KGREC_SCORE_TOP_K", "9")
    assert main(["--config", str(path), "--set", "train.epochs=33", "config", "show"]) == 0
    out = capsys.readouterr().out
    lines = {line.split(" = ")[0]: line for line in out.splitlines()}
    assert lines["train.epochs"].split() == ["train.epochs", "=", "33", "#", "--set"]
    assert lines["score.top_k"].split() == ["score.top_k", "=", "9", "#", "env",
                                            "KGREC_SCORE_TOP_K"]
    assert lines["train.dim"].split() == ["train.dim", "=", "64", "#", "default"]
    assert lines["neo4j.password"].split() == ["neo4j.password", "=", '"***"', "#", "file",
                                               str(path)]
    assert "s3cret" not in out
    assert main(["--config", str(path), "config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["train.epochs"] == {"value": 22, "source": "env KGREC_TRAIN_EPOCHS"}
    assert shown["neo4j.password"] == {"value": "***", "source": f"file {path}"}
    # --set is also taken after the command, adding to (not replacing) the root's.
    assert main(["--set", "score.top_k=4", "config", "show", "--json", "--set", "train.k=5"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["score.top_k"] == {"value": 4, "source": "--set"}
    assert shown["train.k"] == {"value": 5, "source": "--set"}


def test_command_options_beat_set_and_are_validated(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no kgrec.toml of the working folder
    monkeypatch.delenv("KGREC_CONFIG", raising=False)
    args = build_parser().parse_args(["--set", "score.top_k=5", "--set", "score.chunk_size=64",
                                      "score", "--run", "r", "--top-k", "3"])
    config = cli_config(args, {"top_k": "score.top_k", "chunk_size": "score.chunk_size"})
    assert (config.score.top_k, config.source_of("score.top_k")) == (3, "--top-k")
    assert (config.score.chunk_size, config.source_of("score.chunk_size")) == (64, "--set")
    code = main(["score", "--run", str(tmp_path), "--top-k", "0", "--no-progress"])
    assert code == 1  # rejected, not turned into the default 20
    assert capsys.readouterr().err == (
        "kgrec: error: score.top_k = 0 (--top-k): must be an integer >= 1\n"
    )
