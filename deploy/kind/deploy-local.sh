#!/usr/bin/env bash
# make deploy-local: IZ*Net on a local kind cluster, end to end.
#
#   1. creates the kind cluster (deploy/kind/cluster.yaml) unless it exists
#   2. builds the image (deploy/Dockerfile) and loads it into the cluster's node
#   3. installs the Helm chart (deploy/chart/iznet with deploy/kind/values.yaml)
#   4. seeds the empty store with the default model (dlib-resnet) and a generated gallery (deploy/kind/seed_standin.py)
#   5. waits until every Deployment is available
#   6. labels one photo through a port-forward to the gateway: `iznet label --server 127.0.0.1:PORT PHOTO`
#
# Needs: docker (a running engine), kind, kubectl, python3; helm is fetched (pinned) by deploy/tools/fetch_helm.py
# when it is not on PATH. Settings (environment): CLUSTER, RELEASE, NAMESPACE, IMAGE_TAG, PHOTO (a photo to
# label instead of a generated one), HELM_ARGS (extra `helm upgrade --install` arguments), KEEP=1 (leave the
# port-forward running). `make deploy-local-down` deletes the cluster.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-iznet}
RELEASE=${RELEASE:-iznet}
NAMESPACE=${NAMESPACE:-iznet}
IMAGE_TAG=${IMAGE_TAG:-dev}
IMAGE="iznet/iznet:${IMAGE_TAG}"
PY=${PY:-.venv/bin/python}
FULL="${RELEASE}-iznet"
[[ "$RELEASE" == *iznet* ]] && FULL="$RELEASE"   # the chart's fullname rule

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'deploy-local: %s\n' "$*" >&2; exit 2; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' on PATH (see deploy/README.md: kind)"
done
docker info >/dev/null 2>&1 || die "docker is installed but no engine answers (start Docker)"
[ -x "$PY" ] || die "no $PY: run 'make setup' first"
HELM=$(command -v helm || "$PY" deploy/tools/fetch_helm.py) || die "no helm and it could not be fetched"

say "kind cluster '$CLUSTER'"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "exists"
else
  kind create cluster --name "$CLUSTER" --config deploy/kind/cluster.yaml --wait 120s
fi
CTX="kind-${CLUSTER}"
K=(kubectl --context "$CTX")

say "image $IMAGE (deploy/Dockerfile, CPU torch)"
docker build -f deploy/Dockerfile -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "helm upgrade --install $RELEASE (namespace $NAMESPACE)"
# No --wait here: the embedding and gallery services need a model and a gallery in the store first (step 4).
# shellcheck disable=SC2086  # HELM_ARGS is a list of arguments
"$HELM" upgrade --install "$RELEASE" deploy/chart/iznet --kube-context "$CTX" \
  --namespace "$NAMESPACE" --create-namespace \
  -f deploy/kind/values.yaml --set image.tag="$IMAGE_TAG" ${HELM_ARGS:-}

say "seeding the store (default model, generated gallery)"
"${K[@]}" -n "$NAMESPACE" rollout status "deployment/${FULL}-worker-cpu" --timeout=10m
"${K[@]}" -n "$NAMESPACE" exec -i "deployment/${FULL}-worker-cpu" -- python - < deploy/kind/seed_standin.py

say "waiting for every Deployment to be available"
# Services that started before the seed restart (their start-up fails without a model) and come up now.
"${K[@]}" -n "$NAMESPACE" wait --for=condition=Available deployment \
  -l "app.kubernetes.io/instance=${RELEASE}" --timeout=15m
"${K[@]}" -n "$NAMESPACE" get pods -o wide

say "a Label call through a port-forward to the gateway"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${K[@]}" -n "$NAMESPACE" port-forward "svc/${FULL}-gateway" "${PORT}:50050" >/tmp/iznet-port-forward.log 2>&1 &
PF=$!
[ "${KEEP:-0}" = 1 ] || trap 'kill $PF 2>/dev/null || true' EXIT
for _ in $(seq 60); do
  (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null && break
  sleep 1
done
PHOTO=${PHOTO:-}
if [ -z "$PHOTO" ]; then
  # A photo of person 0 that seed_standin.py did not enroll (same generator, same seed).
  GEN=$(mktemp -d)
  PHOTO=$("$PY" - "$GEN" <<'PYEOF'
import sys
from pathlib import Path
from iznet.synthetic import make_people
make_people(sys.argv[1], people=4, photos=12, seed=0)
print(sorted(sorted(Path(sys.argv[1]).iterdir())[0].iterdir())[8])
PYEOF
)
fi
"$PY" -m iznet label --server "127.0.0.1:${PORT}" "$PHOTO" --annotate-to "${OUT_DIR:-deploy-local-out}"
echo
echo "labelled $PHOTO through ${FULL}-gateway; annotated copy in ${OUT_DIR:-deploy-local-out}/"
if [ "${KEEP:-0}" = 1 ]; then
  echo "the port-forward stays on 127.0.0.1:${PORT} (pid $PF)"
fi
