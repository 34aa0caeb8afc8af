"""Incident jobs: the supervisor's notice on resolve, overdue reminders, retention purge."""

from __future__ import annotations

import email
import email.policy
import threading

import pytest

from hub.incidents.jobs import IncidentJobs, run_jobs
from hub.incidents.mail import Mailer, SmtpSettings, smtp_from_env
from hub.incidents.model import ReportStatus, parse_report
from hub.incidents.store import IncidentStore
from hub.errors import ConfigError
from tests.incidents_kit import T0, RecordingNotifier, SmtpSink, daily_test_press, \
    scripted_alarm

HOUR_MS = 3_600_000
DANA = "+12065550102"  # main's supervisor (and manager)


class Clock:
    def __init__(self, ms: int):
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
def incidents(fake_store, sample_site):
    return IncidentStore(fake_store, sample_site)


def jobs_for(sample_site, incidents, clock, notifier=None, consumer="hub-1", mailer=None):
    return IncidentJobs(sample_site, incidents, notifier or RecordingNotifier(),
                        consumer=consumer, clock=clock, mailer=mailer,
                        public_url="https://haven.example.org")


def test_resolve_notifies_the_supervisor_once_across_workers(fake_store, sample_site, incidents):
    clock = Clock(T0 + 10 * 60_000)
    one, two = RecordingNotifier(), RecordingNotifier()
    a, b = (jobs_for(sample_site, incidents, clock, n, consumer=c)
            for n, c in ((one, "hub-1"), (two, "hub-2")))
    scripted_alarm(fake_store, "a1")
    for _ in range(3):
        a.tick(), b.tick()
    sent = one.sent + two.sent
    assert [to for to, _ in sent] == [DANA]
    body = sent[0][1]
    assert "EMERGENCY alarm at Main Library, Circulation Desk was resolved by dana" in body
    assert "(Police attended)" in body and "customer left" not in body  # never the note
    assert "https://haven.example.org/incidents/a1" in body
    timeline = fake_store.timeline("a1")
    assert [e["contact"] for e in timeline if e["event"] == "supervisor_notified"] == \
        ["Dana Ortiz (branch manager)"]
    assert incidents.get("a1").supervisor_notified_ms == clock.ms


def test_drills_false_alarms_and_test_presses_tell_no_supervisor(fake_store, sample_site,
                                                                 incidents):
    clock = Clock(T0 + HOUR_MS)
    notifier = RecordingNotifier()
    jobs = jobs_for(sample_site, incidents, clock, notifier)
    scripted_alarm(fake_store, "drill1", drill=True)
    scripted_alarm(fake_store, "false1", close="cancel")
    daily_test_press(fake_store, "t1", "main-ref-01", T0)
    result = jobs.tick()
    assert notifier.sent == [] and result.indexed == 2
    assert [i.id for i in incidents.between()] == ["false1", "drill1"] or \
        {i.id for i in incidents.between()} == {"false1", "drill1"}
    assert incidents.test_presses() == {"main-ref-01": T0}
    statuses = {i.id: i.report_status(clock.ms, HOUR_MS) for i in incidents.between()}
    assert statuses == {"drill1": ReportStatus.NOT_NEEDED, "false1": ReportStatus.NOT_NEEDED}


def test_an_overdue_report_is_reminded_once_per_interval(fake_store, sample_site, incidents):
    resolved_at = T0 + 300_000
    clock = Clock(resolved_at + 60_000)
    notifier = RecordingNotifier()
    jobs = jobs_for(sample_site, incidents, clock, notifier)
    scripted_alarm(fake_store, "a1")
    incidents.save_details("a1", reporter="+12065550101")  # the circulation desk writes it
    jobs.tick()
    assert [to for to, _ in notifier.sent] == [DANA]  # the notice only: not overdue yet
    notifier.sent.clear()
    clock.ms = resolved_at + 24 * HOUR_MS - 1000
    jobs.tick()
    assert notifier.sent == []
    clock.ms = resolved_at + 24 * HOUR_MS            # overdue now: reporter and supervisor
    jobs.tick(), jobs.tick()
    other = jobs_for(sample_site, incidents, clock, notifier, consumer="hub-2")
    other.tick()                                      # another worker: nothing more
    assert sorted(to for to, _ in notifier.sent) == ["+12065550101", DANA]
    assert "report on the EMERGENCY alarm at Main Library" in notifier.sent[0][1]
    assert incidents.get("a1").report_status(clock.ms, 24 * HOUR_MS) is ReportStatus.OVERDUE
    notifier.sent.clear()
    clock.ms += 23 * HOUR_MS
    jobs.tick()
    assert notifier.sent == []
    clock.ms += HOUR_MS                               # a day after the first reminder
    jobs.tick(), other.tick()
    assert len(notifier.sent) == 2
    notifier.sent.clear()
    report, errors = parse_report({"who": "Kim", "what_happened": "shouting", "actions": "asked",
                                   "police": "no", "followup": "none"}, by="dana",
                                  now_ms=clock.ms, personal_allowed=False)
    assert errors == {}
    incidents.file_report("a1", report, keep_personal=False)
    clock.ms += 48 * HOUR_MS
    jobs.tick()
    assert notifier.sent == []
    assert incidents.get("a1").report_status(clock.ms, 24 * HOUR_MS) is ReportStatus.FILED


