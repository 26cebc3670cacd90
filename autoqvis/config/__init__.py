"""Configuration: one frozen dataclass per stage, YAML deltas and ``--set a.b=value`` overrides.

The defaults are the official AutoQ-VIS settings (github.com/wcbup/AutoQ-VIS at 8174dc2 and the CutLER /
VideoCutLER code it forks); a YAML file holds only the differences from them. Unknown keys are errors that
name the nearest valid key, values are checked against the field's type, and the resolved configuration is
written into every output directory.

    cfg = load_config(["small_data"], ["selection.quality_min=0.5"])
    cfg.selection.quality_min  # 0.5

A config file is a path, or the name of a profile shipped in ``autoqvis/configs/`` (``small_data``,
``offline_dinov2s``, ...; ``configs/small_data.yaml`` names the same file).

The sections are in :mod:`autoqvis.config.sections`, what a value may be in :mod:`autoqvis.config.checks`, and
loading, overriding and saving in :mod:`autoqvis.config.loader`; everything is importable from here.
"""

from autoqvis.config.checks import ConfigError, Range, check_section
from autoqvis.config.loader import (
    INFERENCE_RUNTIME_ONLY,
    all_keys,
    apply_delta,
    config_from_dict,
    config_to_dict,
    git_commit,
    inference_settings,
    load_config,
    parse_override,
    profiles,
    read_yaml,
    resolve_config_file,
    save_config,
    saved_config,
    set_command_line,
)
from autoqvis.config.sections import (
    Config,
    DiscoveryConfig,
    EvaluationConfig,
    InferenceConfig,
    ModelConfig,
    RoundsConfig,
    SelectionConfig,
    SelfTrainConfig,
    SynthesisConfig,
    TrainingConfig,
    ytvis_metric_names,
)

__all__ = [
    "INFERENCE_RUNTIME_ONLY",
    "Config",
    "ConfigError",
    "DiscoveryConfig",
    "EvaluationConfig",
    "InferenceConfig",
    "ModelConfig",
    "Range",
    "RoundsConfig",
    "SelectionConfig",
    "SelfTrainConfig",
    "SynthesisConfig",
    "TrainingConfig",
    "all_keys",
    "apply_delta",
    "check_section",
    "config_from_dict",
    "config_to_dict",
    "git_commit",
    "inference_settings",
    "load_config",
    "parse_override",
    "profiles",
    "read_yaml",
    "resolve_config_file",
    "save_config",
    "saved_config",
    "set_command_line",
    "ytvis_metric_names",
]
