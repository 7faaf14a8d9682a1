"""The local stand-in for Cloud Scheduler: publish a tick to the sweep topic every few seconds."""

from __future__ import annotations

import argparse
import time

from ..config import Config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=float, default=1.5)
    args = parser.parse_args(argv)
    from google.cloud import pubsub_v1

    config = Config.from_env()
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(config.project, config.sweep_topic)
    while True:
        try:
            publisher.publish(topic, b'{"source": "dropbatch-local-ticker"}').result(timeout=10)
        except Exception as exc:  # the emulator restarting: try again next tick
            print(f"tick failed: {exc}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
