import dataclasses
import math
import re
import typing

import pytest
import yaml

from autoqvis.config import Config, ConfigError, config_from_dict, config_to_dict, load_config, save_config


def test_defaults_are_the_official_settings():
    cfg = Config()
    assert cfg.selection.quality_min == 0.75
    assert cfg.selection.score_min == 0.25
    assert cfg.selection.min_frames == 2
    assert cfg.training.clip_grad_norm == 0.01
    assert cfg.inference.short_side == 360


def test_yaml_delta_and_overrides(tmp_path):
    delta = tmp_path / "small.yaml"
    delta.write_text("selection:\n  quality_min: 0.3\nselftrain:\n  num_rounds: 3\ninference:\n  top_k: 5\n")
    cfg = load_config([delta], ["selection.quality_min=0.5", "synthesis.short_sides=[96, 128]"])
    assert cfg.selection.quality_min == 0.5  # the override wins over the file
    assert cfg.selftrain.num_rounds == 3
    assert cfg.inference.top_k == 5
    assert cfg.synthesis.short_sides == (96, 128)
    assert cfg.training == Config().training  # untouched sections keep their defaults


def test_unknown_key_names_the_nearest(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown config key 'selection.quality_mn'; did you mean 'selection.quality_min'"
    ):
        load_config(overrides=["selection.quality_mn=0.5"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainng:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'trainng'; did you mean 'training'"):
        load_config([bad])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.amp=fp8", "must be one of 'auto', 'off', 'bf16', 'fp16'"),
        ("training.max_iters=1.5", "must be an integer"),
        ("selection.quality_min=high", "must be a number"),
        ("synthesis.brightness=[0.9]", "must be a list of 2 values"),
        ("selection=3", "is a section and needs a mapping"),
        ("training.droploss=1", "must be true or false, got 1, or null"),
        ("novalue", "must look like section.key=value"),
    ],
)
def test_bad_values_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_int_is_accepted_for_float_and_null_for_optional():
    cfg = load_config(
        overrides=["selection.quality_min=1", "discovery.weights=null", "discovery.weights=w.pt"]
    )
    assert cfg.selection.quality_min == 1.0 and isinstance(cfg.selection.quality_min, float)
    assert cfg.discovery.weights == "w.pt"


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(overrides=["selection.quality_min=0.3", "synthesis.short_sides=[64]"])
    path = save_config(cfg, tmp_path / "run")
    text = path.read_text()
    assert text.startswith("# resolved autoqvis configuration")
    assert config_from_dict(yaml.safe_load(text)) == cfg
    assert config_to_dict(cfg)["synthesis"]["short_sides"] == [64]


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("selection: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([bad])
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config([scalar])


def test_shipped_profiles_load_by_name_or_path(tmp_path):
    from autoqvis.config import profiles, resolve_config_file

    assert {"small_data", "offline_dinov2s"} <= set(profiles())
    by_name = load_config(["small_data"])
    assert (
        by_name
        == load_config(["configs/small_data.yaml"])
        == load_config([resolve_config_file("small_data.yaml")])
    )
    assert by_name.model.backbone == "vit" and by_name != Config()
    with pytest.raises(ConfigError, match=r"not found; .*small_data"):
        load_config([tmp_path / "nope.yaml"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.max_iters=-5", r"'training.max_iters' must be >= 1, got -5"),
        ("training.batch_size=0", r"'training.batch_size' must be >= 1, got 0"),
        ("training.lr=-1", r"'training.lr' must be > 0, got -1.0"),
        ("training.lr=.nan", r"'training.lr' must be > 0, got nan"),
        ("selection.quality_min=2.0", r"'selection.quality_min' must be in \[0, 1\], got 2.0"),
        ("selection.nms_iou=1.5", r"'selection.nms_iou' must be in \[0, 1\], got 1.5"),
        ("discovery.tau=-1", r"'discovery.tau' must be in \[0, 1\), got -1.0"),
        ("synthesis.num_frames=0", r"'synthesis.num_frames' must be >= 1, got 0"),
        ("synthesis.brightness=[1.2, 0.9]", r"'synthesis.brightness' must be in ascending order"),
        ("synthesis.crop_min=800", r"'synthesis.crop_min' \(800\) must be <= 'synthesis.crop_max' \(720\)"),
        ("inference.short_side=0", r"'inference.short_side' must be >= 32, got 0"),
        ("inference.window=2", r"'inference.overlap' \(4\) must be smaller than 'inference.window' \(2\)"),
        ("evaluation.max_dets=[]", r"'evaluation.max_dets' must be a list of 3 values, got \[\]"),
        ("evaluation.max_dets=[10, 1, 100]", r"'evaluation.max_dets' must be 3 increasing numbers"),
        ("evaluation.davis_max_proposals=300", r"must be in \[1, 255\], got 300"),
    ],
)
def test_values_out_of_range_name_key_value_and_range(override, message):
    with pytest.raises(ConfigError, match=rf"^--set {re.escape(override)}: .*{message}"):
        load_config(overrides=[override])


def test_every_numeric_field_has_a_range():
    """NaN is outside every range: a numeric field that accepts it has no declared range."""
    cfg = Config()
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(value):  # the top-level device: a name, not a number
            continue
        for f in dataclasses.fields(value):
            current = getattr(value, f.name)
            if isinstance(current, bool) or not isinstance(current, int | float | tuple):
                continue
            bad = (math.nan,) if isinstance(current, tuple) else math.nan
            with pytest.raises(ConfigError, match=f"'{section.name}.{f.name}'"):
                dataclasses.replace(value, **{f.name: bad})


def test_rules_between_fields_see_the_final_values(tmp_path):
    """window=2 alone breaks overlap < window; with the overlap set later (or in another file) it is fine."""
    cfg = load_config(overrides=["inference.window=2", "inference.overlap=1"])
    assert (cfg.inference.window, cfg.inference.overlap) == (2, 1)
    delta = tmp_path / "w.yaml"
    delta.write_text("inference:\n  window: 2\n")
    assert load_config([delta], ["inference.overlap=1"]).inference.overlap == 1
    with pytest.raises(ConfigError, match=r"w.yaml: 'inference.overlap' \(4\)"):
        load_config([delta])
    with pytest.raises(ConfigError, match=r"'training.max_iters' must be >= 1"):
        config_from_dict({"training": {"max_iters": 0}})


def test_saved_config_records_the_command_line(tmp_path):
    from autoqvis.config import set_command_line

    set_command_line(["predict", "in dir", "--top-k", "5"])
    try:
        text = save_config(Config(), tmp_path).read_text()
    finally:
        set_command_line(None)
    assert "# command: autoqvis predict 'in dir' --top-k 5\n" in text
    assert "# command" not in save_config(Config(), tmp_path / "b").read_text()


def test_documented_words_are_read_as_typed(tmp_path):
    """YAML 1.1 reads `off`, `no`, `on`, `yes` as booleans; a config value is read as the user typed it."""
    assert load_config([], ["training.amp=off"]).training.amp == "off"
    (tmp_path / "c.yaml").write_text("training:\n  amp: off\n  deterministic: yes\n")
    cfg = load_config([tmp_path / "c.yaml"])
    assert cfg.training.amp == "off" and cfg.training.deterministic is True
    assert load_config([], ["training.deterministic=false"]).training.deterministic is False


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("training:\n  lr: 1.0e-4\n  lr: 2.0e-4\n", "duplicate key 'lr' at line 3 (first at line 2)"),
        (
            "training:\n  lr: 1.0e-4\nmodel:\n  preset: tiny\ntraining:\n  seed: 3\n",
            "duplicate key 'training'",
        ),
    ],
)
def test_duplicate_keys_and_sections_are_refused(tmp_path, text, fragment):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(fragment)) as err:
        load_config([tmp_path / "c.yaml"])
    assert str(tmp_path / "c.yaml") in str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "choice"),
    [
        ("model.preset", "nope", "'paper_r50', 'videocutler_r50', 'tiny'"),
        ("model.backbone", "vgg", "'resnet', 'vit'"),
        ("model.vit_arch", "vit_huge", "'dinov2_vits14_imgfocus'"),
        ("discovery.arch", "dino", "'dino_vitb8'"),
        ("discovery.features", "q", "'k', 'tokens'"),
        ("inference.track_score", "area", "'class', 'quality'"),
        ("training.schedule", "linear", "'constant', 'step', 'cosine'"),
    ],
)
def test_enumerated_values_are_checked_when_the_config_is_made(key, value, choice):
    """One line naming the key, the value and the valid choices, from --set and from code alike."""
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"{key}={value}"])
    message = str(err.value)
    assert "\n" not in message and f"'{key}'" in message and repr(value) in message and choice in message
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):  # dataclasses.replace skips the loader
        dataclasses.replace(getattr(Config(), section), **{name: value})


