"""The DuckDB side of `just bench`: the same work as goalpost's stages, timed in-process.

    python peer.py csv_to_table <requests.csv> <out.parquet>
    python peer.py indicators <requests.parquet>

Prints one JSON object: {"seconds": <wall time of the work>, "duckdb": <version>, ...}.
The benchmark measures the process's peak memory itself.
"""

import json
import sys
import time

import duckdb

TZ = "America/New_York"

COLUMNS = {
    "Unique Key": "BIGINT",
    "Created Date": "TIMESTAMP",
    "Closed Date": "TIMESTAMP",
    "Agency": "VARCHAR",
    "Complaint Type": "VARCHAR",
    "Descriptor": "VARCHAR",
    "Incident Address": "VARCHAR",
    "Status": "VARCHAR",
    "Community Board": "VARCHAR",
    "Latitude": "DOUBLE",
    "Longitude": "DOUBLE",
}


def csv_to_table(con, src, out):
    # Typed as goalpost types them: local New York times become UTC instants.
    started = time.perf_counter()
    con.execute(
        f"""
        COPY (
            SELECT "Unique Key" AS request_id,
                   timezone('{TZ}', "Created Date") AS created_at,
                   timezone('{TZ}', "Closed Date") AS closed_at,
                   "Agency" AS agency,
                   "Complaint Type" AS complaint_type,
                   "Descriptor" AS descriptor,
                   "Incident Address" AS address,
                   "Status" AS status,
                   "Community Board" AS community_board,
                   "Latitude" AS latitude,
                   "Longitude" AS longitude
            FROM read_csv(?, header = true, columns = {json.dumps(COLUMNS)},
                          timestampformat = '%m/%d/%Y %I:%M:%S %p')
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 3)
        """.replace(
            "?", "'" + src.replace("'", "''") + "'"
        )
    )
    seconds = time.perf_counter() - started
    return seconds, {"rows": con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]}


def indicators(con, src):
    # Count, median and 90th percentile of hours to close, and the share closed within 72
    # hours, by month and complaint type and by month and community board, with the
    # monthly totals: the figures of goalpost's eight structured indicators.
    started = time.perf_counter()
    figures = 0
    for by in ("complaint_type", "community_board"):
        rows = con.execute(
            f"""
            SELECT period, {by} AS grp,
                   count(*) AS n,
                   median(hours) AS median_hours,
                   quantile_cont(hours, 0.9) AS p90_hours,
                   100.0 * avg(CASE WHEN closed_at IS NOT NULL AND hours <= 72 THEN 1.0 ELSE 0.0 END)
                       AS closed_72h
            FROM (
                SELECT strftime(timezone('{TZ}', created_at), '%Y-%m') AS period, {by},
                       closed_at,
                       (epoch(closed_at) - epoch(created_at)) / 3600.0 AS hours
                FROM read_parquet('{src}')
            )
            GROUP BY GROUPING SETS ((period), (period, {by}))
            """
        ).fetchall()
        figures += len(rows)
    return time.perf_counter() - started, {"groups": figures}


def main():
    stage = sys.argv[1]
    con = duckdb.connect()
    if stage == "csv_to_table":
        seconds, extra = csv_to_table(con, sys.argv[2], sys.argv[3])
    elif stage == "indicators":
        seconds, extra = indicators(con, sys.argv[2])
    else:
        sys.exit(f"unknown stage {stage}")
    print(json.dumps({"seconds": seconds, "duckdb": duckdb.__version__, **extra}))


if __name__ == "__main__":
    main()
