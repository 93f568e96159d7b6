#!/usr/bin/env bash
# Builds (or takes from the cache) a real Kubernetes API server for the tests:
# the upstream apiextensions-apiserver, compiled from Debian sid's Go source packages with the
# small Go program in this folder (the built-in objects, the Job executor, a garbage collector),
# plus etcd. Nothing is installed into the system: sid is read through
# a private apt state directory and its packages are unpacked with dpkg -x into the cache.
#
# Prints, on its last line of stdout, the directory holding `apiserver` and `etcd`.
#
# Environment:
#   CLOUDMIGRATE_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${CLOUDMIGRATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudmigrate}
root=$cache/apiserver
apt_dir=$root/apt
debs=$root/debs
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$debs"

log() { echo "apiserver: $*" >&2; }

# The binaries built last time, if any: the fallback when sid has moved and a build fails.
last_good=$root/last-good
use_cached() {
  if [[ -x $last_good/apiserver && -x $last_good/etcd ]]; then
    log "WARNING: $1; using the cached build in $(readlink -f "$last_good")"
    echo "$(readlink -f "$last_good")"
    exit 0
  fi
  log "ERROR: $1, and there is no cached build to fall back on."
  log "Set KUBECONFIG to a real cluster (kind, k3d, a dev cluster) to run the tests against it."
  exit 1
}

cat >"$apt_dir/sources.list" <<'EOF'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
EOF
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o Dir::State::Status=/dev/null
  -o Debug::NoLocking=1
  -o APT::Sandbox::User=root
)

# Refresh the package index at most once an hour. Between refreshes, the build made from the
# same index and the same Go files is taken without asking apt again.
main_sum=$(cat "$here"/*.go | sha256sum | cut -c1-64)
if [[ -z $(find "$apt_dir/lists" -maxdepth 1 -name '*Packages*' -mmin -60 2>/dev/null) ]]; then
  log "reading Debian sid's package index"
  apt-get "${apt_opts[@]}" -qq update >&2 || use_cached "cannot read Debian sid's package index"
elif [[ -f $root/last-key ]]; then
  read -r last_sum last_key <"$root/last-key" || true
  if [[ ${last_sum:-} == "$main_sum" && -x $root/build-${last_key:-}/apiserver ]]; then
    log "cached build $last_key"
    echo "$root/build-$last_key"
    exit 0
  fi
fi

# The Go source closure: every golang-*-dev package the apiextensions server depends on.
mapfile -t go_pkgs < <(
  apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances golang-k8s-apiextensions-apiserver-dev 2>/dev/null |
    grep -E '^golang-.*-dev$' | sort -u
)
((${#go_pkgs[@]} > 10)) || use_cached "cannot resolve golang-k8s-apiextensions-apiserver-dev in sid"
tool_pkgs=(golang-1.27-go golang-1.27-src etcd-server)

# The cache key: every package with its version, plus our own Go files.
manifest=$root/manifest.txt
apt-cache "${apt_opts[@]}" show --no-all-versions "${tool_pkgs[@]}" "${go_pkgs[@]}" 2>/dev/null |
  awk '/^Package:/{p=$2} /^Version:/{print p "=" $2}' | sort -u >"$manifest.new"
for p in "${tool_pkgs[@]}" "${go_pkgs[@]}"; do
  grep -q "^$p=" "$manifest.new" || use_cached "package $p has no candidate in sid"
done
echo "$main_sum" >>"$manifest.new"
key=$(sha256sum "$manifest.new" | cut -c1-16)
mv "$manifest.new" "$manifest"
out=$root/build-$key
if [[ -x $out/apiserver && -x $out/etcd ]]; then
  echo "$main_sum $key" >"$root/last-key"
  log "cached build $key"
  echo "$out"
  exit 0
fi

missing=()
while read -r line; do
  p=${line%%=*} v=${line#*=}
  [[ $line == *=* ]] || continue
  ls "$debs/${p}_${v//:/%3a}_"*.deb >/dev/null 2>&1 || missing+=("$p=$v")
done <"$manifest"
if ((${#missing[@]})); then
  log "downloading ${#missing[@]} packages from sid (Go sources, the Go toolchain, etcd)"
  (cd "$debs" && apt-get "${apt_opts[@]}" -qq download "${missing[@]}" >&2) ||
    use_cached "downloading packages from sid failed"
fi

tree=$root/tree-$key
rm -rf "$tree" "$out.tmp"
mkdir -p "$tree" "$out.tmp"
while read -r line; do
  [[ $line == *=* ]] || continue
  p=${line%%=*} v=${line#*=}
  dpkg -x "$(ls "$debs/${p}_${v//:/%3a}_"*.deb | head -n1)" "$tree"
done <"$manifest"

goroot=$tree/usr/lib/go-1.27
[[ -x $goroot/bin/go ]] || use_cached "the Go toolchain did not unpack to $goroot"
k8s_version=$(grep '^golang-k8s-apiextensions-apiserver-dev=' "$manifest" | cut -d= -f2 | cut -d- -f1)
gopath=$tree/usr/share/gocode
mkdir -p "$gopath/src/cloudmigrate.io/test-apiserver"
cp "$here"/*.go "$gopath/src/cloudmigrate.io/test-apiserver/"

log "building the apiextensions-apiserver v$k8s_version (about 2 minutes on 2 cores)"
# Library 0.N.P is Kubernetes 1.N.P.
minor=$(echo "$k8s_version" | cut -d. -f2)
ldflags="-s -w"
for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $v.gitVersion=v1.${k8s_version#0.} -X $v.gitMajor=1 -X $v.gitMinor=$minor"
done
if ! (
  cd "$gopath/src/cloudmigrate.io/test-apiserver" &&
    env GOROOT="$goroot" GOPATH="$gopath" GO111MODULE=off CGO_ENABLED=0 \
      GOCACHE="$root/gocache" GOFLAGS= GOTOOLCHAIN=local \
      "$goroot/bin/go" build -ldflags "$ldflags" -o "$out.tmp/apiserver" . >&2
); then
  rm -rf "$out.tmp"
  use_cached "building the API server from sid's packages failed (see above)"
fi
etcd_bin=$(find "$tree/usr/bin" -name etcd -type f | head -n1)
[[ -n $etcd_bin ]] || use_cached "etcd-server did not unpack an etcd binary"
cp "$etcd_bin" "$out.tmp/etcd"
rm -rf "$out" && mv "$out.tmp" "$out"
rm -rf "$tree"
ln -sfn "$out" "$last_good"
echo "$main_sum $key" >"$root/last-key"
log "built $out"
echo "$out"
