#!/bin/bash
# Format the NameNode on the first start only (a named volume is an existing, empty directory), then run it.
set -euo pipefail
if [ ! -f /hadoop/dfs/name/current/VERSION ]; then
  echo "namenode: formatting /hadoop/dfs/name"
  hdfs namenode -format -force -nonInteractive -clusterId "${HDFS_CLUSTER_ID:-tv-platform}"
fi
exec hdfs namenode
