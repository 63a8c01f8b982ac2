"""A Celonis stand-in over real HTTP: OAuth, the Data Push API and the pool/data-model API, with the data
pool in a DuckDB file, so the push side of the pipeline can be run and tested without a Celonis team."""

from oe_assets.celonis_simulator.faults import CelonisFaults
from oe_assets.celonis_simulator.server import CelonisSimulatorServer

__all__ = ["CelonisFaults", "CelonisSimulatorServer"]
