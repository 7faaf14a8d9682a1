"""What the local stack creates once its parts answer, as infra/ does in the cloud: the identities
and their policy, the topics and subscriptions, the bucket, the results table."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from .processes import INFRA, MAX_DELIVERY_ATTEMPTS, PUSH, WEBHOOK_PUSH, StackError

if TYPE_CHECKING:
    from .stack import Stack


def write_policy(
    stack: Stack, infra: Path | None = None, results_bucket: str | None = None
) -> None:
    """Compile infra/'s grants for this stack into iam/policy.json (the enforcing parts re-read it
    on change); `results_bucket` as infra/'s variable results_bucket_name (default:
    DROPBATCH_RESULTS_BUCKET)."""
    from .iam import compile_policy

    infra = Path(infra or os.environ.get("DROPBATCH_INFRA_DIR") or INFRA)
    if not (infra / "iam.tf").exists():
        raise StackError(
            f"no Terraform at {infra}: the stack enforces infra/'s grants; set DROPBATCH_INFRA_DIR "
            "to the infra/ folder or start it with `--iam off`"
        )
    config = stack.config()
    results_bucket = config.results_bucket if results_bucket is None else results_bucket
    policy = compile_policy(
        infra, stack.project, stack.bucket, results_bucket, config.location, enforce=stack.iam
    )
    tmp = stack.iam_dir / "policy.json.tmp"
    tmp.write_bytes(policy.dump())
    tmp.replace(stack.iam_dir / "policy.json")


def _write_identities(stack: Stack) -> None:
    """The stack's secret, its policy and one service account key file per principal, `token_uri` on
    the stack's token endpoint (google.oauth2.service_account reads it from the file)."""
    from .iam import OWNER, key_file, new_key

    (stack.iam_dir / "credentials").mkdir(parents=True, exist_ok=True)
    (stack.iam_dir / "gcloud").mkdir(exist_ok=True)
    (stack.iam_dir / "secret").write_bytes(os.urandom(32))
    from ..webhooks import new_secret

    # what Secret Manager holds in the cloud (infra/webhooks.tf): the webhook signing secret
    (stack.iam_dir / "webhook-secret").write_text(new_secret())
    write_policy(stack)
    accounts = {
        **orjson.loads((stack.iam_dir / "policy.json").read_bytes())["accounts"],
        "owner": OWNER,
    }
    certs = {}
    for who, principal in accounts.items():
        private, public = new_key()
        key_id = f"local-{who}"
        certs[key_id] = public
        Path(stack.credentials(who)).write_bytes(
            orjson.dumps(
                key_file(
                    principal,
                    private,
                    key_id,
                    stack.project,
                    f"http://127.0.0.1:{stack.ports['token']}/token",
                ),
                option=orjson.OPT_INDENT_2,
            )
        )
    (stack.iam_dir / "keys.json").write_bytes(orjson.dumps(certs))
    from .gateway import vertex_hosts
    from .iam import tls_files

    tls_files(stack.iam_dir, vertex_hosts(stack.config().location))


def _create_results_table(stack: Stack) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from .. import table

    table.create(
        bigquery.Client(
            project=stack.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=stack.bigquery),
        ),
        stack.results_table,
    )


def _create_topics(stack: Stack) -> None:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    # this stack's emulator, whatever the caller's environment names (the clients read it once)
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = stack.pubsub
    try:
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    finally:
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST")
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved
    for key, topic in stack.topics.items():
        path = publisher.topic_path(stack.project, topic)
        with contextlib.suppress(AlreadyExists):
            publisher.create_topic(name=path)
        if key in PUSH:
            # As infra/pubsub.tf: a dead-letter topic with a subscription that holds them, after ten
            # attempts. No retry policy: with one, the emulator held a subscription's deliveries for
            # minutes after its subscriber was killed mid-push
            # (test_split_killed_at_random_points_and_redelivered).
            dead = publisher.topic_path(stack.project, f"{topic}-dead-letter")
            with contextlib.suppress(AlreadyExists):
                publisher.create_topic(name=dead)
            with contextlib.suppress(AlreadyExists):
                subscriber.create_subscription(
                    name=subscriber.subscription_path(stack.project, dead_letter_hold(topic)),
                    topic=dead,
                )
            with contextlib.suppress(AlreadyExists):
                subscriber.create_subscription(
                    request={
                        "name": subscriber.subscription_path(stack.project, f"{topic}-push"),
                        "topic": path,
                        "push_config": {
                            "push_endpoint": f"http://127.0.0.1:{stack.ports[PUSH[key]]}/"
                        },
                        "ack_deadline_seconds": 600,
                        "dead_letter_policy": {
                            "dead_letter_topic": dead,
                            "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
                        },
                    }
                )

    key, function = WEBHOOK_PUSH
    with contextlib.suppress(AlreadyExists):
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(
                    stack.project, f"{stack.topics[key]}-webhooks"
                ),
                "topic": publisher.topic_path(stack.project, stack.topics[key]),
                "push_config": {"push_endpoint": f"http://127.0.0.1:{stack.ports[function]}/"},
                "ack_deadline_seconds": 60,
            }
        )


def dead_letter_hold(topic: str) -> str:
    return f"{topic}-dead-letter-hold"


def _create_bucket(stack: Stack) -> None:
    import requests

    r = requests.post(
        f"{stack.storage}/storage/v1/b",
        params={"project": stack.project},
        json={"name": stack.bucket},
        timeout=10,
    )
    if r.status_code not in (200, 409):
        raise StackError(f"could not create bucket {stack.bucket}: {r.status_code} {r.text[:200]}")
