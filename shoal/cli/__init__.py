"""The ``shoal`` command line: run a node, and operate a running cluster.

::

    shoal node --port 2552 --http-port 8558 --seed shoal@10.0.0.1:2552 --app myapp:start
    shoal members --node http://10.0.0.1:8558
    shoal leave shoal@10.0.0.2:2552
    shoal down shoal@10.0.0.3:2552
    shoal shards account

``shoal node`` reads its configuration like :func:`shoal.config.load_config`
(a TOML file, then ``SHOAL_…`` environment variables, then these flags);
the other commands talk to a node's management HTTP API. Built on argparse:
the standard library covers subcommands and complete ``--help`` without a
dependency every Shoal install would carry.
"""

from ._main import main as main

__all__ = ["main"]
