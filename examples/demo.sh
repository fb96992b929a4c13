#!/usr/bin/env bash
# `make demo`: a real blue-green cutover on Docker, end to end, then a rollback, then clean-up.
# PROXY=nginx (default) or PROXY=haproxy. Needs a running Docker engine; builds its image from
# Debian packages (no registry). Everything it creates carries the label lbgen-demo=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PROXY=${PROXY:-nginx}
PORT=${DEMO_PORT:-18080}
NET=lbgen-demo
SUBNET=${DEMO_SUBNET:-172.29.251.0/24}
export LBGEN_CONFIG=examples/demo/lbgen-$PROXY.yaml
lbgen() { python3 -m lbgen "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  ids=$(docker ps -aq --filter label=lbgen-demo=1)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  docker network ls -q --filter label=lbgen-demo=1 | xargs -r docker network rm >/dev/null
}
trap cleanup EXIT
cleanup

IMAGE=$(bash tests/images/build.sh)
say "network $NET ($SUBNET), proxy: $PROXY, image: $IMAGE"
docker network create --subnet "$SUBNET" --label lbgen-demo=1 "$NET" >/dev/null
for env in blue green; do
  for i in 1 2; do
    docker run -d --name "lbgen-demo-web-$env-$i" --network "$NET" --label lbgen-demo=1 \
      --label lbgen.service=web --label lbgen.env=$env --label lbgen.port=8080 \
      -e LBGEN_TEST_ENV=$env -e LBGEN_TEST_NAME="web-$env-$i" "$IMAGE" >/dev/null
  done
done
if [ "$PROXY" = haproxy ]; then
  cmd=(haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg)
else
  cmd=(nginx -g 'daemon off;')
fi
docker run -d --name lbgen-demo-edge --network "$NET" --label lbgen-demo=1 -p "127.0.0.1:$PORT:80" \
  "$IMAGE" "${cmd[@]}" >/dev/null

say "lbgen discover"
lbgen discover
say "lbgen apply (blue is the default env)"
lbgen apply
sleep 0.5
say "traffic through the proxy (127.0.0.1:$PORT)"
for _ in 1 2 3 4; do curl -s "http://127.0.0.1:$PORT/"; done

say "keep-alive load for 12s while switching to green and back"
python3 bench/loadgen.py "http://127.0.0.1:$PORT/" --seconds 12 --workers 4 > /tmp/lbgen-demo-load.json &
load=$!
sleep 2
say "lbgen switch --env green"
lbgen switch --env green
sleep 1
for _ in 1 2 3 4; do curl -s "http://127.0.0.1:$PORT/"; done
say "lbgen status"
lbgen status
sleep 2
say "lbgen rollback"
lbgen rollback
wait "$load"
for _ in 1 2; do curl -s "http://127.0.0.1:$PORT/"; done
say "load result"
python3 - /tmp/lbgen-demo-load.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"requests sent: {r['sent']}  failed: {r['failed']}  by env: {r['by_env']}")
print("env seen over time:", " -> ".join(f"{e}@{t:.1f}s" for t, e in r["timeline"]))
if r["failed"]:
    print("errors:", r["errors"]); sys.exit(1)
PY
say "lbgen history"
lbgen history
say "done; cleaning up"
