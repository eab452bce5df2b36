"""A local Ray instance whose every server listens on 127.0.0.1 only.

Ray gives its GCS, raylet, workers and agents the node's IP address and, unless that address is the
loopback one, they listen on all interfaces. On Linux Ray takes the node IP from the network; its
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` switch makes it 127.0.0.1 instead (the single-machine mode
Ray uses on macOS and Windows), for this process and, through the environment, for every process
Ray starts. A Ray cluster (an ``address``) is configured by whoever runs it.
"""

from __future__ import annotations

import logging
import os

from engine.core.units import LOOPBACK

LOOPBACK_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def start_local_ray(num_cpus: int, object_store_memory: int) -> None:
    """``ray.init`` of a new local instance (never one another user started here), quiet, without a
    dashboard, with 127.0.0.1 as the node IP so that nothing it starts listens beyond loopback."""
    os.environ.update(LOOPBACK_ONLY_ENV)
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read when ray is imported, which may have been before
    ray.init(
        address="local",
        _node_ip_address=LOOPBACK,
        num_cpus=num_cpus,
        include_dashboard=False,
        object_store_memory=object_store_memory,
        log_to_driver=False,
        logging_level=logging.ERROR,  # Ray's notices stay off stderr (issue 17)
    )
