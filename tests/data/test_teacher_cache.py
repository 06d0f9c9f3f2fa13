"""The teacher-sample cache: shards round-trip exactly, capacity, fingerprint and corruption errors, schema checks,
consistent seeded sampling and safety against interrupted writes.

Every sample row carries its id in ``yaw_pitch[:, 0]``, ``ws[:, 0, 0]`` and ``params[:, 0, 0, 0, 0]``, so a sampled
row can be matched to the row that was added.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from pix2nerf.data import TeacherCache, teacher_cache

FINGERPRINT = "teacher-abc123/views=2/res=8"
VIEWS = 2
SIZE = 8


def make_samples(first_id: int, count: int, size: int = SIZE) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """``count`` teacher-like samples with ids ``first_id``... (seeded by ``first_id``)."""
    gen = torch.Generator().manual_seed(first_id)
    ids = torch.arange(first_id, first_id + count, dtype=torch.float32)
    batch = {
        "image": torch.randn(count, 3, size, size, generator=gen),
        "target_image": torch.randn(count, VIEWS, 3, size, size, generator=gen),
        "yaw_pitch": torch.randn(count, 2, generator=gen),
        "mask": torch.rand(count, 1, size, size, generator=gen) > 0.5,
    }
    batch["yaw_pitch"][:, 0] = ids
    ws = torch.randn(count, 4, 6, generator=gen)
    ws[:, 0, 0] = ids
    params = torch.randn(count, 3, 2, 4, 4, generator=gen)
    params[:, 0, 0, 0, 0] = ids
    return batch, ws, params


def concat(*samples: tuple[dict[str, Tensor], Tensor, Tensor]) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    batch = {key: torch.cat([s[0][key] for s in samples]) for key in samples[0][0]}
    return batch, torch.cat([s[1] for s in samples]), torch.cat([s[2] for s in samples])


def assert_rows_equal(
    got: tuple[dict[str, Tensor], Tensor, Tensor], expected: tuple[dict[str, Tensor], Tensor, Tensor]
):
    assert got[0].keys() == expected[0].keys()
    for key in expected[0]:
        assert got[0][key].dtype == expected[0][key].dtype
        assert torch.equal(got[0][key], expected[0][key]), key
    assert torch.equal(got[1], expected[1])
    assert torch.equal(got[2], expected[2])


def all_rows_by_id(cache: TeacherCache) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Every row of the cache, ordered by id."""
    batch, ws, params = cache.sample(len(cache), torch.Generator().manual_seed(0))
    order = ws[:, 0, 0].argsort()
    return {key: value[order] for key, value in batch.items()}, ws[order], params[order]


def head(samples: tuple[dict[str, Tensor], Tensor, Tensor], count: int) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """The first ``count`` rows of samples."""
    return {key: value[:count] for key, value in samples[0].items()}, samples[1][:count], samples[2][:count]


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard-*.safetensors"))


def test_round_trip_across_instances(tmp_path: Path):
    first, second = make_samples(0, 3), make_samples(3, 2)
    cache = TeacherCache(tmp_path / "cache", capacity=10, fingerprint=FINGERPRINT)
    cache.add(*first)
    cache.add(*second)
    assert len(cache) == 5 and not cache.full
    assert len(shard_files(tmp_path / "cache")) == 2

    reopened = TeacherCache(tmp_path / "cache", capacity=10, fingerprint=FINGERPRINT)
    assert len(reopened) == 5
    assert_rows_equal(all_rows_by_id(reopened), concat(first, second))
    reopened.add(*make_samples(5, 1))
    assert len(TeacherCache(tmp_path / "cache", capacity=10, fingerprint=FINGERPRINT)) == 6


def test_capacity_drops_extra_rows(tmp_path: Path):
    cache = TeacherCache(tmp_path, capacity=4, fingerprint=FINGERPRINT)
    cache.add(*make_samples(0, 3))
    cache.add(*make_samples(3, 3))
    assert len(cache) == 4 and cache.full
    cache.add(*make_samples(6, 3))
    shards = shard_files(tmp_path)
    assert len(shards) == 2
    assert load_file(shards[1])["ws"].shape[0] == 1

    reopened = TeacherCache(tmp_path, capacity=4, fingerprint=FINGERPRINT)
    assert len(reopened) == 4 and reopened.full
    assert_rows_equal(all_rows_by_id(reopened), concat(make_samples(0, 3), head(make_samples(3, 3), 1)))


def test_smaller_capacity_reads_only_what_fits(tmp_path: Path):
    cache = TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)
    cache.add(*make_samples(0, 3))
    cache.add(*make_samples(3, 3))
    smaller = TeacherCache(tmp_path, capacity=2, fingerprint=FINGERPRINT)
    assert len(smaller) == 2 and smaller.full
    assert_rows_equal(all_rows_by_id(smaller), head(make_samples(0, 3), 2))


