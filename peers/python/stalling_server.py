#!/usr/bin/env python3
"""An upper-casing TCP echo server that stops answering for the first 200 ms
of every second (from its start): the server of the open-loop test
(tests/it/bench_rate.rs), for the README's plot of coordinated omission.

Usage: peers/python/stalling_server.py PORT   (listens on 127.0.0.1)
"""
import socket
import sys
import threading
import time

STARTED = time.monotonic()


def serve(conn):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(65536):
            into_second = (time.monotonic() - STARTED) % 1.0
            if into_second < 0.2:
                time.sleep(0.2 - into_second)
            conn.sendall(data.upper())


def main():
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=1024)
    print(f"listening tcp 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
