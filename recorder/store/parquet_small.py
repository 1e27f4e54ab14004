"""Many small Parquet files at once: the partitions of one flush, each its own file.

pyarrow's writer spends about 5 ms of CPU on a 166-column order-book file whatever its rows
(each column sets up its own writer, encoder, statistics and zstd context), so at
full-market width, 4,000 partitions a flush, it was most of an ingest's time. This writer
knows the store's flat schemas only (int64, float64, string and timestamp columns, nullable
or not) and does each column's work once for all the partitions of a flush with NumPy, then
compresses every page of every file in one call to zstd.

The files are plain Parquet: format 2.6, one row group, per column one data page (v1) of
PLAIN values with RLE / bit-packed definition levels, zstd; statistics (min, max, null
count) for the columns queries prune on; and the same key-value metadata pyarrow writes
for the schema (``ARROW:schema`` included), so pyarrow, DuckDB and Spark read the same
table from them as from pyarrow's own files (tests compare them value for value).

The Thrift compact encoding of the metadata is written by hand below; the field numbers are
those of ``parquet.thrift`` (PageHeader, ColumnMetaData, RowGroup, FileMetaData, ...).
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from recorder import __version__

#: What the files say wrote them (readers look at it only to work around old writers' bugs).
CREATED_BY = f"kiwoom-recorder version {__version__}".encode()

_MAGIC = b"PAR1"
# Parquet physical types, converted types, encodings, codecs.
_INT64, _DOUBLE, _BYTE_ARRAY = 2, 5, 6
_UTF8, _TIMESTAMP_MICROS = 0, 10
_PLAIN, _RLE = 0, 3
_ZSTD = 6
# Thrift compact type ids.
_T_I16, _T_I32, _T_I64, _T_BINARY, _T_LIST, _T_STRUCT = 4, 5, 6, 8, 9, 12


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_uvarint(n << 1) for n in range(1 << 16)]  # zigzag varints of small non-negative ints


def _z(n: int) -> bytes:
    """A Thrift compact i32/i64 (zigzag varint) of ``n`` >= 0."""
    return _SMALL[n] if n < 65536 else _uvarint(n << 1)


def _binary(b: bytes) -> bytes:
    return _uvarint(len(b)) + b


def _list_header(size: int, elem: int) -> bytes:
    return bytes([(size << 4) | elem]) if size < 15 else bytes([0xF0 | elem]) + _uvarint(size)


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    kind: str  # "i64", "f64" or "str"
    optional: bool
    stats: bool
    meta_head: bytes  # ColumnChunk up to ColumnMetaData.codec, all constant


class _Template:
    """What every file of one Arrow schema shares: column plans, schema and key-value metadata."""

    def __init__(self, schema: pa.Schema, stats: frozenset[str]) -> None:
        self.columns: list[_Column] = []
        elements = [b"\x35" + _z(0) + b"\x18" + _binary(b"schema") + b"\x15" + _z(len(schema)) + b"\x00"]
        for f in schema:
            kind, ptype, logical = _plan(f.type)
            name = f.name.encode()
            rep = 1 if f.nullable else 0
            element = b"\x15" + _z(ptype) + b"\x25" + _z(rep) + b"\x18" + _binary(name) + logical + b"\x00"
            elements.append(element)
            encodings = [_PLAIN, _RLE] if f.nullable else [_PLAIN]
            head = (
                b"\x26"  # 2: file_offset (i64)
                + _z(0)
                + b"\x1c"  # 3: meta_data (ColumnMetaData)
                + b"\x15"  # 1: type
                + _z(ptype)
                + b"\x19"  # 2: encodings
                + _list_header(len(encodings), _T_I32)
                + b"".join(_z(e) for e in encodings)
                + b"\x19"  # 3: path_in_schema
                + _list_header(1, _T_BINARY)
                + _binary(name)
                + b"\x15"  # 4: codec
                + _z(_ZSTD)
            )
            self.columns.append(_Column(f.name, kind, f.nullable, f.name in stats, head))
        self.schema_field = b"\x19" + _list_header(len(elements), _T_STRUCT) + b"".join(elements)
        # pyarrow's key-value metadata for this schema, ARROW:schema (the Arrow types) included.
        sink = io.BytesIO()
        pq.write_table(schema.empty_table(), sink)
        kv = pq.read_metadata(io.BytesIO(sink.getvalue())).metadata or {}
        pairs = [b"\x18" + _binary(k) + b"\x18" + _binary(v) + b"\x00" for k, v in kv.items()]
        self.tail = (
            (b"\x19" + _list_header(len(pairs), _T_STRUCT) + b"".join(pairs) if pairs else b"")  # 5
            + (b"\x18" if pairs else b"\x28")  # 6: created_by
            + _binary(CREATED_BY)
            + b"\x19"  # 7: column_orders, TypeDefinedOrder for every column
            + _list_header(len(schema), _T_STRUCT)
            + b"\x1c\x00\x00" * len(schema)
            + b"\x00"
        )
        self.n_columns = _list_header(len(schema), _T_STRUCT)


def _plan(t: pa.DataType) -> tuple[str, int, bytes]:
    """(kind, physical type, converted and logical type fields of its SchemaElement)."""
    if pa.types.is_int64(t):
        return "i64", _INT64, b""
    if pa.types.is_float64(t):
        return "f64", _DOUBLE, b""
    if pa.types.is_string(t):
        # 6: converted_type UTF8; 10: logicalType STRING
        return "str", _BYTE_ARRAY, b"\x25" + _z(_UTF8) + b"\x4c\x1c\x00\x00"
    if pa.types.is_timestamp(t) and t.unit == "us":
        utc = b"\x11" if t.tz else b"\x12"
        # 6: converted_type TIMESTAMP_MICROS; 10: logicalType TIMESTAMP(isAdjustedToUTC, MICROS)
        return (
            "i64",
            _INT64,
            b"\x25" + _z(_TIMESTAMP_MICROS) + b"\x4c\x8c" + utc + b"\x1c\x2c\x00\x00\x00\x00",
        )
    raise TypeError(f"the small-file Parquet writer does not write {t}")


_TEMPLATES: dict[tuple[pa.Schema, frozenset[str]], _Template] = {}


def _template(schema: pa.Schema, stats: frozenset[str]) -> _Template:
    tpl = _TEMPLATES.get((schema, stats))
    if tpl is None:
        tpl = _TEMPLATES[(schema, stats)] = _Template(schema, stats)
    return tpl


def prepare(schema: pa.Schema, stats: frozenset[str] = frozenset()) -> None:
    """Do now the one-time work of the first :func:`write_files` of ``schema`` (about 0.1 s:
    pyarrow's metadata for it, and the imports pyarrow makes for that)."""
    _template(schema, stats)


def supports(schema: pa.Schema) -> bool:
    """Whether :func:`write_files` writes tables of ``schema``."""
    try:
        for f in schema:
            _plan(f.type)
    except TypeError:
        return False
    return True


def write_files(
    table: pa.Table, starts: list[int], *, stats: frozenset[str] = frozenset(), level: int = 1
) -> list[bytes]:
    """One Parquet file's bytes for each range of rows ``[starts[i], starts[i+1])`` of ``table``.

    The three steps, :func:`encode`, :func:`compress` and :func:`assemble`, can be called
    separately, so that one group's compression (which releases the GIL) overlaps the
    encoding and assembly of others.

    Args:
        table: rows of several files back to back, each file's already in its order.
        starts: the first row of each file, then ``len(table)``; ranges must not be empty.
        stats: columns whose min, max and null count go into the metadata.
        level: zstd level.

    Raises:
        TypeError: a column of a type this writer does not handle (see :func:`supports`).
    """
    encoded = encode(table, starts, stats=stats)
    return assemble(encoded, compress(encoded, level))


@dataclass(slots=True)
class Encoded:
    """The uncompressed pages of a group of files (:func:`encode`)."""

    tpl: _Template
    rows: np.ndarray  # of each file
    columns: list[_ColumnPages]
    bodies: list[bytes | bytearray | memoryview]  # every page, file-major


def encode(table: pa.Table, starts: list[int], *, stats: frozenset[str] = frozenset()) -> Encoded:
    """The page bodies of the files of :func:`write_files` (same arguments)."""
    tpl = _template(table.schema, stats)
    bounds = np.asarray(starts, dtype=np.int64)
    n_files = len(bounds) - 1
    rows = np.diff(bounds)
    columns = [_pages(table.column(i), c, bounds, rows) for i, c in enumerate(tpl.columns)]
    bodies: list[bytes | bytearray | memoryview] = [col.bodies[i] for i in range(n_files) for col in columns]
    return Encoded(tpl, rows, columns, bodies)


def compress(encoded: Encoded, level: int = 1) -> zstandard.BufferWithSegmentsCollection:
    """Every page through zstd in one call, on every core; the GIL is released meanwhile."""
    return zstandard.ZstdCompressor(level=level).multi_compress_to_buffer(encoded.bodies, threads=-1)


def assemble(encoded: Encoded, packed: zstandard.BufferWithSegmentsCollection) -> list[bytes]:
    """The files' bytes, from their pages compressed by :func:`compress`."""
    tpl, rows, columns = encoded.tpl, encoded.rows, encoded.columns
    n_files = len(rows)
    out = []
    k = 0
    z = _z
    for i in range(n_files):
        n_rows = int(rows[i])
        zr = z(n_rows)
        # PageHeader 5: data_page_header; 1: num_values; encodings PLAIN, RLE, RLE
        page_tail = b"\x2c\x15" + zr + b"\x15\x00\x15\x06\x15\x06\x00\x00"
        parts: list[bytes | zstandard.BufferSegment] = [_MAGIC]
        metas: list[bytes] = []
        offset = 4
        total_u = total_c = 0
        for col in columns:
            body_len = col.lengths[i]
            comp = packed[k]  # a zstd frame, in the buffer zstd wrote it to
            k += 1
            comp_len = len(comp)
            # PageHeader 1: type DATA_PAGE; 2: uncompressed_page_size; 3: compressed_page_size
            header = b"".join((b"\x15\x00\x15", z(body_len), b"\x15", z(comp_len), page_tail))
            parts += (header, comp)
            size_u, size_c = len(header) + body_len, len(header) + comp_len
            # ColumnMetaData 5: num_values; 6: total_uncompressed_size; 7: total_compressed_size;
            # 9: data_page_offset
            metas += (col.head, b"\x16", zr, b"\x16", z(size_u), b"\x16", z(size_c), b"\x26", z(offset))
            if col.stats is not None:
                metas += (b"\x3c\x36", z(col.nulls[i]))  # 12: statistics; 3: null_count
                st = col.stats[i]
                if st is not None:  # 5: max_value, 6: min_value
                    metas += (b"\x28", _binary(st[1]), b"\x18", _binary(st[0]))
                metas.append(b"\x00")
            metas.append(b"\x00\x00")  # ends ColumnMetaData and ColumnChunk
            offset += size_c
            total_u += size_u
            total_c += size_c
        row_group = (
            b"\x19"  # RowGroup 1: columns
            + tpl.n_columns
            + b"".join(metas)
            + b"\x16"  # 2: total_byte_size
            + _z(total_u)
            + b"\x16"  # 3: num_rows
            + zr
            + b"\x26"  # 5: file_offset
            + _z(4)
            + b"\x16"  # 6: total_compressed_size
            + _z(total_c)
            + b"\x14"  # 7: ordinal
            + _z(0)
            + b"\x00"
        )
        footer = (
            b"\x15"  # FileMetaData 1: version
            + _z(2)
            + tpl.schema_field  # 2: schema
            + b"\x16"  # 3: num_rows
            + zr
            + b"\x19\x1c"  # 4: row_groups, one
            + row_group
            + tpl.tail  # 5: key_value_metadata, 6: created_by, 7: column_orders, stop
        )
        parts.append(footer)
        parts.append(struct.pack("<I", len(footer)))
        parts.append(_MAGIC)
        out.append(b"".join(parts))  # type: ignore[arg-type]  # BufferSegment is a buffer
    return out


@dataclass(slots=True)
class _ColumnPages:
    head: bytes
    bodies: list[bytes]
    lengths: list[int]  # of the bodies
    nulls: list[int]
    stats: list[tuple[bytes, bytes] | None] | None  # None: the column has no statistics


def _pages(arr: pa.ChunkedArray, col: _Column, bounds: np.ndarray, rows: np.ndarray) -> _ColumnPages:
    """The page body of ``col`` for each file: definition levels (if optional), PLAIN values."""
    a = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    n = len(a)
    n_files = len(rows)
    valid = None
    if a.null_count:
        valid = np.unpackbits(np.frombuffer(a.buffers()[0], np.uint8), bitorder="little")[
            a.offset : a.offset + n
        ].astype(bool)
    # Where each file's non-null values start among the column's non-null values.
    if valid is None:
        nn_bounds = bounds
        nulls = [0] * n_files
    else:
        nn_bounds = np.concatenate([[0], np.cumsum(valid)])[bounds]
        nulls = (rows - np.diff(nn_bounds)).tolist()
    # PLAIN values of the non-null rows, back to back, and where each file's begin (bytes).
    if col.kind == "str":
        plain, byte_bounds = _plain_strings(a, valid, nn_bounds)
    else:
        width = 8
        dtype = np.int64 if col.kind == "i64" else np.float64
        values = np.frombuffer(a.buffers()[1], dtype)[a.offset : a.offset + n]
        if valid is not None:
            values = values[valid]
        plain = np.ascontiguousarray(values).view(np.uint8).data
        byte_bounds = nn_bounds * width
    bb = byte_bounds.tolist()
    if not col.optional:
        bodies = [bytes(plain[bb[i] : bb[i + 1]]) for i in range(n_files)]
    else:
        bodies = []
        b = bounds.tolist()
        for i in range(n_files):
            r = b[i + 1] - b[i]
            if nulls[i] == 0:
                levels = _run_of(r, 1)
            elif nulls[i] == r:
                levels = _run_of(r, 0)
            else:
                assert valid is not None
                packed = np.packbits(valid[b[i] : b[i + 1]], bitorder="little").tobytes()
                bits = _uvarint((len(packed) << 1) | 1) + packed  # bit-packed, width 1
                levels = struct.pack("<I", len(bits)) + bits
            bodies.append(levels + plain[bb[i] : bb[i + 1]])
    stats = _stats(a, col, valid, bounds, nn_bounds, nulls) if col.stats else None
    return _ColumnPages(col.meta_head, bodies, [len(b) for b in bodies], nulls, stats)


@functools.lru_cache(maxsize=4096)
def _run_of(rows: int, level: int) -> bytes:
    """Definition levels of a page whose values are all present (1) or all null (0): one RLE
    run, after its 4-byte length."""
    run = _uvarint(rows << 1) + bytes([level])
    return struct.pack("<I", len(run)) + run


def _plain_strings(
    a: pa.Array, valid: np.ndarray | None, nn_bounds: np.ndarray
) -> tuple[memoryview, np.ndarray]:
    """PLAIN byte arrays (4-byte length, bytes) of the non-null strings of ``a``, and where each
    file's begin."""
    if pa.types.is_large_string(a.type):
        raise TypeError("large strings")
    offsets = np.frombuffer(a.buffers()[1], np.int32)[a.offset : a.offset + len(a) + 1]
    data = np.frombuffer(a.buffers()[2], np.uint8) if a.buffers()[2] is not None else np.empty(0, np.uint8)
    lengths = np.diff(offsets)
    chars = data[offsets[0] : offsets[-1]]
    if valid is not None:
        chars = chars[np.repeat(valid, lengths)]
        lengths = lengths[valid]
    k = len(lengths)
    sizes = lengths + 4
    ends = np.cumsum(sizes)
    out = np.zeros(int(ends[-1]) if k else 0, np.uint8)
    if k:
        starts = ends - sizes
        prefix = lengths.astype("<u4").view(np.uint8).reshape(k, 4)
        out[(starts[:, None] + np.arange(4)).ravel()] = prefix.ravel()
        is_char = np.ones(len(out), bool)
        is_char[(starts[:, None] + np.arange(4)).ravel()] = False
        out[is_char] = chars
    byte_bounds = np.concatenate([[0], ends])[nn_bounds]
    return out.data, byte_bounds


def _stats(
    a: pa.Array,
    col: _Column,
    valid: np.ndarray | None,
    bounds: np.ndarray,
    nn_bounds: np.ndarray,
    nulls: list[int],
) -> list[tuple[bytes, bytes] | None]:
    """(min, max) of each file's non-null values, PLAIN-encoded; None for a file of nulls only."""
    n_files = len(bounds) - 1
    words: list[bytes] | None = None
    if col.kind == "str":
        # Each string's rank among the column's distinct values (bytewise, as Parquet orders
        # byte arrays), then the same per-file min and max of ranks as for numbers.
        encoded = pc.dictionary_encode(a)
        distinct = [v.encode() for v in encoded.dictionary.to_pylist()]
        words = sorted(distinct)
        position = {w: k for k, w in enumerate(words)}
        rank = np.array([position[w] for w in distinct], np.int64)
        indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        values = rank[indices] if len(rank) else np.zeros(len(a), np.int64)
    elif col.kind == "i64":
        values = np.frombuffer(a.buffers()[1], np.int64)[a.offset : a.offset + len(a)]
    else:
        raise TypeError(f"{col.name}: statistics only for int64, timestamp and string columns")
    if valid is not None:
        values = values[valid]
    has = np.diff(nn_bounds) > 0
    out: list[tuple[bytes, bytes] | None] = [None] * n_files
    if has.any():
        at = nn_bounds[:-1][has]
        lo = np.minimum.reduceat(values, at).tolist()
        hi = np.maximum.reduceat(values, at).tolist()
        # reduceat runs each segment to the next start: the last file of values ends at the end.
        for j, i in enumerate(np.flatnonzero(has).tolist()):
            if words is None:
                out[i] = (struct.pack("<q", lo[j]), struct.pack("<q", hi[j]))
            else:
                out[i] = (words[lo[j]], words[hi[j]])
    return out
