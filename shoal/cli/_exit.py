"""Exit statuses of ``shoal node``."""

from typing import Final

EXIT_OK: Final = 0
EXIT_START_FAILED: Final = 1
EXIT_DOWNED: Final = 3

EXIT_CODES: Final = {
    "after a graceful leave or shutdown": EXIT_OK,
    "when the configuration is bad or the node cannot start": EXIT_START_FAILED,
    "on a usage error": 2,
    "when the cluster downed or removed the node": EXIT_DOWNED,
}
