"""Run logging: console progress lines, progress.csv and TensorBoard, behind one object."""

from harl.logging.run_logger import RunLogger

__all__ = ["RunLogger"]
