"""storage: atomic writes, durable appends and the one JSON spelling of non-finite floats."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import append_durably, decode_float, encode_float, jsonable, write_all, write_atomic


def test_write_atomic_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "file.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_atomic_failure_keeps_old_file_and_removes_temporary(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    write_atomic(target, b"kept")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"lost")
    assert target.read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_append_durably_creates_with_mode_and_appends(tmp_path):
    path = tmp_path / "deep" / "log.jsonl"
    append_durably(path, b"a\n", mode=0o600)
    append_durably(path, b"b\n", mode=0o644)  # the mode applies only when the file is created
    assert path.read_bytes() == b"a\nb\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_all_retries_short_writes(tmp_path, monkeypatch):
    path = tmp_path / "out"
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, b"0123456789")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"0123456789"


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_encode_decode_float_round_trip_through_json(value):
    text = json.dumps(encode_float(value), allow_nan=False)  # valid JSON for every float
    back = decode_float(json.loads(text))
    assert (math.isnan(back) and math.isnan(value)) or back == value


def test_decode_float_leaves_other_values_alone():
    assert decode_float("1.5") == "1.5"  # a numeric-looking string is not a number
    assert decode_float("Infinity") == "Infinity"
    assert decode_float(3) == 3 and decode_float(None) is None


def test_jsonable_encodes_nested_and_numpy_values():
    payload = {"eps": math.inf, 1: [np.float32(0.5), (-math.inf, np.int64(3))], "name": "x"}
    out = jsonable(payload)
    assert out == {"eps": "inf", "1": [0.5, ["-inf", 3]], "name": "x"}
    json.dumps(out, allow_nan=False)
