"""The file layout, without Redis: entry, measurement, instrument, default plot, links."""

import h5py
import numpy as np
import pytest
from nexusformat.nexus import nxload

from blissng.acquisition import ChannelSpec
from blissng.data import ScanDocument
from blissng.writer import ScanFile, rebuild_dataset_file, scan_file_path
from blissng.writer._files import link_scan

SPECS = [
    ChannelSpec("axis:m1", "float64", (), "mm", "m1", role="axis"),
    ChannelSpec("timer:elapsed_time", "float64", (), "s", "timer", role="time"),
    ChannelSpec("simct:diode", "float32", (), "cts", "simct"),
    ChannelSpec("mca1:spectrum", "uint32", (16,), None, "mca1"),
]


def document(tmp_path, number=1, name="ascan", motors=None, specs=SPECS, metadata=None):
    """A scan document as the publisher writes it (channel names as the chain makes them)."""
    scan = ScanDocument(
        session="test",
        number=number,
        name=name,
        title=f"{name} m1 0 1 9 0.1",
        path=str(tmp_path / "sample" / "sample_0001.h5"),
        motors=motors or [{"name": "m1", "start": 0.0, "stop": 1.0, "unit": "mm"}],
        metadata=metadata or {"positioners": {"m1": 0.0, "m2": 5.5}},
        id=f"test-{number}",
    )
    return scan.to_json_dict(specs, 1763930000.0)


def write_scan(doc, n=10):
    f = ScanFile(scan_file_path(doc), doc)
    assert f.open() == {name: 0 for name in doc["channels"]}
    values = {}
    for name, desc in doc["channels"].items():
        shape = (n, *desc["shape"])
        values[name] = np.arange(np.prod(shape)).reshape(shape).astype(desc["dtype"])
        if name == "simct:diode":  # a peak, so the plot's signal is told apart from the rest
            values[name] = (100 - (np.arange(n) - n / 2) ** 2).astype(desc["dtype"])
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
        # Dataset names are what users typed; the full channel name is kept as an attribute.
        labels = {"axis:m1": "m1", "timer:elapsed_time": "elapsed_time",
                  "simct:diode": "diode", "mca1:spectrum": "spectrum"}  # fmt: skip
        assert sorted(entry["measurement"]) == sorted(labels.values())
        for name, expected in values.items():
            dataset = entry["measurement"][labels[name]]
            np.testing.assert_array_equal(dataset[()], expected)
            assert dataset.attrs["channel"] == name
        assert entry["measurement/m1"].attrs["units"] == "mm"
        assert entry["measurement/spectrum"].shape == (10, 16)
        assert entry["instrument/positioners_start/m2"][()] == 5.5
        assert entry["instrument/m1"].attrs["NX_class"] == "NXpositioner"
        np.testing.assert_array_equal(entry["instrument/m1/value"][()], values["axis:m1"])
        assert entry["instrument/mca1"].attrs["NX_class"] == "NXdetector"
        np.testing.assert_array_equal(
            entry["instrument/mca1/spectrum"][()], values["mca1:spectrum"]
        )
        plot = entry[entry.attrs["default"]]
        assert plot.attrs["NX_class"] == "NXdata"
        assert plot.attrs["signal"] == "diode" and list(plot.attrs["axes"]) == ["m1"]
        np.testing.assert_array_equal(plot["diode"][()], values["simct:diode"])
        np.testing.assert_array_equal(plot["m1"][()], values["axis:m1"])
    # nexusformat agrees: the default plot resolves to the counter against the motor.
    root = nxload(str(path), "r")
    plottable = root.get_default().get_default()
    assert plottable.nxsignal.nxname == "diode"
    assert plottable.nxaxes[0].nxname == "m1"


