#!/usr/bin/env python3
"""flaky_smtp.py: a test SMTP peer (aiosmtpd) that records every message it accepts.

Each accepted message is appended to --log as one JSON line: {"message_id", "mail_from", "rcpt_tos",
"data"} (data is the message as received). Fault injection:
  --drop P        with probability P, abort the connection after the final "." instead of replying
                  250 (the RFC 1047 window: we keep the message, the client never learns it)
  --reply CODE    answer every DATA with this reply instead of 250 (e.g. "550 5.7.1 refused",
                  "451 4.3.0 try later"); nothing is recorded
  --tls-cert F --tls-key F   offer STARTTLS with this certificate and require it before MAIL
  --implicit-tls             with --tls-cert/--tls-key: TLS from the first byte (SMTPS) instead
Prints "READY <port>" on stdout once it accepts connections; stops on SIGTERM/SIGKILL.

Example: python3 scripts/flaky_smtp.py --port 2525 --log received.jsonl --drop 0.1
"""
import argparse
import email
import json
import os
import random
import signal
import ssl
import sys
import threading

try:
    from aiosmtpd.controller import Controller
except ImportError:  # the caller decides whether a missing peer is a skip or a failure
    print("aiosmtpd is not installed (pip install aiosmtpd or apt-get install python3-aiosmtpd)", file=sys.stderr)
    sys.exit(3)


class Recorder:
    def __init__(self, log, drop, reply, rng):
        self.log = log
        self.drop = drop
        self.reply = reply
        self.rng = rng
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.reply:
            return self.reply
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        message = email.message_from_bytes(raw)
        record = {
            "message_id": message.get("Message-ID"),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": raw.decode("utf-8", "replace"),
        }
        with self.lock:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        if self.drop > 0 and self.rng.random() < self.drop:
            server.transport.abort()  # no reply reaches the client
            return "250 2.0.0 OK (never delivered to the client)"
        return "250 2.0.0 OK queued as %s" % (record["message_id"] or "?")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--log", default="received.jsonl")
    parser.add_argument("--drop", type=float, default=float(os.environ.get("DROP", "0")))
    parser.add_argument("--reply", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--implicit-tls", action="store_true")
    args = parser.parse_args()

    kwargs = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.implicit_tls:
            kwargs.update(ssl_context=context)
        else:
            kwargs.update(tls_context=context, require_starttls=True)
    handler = Recorder(args.log, args.drop, args.reply, random.Random(args.seed))
    controller = Controller(handler, hostname="127.0.0.1", port=args.port, **kwargs)
    controller.start()
    print("READY %d" % args.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
