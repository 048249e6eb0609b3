"""sa1b: get Meta's SA-1B dataset onto a machine or a cluster, fast, resumable and verified."""

__version__ = "0.1.0"
