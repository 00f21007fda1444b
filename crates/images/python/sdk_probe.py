#!/usr/bin/python3
"""sdk-probe (Python): asks the instance metadata service for a token through the real Azure SDK
for Python (azure-identity's ManagedIdentityCredential, whose IMDS address is 169.254.169.254), as
an application would. Same flags and output as the Rust probe (crates/nmi/examples/sdk_probe.rs):

    sdk-probe [--client-id ID | --resource-id ID] [--scope SCOPE] [--no-retry]

Prints `token <length> expires_on <epoch>` and exits 0, or `error <the SDK's message>` and exits 1.
It runs in a pod's network namespace, where the podid agent intercepts that address; never run it
on a host whose network reaches a real IMDS.
"""

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="sdk-probe", description=__doc__.split("\n")[0])
    parser.add_argument("--client-id", help="select the identity by client id")
    parser.add_argument("--resource-id", help="select the identity by ARM resource id")
    parser.add_argument("--scope", default="https://management.azure.com/.default")
    parser.add_argument("--no-retry", action="store_true", help="fail on the first error")
    args = parser.parse_args()

    try:
        from azure.identity import ManagedIdentityCredential

        kwargs = {}
        if args.client_id:
            kwargs["client_id"] = args.client_id
        elif args.resource_id:
            kwargs["identity_config"] = {"resource_id": args.resource_id}
        if args.no_retry:
            kwargs["retry_total"] = 0
        token = ManagedIdentityCredential(**kwargs).get_token(args.scope)
    except Exception as e:  # the SDK's own error is the result
        print("error " + " ".join(f"{type(e).__name__}: {e}".split()))
        return 1
    print(f"token {len(token.token)} expires_on {token.expires_on}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
