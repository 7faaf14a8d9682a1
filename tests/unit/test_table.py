"""table: the results table's rows and its schema."""

from __future__ import annotations


def test_results_table_rows_have_exactly_the_schemas_columns():
    """table.row fills every column of results_table.json (the schema infra/bigquery.tf reads) and
    no other."""
    from dropbatch import outcome, table

    result = outcome.result_object(
        "k",
        "failed",
        "b-1",
        "projects/p/locations/l/batchPredictionJobs/1",
        usage={"promptTokenCount": 3, "totalTokenCount": 5},
        error={"code": 429, "message": "quota"},
    )
    row = table.row(
        4,
        result,
        model="gemini-2.5-flash",
        source="gs://b/incoming/f.jsonl",
        rounds={"projects/p/locations/l/batchPredictionJobs/1": 1},
        finished="2026-12-02T00:00:00Z",
    )
    assert list(row) == [f["name"] for f in table.schema()]
    assert (
        row["line"],
        row["round"],
        row["error_code"],
        row["prompt_tokens"],
        row["total_tokens"],
    ) == (4, 1, "429", 3, 5)
