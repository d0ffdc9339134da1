"""Real Flower deployments of dppt: test certificates, SuperNode keys, and a local SuperLink + SuperNodes.

- :func:`make_test_certificates`: a throwaway CA and a server certificate for given hosts (tests and
  demos; production uses a CA of your organisation, see docs/deployment.md).
- :func:`make_node_key`: an EC P-384 key pair in OpenSSH format for SuperNode authentication.
- :class:`LocalDeployment`: one SuperLink and N SuperNodes as separate processes on free ports,
  each with its own ``FLWR_HOME``, started and stopped by process id.
- :class:`LocalRayCluster`: a head and worker Ray nodes on this machine, each in its own session
  and temp dir, stopped by process id (tests and benchmarks of ``ray-address``).
"""

from simulations.deploy.certificates import make_node_key, make_test_certificates
from simulations.deploy.local import DeploymentError, LocalDeployment
from simulations.deploy.ray_cluster import LocalRayCluster

__all__ = ["DeploymentError", "LocalDeployment", "LocalRayCluster", "make_node_key", "make_test_certificates"]
