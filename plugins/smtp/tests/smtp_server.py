#!/usr/bin/env python3
"""A real SMTP server for the smtp plugin's tests and benchmark (aiosmtpd), on 127.0.0.1.

    python3 smtp_server.py --dir DIR [--cert server.pem --key server.key [--implicit-tls]]
                           [--auth USER:PASSWORD] [--count-only]

Prints `PORT <n>` once it listens on a free port, and exits when its standard input closes (so
it never outlives the test that started it).

Every message accepted is stored as DIR/NNNNNN.eml (the bytes received after DATA) beside
DIR/NNNNNN.json (`{"mail_from", "rcpt_tos"}`), numbered from 1 in the order of their DATA
commands; the .eml is renamed into place last, so a reader never sees half a message.

Faults are read from DIR/control.json before each command they concern, so a test can change
them while the server runs:

    {"reject_rcpt": {"gone@example.com": "550 5.1.1 <gone@example.com>: no such user"},
     "data_replies": {"3": "451 4.3.0 Try again later"},   # the 3rd DATA is answered this
     "drop_at": [5],                                       # the 5th DATA: connection closed, no answer
     "hold_at": 7,                                         # the 7th DATA waits unanswered (30 s),
                                                           # after creating DIR/held
     "delay_ms": 20}                                       # every DATA answered after 20 ms

A held or dropped message is not stored: the client never heard a 250.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def load_control(directory):
    try:
        with open(os.path.join(directory, "control.json"), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


class Handler:
    def __init__(self, directory, count_only):
        self.directory = directory
        self.count_only = count_only
        self.data_seq = 0
        self.stored = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        control = {} if self.count_only else load_control(self.directory)
        reply = control.get("reject_rcpt", {}).get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_seq += 1
        seq = self.data_seq
        control = {} if self.count_only else load_control(self.directory)
        if control.get("delay_ms"):
            await asyncio.sleep(control["delay_ms"] / 1000)
        if seq in control.get("drop_at", []):
            server.transport.close()
            return "421 4.4.2 closing (test)"
        if control.get("hold_at") == seq:
            open(os.path.join(self.directory, "held"), "w").close()
            await asyncio.sleep(30)
            return "451 4.3.0 held by the test"
        reply = control.get("data_replies", {}).get(str(seq))
        if reply:
            return reply
        self.stored += 1
        n = self.stored
        if not self.count_only:
            stem = os.path.join(self.directory, f"{n:06d}")
            with open(stem + ".json", "w", encoding="utf-8") as f:
                json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
            with open(stem + ".tmp", "wb") as f:
                f.write(envelope.original_content)
            os.rename(stem + ".tmp", stem + ".eml")
        return f"250 2.0.0 OK queued as {n}"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return check


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth")
    parser.add_argument("--count-only", action="store_true")
    args = parser.parse_args()

    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    handler = Handler(args.dir, args.count_only)
    options = {}
    if args.auth:
        user, password = args.auth.split(":", 1)
        options = {
            "authenticator": authenticator(user, password),
            "auth_required": True,
            "auth_require_tls": context is not None,
        }
    if context is not None and not args.implicit_tls:
        options["tls_context"] = context
        options["require_starttls"] = True

    def factory():
        return SMTP(handler, hostname="test.smtp.local", **options)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, "127.0.0.1", 0, ssl=context if args.implicit_tls else None
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
