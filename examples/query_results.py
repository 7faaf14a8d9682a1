"""The README's query over the results table, run against the local stack for the batch in
DIR/manifest.json (`make demo` runs it after the demo batch): python examples/query_results.py
out/demo"""

import json
import os
import sys

from dropbatch.local import stack

running = stack.status()
if running is None or not running.results_table:
    sys.exit("no local stack with a results table is running: `dropbatch local up` starts one")
os.environ.update(running.client_env())  # what `eval "$(dropbatch local env)"` sets

from google.cloud import bigquery  # noqa: E402  (after the stack's environment, as a user's shell has it)

with open(os.path.join(sys.argv[1], "manifest.json")) as f:
    batch_id = json.load(f)["batch_id"]
query = (
    f"SELECT status, error_code, COUNT(*) AS requests, SUM(total_tokens) AS tokens "
    f"FROM `{running.results_table}` WHERE batch_id = @batch GROUP BY status, error_code ORDER BY "
    f"requests DESC"
)
rows = (
    bigquery.Client()
    .query(
        query,
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("batch", "STRING", batch_id)]
        ),
    )
    .result()
)
print(f"  {running.results_table}, batch {batch_id}:")
for row in rows:
    print(
        f"  {row.status:<10} error {row.error_code or '-':<5} {row.requests:>4} requests "
        f"{row.tokens or 0:>6} tokens"
    )
