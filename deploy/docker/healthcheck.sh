#!/bin/bash
# Container health check without curl: GET /health over bash's /dev/tcp and
# succeed on HTTP 200 (status ok or degraded; "failing" answers 503).
# The port is the one in TWINFLOW_HTTP_ADDR (default 8000); the address is
# always loopback, since the check runs inside the container.
set -euo pipefail
addr="${TWINFLOW_HTTP_ADDR:-127.0.0.1:8000}"
port="${addr##*:}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
# Only the status line matters: "HTTP/1.1 200 OK".
read -r -t 4 _ status _ <&3
[ "${status}" = "200" ]
