"""`walwarden crds`: print the CustomResourceDefinitions generated from the API models (api/), as
`kubectl apply -f -` takes them."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("crds", help="print the CustomResourceDefinitions generated from the API models")
    parser.set_defaults(handler=print_crds)


def print_crds(args: argparse.Namespace) -> int:
    from walwarden.api.crdgen import build_crds, to_yaml

    sys.stdout.write("---\n".join(to_yaml(crd) for crd in build_crds()))
    return 0
