#!/usr/bin/env python3
"""An independent Kafka client (PyPI confluent-kafka) talking to order-fsm's topics.

Produces `--orders` placement commands as JSON to the commands topic (key = order id), then
consumes the transitions topic until every one of those orders has reached `completed`
through placement plus four transitions. Prints a JSON summary on stdout; exits 0 when every
order completed in time, 1 otherwise.
"""
import argparse
import json
import sys
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--commands-topic", required=True)
    parser.add_argument("--transitions-topic", required=True)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    orders = [str(uuid.uuid4()) for _ in range(args.orders)]
    producer = Producer({
        "bootstrap.servers": args.brokers,
        "enable.idempotence": True,
        "acks": "all",
    })
    failures = []
    for order_id in orders:
        producer.produce(
            args.commands_topic,
            key=order_id.encode(),
            value=json.dumps(placement(order_id)).encode(),
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
        record = json.loads(message.value())
        order_id = record["order_id"]
        if order_id not in wanted:
            continue
        if message.key().decode() != order_id:
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
    }))
    return 0 if completed == wanted else 1


if __name__ == "__main__":
    sys.exit(main())
