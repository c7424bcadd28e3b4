#!/bin/sh
# Three commands at once, one demo service between them: the first `quiesce run` starts it,
# the others join; each sees the same pid and port; it stops 10s after the last one exits.
set -e
ask='fetch(`http://127.0.0.1:${process.env.QUIESCE_SERVICE_PORT}/`).then((r) => r.json()).then((s) => console.log(`service pid ${s.pid} on port ${s.port}`))'
for i in 1 2 3; do
  quiesce run --name readme-demo --service quiesce-demo-service --port auto --grace 10s -- node -e "$ask" &
done
wait
quiesce status readme-demo
