"""A caller outside the mesh (as the docker host is): starts one workflow run and prints the run record.

Run inside a namespace on the `public` network: `python netns_client.py <orchestrator url> <workflow> <json>`,
with `ACCORD_GATEWAY_URL` and `ACCORD_OPERATOR_CLIENT_SECRET` in its environment (never on the command
line). It first gets the operator's token for the orchestrator's API from the gateway (OAuth client
credentials, RFC 8707 resource), as any outside caller must. Standard library only, so it needs nothing
but an interpreter.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

WAIT_S = 60
OPERATOR = "operator"


def operator_token(gateway: str, secret: str, resource: str) -> str:
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "resource": resource}).encode()
    basic = base64.b64encode(f"{OPERATOR}:{urllib.parse.quote(secret, safe='')}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the test's own
        f"{gateway}/oauth/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        token: str = json.loads(response.read())["access_token"]
    return token


def main() -> int:
    base, workflow, payload = sys.argv[1], sys.argv[2], sys.argv[3]
    token = operator_token(
        os.environ["ACCORD_GATEWAY_URL"], os.environ["ACCORD_OPERATOR_CLIENT_SECRET"], base
    )
    request = urllib.request.Request(  # noqa: S310 - the URL is the test's own
        f"{base}/v1/workflows/{workflow}/runs?wait={WAIT_S}",
        data=payload.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
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
