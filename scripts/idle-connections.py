#!/usr/bin/env python3
"""Opens N keep-alive connections to 127.0.0.1:PORT, sends one GET PATH on each, reads the
response heads, and holds the connections for SECONDS: read the gateway's VmRSS meanwhile.

    scripts/idle-connections.py PORT N PATH SECONDS
"""
import socket
import sys
import time

if len(sys.argv) != 5:
    sys.exit(__doc__)
port, n, path, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    socks.append(s)
for s in socks:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("a connection closed early")
        data += chunk
print("opened", len(socks), flush=True)
time.sleep(hold)
