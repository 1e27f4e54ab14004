"""The naive recorder that ``bench_ingest.py`` measures ingest against.

What a first script does with Kiwoom's REAL frames: ``json.loads`` each line, a dict per
entry, one pandas DataFrame, ``to_parquet``. No types, no validation, no partitions.
Usage: python benchmarks/naive_recorder.py FRAMES.ndjson OUT.parquet
"""

from __future__ import annotations

import json
import sys

import pandas as pd


def record(path: str, out: str) -> int:
    """Write every entry of the NDJSON file ``path`` to ``out``; returns the entry count."""
    rows = []
    with open(path) as f:
        for line in f:
            for e in json.loads(line)["data"]:
                d = dict(e["values"])
                d["type"], d["item"] = e["type"], e["item"]
                rows.append(d)
    pd.DataFrame(rows).to_parquet(out)
    return len(rows)


if __name__ == "__main__":
    record(sys.argv[1], sys.argv[2])
