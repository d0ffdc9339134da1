"""Real Flower deployments of dppt: test certificates, SuperNode keys, and a local SuperLink + SuperNodes.

- :func:`make_test_certificates`: a throwaway CA and a server certificate for given hosts (tests and
  demos; production uses a CA of your organisation, see docs/deployment.md).
- :func:`make_node_key`: an EC P-384 key pair in OpenSSH format for SuperNode authentication.
- :class:`LocalDeployment`: one SuperLink and N SuperNodes as separate processes on free ports,
  each with its own ``FLWR_HOME``, started and stopped by process id.
"""

from simulations.deploy.certificates import make_node_key, make_test_certificates
from simulations.deploy.local import DeploymentError, LocalDeployment

__all__ = ["DeploymentError", "LocalDeployment", "make_node_key", "make_test_certificates"]
