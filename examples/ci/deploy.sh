#!/usr/bin/env bash
# A deployment-pipeline step, run on a CI runner that reaches only the production engine's API
# (DOCKER_HOST=ssh://deploy@prod, or tcp:// with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH): start the new release
# as the idle env, switch to it only when it is healthy, otherwise leave traffic where it was and fail.
# lbgen notices that the app network is not reachable from the runner and checks from inside the proxy
# container (docs/remote.md); `--checks engine` (or LBGEN_CHECKS=engine) says so up front.
#   RELEASE=myapp:1.5 NEW_ENV=green ./deploy.sh
# Exit codes are lbgen's: 4 = the Docker host is unreachable (ssh auth, host key, daemon down),
# 5 = the new env never became healthy (traffic untouched), 6 = reload/verification failed and the
# previous config was restored, 7 = another deploy holds the lock.
set -euo pipefail
: "${RELEASE:?image to deploy}" "${NEW_ENV:?env to deploy into, e.g. green}"
export LBGEN_CONFIG=${LBGEN_CONFIG:-lbgen.yaml}
SERVICE=${SERVICE:-web}
NETWORK=${NETWORK:-app-net}

# Never deploy over the live env.
active=$(lbgen status --json | python3 -c "import json, sys; print(json.load(sys.stdin)['services']['$SERVICE']['active_env'] or '')")
if [ "$active" = "$NEW_ENV" ]; then echo "$NEW_ENV is live; deploy into the other env" >&2; exit 2; fi

# Replace whatever ran in the idle env before (the docker CLI uses the same DOCKER_HOST).
docker ps -aq --filter "label=lbgen.service=$SERVICE" --filter "label=lbgen.env=$NEW_ENV" | xargs -r docker rm -f
for i in 1 2; do
  docker run -d --network "$NETWORK" --label "lbgen.service=$SERVICE" --label "lbgen.env=$NEW_ENV" \
    --label lbgen.port=8080 "$RELEASE"
done

code=0
lbgen switch --service "$SERVICE" --env "$NEW_ENV" --timeout 2m --json > switch.json || code=$?
case $code in
  0) echo "switched $SERVICE to $NEW_ENV" ;;
  5) echo "$NEW_ENV never became healthy; traffic stays on ${active:-the previous env}" >&2 ;;
  6) echo "the proxy did not serve the new config; the previous one was restored" >&2 ;;
  7) echo "another deploy holds lbgen's lock; retry later" >&2 ;;
  4) echo "the Docker host is unreachable (see the error above); nothing was changed" >&2 ;;
  *) echo "lbgen switch failed with exit $code" >&2 ;;
esac
if [ "$code" != 0 ]; then
  cat switch.json >&2 || true
  # The failed env is not serving; remove it so the next deploy starts clean.
  docker ps -aq --filter "label=lbgen.service=$SERVICE" --filter "label=lbgen.env=$NEW_ENV" | xargs -r docker rm -f
fi
exit "$code"
