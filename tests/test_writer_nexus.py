"""The file layout, without Redis: entry, measurement, instrument, default plot, links."""

import h5py
import numpy as np
import pytest
from nexusformat.nexus import nxload

from blissng.writer.nexus import (
    ScanFile,
    link_scan,
    rebuild_dataset_file,
    scan_file_path,
)


def document(tmp_path, number=1, name="ascan", motors=None, channels=None, metadata=None):
    channels = channels or {
        "m1": {"name": "m1", "dtype": "<f8", "shape": [], "unit": "mm", "device": "m1"},
        "diode": {"name": "diode", "dtype": "<f4", "shape": [], "unit": "cts", "device": "sim"},
        "mca1:spectrum": {
            "name": "mca1:spectrum", "dtype": "<u4", "shape": [16], "unit": None, "device": "mca1"
        },
    }  # fmt: skip
    return {
        "id": f"test-{number}",
        "session": "test",
        "number": number,
        "name": name,
        "title": f"{name} m1 0 1 9 0.1",
        "path": str(tmp_path / "sample" / "sample_0001.h5"),
        "save": True,
        "start_time": 1763930000.0,
        "motors": motors or [{"name": "m1", "start": 0.0, "stop": 1.0, "unit": "mm"}],
        "metadata": metadata or {"positioners": {"m1": 0.0, "m2": 5.5}},
        "channels": channels,
    }


def write_scan(doc, n=10):
    f = ScanFile(scan_file_path(doc), doc)
    assert f.open() == {name: 0 for name in doc["channels"]}
    values = {}
    for name, desc in doc["channels"].items():
        shape = (n, *desc["shape"])
        values[name] = np.arange(np.prod(shape)).reshape(shape).astype(desc["dtype"])
        # Two batches, as data arrives.
        f.write(name, 0, values[name][:4])
        f.write(name, 4, values[name][4:])
    f.flush()
    f.finish(1763930010.0, "success", None)
    f.close()
    return values


def test_scan_entry_layout_and_values(tmp_path):
    doc = document(tmp_path)
    values = write_scan(doc)
    path = scan_file_path(doc)
    assert path == tmp_path / "sample" / "scans" / "sample_0001_0001.h5"
    with h5py.File(path, "r", locking=False) as f:
        entry = f["1.1"]
        assert f.attrs["default"] == "1.1" and entry.attrs["NX_class"] == "NXentry"
        assert entry["title"][()].decode() == "ascan m1 0 1 9 0.1"
        assert entry["start_time"][()].decode().startswith("2025-11-23")
        assert entry["end_time"][()]
        for name, expected in values.items():
            np.testing.assert_array_equal(entry["measurement"][name][()], expected)
        assert entry["measurement/m1"].attrs["units"] == "mm"
        assert entry["measurement/mca1:spectrum"].shape == (10, 16)
        assert entry["instrument/positioners_start/m2"][()] == 5.5
        assert entry["instrument/m1"].attrs["NX_class"] == "NXpositioner"
        np.testing.assert_array_equal(
            entry["instrument/mca1/spectrum"][()], values["mca1:spectrum"]
        )
        plot = entry[entry.attrs["default"]]
        assert plot.attrs["NX_class"] == "NXdata"
        assert plot.attrs["signal"] == "diode" and list(plot.attrs["axes"]) == ["m1"]
        np.testing.assert_array_equal(plot["diode"][()], values["diode"])
    # nexusformat agrees: the default plot resolves to the counter against the motor.
    root = nxload(str(path), "r")
    plottable = root.get_default().get_default()
    assert plottable.nxsignal.nxname == "diode"
    assert plottable.nxaxes[0].nxname == "m1"


