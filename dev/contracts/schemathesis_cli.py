"""schemathesis' command line, with one workaround for a bug of CPython 3.11, not of the API.

hypothesis describes every filtered strategy by parsing the source of the filter's lambda
(`ast.parse` of the whole module). Deep inside schemathesis' coverage generators, CPython 3.11
can fail that parse with `SystemError: AST constructor recursion depth mismatch` (CPython
gh-106905, fixed in later releases), which stops the whole run on an error of its own. The
description is only a name for reports, so here it falls back to the function's name.

Run with the schemathesis virtualenv's python: `python schemathesis_cli.py ARGS...` takes the
arguments of `schemathesis` (dev/check-contracts.sh).
"""

import sys

from hypothesis.internal import lambda_sources

_describe = lambda_sources.lambda_description


def _lambda_description(f):
    try:
        return _describe(f)
    except SystemError:
        return getattr(f, "__name__", "<lambda>")


lambda_sources.lambda_description = _lambda_description

from schemathesis.cli import schemathesis  # noqa: E402  (after the workaround is in place)

if __name__ == "__main__":
    sys.argv[0] = "schemathesis"
    sys.exit(schemathesis())
