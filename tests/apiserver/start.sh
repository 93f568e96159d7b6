#!/usr/bin/env bash
# Starts etcd and the test API server (built by build.sh) on free loopback ports, serving TLS
# with a fresh self-signed CA, and writes a kubeconfig whose client certificate is in the group
# system:masters. Then starts the helpers: the Job executor, which runs each pod of a Job as a
# local process, and the garbage collector.
#
# Usage: start.sh STATE_DIR
# Leaves STATE_DIR/kubeconfig (and kubeconfig-no-jobs, a client that may do everything but
# create Jobs; kubeconfig-pod, the pods' client, which may not read Secrets), STATE_DIR/pids, the logs STATE_DIR/{etcd,apiserver,helpers}.log
# and each pod's output in STATE_DIR/pods/.
# Stop everything with: kill $(cat STATE_DIR/pids)
#
# Environment:
#   CLOUDMIGRATE_ENTRYPOINTS  space-separated IMAGE=PATH pairs: the program that a container of
#                             IMAGE runs when it sets no command (its image's entrypoint)
#   CLOUDMIGRATE_POD_BACKOFF  the wait before a failed pod is replaced (default 1s; a real
#                             cluster waits 10s, doubling)
#   CLOUDMIGRATE_HELPERS=off  start no helpers (a benchmark that counts the server's requests)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state=${1:?usage: start.sh STATE_DIR}
mkdir -p "$state"
state=$(cd "$state" && pwd)
# CLOUDMIGRATE_APISERVER_DIR: a folder with apiserver and etcd built before (skips build.sh).
bin=${CLOUDMIGRATE_APISERVER_DIR:-$("$here/build.sh" | tail -n1)}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Certificates: one CA signs the serving certificate and the admin client certificate.
pki=$state/pki
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=cloudmigrate-test-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile server.ext -out server.crt 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=system:masters/CN=cloudmigrate-admin" \
    -keyout admin.key -out admin.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >admin.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile admin.ext -out admin.crt 2>/dev/null
  # A client that may do everything but create Jobs, as RBAC could leave a controller.
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/O=cloudmigrate-test:forbid:create:jobs/CN=cloudmigrate-no-jobs" \
    -keyout no-jobs.key -out no-jobs.csr 2>/dev/null
  openssl x509 -req -in no-jobs.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile admin.ext -out no-jobs.crt 2>/dev/null
  # The pods' client: like a worker's ServiceAccount, it may not read Secrets (the kubelet,
  # here the executor, hands a pod the Secret keys its env names).
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/O=cloudmigrate-test:forbid:get:secrets/O=cloudmigrate-test:forbid:list:secrets/O=cloudmigrate-test:forbid:watch:secrets/CN=cloudmigrate-pod" \
    -keyout pod.key -out pod.csr 2>/dev/null
  openssl x509 -req -in pod.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile admin.ext -out pod.crt 2>/dev/null
)

etcd_port=$(free_port)
peer_port=$(free_port)
api_port=$(free_port)
: >"$state/pids"

"$bin/etcd" --data-dir "$state/etcd" --name test \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "test=http://127.0.0.1:$peer_port" \
  --unsafe-no-fsync --quota-backend-bytes=2147483648 >"$state/etcd.log" 2>&1 &
echo $! >>"$state/pids"

"$bin/apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/server.crt" --tls-private-key-file "$pki/server.key" \
  --client-ca-file "$pki/ca.crt" --enable-garbage-collector=false >"$state/apiserver.log" 2>&1 &
echo $! >>"$state/pids"

kubeconfig() { # USER: a kubeconfig for the client certificate pki/USER.{crt,key}
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cloudmigrate-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $pki/$1.crt
    client-key: $pki/$1.key
contexts:
- name: cloudmigrate-test
  context: {cluster: cloudmigrate-test, user: $1, namespace: default}
current-context: cloudmigrate-test
EOF
}
kubeconfig admin >"$state/kubeconfig"
kubeconfig no-jobs >"$state/kubeconfig-no-jobs"
kubeconfig pod >"$state/kubeconfig-pod"

for _ in $(seq 1 150); do
  if curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then
    echo "apiserver: ready on https://127.0.0.1:$api_port (kubeconfig $state/kubeconfig)" >&2
    [[ ${CLOUDMIGRATE_HELPERS:-on} == off ]] && exit 0
    entrypoints=()
    for e in ${CLOUDMIGRATE_ENTRYPOINTS:-}; do entrypoints+=(--entrypoint "$e"); done
    "$bin/apiserver" helpers --kubeconfig "$state/kubeconfig" --pod-kubeconfig "$state/kubeconfig-pod" \
      --log-dir "$state/pods" \
      --pod-backoff "${CLOUDMIGRATE_POD_BACKOFF:-1s}" "${entrypoints[@]}" >"$state/helpers.log" 2>&1 &
    echo $! >>"$state/pids"
    echo "apiserver: Job executor and garbage collector started (log $state/helpers.log)" >&2
    exit 0
  fi
  sleep 0.2
done
echo "apiserver: ERROR: not ready after 30 seconds. Last lines of its log:" >&2
tail -n 30 "$state/apiserver.log" >&2
tail -n 10 "$state/etcd.log" >&2
kill $(cat "$state/pids") 2>/dev/null || true
exit 1