@pytest.mark.parametrize("value", ["gpu", "cuda:x"])
def test_the_device_is_checked_when_the_config_is_made(value):
    """The one device of every stage, a top-level key: from --set and from code alike."""
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"device={value}"])
    message = str(err.value)
    assert "\n" not in message and "'device'" in message and repr(value) in message
    assert "auto, cpu, cuda or cuda:N" in message
    with pytest.raises(ConfigError, match="'device'"):
        dataclasses.replace(Config(), device=value)


def test_the_device_left_the_inference_section(tmp_path):
    """inference.device drove training and discovery too: a file or --set naming it says where it went."""
    with pytest.raises(ConfigError, match=r"'inference.device' moved to 'device'; pass --set device=cuda"):
        load_config(overrides=["inference.device=cuda"])
    old = tmp_path / "old.yaml"
    old.write_text("inference:\n  device: cpu\n")
    with pytest.raises(ConfigError, match=r"move it to the top level of .*old.yaml as 'device:'"):
        load_config([old])
    new = tmp_path / "new.yaml"
    new.write_text("device: cpu\n")
    assert load_config([new]).device == "cpu" and Config().device == "auto"


def test_every_enumerated_field_refuses_an_unknown_value():
    from autoqvis.config.checks import choices

    cfg, checked = Config(), 0
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(value):  # the top-level device (checked above)
            continue
        hints = typing.get_type_hints(type(value))
        for f in dataclasses.fields(value):
            if choices(hints[f.name]):
                checked += 1
                with pytest.raises(ConfigError, match=f"'{section.name}.{f.name}' must be one of"):
                    dataclasses.replace(value, **{f.name: "nope"})
    assert checked >= 10


