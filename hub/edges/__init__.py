"""The hub's edges to the outside: MQTT, the notifiers (console, Twilio) and metrics."""
