"""A BigQuery table as a batch's input: the pointer file incoming/NAME.bq.json and the table's rows
as lines.

A pointer is `{"table": "bq://PROJECT.DATASET.TABLE", "model": "...", "key_column": "id"}` (model
and key column optional). Vertex reads a BigQuery source's `request` column, "required, and must be
valid JSON" that "must match the structure of a GenerateContentRequest"; other columns are "ignored
for content generation but included in the output table"
(cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-from- bigquery).
dropbatch reads the rows itself (tabledata.list, REST paging) and hands each one to the validator as
the JSONL line `{"key": ..., "request": ...}`, so a table is validated, split into jobs, staged,
matched, retried and loaded exactly as a file is; the line number of a row is its position in the
read (from 1). A pass that stops at its budget goes on from that row (tabledata.list's startIndex);
a table modified since the first call is rejected rather than read half old and half new. Other
model families read the columns their batch pages give a BigQuery input (families.Family.table):
Claude's `custom_id` and `request`, open models' `custom_id`, `method`, `url` and `body`,
text-embedding's `content`, `task_type` and `title`.
"""

from __future__ import annotations

import contextlib

import orjson

from . import families

POINTER_SUFFIX = ".bq.json"
MAX_POINTER_BYTES = 64 << 10
POINTER_FIELDS = ("table", "model", "key_column")
PAGE_ROWS = 2000  # rows a page of tabledata.list: bounded memory
REQUEST_TYPES = ("JSON", "STRING")
JSON_COLUMNS = ("request", "body")  # columns holding a request: JSON, or STRING holding JSON


def is_pointer(name: str) -> bool:
    return name.lower().endswith(POINTER_SUFFIX)


def table_id(uri: str) -> str | None:
    """PROJECT.DATASET.TABLE of bq://PROJECT.DATASET.TABLE; None when it is not one (a project may
    hold a domain, `example.com:project`, so the dataset and table are the last two names)."""
    if not isinstance(uri, str) or not uri.startswith("bq://"):
        return None
    parts = uri[5:].rsplit(".", 2)
    if len(parts) != 3 or not all(parts) or not parts[1].replace("_", "").isalnum() or "`" in uri:
        return None
    return uri[5:]


def parse_pointer(data: bytes) -> tuple[dict | None, list[tuple[str | None, str]]]:
    """(pointer, problems): problems are (field, message) in dropbatch's own words, never the
    pointer's text."""
    example = (
        '{"table": "bq://PROJECT.DATASET.TABLE", "model": "gemini-2.5-flash", "key_column": "id"}'
    )
    if len(data) > MAX_POINTER_BYTES:
        return None, [
            (None, f"a .bq.json pointer is at most {MAX_POINTER_BYTES:,} bytes; write {example}")
        ]
    try:
        pointer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, [(None, f"the pointer is not valid JSON; write {example}")]
    if not isinstance(pointer, dict):
        return None, [(None, f"the pointer must be one JSON object; write {example}")]
    problems = [
        (None, f"field {i + 1} of the pointer is not one of {', '.join(POINTER_FIELDS)}; remove it")
        for i, name in enumerate(pointer)
        if name not in POINTER_FIELDS
    ]
    if table_id(pointer.get("table")) is None:
        problems.append(("table", '"table" must be a BigQuery table as bq://PROJECT.DATASET.TABLE'))
    for name in ("model", "key_column"):
        if name in pointer and not (
            isinstance(pointer[name], str) and 0 < len(pointer[name]) <= 300
        ):
            problems.append((name, f'"{name}" must be a non-empty string (or left out)'))
    return (None if problems else pointer), problems


