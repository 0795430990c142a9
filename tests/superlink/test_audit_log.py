"""The audit log writes every accepted action and summarises floods of refusals."""

from __future__ import annotations

from glade.superlink.audit import AuditLog
from glade.superlink.sqlite_state import SqliteState


def test_a_flood_of_refusals_is_counted_and_reported_by_the_next_written_one() -> None:
    state = SqliteState(":memory:")
    ticks = [0.0]
    audit = AuditLog(state, denied_rate=1.0, denied_burst=3, monotonic=lambda: ticks[0])
    written = [audit.record(actor="anonymous", action="login", result="denied") for _ in range(10)]
    assert written == [True] * 3 + [False] * 7
    assert audit.suppressed == 7
    # accepted actions are never left out, whatever the flood
    assert audit.record(actor="root", action="user.add", target="ana")
    ticks[0] = 1.0  # one refusal's worth of budget comes back after a second
    assert audit.record(actor="node:SHA256:x", action="auth.rejected", result="denied")
    assert audit.suppressed == 0
    entries = state.list_audit(limit=100)
    assert [e.action for e in entries] == ["login"] * 3 + ["user.add", "auth.rejected"]
    assert "7 more refusal(s) left out" in entries[-1].detail
    assert "left out" not in entries[0].detail
    state.close()
