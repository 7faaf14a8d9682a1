"""The local stack's BigQuery: bqemulator (PyPI) over DuckDB, started offline.

bqemulator runs `INSTALL spatial` at start, which downloads DuckDB's spatial extension; here the
extension comes from the PyPI package duckdb-extension-spatial (pinned with duckdb in
requirements.txt) and is installed into DuckDB's extension directory first, so the download never
happens. `gs://BUCKET/PATH` in load and extract jobs resolves under BQEMU_GCS_LOCAL_ROOT, which the
stack points at fake-gcs-server's filesystem root.

    python -m dropbatch.local.bigquery --rest-port P --grpc-port Q --project PROJECT
"""

from __future__ import annotations

import sys


def preinstall_spatial() -> None:
    """Install DuckDB's spatial extension from its PyPI package (so bqemulator's INSTALL finds it
    installed)."""
    import duckdb
    from duckdb_extensions import import_extension

    con = duckdb.connect()
    try:
        import_extension("spatial", con=con)
    finally:
        con.close()


def main(argv: list[str]) -> int:
    try:
        preinstall_spatial()
        from bqemulator.cli import main as bqemulator
    except ImportError as e:
        print(
            f"the local BigQuery is missing ({e.name}): pip install -r requirements.txt",
            file=sys.stderr,
        )
        return 2
    return bqemulator(["start", "--ephemeral", "--no-admin", *argv], standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
