"""Connected to a monitoring centre: alarms reach an alarm receiving centre (ARC) over
SIA DC-09, the way professional hold-up and lone-worker alarms do.

- :mod:`hub.arc.dc09` — the messages, pure: frames (CRC, length, sequence, receiver,
  line, account, AES-CBC), SIA DC-03 and Contact ID event data, the receiver's answers.
- :mod:`hub.arc.config` — ``[arc]`` in the site TOML, checked once with the site.
- :mod:`hub.arc.link` — one message to one receiver and its answer (stdlib sockets,
  TCP or UDP): no library speaks the transmitter side.
- :mod:`hub.arc.sender` — the durable queue, delivery (resend until ACK, NAK clock
  correction, backup receiver), path supervision (NULL messages) and the trouble.
- :mod:`hub.arc.commission` — ``haven arc test``.

See docs/arc.md.
"""
