#!/usr/bin/env python3
"""Interoperability check of order-fsm-grpc with an independent gRPC stack.

Generates a Python client from the service's .proto with grpcio-tools (into a temporary
directory, at run time), then against a running server: places an order, reads it back
(reads are eventually consistent, so it polls), checks every field, retries the placement
with the same idempotency key, checks an INVALID_ARGUMENT naming the field, and checks the
standard health service.

Usage: grpc_interop.py --addr 127.0.0.1:50051 --proto-dir order-fsm-proto/proto
Exit status 0 on success; prints "interop ok".
"""

import argparse
import importlib
import os
import sys
import tempfile
import time
import uuid

PROTO = "order_fsm/v1/order_service.proto"


def generate(proto_dir: str, out_dir: str) -> None:
    from grpc_tools import protoc  # imported here so --help works without it

    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            os.path.join(proto_dir, PROTO),
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"interop check failed: {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="host:port of the server")
    parser.add_argument("--proto-dir", required=True, help="directory holding order_fsm/v1")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for reads")
    args = parser.parse_args()

    import grpc

    with tempfile.TemporaryDirectory(prefix="order_fsm_interop_") as out_dir:
        generate(args.proto_dir, out_dir)
        sys.path.insert(0, out_dir)
        pb = importlib.import_module("order_fsm.v1.order_service_pb2")
        rpc = importlib.import_module("order_fsm.v1.order_service_pb2_grpc")

        channel = grpc.insecure_channel(args.addr)
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
        stub = rpc.OrderServiceStub(channel)

        purchase = pb.Purchase(
            product="Cafetera italiana",
            price="24990.5",
            payment_gateway="Webpay",
            card_brand="Mastercard",
            bank="Banco de Chile",
            region="Biobío",
            shipping_address="Av. O'Higgins 1234, Concepción",
            customer_email="cliente@example.cl",
            quantity=2,
            category="hogar",
        )
        key = f"python-interop-{uuid.uuid4()}"
        placed = stub.PlaceOrder(pb.PlaceOrderRequest(purchase=purchase, idempotency_key=key), timeout=5)
        check(len(placed.order_id) == 36, f"order id {placed.order_id!r}")
        check(placed.status == "processing", f"initial status {placed.status!r}")
        check(placed.version == 1, f"version {placed.version}")
        check(not placed.already_existed, "a new order")

        deadline = time.monotonic() + args.timeout
        while True:
            try:
                order = stub.GetOrder(pb.GetOrderRequest(order_id=placed.order_id), timeout=5)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

        check(order.order_id == placed.order_id, "same id")
        p = order.purchase
        check(p.product == purchase.product, f"product {p.product!r}")
        check(p.price == "24990.50", f"price normalised to two places, got {p.price!r}")
        for field in ("payment_gateway", "card_brand", "bank", "region", "shipping_address", "customer_email", "category"):
            check(getattr(p, field) == getattr(purchase, field), f"{field} {getattr(p, field)!r}")
        check(p.HasField("quantity") and p.quantity == 2, "quantity")
        check(order.version >= 1 and order.status, "status and version")
        check(order.history[0].event == "place", "history starts with the placement")
        check(not order.history[0].HasField("from_status"), "placement has no from_status")
        check(order.history[0].event_id == placed.event_id, "placement event id")

        again = stub.PlaceOrder(pb.PlaceOrderRequest(purchase=purchase, idempotency_key=key), timeout=5)
        check(again.order_id == placed.order_id and again.already_existed, "idempotent retry")

        bad = pb.Purchase()
        bad.CopyFrom(purchase)
        bad.customer_email = "not-an-address"
        try:
            stub.PlaceOrder(pb.PlaceOrderRequest(purchase=bad), timeout=5)
            check(False, "invalid e-mail accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"code {e.code()}")
            check("customer_email" in e.details(), f"details {e.details()!r}")

        # Bulk intake: two placements in one call, answered in request order; one bad
        # placement rejects the call and names it.
        second = pb.Purchase()
        second.CopyFrom(purchase)
        second.product = "Lámpara de pie"
        many = stub.PlaceOrders(
            pb.PlaceOrdersRequest(orders=[pb.PlaceOrderRequest(purchase=purchase), pb.PlaceOrderRequest(purchase=second)]),
            timeout=5,
        )
        check(len(many.orders) == 2 and many.orders[0].order_id != many.orders[1].order_id, "two new orders")
        try:
            stub.PlaceOrders(
                pb.PlaceOrdersRequest(orders=[pb.PlaceOrderRequest(purchase=purchase), pb.PlaceOrderRequest(purchase=bad)]),
                timeout=5,
            )
            check(False, "a call with an invalid placement accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"code {e.code()}")
            check("orders[1]" in e.details() and "customer_email" in e.details(), f"details {e.details()!r}")

        # The standard health service, called with raw bytes (no generated code needed):
        # an empty HealthCheckRequest in, HealthCheckResponse{status: SERVING = 1} out.
        check_health = channel.unary_unary("/grpc.health.v1.Health/Check")
        check(check_health(b"", timeout=5) == b"\x08\x01", "health is SERVING")
        channel.close()
    print("interop ok", placed.order_id)


if __name__ == "__main__":
    main()
