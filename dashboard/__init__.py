"""Haven's operator dashboard (Flask)."""
