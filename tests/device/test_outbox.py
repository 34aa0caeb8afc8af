"""The durable outbox: SQLite, survives a crash, removes only on confirmation."""

import os
import subprocess
import sys

from device.outbox import Outbox
from device.protocol import new_alarm


def test_add_mark_confirm(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    a, b = new_alarm("d1", "assist", 100.0), new_alarm("d1", "emergency", 101.0)
    box.add(a, 100.0)
    box.add(b, 101.0)
    box.add(a, 102.0)  # a resend of the same press is not a second entry
    assert [e.alarm_id for e in box.pending()] == [a.alarm_id, b.alarm_id]
    assert (box.get(a.alarm_id).attempts, box.get(a.alarm_id).last_sent_s) == (1, 100.0)
    box.mark_sent(a.alarm_id, 103.0)
    entry = box.get(a.alarm_id)
    assert (entry.attempts, entry.last_sent_s, entry.payload) == (2, 103.0, a.to_json())
    assert box.confirm(a.alarm_id) is True
    assert box.confirm(a.alarm_id) is False
    assert box.depth() == 1 and box.writable()
    box.close()


def test_an_alarm_survives_kill_9_right_after_add(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    code = ("import os, sys; sys.path.insert(0, %r)\n"
            "from device.outbox import Outbox\nfrom device.protocol import new_alarm\n"
            "a = new_alarm('d1', 'emergency'); Outbox(%r).add(a, 1.0)\n"
            "print(a.alarm_id, flush=True); os.kill(os.getpid(), 9)\n"
            % (os.getcwd(), str(path)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9
    alarm_id = proc.stdout.strip()
    box = Outbox(path)
    assert [e.alarm_id for e in box.pending()] == [alarm_id]
    box.close()
