"""Helper of bench/files.sh: makes the benchmark's objects and reads them
back raw.

  files.py make DIR MB [FILE_MB]     (pyarrow) writes ~MB of Parquet under
                                     DIR/pq/ and ~MB of gzipped CSV under
                                     DIR/csv/, in files of at most FILE_MB
                                     (default 64); prints rows per format
  files.py put ENDPOINT BUCKET DIR   (boto3) uploads DIR's files to a new bucket
  files.py read ENDPOINT BUCKET PREFIX [DIR]
                                     (boto3) reads every object under PREFIX
                                     whole (as `aws s3 cp` to /dev/null
                                     would), or into files under DIR (as
                                     `aws s3 cp --recursive DIR` would, no
                                     fsync); prints bytes and seconds
"""

import gzip
import io
import os
import sys
import time

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


def fill(directory, folder, encode, extension, total_mb, file_mb=FILE_MB):
    """Writes files of ~file_mb until ~total_mb; returns the rows written."""
    target = min(file_mb, total_mb) * 1024 * 1024
    # Bytes per row, measured on a sample, sizes the files.
    sample = 100_000
    per_row = len(encode(table(0, sample))) / sample
    rows_per_file = max(1, int(target / per_row))
    os.makedirs(os.path.join(directory, folder), exist_ok=True)
    written, first, n = 0, 0, 0
    while written < total_mb * 1024 * 1024:
        data = encode(table(first, rows_per_file))
        with open(os.path.join(directory, folder, f"part-{n:05d}.{extension}"), "wb") as f:
            f.write(data)
        written += len(data)
        first += rows_per_file
        n += 1
    return first


def s3(endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                        region_name="us-east-1")


def put(endpoint, bucket, directory):
    client = s3(endpoint)
    client.create_bucket(Bucket=bucket)
    for root, _, names in os.walk(directory):
        for name in sorted(names):
            path = os.path.join(root, name)
            client.upload_file(path, bucket, os.path.relpath(path, directory))


def read(endpoint, bucket, prefix, directory=None):
    client = s3(endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")["Contents"]]
    started, size = time.monotonic(), 0
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        out = open(os.path.join(directory, key.replace("/", "_")), "wb") if directory else None
        while chunk := body.read(1 << 20):
            size += len(chunk)
            if out:
                out.write(chunk)
        if out:
            out.close()
    return size, time.monotonic() - started


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "make":
        directory, mb = sys.argv[2], int(sys.argv[3])
        file_mb = int(sys.argv[4]) if len(sys.argv) > 4 else FILE_MB
        print(fill(directory, "pq", parquet_bytes, "parquet", mb, file_mb),
              fill(directory, "csv", csv_gz_bytes, "csv.gz", mb, file_mb))
    elif command == "put":
        put(*sys.argv[2:5])
    elif command == "read":
        size, seconds = read(*sys.argv[2:6])
        print(size, f"{seconds:.3f}")
    else:
        sys.exit(f"unknown command {command}")
