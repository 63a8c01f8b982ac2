"""The OE simulator: a deterministic, fault-injecting stand-in for the Orchestration Engine API."""

from oe_assets.simulator.faults import FaultSwitches
from oe_assets.simulator.generator import iter_generated_contexts
from oe_assets.simulator.server import SimulatorServer
from oe_assets.simulator.world import AdvanceReport, World

__all__ = ["AdvanceReport", "FaultSwitches", "SimulatorServer", "World", "iter_generated_contexts"]
