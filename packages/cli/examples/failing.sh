#!/bin/sh
# A service that cannot start: quiesce says how it ended and what it printed, and does not run
# the command; `quiesce logs` shows everything the service's last instance wrote.
quiesce run --name broken-demo --service "echo 'config: unknown option --bogus' >&2; exit 2" -- echo never
echo "quiesce exited with $?"
quiesce logs broken-demo
