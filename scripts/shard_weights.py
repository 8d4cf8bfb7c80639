"""Write tests/shard_weights.json: each test module's seconds, from the output of a suite run with
`--durations=0` (e.g. `PYTEST_ADDOPTS=--durations=0 make test > run.log`), for `tests/conftest.py` to
balance its two shards. Modules it does not list count one second."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

DURATION = re.compile(r"^([0-9.]+)s (?:setup|call|teardown)\s+(\S+?)::", re.MULTILINE)
WEIGHTS = Path(__file__).resolve().parent.parent / "tests" / "shard_weights.json"


def main(log: Path) -> None:
    seconds: Counter[str] = Counter()
    for match in DURATION.finditer(log.read_text()):
        seconds[match.group(2)] += float(match.group(1))
    if not seconds:
        raise SystemExit(f"no durations in {log}: run the suite with --durations=0")
    weights = {module: round(total, 1) for module, total in sorted(seconds.items())}
    WEIGHTS.write_text(json.dumps(weights, indent=1) + "\n")
    print(f"{len(weights)} modules, {sum(weights.values()):.0f} s in all -> {WEIGHTS}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
