"""Incidents: every alarm's record after the fact, its report, drills measured, privacy kept.

    model.py    Incident, Report, report status, personal fields (pure)
    store.py    incidents in Redis beside the alarms; the privacy audit stream
    jobs.py     supervisor notice on resolve, overdue reminders, retention purge
    mail.py     SMTP e-mail for reminders (HAVEN_SMTP_*)
    reports.py  drill report, readiness flags, figures for the charts (pure)
    export.py   CSV and JSON export
    charts.py   server-side SVG charts with their text tables
"""
