"""Cloud Functions entry points: unpack the CloudEvent, call into the package. No logic, no clients
here."""

import functions_framework


@functions_framework.cloud_event
def submit_batch(event):
    """A GCS notification on the uploads topic (or a storage CloudEvent): validate, stage, create
    the jobs; or a `dropbatch_continue` task on that topic: go on with a submission, create a retry
    round's or waiting parts' jobs."""
    from dropbatch import submit

    submit.handle_event(event)


@functions_framework.cloud_event
def on_job_event(event):
    """A sweep tick: GET every active job, queue split tasks, ask the submit function for what it
    must do."""
    from dropbatch import sweep

    sweep.handle_event(event)


@functions_framework.cloud_event
def split_results(event):
    """A task on the split topic: split a part, finish the batch (manifest, message), or stage a
    retry round."""
    from dropbatch import rounds

    rounds.handle_event(event)


@functions_framework.cloud_event
def deliver_webhook(event):
    """A message on the notifications topic: POST it, signed, to the batch's webhook endpoints."""
    from dropbatch import deliver

    deliver.handle_event(event)
