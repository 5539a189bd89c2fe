"""Run the processing step as a PySpark job: the EMR Serverless entry point, and local mode's on pyspark.

    spark-submit processing/spark_job.py --input s3://bucket/incoming/run/ --output s3://bucket/processed/run/ \
        --spec s3://bucket/runs/run/spec.json [--state s3://.../state.json] [--model s3://.../model.joblib] \
        --format csv --delimiter , [--gzip] [--encoding utf-8-sig] [--default-event-time 2026-01-01T00:00:00Z]

The arguments are preprocess.py's, with URIs (any Hadoop file system: s3:, file:) in place of the container's
folders; labelflow_processing and scoring.py ship with the job (`--py-files`). The outputs are the single-machine
job's: records.jsonl, rejected.jsonl, state.json and stats.json (written last) in --output. A problem with the
input as a whole exits with code 2 and one line on stderr; too many rejected rows complete with stats.json
saying why, as preprocess.py does.
"""

from __future__ import annotations

import argparse
import json
import sys

from labelflow_processing.config import FatalInputError, TooManyRejectedError
from labelflow_processing.readers import ReadAs, add_read_arguments, read_as_from
from labelflow_processing.spark.engine import Job, run, session
from labelflow_processing.spark.files import delete, write_bytes

EXIT_FATAL = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--input", required=True, help="the folder of input files")
    parser.add_argument("--output", required=True, help="the folder the outputs are written to")
    parser.add_argument("--spec", required=True, help="the dataset spec JSON")
    parser.add_argument("--state", help="a state.json to apply; fitted when absent or when the file does not exist")
    parser.add_argument("--model", help="the model file (joblib, pickle or model.tar.gz) when the spec has a model")
    add_read_arguments(parser)
    parser.add_argument("--default-event-time")
    args = parser.parse_args(argv)
    args.read_as = read_as_from(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    read_as: ReadAs = args.read_as
    job = Job(args.input, args.output, args.spec, read_as, args.state, args.model, args.default_event_time)
    spark = session()
    out = args.output.rstrip("/")
    try:
        stats = run(spark, job)
    except TooManyRejectedError as exc:
        for name in ("records.jsonl", "state.json"):
            delete(spark, f"{out}/{name}")
        refused = {"records_in": exc.read, "records_out": 0, "rejected": exc.rejected, "refused": str(exc)}
        write_bytes(spark, f"{out}/stats.json", (json.dumps(refused, indent=2, ensure_ascii=False) + "\n").encode())
        print(str(exc), file=sys.stderr)
        return 0
    except FatalInputError as exc:
        for name in ("records.jsonl", "rejected.jsonl", "state.json", "stats.json"):
            delete(spark, f"{out}/{name}")
        print(" ".join(str(exc).split()), file=sys.stderr)
        return EXIT_FATAL
    finally:
        spark.stop()
    print(f"processed {stats['records_in']} rows: {stats['records_out']} records, {stats['rejected']} rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
