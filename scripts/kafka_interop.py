#!/usr/bin/env python3
"""An independent Kafka client (PyPI confluent-kafka) talking to order-fsm's topics.

Produces `--orders` placement commands to the commands topic (key = order id) in
`--format` json or proto (protobuf `order_fsm.v1.CommandRecord`, with classes generated at
run time from `--proto-dir` by grpcio-tools; header `ofsm-format` names the format), then
consumes the transitions topic, decoding each message by its `ofsm-format` header (one
record, or a pack of them: `json-pack`, `proto-pack`), until
every one of those orders has reached `completed` through placement plus four transitions.
Prints a JSON summary on stdout; exits 0 when every order completed in time, 1 otherwise.
"""
import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, Producer


def placement(order_id: str) -> dict:
    return {
        "type": "place",
        "order_id": order_id,
        "event_id": str(uuid.uuid4()),
        "purchase": {
            "product": "Python-made kettle",
            "price": "19.90",
            "payment_gateway": "Webpay",
            "card_brand": "Visa",
            "bank": "Banco Estado",
            "region": "Valparaíso",
            "shipping_address": "Av. Brasil 2950, Valparaíso",
            "customer_email": "py@example.com",
            "quantity": 2,
        },
    }


def load_records(proto_dir: str, out_dir: str):
    """The generated module of records.proto (order_service.proto comes along)."""
    from grpc_tools import protoc  # imported here so the JSON mode does not need it

    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    for name in ("order_service.proto", "records.proto"):
        code = protoc.main([
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={out_dir}",
            os.path.join(proto_dir, "order_fsm", "v1", name),
        ])
        if code != 0:
            raise SystemExit(f"protoc failed with {code} on {name}")
    sys.path.insert(0, out_dir)
    return importlib.import_module("order_fsm.v1.records_pb2")


def encode_placement(pb, order_id: str) -> bytes:
    """The placement as a protobuf CommandRecord."""
    command = placement(order_id)
    record = pb.CommandRecord(order_id=order_id, event_id=command["event_id"])
    for field, value in command["purchase"].items():
        setattr(record.place.purchase, field, value)
    return record.SerializeToString()


def from_proto(wire) -> dict:
    """A protobuf TransitionRecord as a dict of the JSON field names."""
    return {
        "order_id": wire.order_id,
        "version": wire.transition.version,
        "event": wire.transition.event,
        "to": wire.transition.to_status,
        "terminal": wire.transition.terminal,
        "customer_email": wire.purchase.customer_email,
    }


def decode_transitions(pb, message) -> list:
    """The transition records of a message (one, or a pack's) as dicts, by its header."""
    fmt = dict(message.headers() or []).get("ofsm-format", b"json")
    if fmt == b"json":
        return [json.loads(message.value())]
    if fmt == b"json-pack":
        return json.loads(message.value())
    if fmt == b"proto":
        wire = pb.TransitionRecord()
        wire.ParseFromString(message.value())
        return [from_proto(wire)]
    if fmt == b"proto-pack":
        pack = pb.TransitionPack()
        pack.ParseFromString(message.value())
        return [from_proto(wire) for wire in pack.records]
    raise ValueError(f"unknown ofsm-format {fmt!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--commands-topic", required=True)
    parser.add_argument("--transitions-topic", required=True)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--format", choices=["json", "proto"], default="json")
    parser.add_argument("--proto-dir", help="directory holding order_fsm/v1 (for proto)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="order_fsm_kafka_interop_") as out_dir:
        pb = None
        if args.format == "proto" or args.proto_dir:
            if not args.proto_dir:
                parser.error("--format proto needs --proto-dir")
            pb = load_records(args.proto_dir, out_dir)
        return run(args, pb)


def run(args, pb) -> int:
    formats_seen = set()

    orders = [str(uuid.uuid4()) for _ in range(args.orders)]
    producer = Producer({
        "bootstrap.servers": args.brokers,
        "enable.idempotence": True,
        "acks": "all",
    })
    failures = []
    for order_id in orders:
        if args.format == "proto":
            value = encode_placement(pb, order_id)
        else:
            value = json.dumps(placement(order_id)).encode()
        producer.produce(
            args.commands_topic,
            key=order_id.encode(),
            value=value,
            headers=[("ofsm-format", args.format.encode())],
            on_delivery=lambda err, _msg: err and failures.append(str(err)),
        )
    producer.flush(30)
    if failures:
        print(json.dumps({"error": "produce failed", "details": failures[:5]}))
        return 1

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"interop-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    consumer.subscribe([args.transitions_topic])
    wanted = set(orders)
    seen = {order_id: set() for order_id in orders}
    completed = set()
    records = 0
    deadline = time.monotonic() + args.timeout
    while completed != wanted and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        fmt = dict(message.headers() or []).get("ofsm-format", b"none")
        formats_seen.add(fmt.decode())
        if pb is None and fmt.startswith(b"proto"):
            print(json.dumps({"error": "a protobuf record, and no --proto-dir to read it"}))
            return 1
        packed = fmt.endswith(b"-pack")
        for record in decode_transitions(pb, message):
            order_id = record["order_id"]
            if order_id not in wanted:
                continue
            # A single record is keyed by its order; a pack by its first record's order.
            if not packed and message.key().decode() != order_id:
                print(json.dumps({"error": "record not keyed by order id", "record": record}))
                return 1
            records += 1
            seen[order_id].add((record["version"], record["event"], record["to"]))
            if record["to"] == "completed" and record["version"] == 5 and record["terminal"]:
                completed.add(order_id)
    consumer.close()

    steps = sorted({step for s in seen.values() for step in s})
    print(json.dumps({
        "orders": len(orders),
        "completed": len(completed),
        "records": records,
        "steps": [list(s) for s in steps],
        "transition_formats": sorted(formats_seen),
    }))
    return 0 if completed == wanted else 1


if __name__ == "__main__":
    sys.exit(main())
