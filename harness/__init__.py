"""neighcheck: a hardware-in-the-loop conformance harness for FlushIpNetTable2."""

__version__ = "0.1.0"
# The suite version names the set of cases and clauses; reports from different suite
# versions are not comparable and are never merged.
SUITE_VERSION = "1"