def test_the_config_names_exactly_the_presets_and_vits_the_model_knows():
    from autoqvis.config.checks import choices
    from autoqvis.config.sections import Preset, ViTArch
    from autoqvis.model.build import PRESETS
    from autoqvis.model.vit import ARCHS

    assert set(PRESETS) == set(choices(Preset))
    assert set(ARCHS) == set(choices(ViTArch))


def test_device_names_are_read_alike_by_the_config_and_the_device_module():
    from autoqvis.config.checks import DEVICE_NAME
    from autoqvis.device import _DEVICE_RE

    for text in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "gpu", "cpu:0", "auto:1", "cuda:", "mps", ""):
        by_device = _DEVICE_RE.match(text)
        by_device = by_device is not None and (by_device.group(2) is None or by_device.group(1) == "cuda")
        assert bool(DEVICE_NAME.match(text)) == by_device, text


def test_an_ar_metric_to_select_by_must_be_reported():
    cfg = load_config(overrides=["evaluation.max_dets=[2, 20, 200]", "selftrain.select_metric=AP50"])
    assert cfg.evaluation.max_dets == (2, 20, 200)
    with pytest.raises(
        ConfigError, match=r"'selftrain.select_metric' AR10 is not reported .*AP, AP50, AP75, JF"
    ):
        load_config(overrides=["evaluation.max_dets=[2, 20, 200]", "selftrain.select_metric=AR10"])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("selection.round_iters", "rounds.iters"),
        ("selection.round_batch_size", "rounds.batch_size"),
        ("selection.round_lr", "rounds.lr"),
        ("selection.mix_prob", "rounds.mix_prob"),
        ("selection.mix_frames", "rounds.mix_frames"),
        ("selection.droploss", "training.droploss"),
        ("selection.freeze_quality_head", "training.freeze_quality_head"),
        ("rounds.droploss", "training.droploss"),
        ("rounds.freeze_quality_head", "training.freeze_quality_head"),
        ("selection.num_rounds", "selftrain.num_rounds"),
        ("selection.reset_each_round", "selftrain.reset_each_round"),
        ("selection.select_metric", "selftrain.select_metric"),
        ("selection.label_free_pick", "selftrain.label_free_pick"),
        ("selection.max_area", "discovery.max_area"),
        ("selection.max_borders", "discovery.max_borders"),
    ],
)
def test_a_moved_key_is_refused_with_its_new_name(tmp_path, old, new):
    """Keys that moved (the self-training keys that left `selection`, the rounds' copies of training keys, the
    second region rule): --set, a YAML file and a saved config.yaml all say where."""
    from autoqvis.config.loader import MOVED

    assert MOVED[old] == new
    section, name = new.split(".")
    value = config_to_dict(Config())[section][name]
    typed = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    with pytest.raises(ConfigError, match=rf"^--set {old}=.*'{old}' moved to '{new}'; pass --set {new}="):
        load_config(overrides=[f"{old}={typed}"])
    old_file = tmp_path / "old.yaml"
    old_section, old_name = old.split(".")
    old_file.write_text(f"{old_section}:\n  {old_name}: {typed}\n")
    with pytest.raises(
        ConfigError, match=rf"old.yaml: '{old}' moved to '{new}'; rename it to '{name}' under"
    ):
        load_config([old_file])
    saved = config_to_dict(Config())
    saved[old_section][old_name] = value
    with pytest.raises(ConfigError, match=rf"saved config: '{old}' moved to '{new}'"):
        config_from_dict(saved)
    assert getattr(getattr(load_config(overrides=[f"{new}={typed}"]), section), name) == value


def test_every_moved_key_names_an_existing_key_and_no_existing_key_moved():
    from autoqvis.config.loader import MOVED, all_keys

    assert set(MOVED.values()) <= set(all_keys())
    assert not set(MOVED) & set(all_keys())
