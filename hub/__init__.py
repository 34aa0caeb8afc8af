"""Haven's hub: turns alarms from devices into pages to people, on state kept in Redis."""