def test_mesh_gets_a_2d_map_with_back_and_forth_rows_reordered(tmp_path):
    channels = {
        "m1": {"name": "m1", "dtype": "<f8", "shape": [], "unit": None, "device": "m1"},
        "m2": {"name": "m2", "dtype": "<f8", "shape": [], "unit": None, "device": "m2"},
        "diode": {"name": "diode", "dtype": "<f8", "shape": [], "unit": None, "device": "sim"},
    }
    motors = [{"name": "m1", "start": 0, "stop": 2, "npoints": 3},
              {"name": "m2", "start": 0, "stop": 1, "npoints": 2}]  # fmt: skip
    doc = document(tmp_path, name="amesh", motors=motors, channels=channels)
    f = ScanFile(scan_file_path(doc), doc)
    f.open()
    # back and forth: row 0 goes 0,1,2; row 1 goes 2,1,0.
    m1 = np.array([0, 1, 2, 2, 1, 0], float)
    m2 = np.array([0, 0, 0, 1, 1, 1], float)
    diode = m1 * 10 + m2
    for name, data in (("m1", m1), ("m2", m2), ("diode", diode)):
        f.write(name, 0, data)
    f.finish(None, "success", None)
    f.close()
    with h5py.File(scan_file_path(doc), "r", locking=False) as h:
        plot = h["1.1/plot"]
        assert list(plot.attrs["axes"]) == ["m2", "m1"]
        np.testing.assert_array_equal(plot["diode"][()], [[0, 10, 20], [1, 11, 21]])
        np.testing.assert_array_equal(plot["m1"][()], [0, 1, 2])
        np.testing.assert_array_equal(plot["m2"][()], [0, 1])


def test_camera_frames_are_linked_not_copied(tmp_path):
    from blissng.acquisition.channels import REFERENCE_DTYPE

    frames = np.arange(3 * 4 * 5, dtype="<u2").reshape(3, 4, 5)
    camera_file = tmp_path / "cam" / "cam1_0001.h5"
    camera_file.parent.mkdir()
    with h5py.File(camera_file, "w") as cam:
        cam["entry/data"] = frames
    channels = {
        "cam1:image": {"name": "cam1:image", "dtype": "reference", "shape": [], "unit": None,
                       "device": "cam1", "kind": "reference"},
    }  # fmt: skip
    doc = document(tmp_path, channels=channels)
    refs = np.zeros(3, REFERENCE_DTYPE)
    for i in range(3):
        refs[i] = (str(camera_file).encode(), b"/entry/data", i)
    f = ScanFile(scan_file_path(doc), doc)
    f.open()
    f.write("cam1:image", 0, refs)
    f.finish(None, "success", None)
    f.close()
    with h5py.File(scan_file_path(doc), "r", locking=False) as h:
        image = h["1.1/measurement/cam1:image"]
        assert image.is_virtual
        np.testing.assert_array_equal(image[()], frames)


def test_resume_truncates_to_what_was_acknowledged(tmp_path):
    doc = document(tmp_path)
    f = ScanFile(scan_file_path(doc), doc)
    f.open()
    f.write("diode", 0, np.arange(8, dtype="<f4"))
    f.flush()
    f.close()  # as if the writer died here
    again = ScanFile(scan_file_path(doc), doc)
    assert again.open()["diode"] == 8
    again.truncate("diode", 5)
    again.write("diode", 5, np.array([50, 60, 70], "<f4"))
    again.close()
    with h5py.File(scan_file_path(doc), "r", locking=False) as h:
        np.testing.assert_array_equal(h["1.1/measurement/diode"][()], [0, 1, 2, 3, 4, 50, 60, 70])


def test_dataset_file_links_scans_and_can_be_rebuilt(tmp_path):
    docs = [document(tmp_path, number=n) for n in (1, 2, 3)]
    for doc in docs[:2]:
        write_scan(doc)
        link_scan(tmp_path / "sample" / "sample_0001.h5", scan_file_path(doc), f"{doc['number']}.1")
    # scan 3 is still running: no end_time, never linked by a rebuild
    running = ScanFile(scan_file_path(docs[2]), docs[2])
    running.open()
    running.close()
    master = tmp_path / "sample" / "sample_0001.h5"
    with h5py.File(master, "r", locking=False) as h:
        assert sorted(h) == ["1.1", "2.1"]
        assert h.get("1.1", getlink=True).filename == "scans/sample_0001_0001.h5"
        assert h["2.1/measurement/diode"].shape == (10,)
    master.write_bytes(b"not an hdf5 file any more")
    assert rebuild_dataset_file(master) == 2
    with h5py.File(master, "r", locking=False) as h:
        assert sorted(h) == ["1.1", "2.1"] and h.attrs["default"] == "2.1"
        assert h["1.1/title"][()].decode() == "ascan m1 0 1 9 0.1"


def test_unknown_channel_dtype_is_refused(tmp_path):
    channels = {"x": {"name": "x", "dtype": "not-a-dtype", "shape": [], "device": None}}
    doc = document(tmp_path, channels=channels)
    with pytest.raises(TypeError):
        ScanFile(scan_file_path(doc), doc).open()
