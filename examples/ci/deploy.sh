#!/usr/bin/env bash
# A deployment-pipeline step: start the new release as the idle env, switch to it only when it is
# healthy, and otherwise leave traffic where it was and fail the job.
#   RELEASE=myapp:1.5 NEW_ENV=green ./deploy.sh
# Exit codes follow lbgen's: 5 = the new env never became healthy (traffic untouched),
# 6 = the switch was rolled back, 7 = another deploy holds the lock.
set -euo pipefail
: "${RELEASE:?image to deploy}" "${NEW_ENV:?env to deploy into, e.g. green}"
export LBGEN_CONFIG=${LBGEN_CONFIG:-lbgen.yaml}

# Never deploy over the live env.
active=$(lbgen status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["services"]["web"]["active_env"])')
if [ "$active" = "$NEW_ENV" ]; then echo "$NEW_ENV is live; deploy into the other env" >&2; exit 2; fi

# Replace whatever ran in the idle env before.
docker ps -q --filter label=lbgen.service=web --filter "label=lbgen.env=$NEW_ENV" | xargs -r docker rm -f
for i in 1 2; do
  docker run -d --network app-net --label lbgen.service=web --label "lbgen.env=$NEW_ENV" \
    --label lbgen.port=8080 "$RELEASE"
done

if lbgen switch --env "$NEW_ENV" --timeout 2m --json > switch.json; then
  echo "switched to $NEW_ENV"
else
  code=$?
  echo "switch failed with exit $code; traffic stays on the previous env" >&2
  cat switch.json >&2 || true
  exit "$code"
fi
