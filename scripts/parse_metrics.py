#!/usr/bin/env python3
"""Parses Prometheus text exposition on stdin with prometheus_client's own parser (an
independent implementation of the format) and prints the samples as JSON lines:
{"name": ..., "labels": {...}, "value": ...}. Exits non-zero if the text does not parse."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value}))
