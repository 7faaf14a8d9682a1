"""Cloud Functions entry points: unpack the CloudEvent, call into the package. No logic, no clients here."""

import functions_framework


@functions_framework.cloud_event
def submit_batch(event):
    """Storage finalize (Eventarc) or a GCS notification on Pub/Sub: validate, stage, submit."""
    from dropbatch import submit

    submit.handle_event(event)


@functions_framework.cloud_event
def on_job_event(event):
    """Pub/Sub sweep tick (or a job log event): look at every active job, advance the batches."""
    from dropbatch import status

    status.handle_event(event)


@functions_framework.cloud_event
def split_results(event):
    """Pub/Sub split task: write one result object per request, then the manifest and the message."""
    from dropbatch import rounds

    rounds.handle_event(event)
