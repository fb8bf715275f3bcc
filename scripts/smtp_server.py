"""A real SMTP server (aiosmtpd) on loopback that stores every mail in a Maildir.

Usage: python3 scripts/smtp_server.py --maildir DIR [--port 0]
Prints the chosen port on the first line of stdout, then serves until killed.
"""
import argparse
import socket
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    port = args.port
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    controller = Controller(Mailbox(args.maildir), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
