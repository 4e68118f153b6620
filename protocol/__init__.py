"""The contract between room nodes, sensor nodes and the supervisor."""

PROTOCOL_VERSION = 1
