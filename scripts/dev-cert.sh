#!/usr/bin/env bash
# Writes a throwaway CA and a localhost certificate to conf/tls/ (for conf/examples/tls.yaml).
# Development only: never use these keys for anything real. conf/tls/ is git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { echo "openssl is needed (apt-get install openssl)" >&2; exit 1; }
mkdir -p conf/tls && cd conf/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=gateway dev CA" \
  -keyout ca-key.pem -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" -keyout key.pem -out csr.pem 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
openssl x509 -req -in csr.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 -extfile san.ext -out cert.pem 2>/dev/null
rm -f csr.pem san.ext ca.srl
echo "wrote conf/tls/{ca.pem,cert.pem,key.pem}"
