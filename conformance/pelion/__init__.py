"""The Pelion Device Management notification channel: plug-in, manifest section and simulators."""
