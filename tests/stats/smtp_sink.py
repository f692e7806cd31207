#!/usr/bin/env python3
"""A tiny SMTP server standing in for "another mail server" in the statistics traffic test.

usage: smtp_sink.py PORT LOGFILE
Recipients whose local part starts with `bounce` are refused with 550 (Postfix bounces them);
`later*` recipients get 451 on their first two attempts and are then accepted (Postfix defers,
retries, then delivers). Everything else is accepted. One line per accepted message goes to
LOGFILE so the traffic script can wait for deliveries.
"""
import socketserver
import sys

ATTEMPTS = {}


class Handler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())
        self.wfile.flush()

    def handle(self):
        self.reply("220 sink.test ESMTP")
        rcpts = []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink.test")
            elif verb == "MAIL":
                rcpts = []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr = line.split(":", 1)[1].strip().strip("<>").lower()
                local = addr.split("@")[0]
                if local.startswith("bounce"):
                    self.reply("550 5.1.1 <%s>: no such user here" % addr)
                    continue
                if local.startswith("later"):
                    n = ATTEMPTS.get(addr, 0) + 1
                    ATTEMPTS[addr] = n
                    if n <= 2:
                        self.reply("451 4.3.0 <%s>: try again later" % addr)
                        continue
                rcpts.append(addr)
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpts:
                    self.reply("554 5.5.1 no valid recipients")
                    continue
                self.reply("354 go ahead")
                size = 0
                while True:
                    d = self.rfile.readline()
                    if not d or d in (b".\r\n", b".\n"):
                        break
                    size += len(d)
                with open(sys.argv[2], "a") as f:
                    f.write("%s %d\n" % (",".join(rcpts), size))
                self.reply("250 2.0.0 Ok accepted")
            elif verb == "RSET":
                rcpts = []
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("250 2.0.0 Ok")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
