"""Durable files for every dppt package: the bottom layer, standard library only.

- :func:`write_atomic`: a whole file replaced atomically (tickets, run files, weights, reports).
- :func:`append_durably`, :func:`write_all`, :func:`fsync_dir`: appends that survive a crash
  (the privacy ledger, the release journal, a device's own release log).
- :func:`encode_float`, :func:`decode_float`, :func:`jsonable`: the one JSON spelling of the
  non-finite floats (``"inf"``, ``"-inf"``, ``"nan"``), which JSON itself cannot write.

Nothing here imports numpy, torch or Flower, so the privacy core and the report stay light.
"""

from storage.atomic import write_atomic
from storage.durable import append_durably, fsync_dir, write_all
from storage.json_values import decode_float, encode_float, jsonable

__all__ = ["append_durably", "decode_float", "encode_float", "fsync_dir", "jsonable", "write_all", "write_atomic"]
