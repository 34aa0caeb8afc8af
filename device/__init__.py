"""Haven's device firmware: a Raspberry Pi button that raises alarms over MQTT."""