def test_mesh_gets_a_2d_map_with_back_and_forth_rows_reordered(tmp_path):
    specs = [
        ChannelSpec("axis:m1", "float64", device="m1", role="axis"),
        ChannelSpec("axis:m2", "float64", device="m2", role="axis"),
        ChannelSpec("timer:elapsed_time", "float64", unit="s", device="timer", role="time"),
        ChannelSpec("simct:diode", "float64", device="simct"),
    ]
    motors = [{"name": "m1", "start": 0, "stop": 2, "npoints": 3},
              {"name": "m2", "start": 0, "stop": 1, "npoints": 2}]  # fmt: skip
    doc = document(tmp_path, name="amesh", motors=motors, specs=specs)
    assert [m["channel"] for m in doc["motors"]] == ["axis:m1", "axis:m2"]
    f = ScanFile(scan_file_path(doc), doc)
    f.open()
    # back and forth: row 0 goes 0,1,2; row 1 goes 2,1,0.
    m1 = np.array([0, 1, 2, 2, 1, 0], float)
    m2 = np.array([0, 0, 0, 1, 1, 1], float)
    diode = m1 * 10 + m2
    for name, data in (("axis:m1", m1), ("axis:m2", m2), ("simct:diode", diode),
                       ("timer:elapsed_time", np.arange(6.0))):  # fmt: skip
        f.write(name, 0, data)
    f.finish(None, "success", None)
    f.close()
    with h5py.File(scan_file_path(doc), "r", locking=False) as h:
        plot = h["1.1/plot"]
        assert list(plot.attrs["axes"]) == ["m2", "m1"]
        np.testing.assert_array_equal(plot["diode"][()], [[0, 10, 20], [1, 11, 21]])
        np.testing.assert_array_equal(plot["m1"][()], [0, 1, 2])
        np.testing.assert_array_equal(plot["m2"][()], [0, 1])
    plottable = nxload(str(scan_file_path(doc)), "r").get_default().get_default()
    assert plottable.nxsignal.nxname == "diode"
    assert [axis.nxname for axis in plottable.nxaxes] == ["m2", "m1"]


def test_camera_frames_are_linked_not_copied(tmp_path):
    from blissng.acquisition import REFERENCE_DTYPE

    frames = np.arange(3 * 4 * 5, dtype="<u2").reshape(3, 4, 5)
    camera_file = tmp_path / "cam" / "cam1_0001.h5"
    camera_file.parent.mkdir()
    with h5py.File(camera_file, "w") as cam:
        cam["entry/data"] = frames
    specs = [ChannelSpec("cam1:image", "reference", device="cam1", kind="reference")]
    doc = document(tmp_path, specs=specs)
    refs = np.zeros(3, REFERENCE_DTYPE)
    for i in range(3):
        refs[i] = (str(camera_file).encode(), b"/entry/data", i)
    f = ScanFile(scan_file_path(doc), doc)
    f.open()
    f.write("cam1:image", 0, refs)
    f.finish(None, "success", None)
    f.close()
    with h5py.File(scan_file_path(doc), "r", locking=False) as h:
        assert "image_references" in h["1.1/measurement"]
        image = h["1.1/measurement/image"]
        assert image.is_virtual
        np.testing.assert_array_equal(image[()], frames)


def test_resume_truncates_to_what_was_acknowledged(tmp_path):
    doc = document(tmp_path)
    f = ScanFile(scan_file_path(doc), doc)
    f.open()
    f.write("simct:diode", 0, np.arange(8, dtype="<f4"))
    f.flush()
    f.close()  # as if the writer died here
    again = ScanFile(scan_file_path(doc), doc)
    assert again.open()["simct:diode"] == 8
    again.truncate("simct:diode", 5)
    again.write("simct:diode", 5, np.array([50, 60, 70], "<f4"))
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
    doc = document(tmp_path)
    doc["channels"]["simct:diode"]["dtype"] = "not-a-dtype"
    with pytest.raises(TypeError):
        ScanFile(scan_file_path(doc), doc).open()


def test_an_entry_left_half_made_is_completed_on_open(tmp_path):
    """A writer stopped while it created a scan's entry (a server stopping as a loopscan is
    aborted) left the entry owned but without its datasets; the next open took it as whole
    and every try to write the scan failed with KeyError "'elapsed_time' doesn't exist"."""
    doc = document(tmp_path)
    path = scan_file_path(doc)
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as half_made:  # what the stopped writer had written
        entry = half_made.create_group("1.1")
        entry.attrs["blissng_scan_id"] = doc["id"]
        entry.create_group("measurement").create_dataset("m1", (0,), "<f8", maxshape=(None,))
    f = ScanFile(path, doc)
    assert f.open() == {name: 0 for name in doc["channels"]}
    f.write("timer:elapsed_time", 0, np.array([0.0, 0.1]))
    f.finish(1763930010.0, "aborted", "aborted by the user")
    f.close()
    with h5py.File(path, "r", locking=False) as h:
        entry = h["1.1"]
        assert sorted(entry["measurement"]) == ["diode", "elapsed_time", "m1", "spectrum"]
        np.testing.assert_array_equal(entry["measurement/elapsed_time"][()], [0.0, 0.1])
        assert entry["instrument/positioners_start/m2"][()] == 5.5
        assert entry.attrs["end_reason"] == "aborted"
