"""A Vertex AI batch prediction emulator: the REST surface
aiplatform_v1.JobServiceClient(transport="rest") and the google-genai SDK (v1beta1 paths) use,
modelled on what Google documents, and on the documented worst case where the sources are silent. It
judges requests on its own (json_format.ParseDict into the real GenerateContentRequest), never with
dropbatch's validator, so that a dropbatch bug shows up as a disagreement.

Sources: the BatchPredictionJob REST reference (fields, states, label rules: keys and values at most
64 characters of lowercase letters, digits, `_` and `-`, international characters allowed), the
batch prediction pages (batch-prediction-gemini, batch-prediction-from-cloud-storage: output in
prediction-model-*/ with the request echoed, `status`, `processed_time`), the batch quotas page (a
per-project cap on concurrent jobs: extra jobs wait, they are not refused),
JobService.CancelBatchPredictionJob ("best effort": the job may still succeed; a cancelled job gets
`error` with code CANCELLED), DeleteBatchPredictionJob (a long-running operation), CompletionStats
(int64 as strings; incompleteCount: never processed), and the batch-prediction-resume page (a job
writes completed rows to its output location while it runs, and keeps them when it is cancelled or
expires). Modelled worst cases (not confirmed from a public source, so chosen to be hard on
clients): while a job runs its output appears file by file (`lines_per_file` lines each, shuffled,
completionStats updated after each; with `output_at_end`, none before running_s is over); a FAILED,
EXPIRED or CANCELLED job leaves partial output. A file that grows (rewritten as a new generation
with more lines, a half-written line at its end) is not made here: the Vertex service agent may only
create objects under the output prefix (infra/iam.tf, as Google's pages grant it), and the stack
refused exactly that when this emulator tried it; the split still handles it (tests/integration/
test_incremental_split.py, against real Cloud Storage streams); echoed float fields come back at
float32 precision; failed lines use several status shapes; list results lag behind creates when
`list_lag_s` is set.

Models other than Gemini generation (embeddings, Claude, open models) are answered in their
families' shapes by vertex_families.py, whose docstring names each shape's page and what is
modelled.

Jobs walk QUEUED -> PENDING -> RUNNING -> a terminal state on a configurable clock, read their JSONL
input from GCS (STORAGE_EMULATOR_HOST) and write OUTPUT_PREFIX/prediction-model-TIMESTAMP/*.jsonl;
or read a BigQuery table's `request` column and write a BigQuery table (BIGQUERY_EMULATOR_HOST;
batch-prediction-from-bigquery: the input's columns plus `response` and `status`). Faults are set at
start (--faults JSON) or at run time (POST /_emulator/faults).

    python -m dropbatch.local.vertex_emulator --port 8090 [--responder-url http://127.0.0.1:8000/v1]
"""

from __future__ import annotations

import argparse
import os

import orjson

from .vertex_answers import Responder
from .vertex_faults import Faults
from .vertex_jobs import Emulator
from .vertex_routes import create_app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--responder-url", default="", help="an OpenAI-compatible endpoint for real answers"
    )
    parser.add_argument("--responder-model", default="local")
    parser.add_argument(
        "--faults", default="{}", help='JSON, e.g. {"fail_rate": 0.1, "queued_s": 1}'
    )
    args = parser.parse_args(argv)
    faults = Faults()
    faults.update(orjson.loads(args.faults))
    emulator = Emulator(faults, Responder(args.responder_url, args.responder_model))
    if os.environ.get("DROPBATCH_IAM_DIR"):
        from .iam import Enforcer

        emulator.enforcer = Enforcer(os.environ["DROPBATCH_IAM_DIR"])
    app = create_app(emulator)
    from werkzeug.serving import make_server

    make_server(args.host, args.port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main()
