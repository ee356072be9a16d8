# /// script
# requires-python = ">=3.8"
# dependencies = [
#   "tabulate>=0.9",
# ]
# ///
"""Renders rows as a text table with `tabulate` (a PEP 723 dependency from PyPI).

    hanzo-node run python examples/python/table.py \
        --params '{"rows": [["Oslo", 3.5], ["Rome", 14]], "headers": ["city", "temp"]}'

The first run installs tabulate with uv into an environment cached under the node's
data directory; later runs of this (or any script with the same dependencies) reuse it.
"""

import tabulate


def run(params):
    rows = params.get("rows", [])
    headers = params.get("headers", ())
    fmt = params.get("format", "github")
    return {
        "table": tabulate.tabulate(rows, headers=headers, tablefmt=fmt),
        "tabulate": tabulate.__version__,
    }


def formats(params):
    return sorted(tabulate.tabulate_formats)
