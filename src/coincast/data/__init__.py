"""Sources -> one validated frame (see `frame.validate_frame`)."""

from coincast.data.datasets import DATASETS, dataset_info, load
from coincast.data.frame import validate_frame

__all__ = ["DATASETS", "dataset_info", "load", "validate_frame"]
