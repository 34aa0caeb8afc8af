"""E-mail by SMTP (stdlib ``smtplib``) for report reminders, configured by environment::

    HAVEN_SMTP_HOST       mail server host (unset: no e-mail; reminders go by SMS)
    HAVEN_SMTP_PORT       its port                        587
    HAVEN_SMTP_FROM       the sender address              required with a host
    HAVEN_SMTP_USER, HAVEN_SMTP_PASSWORD   log in (both or neither)
    HAVEN_SMTP_STARTTLS   1: upgrade with STARTTLS, 0: plain (a local relay)   1

A send reports a :class:`hub.core.model.Delivery` like the SMS notifier: accepted, or a
failure saying whether trying again may help (a refused recipient will not).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Mapping

from hub.errors import ConfigError, Problem
from hub.core.model import Delivery
from hub.config.settings import env_default

from hub.config.incidents import EMAIL_RE

#: Seconds to wait for the mail server before giving up (a retryable failure).
SMTP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    starttls: bool = True


def smtp_from_env(env: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """SMTP settings, or ``None`` when HAVEN_SMTP_HOST is unset; mistakes raise
    :class:`ConfigError` naming the variable and the fix."""
    host = env_default("HAVEN_SMTP_HOST", "", env).strip()
    if not host:
        return None
    problems = []
    port_text = env_default("HAVEN_SMTP_PORT", "587", env).strip()
    if not (port_text.isdigit() and 0 < int(port_text) < 65536):
        problems.append(Problem("environment", None, "HAVEN_SMTP_PORT",
                                f"{port_text!r} is not a TCP port (587, 465 or 25)"))
    sender = env_default("HAVEN_SMTP_FROM", "", env).strip()
    if not EMAIL_RE.match(sender):
        problems.append(Problem("environment", None, "HAVEN_SMTP_FROM",
                                "missing or not an address: set the sender, e.g. "
                                "haven@library.example.org"))
    user = env_default("HAVEN_SMTP_USER", "", env) or None
    password = env_default("HAVEN_SMTP_PASSWORD", "", env) or None
    if (user is None) != (password is None):
        problems.append(Problem("environment", None, "HAVEN_SMTP_PASSWORD" if user else
                                "HAVEN_SMTP_USER", "set both HAVEN_SMTP_USER and "
                                "HAVEN_SMTP_PASSWORD, or neither"))
    starttls = env_default("HAVEN_SMTP_STARTTLS", "1", env).strip()
    if starttls not in ("0", "1"):
        problems.append(Problem("environment", None, "HAVEN_SMTP_STARTTLS", "must be 1 or 0"))
    if problems:
        raise ConfigError(problems)
    return SmtpSettings(host, int(port_text), sender, user, password, starttls == "1")


class Mailer:
    """Sends one plain-text message per call over a fresh SMTP connection."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings):
        self.settings = settings

    def send(self, to: str, subject: str, body: str) -> Delivery:
        s = self.settings
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = s.sender, to, subject
        msg.set_content(body)
        try:
            with smtplib.SMTP(s.host, s.port, timeout=SMTP_TIMEOUT_S) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.user:
                    smtp.login(s.user, s.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            return Delivery.failed(f"recipient refused: {exc.recipients}", retryable=False)
        except smtplib.SMTPResponseException as exc:
            return Delivery.failed(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                                   retryable=exc.smtp_code >= 400 and exc.smtp_code < 500,
                                   code=exc.smtp_code)
        except (OSError, smtplib.SMTPException) as exc:
            return Delivery.failed(f"mail server {s.host}:{s.port}: {exc}", retryable=True)
        return Delivery.sent(msg.get("Message-ID") or f"smtp:{to}")
