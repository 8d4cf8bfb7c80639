"""A caller outside the mesh (as the docker host is): starts one workflow run and prints the run record.

Run inside a namespace on the `public` network: `python netns_client.py <orchestrator url> <workflow> <json>`.
Standard library only, so it needs nothing but an interpreter.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

WAIT_S = 60


def main() -> int:
    base, workflow, payload = sys.argv[1], sys.argv[2], sys.argv[3]
    request = urllib.request.Request(  # noqa: S310 - the URL is the test's own
        f"{base}/v1/workflows/{workflow}/runs?wait={WAIT_S}",
        data=payload.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S + 30) as response:  # noqa: S310
            print(json.dumps({"status": response.status, "run": json.loads(response.read())}))
    except urllib.error.HTTPError as error:
        print(json.dumps({"status": error.code, "run": json.loads(error.read() or b"null")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
