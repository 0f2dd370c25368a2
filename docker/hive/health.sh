#!/bin/bash
# Healthy = the metastore answers its own thrift protocol: get_all_databases (binary protocol, unframed, no
# arguments) gets a REPLY message (0x80010002), what the cluster profile's readiness probe
# (tv_platform/stack/hive_metastore.py, thrift_call) checks.
set -euo pipefail
port=${1:-9083}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf '\x80\x01\x00\x01\x00\x00\x00\x11get_all_databases\x00\x00\x00\x01\x00' >&3
reply=$(timeout 5 head -c 4 <&3 | od -An -tx1 | tr -d ' \n')
[ "$reply" = "80010002" ]
