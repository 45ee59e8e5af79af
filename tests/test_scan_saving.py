"""SCAN_SAVING: paths from the template, persisted values, new data sets, claims that keep two
sessions off the same file, and file-system checks in threads with timeouts."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from blissng.redisdb import RedisUrls, SettingsStore, async_client
from blissng.scans import FileSystemTimeout, ScanSaving, ScanSavingError
from blissng.scans._fs import fs_call

pytestmark = pytest.mark.anyio


async def test_paths_follow_the_template(tmp_path: Path) -> None:
    saving = ScanSaving("s1")
    await saving.set(base_path=str(tmp_path), proposal="ihma1", collection="lyso")
    assert saving.root_path == f"{tmp_path}/ihma1/lyso/lyso_0001"
    assert saving.filename == f"{tmp_path}/ihma1/lyso/lyso_0001/lyso_0001.h5"
    await saving.set(data_filename="{session}_{dataset}.h5")
    assert saving.filename.endswith("lyso_0001/s1_0001.h5")


async def test_bad_values_are_refused_with_the_reason(tmp_path: Path) -> None:
    saving = ScanSaving("s1")
    with pytest.raises(ScanSavingError, match="letters, digits"):
        await saving.set(collection="my sample/..")
    with pytest.raises(ScanSavingError, match="absolute"):
        await saving.set(base_path="relative/dir")
    with pytest.raises(ScanSavingError, match="unknown field"):
        await saving.set(template="{proposal}/{beamline}")
    with pytest.raises(AttributeError, match="no parameter 'colection'"):
        await anyio.to_thread.run_sync(setattr, saving, "colection", "x")
    assert saving.collection == "sample"


async def test_values_persist_in_settings(redis_urls: RedisUrls, tmp_path: Path) -> None:
    client = async_client(redis_urls.settings)
    try:
        saving = ScanSaving("s1", settings=SettingsStore(client))
        await saving.load()
        # From a console thread, an attribute write is stored at once.
        await anyio.to_thread.run_sync(setattr, saving, "collection", "lyso")
        again = ScanSaving("s1", settings=SettingsStore(client))
        await again.load()
        assert again.collection == "lyso"
        other = ScanSaving("s2", settings=SettingsStore(client))
        await other.load()
        assert other.collection == "sample"
    finally:
        await client.aclose()


async def test_two_sessions_never_share_a_file(redis_urls: RedisUrls, tmp_path: Path) -> None:
    client = async_client(redis_urls.settings)
    try:
        s1 = ScanSaving("s1", settings=SettingsStore(client))
        s2 = ScanSaving("s2", settings=SettingsStore(client))
        for saving in (s1, s2):
            await saving.set(base_path=str(tmp_path))
        path = await s1.prepare()
        assert Path(path).parent.is_dir()
        with pytest.raises(ScanSavingError, match="session 's1'"):
            await s2.prepare()
        # A new data set skips the one s1 claimed.
        assert await s2.newdataset() == "0002"
        assert (await s2.prepare()) != path
        # s1 can prepare its file again (the claim is its own).
        assert await s1.prepare() == path
        assert await s1.newdataset("calib") == "calib"
    finally:
        await client.aclose()


async def test_newdataset_skips_datasets_on_disk(tmp_path: Path) -> None:
    saving = ScanSaving("s1")
    await saving.set(base_path=str(tmp_path))
    os.makedirs(f"{tmp_path}/inhouse/sample/sample_0002")
    assert await saving.newdataset() == "0003"


async def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inhouse").write_text("not a directory")
    saving = ScanSaving("s1")
    await saving.set(base_path=str(tmp_path))
    with pytest.raises(OSError):
        await saving.prepare()


async def test_too_little_free_space_is_refused(tmp_path: Path) -> None:
    saving = ScanSaving("s1")
    await saving.set(base_path=str(tmp_path), min_free_mb=1e12)
    with pytest.raises(OSError, match="MB free"):
        await saving.prepare()


async def test_stuck_file_system_query_times_out_and_then_fails_fast() -> None:
    release = threading.Event()
    try:
        with anyio.fail_after(5):
            with pytest.raises(FileSystemTimeout, match="statvfs /nfs did not answer"):
                await fs_call("statvfs /nfs", release.wait, timeout=0.05)
            with pytest.raises(FileSystemTimeout, match="stuck"):
                await fs_call("statvfs /nfs", release.wait, timeout=0.05)
    finally:
        release.set()


async def test_null_writer_publishes_without_saving(tmp_path: Path) -> None:
    from blissng.scans import ScanContext, ascan, use_context
    from test_scans import make_devices

    saving = ScanSaving("s1")
    await saving.set(base_path=str(tmp_path), writer="null")
    dev = make_devices()
    with use_context(ScanContext(scan_saving=saving, output=None)):
        scan = await ascan(dev.m1, 0, 1, 1, 0, dev.sim)
    assert scan.path is None and not any(tmp_path.iterdir())
    with pytest.raises(ScanSavingError, match="writer"):
        await saving.set(writer="spec")