class TableReader:
    """The rows of a pointer's table as (row number, line bytes), from row `start_line` + 1;
    problems with the table itself go to the report as file-level errors (the batch is then rejected
    with them)."""

    def __init__(
        self,
        config,
        pointer: dict,
        report,
        start_line: int = 0,
        modified: str | None = None,
        columns: families.TableShape = families.GEMINI.table,
    ):
        self.config, self.pointer, self.report = config, pointer, report
        # the model family's (required columns, optional columns, the key's field)
        self.shape = columns
        self.start_line, self.modified = start_line, modified
        self.table = table_id(pointer["table"])

    def continuation_state(self) -> dict:
        return {"compressed": False, "table_modified": self.modified}

    def _problem(self, code: str, message: str) -> None:
        self.report.add(None, code, None, message, self.config.max_errors)

    def lines(self):
        """(line number, row as a line) for each row of the table from start_line, in the table's
        order; nothing when the table cannot be read as a batch (the problem is the report's)."""
        from google.api_core import exceptions

        from .table import client as bigquery_client

        cfg = self.config
        shown = f"bq://{self.table}"
        client = bigquery_client(cfg.project)
        table = self._open(client, shown)
        shape = None if table is None else self._columns(table, shown)
        if not shape:
            return
        names, fields, key_column = shape
        required, key_field = self.shape.required, self.shape.key_field
        lineno = self.start_line
        try:
            rows = client.list_rows(
                table, selected_fields=fields, start_index=lineno or None, page_size=PAGE_ROWS
            )
            for row in rows:
                lineno += 1
                raw = row_line(row, names, required, key_column, key_field)
                self.report.bytes += len(raw)
                yield lineno, None if len(raw) > cfg.max_line_bytes else raw
        except exceptions.GoogleAPICallError as exc:
            self.report.add(
                lineno + 1,
                "read_error",
                None,
                f"{shown} could not be read past row {lineno}: {exc.code} {exc.message[:200]}",
                cfg.max_errors,
            )
        finally:
            self.report.lines = lineno

    def _open(self, client, shown: str):
        """The table, unchanged since an earlier call read it; None when it is not (a problem)."""
        from google.api_core import exceptions

        try:
            table = client.get_table(self.table)
        except exceptions.NotFound:
            return self._problem(
                "table_not_found",
                f"the table {shown} does not exist (or its dataset does "
                'not); create it or correct "table" in the pointer',
            )
        except exceptions.Forbidden:
            return self._problem(
                "table_unreadable",
                f"the submit function may not read {shown}; grant its "
                "service account roles/bigquery.dataViewer on the dataset (infra: input_datasets)",
            )
        modified = table.modified.isoformat() if table.modified else ""
        if self.modified is not None and modified != self.modified:
            return self._problem(
                "table_changed",
                f"{shown} was modified while dropbatch read it; upload the "
                "pointer again once the table stays as it is",
            )
        self.modified = modified
        return table

    def _columns(self, table, shown: str) -> tuple | None:
        """(column names read, the fields to select, the key column) for this model's family; None
        when a column it needs is not there (a problem)."""
        key_column = self.pointer.get("key_column")
        required, optional, key_field = (
            self.shape.required,
            self.shape.optional,
            self.shape.key_field,
        )
        columns = {f.name: f for f in table.schema}
        for name in required:
            column = columns.get(name)
            if (
                column is None
                or column.field_type not in REQUEST_TYPES
                or column.mode == "REPEATED"
            ):
                return self._problem(
                    "no_request_column",
                    f"{shown} has no `{name}` column of type JSON or STRING; "
                    f"for this model Vertex AI reads each row's "
                    + " and ".join(f"`{n}`" for n in required)
                    + " (and its optional columns)",
                )
        if key_column is not None and key_column not in columns:
            return self._problem(
                "no_key_column",
                f'{shown} has no column named by "key_column"; correct it '
                "or leave it out (rows are then keyed by their number)",
            )
        if key_column is None and key_field != "key" and key_field in columns:
            key_column = key_field  # Claude's and open models' tables carry their custom_id column
        names = [*required, *(n for n in optional if n in columns)]
        fields = [columns[n] for n in names] + ([columns[key_column]] if key_column else [])
        return names, fields, key_column


def row_line(row, names: list, required: tuple, key_column: str | None, key_field: str) -> bytes:
    """A table row as its line, each column looked up by its name in the schema the answer carries,
    never by position: a server may return selected fields in an order of its own (a fresh-clone run
    on bqemulator got a Claude table's custom_id where its request belonged). A null optional column
    is not given."""
    values = {n: v for n in names if (v := row.get(n)) is not None or n in required}
    return line_of(values, row.get(key_column) if key_column else None, key_field)


def line_of(values: dict, key, key_field: str = "key") -> bytes:
    """A row's columns as the JSONL line the validator checks, the key under `key_field` (`key`, or
    `custom_id` for Claude and open models): a STRING `request` or `body` column holds JSON text
    (left as a string when it is not JSON, so the validator says it is not an object); a JSON column
    arrives parsed. A key that is a number becomes its decimal text."""
    line = {}
    if key is not None:
        line[key_field] = (
            str(key) if isinstance(key, (int, float)) and not isinstance(key, bool) else key
        )
    for name, value in values.items():
        if name in JSON_COLUMNS and isinstance(value, str):
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(value)
        line[name] = value
    return orjson.dumps(line)
