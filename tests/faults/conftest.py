"""Prints how fast escalations resumed after the faults (for docs/reliability.md)."""

from tests.faults import harness


def pytest_terminal_summary(terminalreporter):
    if harness.RESUMED:
        r = sorted(harness.RESUMED)
        terminalreporter.write_line(
            f"faults: {len(r)} resumptions measured; seconds after the fault ended (or the "
            f"attempt fell due): median {r[len(r) // 2]:.2f}, max {r[-1]:.2f}")
