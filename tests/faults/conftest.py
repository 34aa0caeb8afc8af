"""Prints how fast escalations resumed after each fault (for docs/reliability.md)."""

from tests.faults import harness


def pytest_terminal_summary(terminalreporter):
    by_test: dict[str, list[float]] = {}
    for test, seconds in harness.RESUMED:
        by_test.setdefault(test, []).append(seconds)
    if by_test:
        terminalreporter.write_sep("-", "faults: escalation resumed, seconds after the fault "
                                        "ended (or the attempt fell due)")
    for test, seconds in by_test.items():
        seconds.sort()
        terminalreporter.write_line(f"{test}: n={len(seconds)} median "
                                    f"{seconds[len(seconds) // 2]:.2f} max {seconds[-1]:.2f}")
