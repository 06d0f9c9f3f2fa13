"""CPU thread policy: every free core on a quiet machine, fewer when other processes compete."""

import os
import subprocess
import sys
import time

import pytest
import torch

from pix2nerf.runtime import THREADS_ENV, ThreadGovernor, available_cpus, competing_tasks

BUSY = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end:\n    pass"


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_available_cpus_respects_the_affinity_mask():
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_a_fixed_count_is_applied(restore_threads, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert ThreadGovernor(threads=1).update() == 1 == torch.get_num_threads()


def test_the_environment_fixes_the_count_and_a_bad_value_is_named(restore_threads, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert ThreadGovernor().update() == 1
    monkeypatch.setenv(THREADS_ENV, "two")
    with pytest.raises(ValueError, match=f"{THREADS_ENV} must be a positive integer"):
        ThreadGovernor()


@pytest.mark.skipif(available_cpus() < 2, reason="needs 2 cores to have a choice")
def test_competing_processes_reduce_the_threads(restore_threads, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    cpus = available_cpus()
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2 * cpus)]
    try:
        time.sleep(0.5)  # let them start spinning
        assert competing_tasks() >= cpus
        assert ThreadGovernor().update() == 1
    finally:
        for process in busy:
            process.kill()
            process.wait()


def test_the_cli_trainer_adapts_threads_whatever_the_config_lists(tmp_path, monkeypatch):
    from pathlib import Path

    from pix2nerf.cli import Pix2NeRFCLI
    from pix2nerf.systems import AdaptiveThreads

    monkeypatch.chdir(tmp_path)
    configs = Path(__file__).resolve().parents[1] / "configs" / "train"
    cli = Pix2NeRFCLI(
        args=["-c", str(configs / "synthetic_heads_64.yaml"), "-c", str(configs / "tiny.yaml")],
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        run=False,
    )
    assert any(isinstance(callback, AdaptiveThreads) for callback in cli.trainer.callbacks)
    assert any(type(callback).__name__ == "ModelCheckpoint" for callback in cli.trainer.callbacks)
