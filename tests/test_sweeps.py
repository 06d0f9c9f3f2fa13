"""W&B sweep definitions: every parameter is a real LightningCLI key, and a sweep trial's command line trains."""

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
TINY_OVERLAYS = ["-c", "configs/train/tiny.yaml", "-c", "configs/train/pix2nerf_tiny.yaml"]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def sample(spec: dict) -> Any:
    """A value the sweep could propose: the fixed value, the last choice, or the (geometric) middle of a range."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return spec["values"][-1]
    low, high = spec["min"], spec["max"]
    value = math.sqrt(low * high) if "log" in spec["distribution"] else (low + high) / 2
    return round(value) if spec["distribution"].startswith(("int", "q_")) else value


def trial_command(sweep: dict, values: dict[str, Any], extra_configs: list[str] = ()) -> list[str]:
    """The command the W&B agent runs, with wandb's own macro expansion (``${envvar:X}``, ``--key=value`` args).

    ``extra_configs`` go right before ``${args}`` (after the sweep's own ``-c`` files), as overlays would.
    """
    flags = create_sweep_command_args({"args": {name: {"value": value} for name, value in values.items()}})["args"]
    command = []
    for part in create_sweep_command(list(sweep["command"])):
        if part == "${env}":
            command.append("/usr/bin/env")
        elif part == "${args}":
            command += [*extra_configs, *flags]
        else:
            command.append(part)
    return command


def lookup(config: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        config = config[key]
    return config


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_parameters_are_cli_keys(path, capsys, monkeypatch):
    from pix2nerf.cli import main

    sweep = load(path)
    assert sweep["method"] == "bayes" and sweep["metric"]["name"].startswith("val/")
    assert sweep["early_terminate"]["type"] == "hyperband" and sweep["early_terminate"]["min_iter"] >= 1
    assert sweep["command"][:3] == ["${env}", "pix2nerf", "fit"] and sweep["command"][-1] == "${args}"
    monkeypatch.setenv("GAN_CHECKPOINT", "gan.ckpt")  # the frozen-GAN sweep reads it from the environment
    monkeypatch.chdir(ROOT)  # sweeps run from the repository root
    values = {name: sample(spec) for name, spec in sweep["parameters"].items()}
    command = trial_command(sweep, values)
    assert "${" not in " ".join(command)
    with pytest.raises(SystemExit) as exit_info:
        main([*command[2:], "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    for name, value in values.items():
        assert lookup(printed, name) == pytest.approx(value), name


def test_a_sweep_trial_trains_and_logs_the_sweep_metric(tmp_path):
    sweep = load(ROOT / "configs" / "sweeps" / "pix2nerf_synthetic_heads_64.yaml")
    values = {name: sample(spec) for name, spec in sweep["parameters"].items()}
    # One training batch (three optimizer steps: G, D, encoder), then a validation that logs the sweep metric.
    command = trial_command(sweep, values, TINY_OVERLAYS) + ["--trainer.max_steps=3", "--trainer.val_check_interval=1"]
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "WANDB_MODE": "disabled", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "tiny" / "version_0"
    assert sweep["metric"]["name"] in (run / "metrics.csv").read_text()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    lr = "model.init_args.optimizer_e.init_args.lr"
    assert lookup(saved, lr) == pytest.approx(values[lr])