def test_different_fingerprint_raises(tmp_path: Path):
    TeacherCache(tmp_path, capacity=4, fingerprint=FINGERPRINT).add(*make_samples(0, 2))
    with pytest.raises(ValueError, match="different teacher or settings") as error:
        TeacherCache(tmp_path, capacity=4, fingerprint="another-teacher")
    message = str(error.value)
    assert str(tmp_path) in message and "delete the folder" in message and "teacher_cache" in message


@pytest.mark.parametrize("content", [b"", b"not a safetensors file", None], ids=["empty", "garbage", "truncated"])
def test_corrupt_shard_raises_naming_file(tmp_path: Path, content: bytes | None):
    cache = TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)
    cache.add(*make_samples(0, 2))
    cache.add(*make_samples(2, 2))
    bad = shard_files(tmp_path)[1]
    bad.write_bytes(bad.read_bytes()[:-10] if content is None else content)
    with pytest.raises(ValueError, match="corrupt or unreadable") as error:
        TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)
    assert str(bad) in str(error.value) and "delete it" in str(error.value)


def test_foreign_safetensors_file_raises(tmp_path: Path):
    save_file({"ws": torch.zeros(2, 3)}, str(tmp_path / "shard-000000.safetensors"))
    with pytest.raises(ValueError, match="not a version"):
        TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)


def test_mismatched_samples_raise_and_write_nothing(tmp_path: Path):
    cache = TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)
    batch, ws, params = make_samples(0, 3)
    with pytest.raises(ValueError, match="same sample count"):
        cache.add(batch, ws[:2], params)
    cache.add(batch, ws, params)

    other_size = make_samples(3, 2, size=SIZE * 2)
    with pytest.raises(ValueError, match="differ from the cache"):
        cache.add(*other_size)
    batch, ws, params = make_samples(3, 2)
    with pytest.raises(ValueError, match="differ from the cache"):
        cache.add({**batch, "mask": batch["mask"].float()}, ws, params)
    with pytest.raises(ValueError, match="differ from the cache"):
        cache.add({key: value for key, value in batch.items() if key != "mask"}, ws, params)
    assert len(cache) == 3 and len(shard_files(tmp_path)) == 1


def test_sample_rows_are_added_rows_consistent_and_seeded(tmp_path: Path):
    cache = TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)
    with pytest.raises(ValueError, match="empty"):
        cache.sample(2)
    added = concat(make_samples(0, 4), make_samples(4, 4))
    cache.add(*make_samples(0, 4))
    cache.add(*make_samples(4, 4))

    batch, ws, params = cache.sample(5, torch.Generator().manual_seed(7), device="cpu")
    ids = ws[:, 0, 0].long()
    assert len(set(ids.tolist())) == 5
    assert torch.equal(batch["yaw_pitch"][:, 0].long(), ids) and torch.equal(params[:, 0, 0, 0, 0].long(), ids)
    expected = ({key: value[ids] for key, value in added[0].items()}, added[1][ids], added[2][ids])
    assert_rows_equal((batch, ws, params), expected)

    again = cache.sample(5, torch.Generator().manual_seed(7))
    assert_rows_equal(again, (batch, ws, params))
    other = cache.sample(5, torch.Generator().manual_seed(8))
    assert not torch.equal(other[1], ws)

    batch, ws, params = cache.sample(20, torch.Generator().manual_seed(0))
    assert ws.shape[0] == 20 and set(ws[:, 0, 0].long().tolist()) <= set(range(8))
    assert torch.equal(batch["yaw_pitch"][:, 0], ws[:, 0, 0])


def test_leftover_temp_files_are_ignored(tmp_path: Path):
    cache = TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)
    cache.add(*make_samples(0, 2))
    (tmp_path / f".shard-000001.safetensors.999{teacher_cache.TEMP_SUFFIX}").write_bytes(b"half a shard")
    (tmp_path / "shard-000001.safetensors.tmp").write_bytes(b"")

    reopened = TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)
    assert len(reopened) == 2
    reopened.add(*make_samples(2, 2))
    assert len(TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)) == 4


def test_interrupted_write_leaves_no_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cache = TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)
    cache.add(*make_samples(0, 2))

    def interrupted(tensors: dict[str, Tensor], filename: str, metadata: dict[str, str]) -> None:
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher_cache, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.add(*make_samples(2, 2))
    assert len(cache) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["shard-000000.safetensors"]
    assert len(TeacherCache(tmp_path, capacity=10, fingerprint=FINGERPRINT)) == 2
