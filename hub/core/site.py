"""The site's typed objects: branches, rooms, devices, contacts, alarm kinds and their
escalation steps, frozen once :mod:`hub.config.site` has loaded and checked the config.

Everything here is pure: the site answers "where is this device?" (:meth:`Site.locate`)
and "who does this kind page first?" (:meth:`Site.recipients`); times are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.core.arc import ArcSettings
from hub.core.floorplan import Floor
from hub.core.schedule import Shift


@dataclass(frozen=True)
class IncidentSettings:
    """Incident, drill and privacy settings. Hours (``_h``) and days as given in the file;
    the ``*_ms`` properties convert for the hub's Unix-millisecond clock."""

    supervisor_roles: tuple[str, ...] = ("supervisor",)
    report_overdue_h: float = 24.0
    reminder_every_h: float = 24.0
    drill_every_days: float = 90.0
    branch_drill_every_days: dict[str, float] = field(default_factory=dict, hash=False)
    test_press_max_age_days: float = 2.0
    emails: dict[str, str] = field(default_factory=dict, hash=False)
    personal_roles: tuple[str, ...] = ("admin",)
    retention_days: float = 365.0

    @property
    def report_overdue_ms(self) -> int:
        return int(self.report_overdue_h * 3_600_000)

    @property
    def reminder_every_ms(self) -> int:
        return int(self.reminder_every_h * 3_600_000)

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86_400_000)

    @property
    def test_press_max_age_ms(self) -> int:
        return int(self.test_press_max_age_days * 86_400_000)

    def drill_every_ms(self, branch_id: str) -> int:
        """How often ``branch_id`` must run a drill, in ms."""
        days = self.branch_drill_every_days.get(branch_id, self.drill_every_days)
        return int(days * 86_400_000)

    def may_read_personal(self, dashboard_role: str | None) -> bool:
        return dashboard_role in self.personal_roles


@dataclass(frozen=True)
class Room:
    """A room of a branch; a safe room is a lockable refuge staff may retreat to."""

    id: str
    name: str
    branch_id: str
    safe_room: bool = False


@dataclass(frozen=True)
class Branch:
    """A library branch. While it has a lone worker, the hub asks each worn device to check
    in every ``checkin_every_s`` seconds and raises ``missed_checkin`` after ``checkin_grace_s``
    without an answer."""

    id: str
    name: str
    timezone: str
    rooms: tuple[Room, ...]
    checkin_every_s: float = 1800.0
    checkin_grace_s: float = 120.0
    #: Its floor plans and where each room is on them (hub.core.floorplan); none: tiles only.
    floors: tuple[Floor, ...] = field(default=(), hash=False)

    def room(self, room_id: str) -> Room | None:
        return next((r for r in self.rooms if r.id == room_id), None)

    def floor_of(self, room_id: str) -> Floor | None:
        """The floor whose plan places ``room_id``, or ``None`` (no plan)."""
        return next((f for f in self.floors if f.placement(room_id) is not None), None)


@dataclass(frozen=True)
class Device:
    """A button (worn or on a wall) or a safe-room contact, placed in one room.

    ``holder`` is who wears it, in words for texts and the dashboard; ``contact`` is the
    phone of the [[contact]] who answers colleagues' alarms from it (hub.engine.colleagues):
    alerted while on duty, acknowledging as that contact. ``None``: never alerted."""

    id: str
    branch_id: str
    room_id: str
    type: str = "wall"
    holder: str | None = None
    contact: str | None = None


@dataclass(frozen=True)
class Contact:
    """A person or desk to page. ``phone`` is E.164 (``+15550100``). ``shifts`` are the
    weekly hours they are on duty (none: always, like a police dispatch)."""

    name: str
    phone: str
    branches: frozenset[str]
    roles: frozenset[str]
    shifts: tuple[Shift, ...] = ()


@dataclass(frozen=True)
class Step:
    """One escalation step: page the contacts holding ``notify`` roles by ``channels``,
    ``repeat`` times, ``wait_s`` seconds apart (and before the next step). The last
    step of a policy repeats until someone acknowledges."""

    notify: tuple[str, ...]
    channels: tuple[str, ...] = ("sms",)
    wait_s: float = 120.0
    repeat: int = 1


@dataclass(frozen=True)
class Kind:
    """An alarm kind and its escalation policy (no steps: recorded, no one paged).

    ``lone_worker_steps`` replace ``steps`` while the branch has a lone worker (no
    colleague to come: police first); empty means the same steps.
    """

    id: str
    label: str
    steps: tuple[Step, ...]
    cancel_window_s: float = 0.0
    lone_worker_steps: tuple[Step, ...] = ()

    @property
    def notify(self) -> tuple[str, ...]:
        """The roles of the first step (whom an alarm of this kind pages first)."""
        return self.steps[0].notify if self.steps else ()

    def policy(self, lone_worker: bool) -> tuple[Step, ...]:
        return self.lone_worker_steps if lone_worker and self.lone_worker_steps else self.steps


@dataclass(frozen=True)
class Site:
    name: str
    source: str
    kinds: dict[str, Kind] = field(hash=False)
    branches: dict[str, Branch] = field(hash=False)
    devices: dict[str, Device] = field(hash=False)
    contacts: tuple[Contact, ...] = ()
    #: An unanswered call (busy, no answer, voicemail) is placed again this many times,
    #: each ``call_retry_after_s`` seconds after the last one ended.
    call_retries: int = 2
    call_retry_after_s: float = 30.0
    #: ``[incidents]`` and ``[privacy]`` (reports, reminders, drills, retention): see
    #: :mod:`hub.config.incidents`.
    incidents: IncidentSettings = field(default_factory=IncidentSettings, hash=False)
    #: ``[arc]``: the alarm receiving centre (hub.arc.config), or ``None``.
    arc: ArcSettings | None = field(default=None, hash=False)

    def locate(self, device_id: str) -> tuple[Branch, Room] | None:
        """The branch and room of a registered device, or ``None`` if unknown."""
        device = self.devices.get(device_id)
        if device is None:
            return None
        branch = self.branches[device.branch_id]
        room = branch.room(device.room_id)
        assert room is not None  # guaranteed by validation
        return branch, room

    def contact(self, phone: str, name: str | None = None) -> Contact:
        """The contact with this E.164 ``phone``; one gone from the site file since it was
        paged is a bare contact named ``name`` (or the number), with no branch or role."""
        found = next((c for c in self.contacts if c.phone == phone), None)
        return found or Contact(name or phone, phone, frozenset(), frozenset())

    def recipients(self, kind: str, branch_id: str) -> tuple[Contact, ...]:
        """Contacts of ``branch_id`` holding a role the kind's first step pages, in config
        order (schedules aside)."""
        roles = set(self.kinds[kind].notify)
        return tuple(c for c in self.contacts
                     if branch_id in c.branches and roles & c.roles)
