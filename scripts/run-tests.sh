#!/usr/bin/env bash
# `make test`: the suite as two shards at once (see tests/conftest.py). The modules with tests that need the
# machine's PostgreSQL or Redis (which listen on its loopback) run on the host's network with about half of
# the rest; the other half runs in a network namespace of its own, where no port of theirs can meet one of
# the host shard's. Where no namespace can be made (not root, no unshare), the whole suite runs as one.
set -uo pipefail
cd "$(dirname "$0")/.."
pytest=(.venv/bin/pytest -q -p no:cacheprovider "$@")
if [[ -n "${ACCORD_TEST_SHARD:-}" ]] || ! unshare --net true 2>/dev/null; then
    exec "${pytest[@]}"
fi
work=$(mktemp -d -t accord-tests-XXXXXX)
started=$SECONDS

run_shard() {  # name, then the command that runs pytest in that shard's network
    local name=$1
    shift
    ACCORD_TEST_SHARD=$name "$@" "${pytest[@]}" --basetemp="$work/$name" >"$work/$name.log" 2>&1
}

run_shard host env &
host=$!
run_shard own-netns unshare --net sh -c 'ip link set lo up && exec "$@"' sh &
netns=$!
wait "$host"
host_status=$?
wait "$netns"
netns_status=$?

for name in host own-netns; do
    echo "=== shard $name"
    cat "$work/$name.log"
done
echo "=== both shards done in $((SECONDS - started)) s (host: exit $host_status, own-netns: exit $netns_status)"
if [[ $host_status -ne 0 || $netns_status -ne 0 ]]; then
    echo "test output and the services' state are kept in $work"
    exit 1
fi
rm -rf "$work"
