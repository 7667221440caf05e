"""Helper of bench/files.sh: makes the benchmark's objects in moto (S3) and
reads them back raw.

  files.py put ENDPOINT BUCKET MB    writes ~MB of Parquet under pq/ and ~MB
                                     of gzipped CSV under csv/, in files of
                                     at most 64 MB; prints rows per format
  files.py read ENDPOINT BUCKET PREFIX
                                     reads every object under PREFIX whole
                                     (as `aws s3 cp` to /dev/null would);
                                     prints bytes and seconds

moto checks no signatures, so plain HTTP from the standard library is the
client; pyarrow (from the bqemulator venv of install-emulators.sh) writes
the files.
"""

import gzip
import io
import re
import sys
import time
import urllib.request

FILE_MB = 64


def table(first, rows):
    import pyarrow as pa

    ids = pa.array(range(first, first + rows), pa.int64())
    return pa.table(
        {
            "id": ids,
            "created_at": pa.array([1_704_067_200_000_000 + i * 1_000_000 for i in range(first, first + rows)],
                                   pa.timestamp("us", tz="UTC")),
            "customer_id": pa.array([i % 10_000 for i in range(first, first + rows)], pa.int32()),
            "amount": pa.array([(i % 100_000) / 100.0 for i in range(first, first + rows)], pa.float64()),
            "status": pa.array([("open", "paid", "shipped", "refunded")[i % 4] for i in range(first, first + rows)]),
            "note": pa.array([f"order note number {i}" for i in range(first, first + rows)]),
        }
    )


def parquet_bytes(t):
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(t, out, compression="zstd")
    return out.getvalue()


def csv_gz_bytes(t):
    import pyarrow.csv as pc

    out = io.BytesIO()
    pc.write_csv(t, out)
    return gzip.compress(out.getvalue(), compresslevel=6)


def put(endpoint, bucket, key, data):
    request = urllib.request.Request(f"{endpoint}/{bucket}/{key}", data=data, method="PUT")
    urllib.request.urlopen(request).read()


def fill(endpoint, bucket, folder, encode, extension, total_mb):
    """Writes files of ~FILE_MB until ~total_mb; returns the rows written."""
    target = min(FILE_MB, total_mb) * 1024 * 1024
    # Bytes per row, measured on a sample, sizes the files.
    sample = 100_000
    per_row = len(encode(table(0, sample))) / sample
    rows_per_file = max(1, int(target / per_row))
    written, first, n = 0, 0, 0
    while written < total_mb * 1024 * 1024:
        data = encode(table(first, rows_per_file))
        put(endpoint, bucket, f"{folder}/part-{n:05d}.{extension}", data)
        written += len(data)
        first += rows_per_file
        n += 1
    return first


def read(endpoint, bucket, prefix):
    listing = urllib.request.urlopen(f"{endpoint}/{bucket}?list-type=2&prefix={prefix}/").read().decode()
    keys = re.findall(r"<Key>([^<]+)</Key>", listing)
    started, size = time.monotonic(), 0
    for key in keys:
        with urllib.request.urlopen(f"{endpoint}/{bucket}/{key}") as response:
            while chunk := response.read(1 << 20):
                size += len(chunk)
    return size, time.monotonic() - started


if __name__ == "__main__":
    command, endpoint, bucket = sys.argv[1:4]
    if command == "put":
        mb = int(sys.argv[4])
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")).read()
        print(fill(endpoint, bucket, "pq", parquet_bytes, "parquet", mb),
              fill(endpoint, bucket, "csv", csv_gz_bytes, "csv.gz", mb))
    elif command == "read":
        size, seconds = read(endpoint, bucket, sys.argv[4])
        print(size, f"{seconds:.3f}")
    else:
        sys.exit(f"unknown command {command}")