def test_reminders_go_by_email_when_smtp_is_configured(fake_store, sample_site, incidents):
    sink = SmtpSink()
    try:
        mailer = Mailer(SmtpSettings("127.0.0.1", sink.port, "haven@library.example.org",
                                     starttls=False))
        clock = Clock(T0 + 25 * HOUR_MS)
        notifier = RecordingNotifier()
        jobs = jobs_for(sample_site, incidents, clock, notifier, mailer=mailer)
        scripted_alarm(fake_store, "a1")
        jobs.tick()
        # the notice is a text (it is urgent); the reminder an e-mail (Dana has an address)
        assert [to for to, _ in notifier.sent] == [DANA]
        [(sender, rcpts, data)] = sink.mailbox.messages
        assert sender == "haven@library.example.org" and rcpts == ["dana.ortiz@example.org"]
        mail = email.message_from_string(data, policy=email.policy.default)
        assert mail["Subject"].strip() == ("Overdue incident report: EMERGENCY alarm at Main Library, "
                                   "Circulation Desk")
        assert "https://haven.example.org/incidents/a1" in mail.get_content()
        entries = [e for e in fake_store.timeline("a1") if e["event"] == "report_reminder"]
        assert [(e["channel"], e["ok"]) for e in entries] == [("email", "1")]
    finally:
        sink.close()


def test_a_dead_mail_server_is_recorded_not_silent(fake_store, sample_site, incidents, caplog):
    mailer = Mailer(SmtpSettings("127.0.0.1", 9, "haven@library.example.org", starttls=False))
    jobs = jobs_for(sample_site, incidents, Clock(T0 + 25 * HOUR_MS), mailer=mailer)
    scripted_alarm(fake_store, "a1")
    jobs.tick()
    [entry] = [e for e in fake_store.timeline("a1") if e["event"] == "report_reminder"]
    assert entry["ok"] == "0" and "mail server 127.0.0.1:9" in entry["error"]
    assert "report_reminder to Dana Ortiz (branch manager) by email FAILED" in caplog.text


def test_smtp_settings_from_the_environment():
    assert smtp_from_env({}) is None
    s = smtp_from_env({"HAVEN_SMTP_HOST": "mail.example.org", "HAVEN_SMTP_FROM": "h@x.org"})
    assert (s.host, s.port, s.starttls, s.user) == ("mail.example.org", 587, True, None)
    with pytest.raises(ConfigError) as err:
        smtp_from_env({"HAVEN_SMTP_HOST": "mail", "HAVEN_SMTP_PORT": "x",
                       "HAVEN_SMTP_USER": "u"})
    text = str(err.value)
    for needle in ("HAVEN_SMTP_PORT: 'x' is not a TCP port", "HAVEN_SMTP_FROM: missing",
                   "HAVEN_SMTP_PASSWORD: set both"):
        assert needle in text


def test_retention_purge_removes_personal_fields_and_keeps_the_timeline(fake_store, sample_site,
                                                                       incidents):
    scripted_alarm(fake_store, "old", at_ms=T0)
    scripted_alarm(fake_store, "new", at_ms=T0 + 300 * 86_400_000)
    for alarm_id in ("old", "new"):
        incidents.save_details(alarm_id, description="man shouting at desk",
                               people="J. Doe, 40s")
    clock = Clock(T0 + 366 * 86_400_000)
    jobs = jobs_for(sample_site, incidents, clock)
    before = fake_store.timeline("old")
    result = jobs.tick()
    assert result.purged == 1
    old, new = incidents.get("old"), incidents.get("new")
    assert (old.description, old.people) == ("", "") and old.purged_ms == clock.ms
    assert new.people == "J. Doe, 40s" and new.purged_ms is None
    timeline = fake_store.timeline("old")
    assert timeline[:len(before)] == before and timeline[-1]["event"] == "personal_purged"
    assert old.alarm.acknowledged_by == "Dana Ortiz" and old.first_ack_ms == 20_000
    [audit] = incidents.audit_log()
    assert (audit["event"], audit["incidents"], audit["user"]) == ("purge", "old", "retention")
    jobs._next_purge = 0
    assert jobs.tick().purged == 0  # nothing left to purge: not logged again


def test_the_jobs_run_once_at_start_then_every_interval():
    """A first start indexes the alarms closed before it at once, while the hub is quiet,
    not an interval later in the middle of the first burst."""
    ticked, stop = threading.Event(), threading.Event()

    class Jobs:
        def tick(self):
            ticked.set()

    runner = threading.Thread(target=run_jobs, args=(Jobs(), stop, 3600.0), daemon=True)
    runner.start()
    assert ticked.wait(10)  # the interval is an hour: only the first tick can set it
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
