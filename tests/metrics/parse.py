"""Parses a /metrics body (stdin) with the prometheus_client package's own
parsers and prints every sample as one JSON array, for core/tests/metrics.rs.

    parse.py prometheus    # prometheus_client.parser (text format 0.0.4)
    parse.py openmetrics   # prometheus_client.openmetrics.parser (strict)

Any parse error is an exception: a non-zero exit, with the reason on stderr.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus

PARSERS = {"prometheus": prometheus, "openmetrics": openmetrics}


def main() -> None:
    parse = PARSERS[sys.argv[1]]
    samples = []
    for family in parse(sys.stdin.read()):
        for s in family.samples:
            samples.append(
                {"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value}
            )
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
