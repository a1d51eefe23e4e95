"""A node's configuration as one typed object, and the node's logging.

:class:`NodeConfig` holds every setting of a node in sections: ``node``
(who it is: system name, host, port, HTTP port, seeds, roles, secret,
application), ``management``, ``log``, ``runtime``, ``remote``, ``cluster``
and ``persistence``. The layers' sections are their own settings objects
(``shoal.runtime.Settings``, ``RemoteSettings``, ``ClusterSettings``,
``SqliteSettings``, ``CassandraSettings``), so nothing is declared twice::

    config = load_config("node.toml", preset="production", flags={"node.port": 2552})
    system = ActorSystem(config.node.system, settings=config.runtime)
    configure_logging(config, address)

:func:`load_config` reads a TOML file, then ``SHOAL_<SECTION>_<KEY>``
environment variables, then flags (flags win) over the ``production`` or
``testing`` preset, and refuses anything unknown or invalid with a
:class:`ConfigError` naming the setting and where it came from.
``docs/configuration.md`` lists every setting; :func:`reference` is its source.
"""

from shoal.management import ManagementSettings as ManagementSettings

from ._errors import ConfigError as ConfigError
from ._load import load_config as load_config
from ._logging import configure_logging as configure_logging
from ._reference import Reference as Reference
from ._reference import Setting as Setting
from ._reference import reference as reference
from ._sections import LogSettings as LogSettings
from ._sections import NodeConfig as NodeConfig
from ._sections import NodeSettings as NodeSettings
from ._sections import PersistenceConfig as PersistenceConfig

__all__ = [
    # the configuration
    "NodeConfig",
    "NodeSettings",
    "ManagementSettings",
    "LogSettings",
    "PersistenceConfig",
    "load_config",
    "ConfigError",
    # logging
    "configure_logging",
    # the reference
    "reference",
    "Reference",
    "Setting",
]
