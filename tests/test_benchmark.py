"""tools/benchmark.py runs every section at a tiny size and prints its tables (no timing assertions)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "resolution=8",
    "num_samples=8",
    "num_coarse=4",
    "num_importance=4",
    "repeats=1",
    "warmup=0",
    "heads_resolutions=[8]",
    "heads_batch_size=2",
    "generator_fields=[triplane]",
    "generator_resolutions=[8]",
    "generator.plane_resolution=16",
    "generator.channel_base=64",
    "generator.channel_max=8",
    "generator.num_coarse=4",
    "generator.num_importance=4",
    "generator.hash_levels=2",
    "generator.hash_table_size_log2=8",
    "render.sizes=[[16,8]]",
    "render.samples_cpu=[4,4]",
    "sampling.resolution=8",
    "sampling.views=2",
    "sampling.reference=[8,8]",
    "sampling.budgets=[[8,8,1],[4,4,1],[8,4,2]]",
    "inversion.resolution=[16,8]",
    "inversion.encoder.channel_base=64",
    "inversion.encoder.channel_max=8",
    "training.configs=[configs/train/synthetic_heads_64.yaml,configs/train/tiny.yaml]",
]


def benchmark(*overrides: str, cwd: Path) -> str:
    command = [sys.executable, str(ROOT / "tools" / "benchmark.py"), *TINY, *overrides, f"hydra.run.dir={cwd}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_benchmark_runs_every_section_and_prints_the_table(tmp_path):
    output = tmp_path / "bench.json"
    stdout = benchmark(f"output_json={output}", cwd=tmp_path)
    names = [r["name"].split(" (")[0] for r in json.loads(output.read_text())["results"]]
    assert names == [
        "rays 8^2",
        "composite fwd",
        "render snowman",
        "composite fwd+bwd",
        "synthetic heads 8^2",
        "render triplane",
        "train step triplane",
        "frames 16^2",
        "sampling 8^2 8+8",
        "sampling 8^2 4+4",
        "sampling 8^2 8/2^2+4",
        "inversion: encode + render 16^2",
        "train GAN3D synthetic_heads_64 + tiny",
    ]
    assert "peak MiB" in stdout and "frames 16^2 (neural 8^2, SR, 4+4)" in stdout
    sampling = [r for r in json.loads(output.read_text())["results"] if r["name"].startswith("sampling")]
    assert "(6 evaluations/ray)" in sampling[2]["name"]
    assert sampling[0]["psnr_db"] == float("inf") and sampling[0]["depth_error"] == 0.0  # the reference budget
    assert all(0 < r["psnr_db"] < 100 and r["depth_error"] > 0 for r in sampling[1:])


def test_compare_prints_both_configurations_and_their_ratios(tmp_path):
    output = tmp_path / "compare.json"
    stdout = benchmark(
        "heads_resolutions=[]",
        "generator_fields=[]",
        "inversion.enabled=false",
        "training.configs=[]",
        "compare.key=field",
        "compare.values=[triplane,hashgrid]",
        f"output_json={output}",
        cwd=tmp_path,
    )
    assert "A: field=triplane" in stdout and "B: field=hashgrid" in stdout and "B speed-up" in stdout
    report = json.loads(output.read_text())
    assert [row["a"] for row in report["comparison"]] == [r["name"] for r in report["results"]["A"]]
    assert all(row["speedup"] > 0 for row in report["comparison"])


def test_bf16_runs_on_cpu_including_bf16_mixed_training(tmp_path):
    output = tmp_path / "bf16.json"
    benchmark(
        "precision=bf16",
        "heads_resolutions=[]",
        "render.sizes=[]",
        "inversion.enabled=false",
        f"output_json={output}",
        cwd=tmp_path,
    )
    names = [r["name"] for r in json.loads(output.read_text())["results"]]
    assert any(name.startswith("train step triplane") for name in names)
    assert any(name.startswith("train GAN3D") for name in names)  # dual discriminator + super-resolution
