"""The writer's gathering of stream entries into points, without Redis nor a file
(blissng.writer._gather): entries in order, a resume inside an entry, points trimmed away
before they were read (filler, listed and told), the seal."""

import numpy as np

from blissng.writer._gather import Gatherer, Stream

FLOAT = np.dtype("float64")


def _entry(index: int, values: list[float]) -> list:
    """A data entry as XREAD sends it (fields flat)."""
    payload = np.asarray(values, FLOAT).tobytes()
    return [f"{index}-1".encode(), [b"n", str(len(values)).encode(), b"d", payload]]


def _seal(length: int) -> list:
    return [f"{length}-1".encode(), [b"end", str(length).encode()]]


def _stream(position: int = 0) -> Stream:
    return Stream("c", "blissng:scan:s:data:c", FLOAT, (), position)


def _points(gatherer: Gatherer) -> tuple[int, np.ndarray]:
    (batch, nbytes) = gatherer.take_pending()
    first, parts = batch["c"]
    data = np.frombuffer(b"".join(parts), FLOAT)
    assert nbytes == data.nbytes
    return first, data


def test_entries_in_order_up_to_the_seal():
    losses: list[tuple[str, int, int]] = []
    gatherer = Gatherer(lambda *loss: losses.append(loss))
    stream = _stream()
    gatherer.take(stream, [_entry(0, [1.0, 2.0]), _entry(2, [3.0]), _seal(3)])
    assert stream.finished and stream.position == 3 and stream.last_id == "3-1"
    first, data = _points(gatherer)
    assert first == 0 and data.tolist() == [1.0, 2.0, 3.0]
    assert losses == [] and gatherer.lost == {} and gatherer.nbytes == 0


def test_a_resume_inside_an_entry_takes_only_the_points_after_it():
    gatherer = Gatherer(lambda *loss: None)
    stream = _stream(position=1)
    gatherer.take(stream, [_entry(0, [1.0, 2.0, 3.0])])
    first, data = _points(gatherer)
    assert first == 1 and data.tolist() == [2.0, 3.0]
    assert stream.position == 3 and not stream.finished


def test_points_gone_before_they_were_read_become_filler_listed_and_told():
    losses: list[tuple[str, int, int]] = []
    gatherer = Gatherer(lambda *loss: losses.append(loss))
    stream = _stream()
    gatherer.take(stream, [_entry(2, [3.0]), _seal(5)])
    first, data = _points(gatherer)
    assert first == 0
    assert np.isnan(data[:2]).all() and data[2] == 3.0 and np.isnan(data[3:]).all()
    assert gatherer.lost == {"c": [(0, 2), (3, 5)]}
    assert losses == [("c", 0, 2), ("c", 3, 5)]
    assert stream.finished


def test_a_loss_found_again_by_a_writer_that_took_over_is_listed_once():
    gatherer = Gatherer(lambda *loss: None)
    gatherer.list_lost("c", [(0, 5)])  # listed by the writer before (read back from the file)
    stream = _stream(position=2)  # it acknowledged 2 points of filler, then failed
    gatherer.take(stream, [_seal(5)])
    first, data = _points(gatherer)
    assert first == 2 and len(data) == 3 and np.isnan(data).all()
    assert gatherer.lost == {"c": [(0, 5)]}


def test_lost_ranges_that_overlap_or_touch_are_listed_as_their_union():
    gatherer = Gatherer(lambda *loss: None)
    gatherer.list_lost("c", [(10, 20), (0, 5)])  # an earlier writer's, out of order
    gatherer.list_lost("c", [(3, 8), (20, 25), (40, 41)])  # found again, partly
    assert gatherer.lost == {"c": [(0, 8), (10, 25), (40, 41)]}
