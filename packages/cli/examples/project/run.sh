#!/bin/sh
# Two services defined in quiesce.config.json (found upward from here, as npm finds package.json),
# one command: each service's port in QUIESCE_<NAME>_PORT. Then one held between commands.
set -e
cd "$(dirname "$0")"
get='fetch(`http://127.0.0.1:${process.env[process.argv[1]]}/`).then((r) => r.json()).then((s) => console.log(`${s.name} on port ${s.port}`))'
quiesce run api cache -- sh -c "node -e '$get' QUIESCE_API_PORT && node -e '$get' QUIESCE_CACHE_PORT"
quiesce up cache
quiesce run cache -- node -e "$get" QUIESCE_CACHE_PORT
quiesce down cache
